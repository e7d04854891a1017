package mapping

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

//go:embed defaults/*.yaml
var defaultFS embed.FS

// Embedded is the name a pipeline's mapping setting uses for the built-in mappings of
// the national front-end tables and the department datasets as schemas/ddl describes
// them (what `shouwang gen` writes and the demo runs).
const Embedded = "embedded"

// Set is every compiled mapping of a pipeline, found by input.
type Set struct {
	byInput map[[2]string]*Mapping
	list    []*Mapping
	where   string
}

// Load reads and compiles the mappings at where: Embedded, a directory of *.yaml files,
// or one file. Every problem of every file is reported, each with file:line; a Set is
// returned only when all compile, so a bad edit never half-applies.
func Load(where string, env *Env) (*Set, error) {
	var specs []*Spec
	var err error
	switch fi, statErr := os.Stat(where); {
	case where == Embedded:
		specs, err = ReadDir(defaultFS, "defaults")
	case statErr != nil:
		return nil, fmt.Errorf("mapping: %w", statErr)
	case fi.IsDir():
		specs, err = ReadDir(os.DirFS(where), ".")
		for _, s := range specs {
			s.file = filepath.Join(where, s.file)
		}
	default:
		var b []byte
		if b, err = os.ReadFile(where); err == nil {
			var s *Spec
			if s, err = ParseSpec(where, b); err == nil {
				specs = []*Spec{s}
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return compileAll(where, specs, env)
}

func compileAll(where string, specs []*Spec, env *Env) (*Set, error) {
	set := &Set{byInput: map[[2]string]*Mapping{}, where: where}
	var errs []string
	for _, s := range specs {
		m, err := Compile(s, env)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, in := range m.Inputs {
			if prev, dup := set.byInput[in]; dup {
				errs = append(errs, fmt.Sprintf("%s: input %s.%s is already mapped by %s", s.file, in[0], in[1], prev.File))
				continue
			}
			set.byInput[in] = m
		}
		set.list = append(set.list, m)
	}
	if len(errs) > 0 {
		return nil, errors.New("mapping: " + strings.Join(errs, "\nmapping: "))
	}
	if len(set.list) == 0 {
		return nil, fmt.Errorf("mapping: %s holds no mapping files", where)
	}
	return set, nil
}

// For returns the mapping of a raw table.
func (s *Set) For(source, table string) (*Mapping, bool) {
	m, ok := s.byInput[[2]string{source, table}]
	return m, ok
}

// Mappings lists the compiled mappings in file order.
func (s *Set) Mappings() []*Mapping { return s.list }

// Where is what Load read.
func (s *Set) Where() string { return s.where }

// Fingerprint changes whenever a mapping file under where changes (names, sizes and
// modification times), so a worker can poll it and reload. Embedded never changes.
func Fingerprint(where string) (string, error) {
	if where == Embedded {
		return Embedded, nil
	}
	var b strings.Builder
	err := filepath.WalkDir(where, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	return b.String(), err
}
