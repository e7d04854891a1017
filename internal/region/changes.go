package region

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Change is one effective-dated code change published by the NBS or the civil-affairs
// department: from Effective on, records carrying Old belong to New. Source systems
// keep old codes for years, so every comparison with the current table goes through a
// Mapper.
type Change struct {
	// Old is the retired (or renamed) 12-digit code.
	Old string
	// New is the code that replaces Old.
	New string
	// Effective is the first day on which New applies.
	Effective time.Time
	// Kind is merge (Old absorbed into New), rename (new code for the same area) or
	// split-primary (Old split; New is the part that keeps most of its population and
	// receives its records by default).
	Kind string
	// Note is free text (the approving document, for example).
	Note string
}

// Change kinds accepted by LoadChanges.
const (
	KindMerge        = "merge"
	KindRename       = "rename"
	KindSplitPrimary = "split-primary"
)

// DateLayout is the layout of effective_date in change files.
const DateLayout = "2006-01-02"

// LoadChanges reads a change list with header old_code,new_code,effective_date,kind,note
// (any column order; note may be omitted). Dates are YYYY-MM-DD. Problems are reported
// together (up to 20), each with name:line; on any problem nothing is returned.
func LoadChanges(r io.Reader, name string) ([]Change, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	hdr, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("region changes %s: empty file; want a header line old_code,new_code,effective_date,kind,note", name)
	}
	if err != nil {
		return nil, fmt.Errorf("region changes %s: read header: %w", name, err)
	}
	col := map[string]int{"old_code": -1, "new_code": -1, "effective_date": -1, "kind": -1, "note": -1}
	for i, h := range hdr {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if _, ok := col[h]; ok {
			col[h] = i
		}
	}
	for _, c := range []string{"old_code", "new_code", "effective_date", "kind"} {
		if col[c] < 0 {
			return nil, fmt.Errorf("region changes %s:1: header lacks column %q; the first line must name old_code,new_code,effective_date,kind,note", name, c)
		}
	}
	get := func(rec []string, c string) string {
		if i := col[c]; i >= 0 && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	p := &problems{name: name}
	var out []Change
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			p.add(errLine(err), "malformed CSV: %v; fix the quoting", err)
			break
		}
		line, _ := cr.FieldPos(0)
		c := Change{Old: get(rec, "old_code"), New: get(rec, "new_code"), Kind: get(rec, "kind"), Note: get(rec, "note")}
		bad := false
		for _, f := range [...]struct{ col, v string }{{"old_code", c.Old}, {"new_code", c.New}} {
			if _, err := LevelOf(f.v); err != nil {
				p.add(line, "%s: %v", f.col, err)
				bad = true
			}
		}
		if !bad && c.Old == c.New {
			p.add(line, "old_code and new_code are both %s; drop the row", c.Old)
		}
		d := get(rec, "effective_date")
		if c.Effective, err = time.Parse(DateLayout, d); err != nil {
			p.add(line, "effective_date %q is not a date YYYY-MM-DD", d)
		}
		switch c.Kind {
		case KindMerge, KindRename, KindSplitPrimary:
		default:
			p.add(line, "kind %q unknown; use merge, rename or split-primary", c.Kind)
		}
		out = append(out, c)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Mapper translates codes through a list of changes, as of a date.
// It is immutable and safe for concurrent use.
type Mapper struct {
	t     *Table
	moves map[string][]Change // by Old, sorted by Effective
}

// NewMapper validates changes against t and builds a Mapper. Every New must be in t or
// itself be the Old of another change (a chain old→mid→new); one code may not have two
// changes on the same day; and following changes may never come back to a code already
// visited (a cycle), whatever the dates, so that Map always terminates.
func NewMapper(t *Table, changes []Change) (*Mapper, error) {
	if t == nil {
		return nil, errors.New("region mapper: nil table")
	}
	m := &Mapper{t: t, moves: make(map[string][]Change)}
	for _, c := range changes {
		m.moves[c.Old] = append(m.moves[c.Old], c)
	}
	var errs []error
	for old, cs := range m.moves {
		slices.SortFunc(cs, func(a, b Change) int { return a.Effective.Compare(b.Effective) })
		for i, c := range cs {
			if i > 0 && c.Effective.Equal(cs[i-1].Effective) {
				errs = append(errs, fmt.Errorf("region mapper: code %s has two changes effective %s (to %s and %s); keep one", old, c.Effective.Format(DateLayout), cs[i-1].New, c.New))
			}
			if _, ok := t.Get(c.New); !ok && len(m.moves[c.New]) == 0 {
				errs = append(errs, fmt.Errorf("region mapper: change %s→%s (%s): new code is not in table %s and is not changed further; fix the change list or load a newer table", c.Old, c.New, c.Effective.Format(DateLayout), t.Name()))
			}
		}
	}
	// Cycle detection on the graph Old→New (colours: 1 in progress, 2 done).
	state := make(map[string]int, len(m.moves))
	var visit func(code string, path []string) error
	visit = func(code string, path []string) error {
		switch state[code] {
		case 1:
			i := slices.Index(path, code)
			return fmt.Errorf("region mapper: changes form a cycle %s→%s; remove one of them", strings.Join(path[i:], "→"), code)
		case 2:
			return nil
		}
		state[code] = 1
		for _, c := range m.moves[code] {
			if err := visit(c.New, append(path, code)); err != nil {
				return err
			}
		}
		state[code] = 2
		return nil
	}
	olds := make([]string, 0, len(m.moves))
	for o := range m.moves {
		olds = append(olds, o)
	}
	slices.Sort(olds) // deterministic error messages
	for _, o := range olds {
		if err := visit(o, nil); err != nil {
			errs = append(errs, err)
			break
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// Map returns the code that code stands for on date at, following chains of changes
// that are effective on or before at (old→mid→new). ok is false when code is neither in
// the table nor mentioned in any change; code is then returned unchanged so callers can
// still report it.
func (m *Mapper) Map(code string, at time.Time) (string, bool) {
	_, known := m.t.Get(code)
	if _, moved := m.moves[code]; moved {
		known = true
	}
	for range len(m.moves) + 1 { // bounded: NewMapper rejected cycles
		cs := m.moves[code]
		next := ""
		for _, c := range cs {
			if c.Effective.After(at) {
				break
			}
			next = c.New
		}
		if next == "" {
			break
		}
		code = next
	}
	return code, known
}
