package dict

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

//go:embed data/*.yaml
var embedded embed.FS

// file is the YAML layout of one data file: one field per file.
//
//	field: risk_type            # ASCII name the table is registered under
//	title: 致贫/返贫风险
//	also: [risk_1, risk_2]      # other fields sharing the table (optional)
//	mode: merge                 # overrides only: merge (default) or replace
//	entries:
//	  - {code: "01", name: 因病, aliases: [病], attrs: {key: illness}}
type file struct {
	Field   string   `yaml:"field"`
	Title   string   `yaml:"title"`
	Note    string   `yaml:"note"`
	Also    []string `yaml:"also"`
	Mode    string   `yaml:"mode"`
	Entries []Entry  `yaml:"entries"`
}

// Set is a collection of code tables by field name. It is immutable and safe for
// concurrent use.
type Set struct {
	dicts map[string]*Dict // includes the also-names
}

var defaultSet = sync.OnceValues(func() (*Set, error) {
	s := &Set{dicts: map[string]*Dict{}}
	if err := s.loadFS(embedded, "data", "embedded ", false); err != nil {
		return nil, err
	}
	return s, nil
})

// Default returns the embedded code tables, parsed once and shared. An error means the
// embedded data is broken, i.e. a build problem.
func Default() (*Set, error) { return defaultSet() }

// LoadDir returns the embedded tables overridden and extended by the *.yaml / *.yml
// files in dir. A file naming an existing field merges into it by default (entries with
// an existing code replace that entry, new codes are appended); with "mode: replace" it
// replaces the whole table. A file naming a new field adds it. The defaults are not
// modified. Every problem names the file, the field and the entry index.
func LoadDir(dir string) (*Set, error) {
	def, err := Default()
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("dict: override directory: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("dict: override path %s is not a directory", dir)
	}
	s := &Set{dicts: make(map[string]*Dict, len(def.dicts))}
	for k, d := range def.dicts {
		s.dicts[k] = d // shared: Dicts are immutable; merges build new ones
	}
	if err := s.loadFS(os.DirFS(dir), ".", dir+string(os.PathSeparator), true); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Set) loadFS(fsys fs.FS, dir, prefix string, override bool) error {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("dict: read %s%s: %w", prefix, dir, err)
	}
	var errs []error
	seen := map[string]string{} // field -> file, within this load
	for _, de := range ents {
		n := de.Name()
		if de.IsDir() || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		where := prefix + n
		if !override {
			where = prefix + path.Join(dir, n)
		}
		raw, err := fs.ReadFile(fsys, path.Join(dir, n))
		if err != nil {
			errs = append(errs, fmt.Errorf("dict %s: %w", where, err))
			continue
		}
		if err := s.loadFile(raw, where, override, seen); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Set) loadFile(raw []byte, where string, override bool, seen map[string]string) error {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("dict %s: %w; see the layout in internal/dict/set.go", where, err)
	}
	if f.Field == "" {
		return fmt.Errorf("dict %s: no field name; add 'field: <ascii_name>'", where)
	}
	if prev, ok := seen[f.Field]; ok {
		return fmt.Errorf("dict %s: field %s is also defined in %s; one file per field", where, f.Field, prev)
	}
	seen[f.Field] = where
	switch f.Mode {
	case "", "merge", "replace":
	default:
		return fmt.Errorf("dict %s: field %s: mode %q unknown; use merge or replace", where, f.Field, f.Mode)
	}
	if !override && f.Mode != "" {
		return fmt.Errorf("dict %s: field %s: mode is only for override files", where, f.Field)
	}
	// Duplicate codes inside one file are mistakes even when merging.
	codes := map[string]int{}
	for i, e := range f.Entries {
		if j, ok := codes[e.Code]; ok {
			return fmt.Errorf("dict %s: field %s: entry %d repeats code %q of entry %d; codes must be unique within a field", where, f.Field, i+1, e.Code, j+1)
		}
		codes[e.Code] = i
	}
	d := &Dict{Field: f.Field, Title: f.Title, Note: f.Note}
	old, exists := s.dicts[f.Field]
	if exists && old.Field != f.Field {
		return fmt.Errorf("dict %s: field %s is shared with table %s (listed under its also); override %s instead", where, f.Field, old.Field, old.Field)
	}
	switch {
	case exists && f.Mode != "replace":
		if d.Title == "" {
			d.Title = old.Title
		}
		if d.Note == "" {
			d.Note = old.Note
		}
		d.Entries = slices.Clone(old.Entries)
		for _, e := range f.Entries {
			if i := slices.IndexFunc(d.Entries, func(x Entry) bool { return x.Code == e.Code }); i >= 0 {
				d.Entries[i] = e
			} else {
				d.Entries = append(d.Entries, e)
			}
		}
	default:
		d.Entries = f.Entries
	}
	if len(d.Entries) == 0 {
		return fmt.Errorf("dict %s: field %s has no entries", where, f.Field)
	}
	if err := d.index(where); err != nil {
		return err
	}
	s.dicts[f.Field] = d
	// Fields sharing the table follow it, whether listed now or in the default.
	also := f.Also
	if exists {
		for k, v := range s.dicts {
			if v == old && k != f.Field {
				also = append(also, k)
			}
		}
	}
	for _, a := range also {
		if cur, ok := s.dicts[a]; ok && cur != old && cur.Field != f.Field {
			return fmt.Errorf("dict %s: field %s lists %s under also, but %s is already a table of its own", where, f.Field, a, a)
		}
		s.dicts[a] = d
	}
	return nil
}

// Get returns the table of a field (or of a field sharing a table, such as an insurance
// field using yes_no). The error names the unknown field and lists the known ones.
func (s *Set) Get(field string) (*Dict, error) {
	if d, ok := s.dicts[field]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("dict: unknown field %q; known fields: %s", field, strings.Join(s.Fields(), ", "))
}

// Fields returns every field name that Get accepts, sorted.
func (s *Set) Fields() []string {
	out := make([]string, 0, len(s.dicts))
	for k := range s.dicts {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
