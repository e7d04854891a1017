// Package mapping turns raw rows (capture envelopes of <p>.raw.<source>.<table>) into
// canonical entities (schemas.Household, schemas.Person, …) by declarative YAML files,
// one per source table: renames, type conversion (dates in every national and Excel
// form, YYYYMM, amounts with thousands separators or in 万元), dictionary translation,
// ID-number normalisation and validation, region-code validation with old→new code
// mapping, derived fields (sex and birth date from the ID number), constants and
// defaults. A record that cannot be mapped yields field-level errors for the
// dead-letter queue; a missing mapped column is reported as schema drift.
//
// A mapping file:
//
//	mapping: national.person        # name, for metrics and errors
//	version: 3                      # bump on every change; carried in metrics and logs
//	source: national                # configured source name
//	table: person                   # raw table or dataset
//	entity: person                  # canonical entity (schemas.Entities)
//	key: [person_no]                # raw key columns → entity key (joined with ":")
//	key_prefix: ""                  # optional literal before the key
//	fields:
//	  person_no: person_no          # shorthand: copy the column, typed by the target field
//	  household_no: {from: hh_no, required: true}
//	  id_no: {from: id_no, type: id_number, invalid: keep}
//	  sex: {from: sex, dict: sex, derive: sex_from_id, derive_from: id_no}
//
// Instead of source and table, inputs lists several "<source>.<table>" the same rules
// apply to (a department dataset delivered as a table and as files). key_hash makes the
// key schemas.DeterministicID(parts…, raw key), where a part "{source}" stands for the
// input's source name. An entity's version orders its changes within one raw topic
// (see Apply), so a key must come from one input only: give inputs of the same dataset
// different key_hash parts (e.g. "{source}").
//
// Field options: from (a column, or a list for list and map targets), type (text, int,
// decimal, bool, date, ym, id_number, phone, region, list, map; default: from the target
// field's Go type), dict (an internal/dict field; to: name|code), required, default,
// const, derive (sex_from_id, birth_date_from_id) with derive_from, scale (multiply a
// decimal, e.g. 10000 for 万元), invalid (dlq: the record goes to the dead-letter queue,
// the default; keep: the value is passed on as given, for supervision rules that report
// it, e.g. a registry ID number failing its checksum; empty: the field is left empty).
package mapping

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Spec is one mapping file as written.
type Spec struct {
	Mapping   string               `yaml:"mapping"`
	Version   int                  `yaml:"version"`
	Source    string               `yaml:"source"`
	Table     string               `yaml:"table"`
	Inputs    []string             `yaml:"inputs"`
	Entity    string               `yaml:"entity"`
	Key       []string             `yaml:"key"`
	KeyPrefix string               `yaml:"key_prefix"`
	KeyHash   []string             `yaml:"key_hash"`
	Fields    map[string]FieldSpec `yaml:"fields"`

	file  string
	lines map[string]int // field name → line of its definition
}

// FieldSpec is one target field's rule.
type FieldSpec struct {
	From       []string `yaml:"-"`
	Type       string   `yaml:"type"`
	Dict       string   `yaml:"dict"`
	To         string   `yaml:"to"`
	Required   bool     `yaml:"required"`
	Default    *string  `yaml:"default"`
	Const      *string  `yaml:"const"`
	Derive     string   `yaml:"derive"`
	DeriveFrom string   `yaml:"derive_from"`
	Scale      string   `yaml:"scale"`
	Invalid    string   `yaml:"invalid"`
	// Labels, for a list field, lists a label per column: a filled column adds its
	// label instead of its value (one national column per measure category).
	Labels map[string]string `yaml:"labels"`
}

// fieldSpecYAML is FieldSpec with from as written (a string or a list).
type fieldSpecYAML struct {
	From       yaml.Node         `yaml:"from"`
	Type       string            `yaml:"type"`
	Dict       string            `yaml:"dict"`
	To         string            `yaml:"to"`
	Required   bool              `yaml:"required"`
	Default    *string           `yaml:"default"`
	Const      *string           `yaml:"const"`
	Derive     string            `yaml:"derive"`
	DeriveFrom string            `yaml:"derive_from"`
	Scale      string            `yaml:"scale"`
	Invalid    string            `yaml:"invalid"`
	Labels     map[string]string `yaml:"labels"`
}

// UnmarshalYAML accepts the shorthand `target: column` and the full form.
func (f *FieldSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*f = FieldSpec{From: []string{n.Value}}
		return nil
	}
	var raw fieldSpecYAML
	if err := decodeStrict(n, &raw); err != nil {
		return err
	}
	*f = FieldSpec{Type: raw.Type, Dict: raw.Dict, To: raw.To, Required: raw.Required, Default: raw.Default,
		Const: raw.Const, Derive: raw.Derive, DeriveFrom: raw.DeriveFrom, Scale: raw.Scale, Invalid: raw.Invalid,
		Labels: raw.Labels}
	switch raw.From.Kind {
	case 0:
	case yaml.ScalarNode:
		f.From = []string{raw.From.Value}
	case yaml.SequenceNode:
		for _, c := range raw.From.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: from: a list of column names expected", c.Line)
			}
			f.From = append(f.From, c.Value)
		}
	default:
		return fmt.Errorf("line %d: from: a column name or a list of column names expected", raw.From.Line)
	}
	return nil
}

// decodeStrict decodes n into v refusing unknown keys (yaml.v3 checks KnownFields only
// through a Decoder, so the node is re-encoded once; mapping files are small).
func decodeStrict(n *yaml.Node, v any) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(n); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return offsetLines(err, n.Line-1)
	}
	return nil
}

var lineRe = regexp.MustCompile(`line (\d+)`)

// offsetLines shifts "line N" in a re-encoded node's errors back to the file's lines.
func offsetLines(err error, by int) error {
	msg := lineRe.ReplaceAllStringFunc(err.Error(), func(s string) string {
		var n int
		fmt.Sscanf(s, "line %d", &n)
		return fmt.Sprintf("line %d", n+by)
	})
	return fmt.Errorf("%s", strings.TrimPrefix(msg, "yaml: "))
}

// ParseSpec reads one mapping file.
func ParseSpec(file string, b []byte) (*Spec, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty mapping file", file)
	}
	root := doc.Content[0]
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	s.file, s.lines = file, map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "fields" {
			continue
		}
		fields := root.Content[i+1]
		for j := 0; j+1 < len(fields.Content); j += 2 {
			s.lines[fields.Content[j].Value] = fields.Content[j].Line
		}
	}
	return &s, nil
}

// File is where the spec was read from.
func (s *Spec) File() string { return s.file }

// at names a field's definition for an error message: file:line: fields.<name>.
func (s *Spec) at(field string) string {
	if l, ok := s.lines[field]; ok {
		return fmt.Sprintf("%s:%d: fields.%s", s.file, l, field)
	}
	return fmt.Sprintf("%s: fields.%s", s.file, field)
}

// ReadDir parses every *.yaml and *.yml file of dir in fsys, sorted by name.
func ReadDir(fsys fs.FS, dir string) ([]*Spec, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("mapping: read %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var specs []*Spec
	var errs []string
	for _, n := range names {
		p := path.Join(dir, n)
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("mapping: %w", err)
		}
		s, err := ParseSpec(p, b)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		specs = append(specs, s)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("mapping: %s", strings.Join(errs, "\nmapping: "))
	}
	return specs, nil
}
