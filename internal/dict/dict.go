// Package dict holds the code tables (字典) of every enumerated field of the national
// household and person data: 户类型, 监测对象类别, 致贫/返贫风险, 与户主关系, 民族 and so on.
// The tables are YAML data files embedded from data/ and loaded at start; a deployment
// can override or extend them from a directory (LoadDir) when the national system changes
// its indicators, without a new build.
package dict

import (
	"fmt"
	"strings"
	"unicode"
)

// Entry is one value of a code table.
type Entry struct {
	// Code is the stored code ("01", "A").
	Code string `yaml:"code"`
	// Name is the Chinese name as it appears in national exports.
	Name string `yaml:"name"`
	// Aliases are other spellings seen in source data (short forms, old names).
	Aliases []string `yaml:"aliases,omitempty"`
	// Attrs are extra facts rules need, e.g. development=true on 帮扶措施 categories or
	// sex=M on 之子; values are strings so data files stay simple.
	Attrs map[string]string `yaml:"attrs,omitempty"`
}

// Dict is the code table of one field. It is immutable once loaded and safe for
// concurrent use.
type Dict struct {
	// Field is the ASCII field name the table is registered under (risk_type).
	Field string
	// Title is the Chinese field title (致贫/返贫风险).
	Title string
	// Note says where the codes come from and what the attributes mean.
	Note string
	// Entries are the values in file order.
	Entries []Entry

	byCode map[string]int
	byName map[string]int // names and aliases
	byKey  map[string]int // folded code, name and alias keys for Normalize
}

// ByCode returns the entry with exactly this code.
func (d *Dict) ByCode(c string) (Entry, bool) {
	i, ok := d.byCode[c]
	if !ok {
		return Entry{}, false
	}
	return d.Entries[i], true
}

// ByName returns the entry with this name or alias (exact match).
func (d *Dict) ByName(n string) (Entry, bool) {
	i, ok := d.byName[n]
	if !ok {
		return Entry{}, false
	}
	return d.Entries[i], true
}

// Normalize maps a raw source value to its entry, accepting a code, a name or an alias.
// Matching ignores surrounding and embedded white space and invisible characters,
// full-width forms and ASCII letter case, and accepts numeric codes without their
// leading zeros ("1" for "01") because spreadsheets drop them.
func (d *Dict) Normalize(v string) (Entry, bool) {
	if i, ok := d.byCode[v]; ok {
		return d.Entries[i], true
	}
	if i, ok := d.byName[v]; ok {
		return d.Entries[i], true
	}
	k := fold(v)
	if k == "" {
		return Entry{}, false
	}
	if i, ok := d.byKey[k]; ok {
		return d.Entries[i], true
	}
	if z := stripZeros(k); z != k {
		if i, ok := d.byKey[z]; ok {
			return d.Entries[i], true
		}
	}
	return Entry{}, false
}

// Codes returns the codes in file order, for messages and generators.
func (d *Dict) Codes() []string {
	out := make([]string, len(d.Entries))
	for i, e := range d.Entries {
		out[i] = e.Code
	}
	return out
}

// fold is the matching key: full-width to ASCII, no spaces or format characters, ASCII
// upper case.
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= 0xFF01 && r <= 0xFF5E:
			r -= 0xFEE0
		case unicode.IsSpace(r), unicode.Is(unicode.Cf, r), unicode.IsControl(r):
			continue
		}
		if r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// stripZeros drops leading zeros of an all-digit key ("01" → "1"; "0" stays "0").
func stripZeros(k string) string {
	for i := 0; i < len(k); i++ {
		if k[i] < '0' || k[i] > '9' {
			return k
		}
	}
	z := strings.TrimLeft(k, "0")
	if z == "" {
		return "0"
	}
	return z
}

// index builds the lookup maps and rejects duplicates. where names the source for
// messages (file name).
func (d *Dict) index(where string) error {
	d.byCode = make(map[string]int, len(d.Entries))
	d.byName = make(map[string]int, len(d.Entries)*2)
	d.byKey = make(map[string]int, len(d.Entries)*4)
	dup := func(i int, what, v string, j int) error {
		return fmt.Errorf("dict %s: field %s: entry %d (%s %q) clashes with entry %d (%s %s); codes, names and aliases must be unique within a field",
			where, d.Field, i+1, what, v, j+1, d.Entries[j].Code, d.Entries[j].Name)
	}
	for i, e := range d.Entries {
		if strings.TrimSpace(e.Code) == "" || strings.TrimSpace(e.Name) == "" {
			return fmt.Errorf("dict %s: field %s: entry %d has an empty code or name; give both", where, d.Field, i+1)
		}
		if j, ok := d.byCode[e.Code]; ok {
			return dup(i, "code", e.Code, j)
		}
		d.byCode[e.Code] = i
	}
	for i, e := range d.Entries {
		for _, n := range append([]string{e.Name}, e.Aliases...) {
			if j, ok := d.byName[n]; ok && j != i {
				return dup(i, "name", n, j)
			}
			d.byName[n] = i
		}
	}
	for i, e := range d.Entries {
		keys := []string{fold(e.Code), stripZeros(fold(e.Code)), fold(e.Name)}
		for _, a := range e.Aliases {
			keys = append(keys, fold(a))
		}
		for _, k := range keys {
			if k == "" {
				return fmt.Errorf("dict %s: field %s: entry %d (%s) has an alias that is empty after removing spaces", where, d.Field, i+1, e.Code)
			}
			if j, ok := d.byKey[k]; ok && j != i {
				return dup(i, "value", k, j)
			}
			d.byKey[k] = i
		}
	}
	return nil
}
