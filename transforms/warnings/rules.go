// Package warnings turns department facts (schemas.DepartmentFact) joined with the
// registry (schemas.Person, schemas.Household) into department screening warnings
// (部门筛查预警, schemas.Warning) and department comparison discrepancies (行业数据比对,
// schemas.Discrepancy).
//
// Rules are data: YAML files (the embedded default is defaults/warnings.v1.yaml) whose
// thresholds vary by year, population class (脱贫 / 监测 / other rural residents) and
// place (region-code prefix). The Engine keeps its state in a pluggable Store, applies
// every input idempotently by version, and re-evaluates a subject whenever any of its
// facts, its registry person or its household changes, so the final set of open
// warnings and pending discrepancies does not depend on the order of arrival.
//
// A rules file:
//
//	version: 1
//	due_days: 15                 # verification deadline after detection (monitoring.md)
//	new_within_months: 3         # default for within_months predicates
//	population:                  # first match wins; unmatched subjects are default_class
//	  - {class: monitored, monitoring_categories: [1, 2, 3]}
//	  - {class: lifted, household_types: [脱贫户]}
//	default_class: other
//	warnings:
//	  - id: yibao.oop_12m
//	    department: yibao
//	    fact_types: [medical_settlement]
//	    subject: person            # person (keyed by ID number) or household (户编号)
//	    measure: amount            # amount | values.<name> | age; empty: the fact itself
//	    aggregate: rolling_sum     # optional: sum over window_months per subject
//	    window_months: 12
//	    op: ">="
//	    thresholds:                # most specific region prefix wins, then the later entry
//	      - {value: 5000, classes: [lifted, monitored]}
//	      - {value: 20000, classes: [other]}
//	      - {value: 6000, classes: [lifted, monitored], regions: ["5134"], from_year: 2025}
//	    where:                     # every predicate must hold
//	      - {field: values.visit_type, in: [住院]}
//	comparisons:
//	  - id: gongan.deceased
//	    department: gongan
//	    fact_types: [death]
//	    subject: person
//	    field: deceased            # Discrepancy.Field
//	    registry: [person.deceased]
//	    expect: "true"             # the registry agrees when any registry field equals it
//	    show: 死亡                 # DepartmentValue (default: the expected value)
//	disable: [yibao.inpatient_stay] # drop rules loaded from an earlier file
//
// Later files override earlier ones: a rule with the same id replaces the earlier
// rule, top-level settings given replace earlier ones, disable removes rules.
package warnings

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/shouwang/shouwang/schemas"
)

//go:embed defaults/*.yaml
var defaultFS embed.FS

// DefaultFile is the embedded default rules file.
const DefaultFile = "defaults/warnings.v1.yaml"

// Population classes used by thresholds.
const (
	ClassLifted    = "lifted"    // 脱贫 (left poverty)
	ClassMonitored = "monitored" // 监测 (monitoring subject)
	ClassOther     = "other"     // other rural residents, or not in the registry
)

// Subject kinds.
const (
	SubjectPerson    = "person"
	SubjectHousehold = "household"
)

// fileSpec is one rules file as written.
type fileSpec struct {
	Version         int           `yaml:"version"`
	DueDays         *int          `yaml:"due_days"`
	NewWithinMonths *int          `yaml:"new_within_months"`
	Population      []classSpec   `yaml:"population"`
	DefaultClass    string        `yaml:"default_class"`
	Warnings        []ruleSpec    `yaml:"warnings"`
	Comparisons     []compareSpec `yaml:"comparisons"`
	Disable         []string      `yaml:"disable"`
}

type classSpec struct {
	Class                string   `yaml:"class"`
	MonitoringCategories []int    `yaml:"monitoring_categories"`
	HouseholdTypes       []string `yaml:"household_types"`
	line                 int
	file                 string
}

type ruleSpec struct {
	ID           string          `yaml:"id"`
	Department   string          `yaml:"department"`
	FactTypes    []string        `yaml:"fact_types"`
	Subject      string          `yaml:"subject"`
	Measure      string          `yaml:"measure"`
	Aggregate    string          `yaml:"aggregate"`
	WindowMonths int             `yaml:"window_months"`
	Op           string          `yaml:"op"`
	Thresholds   []thresholdSpec `yaml:"thresholds"`
	Where        []predSpec      `yaml:"where"`
	DueDays      int             `yaml:"due_days"`
	line         int
}

type thresholdSpec struct {
	Value    string   `yaml:"value"`
	Classes  []string `yaml:"classes"`
	Regions  []string `yaml:"regions"`
	FromYear int      `yaml:"from_year"`
	ToYear   int      `yaml:"to_year"`
	line     int
}

type predSpec struct {
	Field        string   `yaml:"field"`
	In           []string `yaml:"in"`
	NotIn        []string `yaml:"not_in"`
	Contains     string   `yaml:"contains"`
	NotContains  string   `yaml:"not_contains"`
	Empty        *bool    `yaml:"empty"`
	Op           string   `yaml:"op"`
	Value        string   `yaml:"value"`
	WithinMonths *int     `yaml:"within_months"`
	Missing      string   `yaml:"missing"`
	line         int
}

type compareSpec struct {
	ID         string            `yaml:"id"`
	Department string            `yaml:"department"`
	FactTypes  []string          `yaml:"fact_types"`
	Subject    string            `yaml:"subject"`
	Field      string            `yaml:"field"`
	Where      []predSpec        `yaml:"where"`
	Registry   []string          `yaml:"registry"`
	Expect     string            `yaml:"expect"`
	ExpectFrom string            `yaml:"expect_from"`
	Map        map[string]string `yaml:"map"`
	Show       string            `yaml:"show"`
	line       int
}

// Rules is a compiled, validated rule set.
type Rules struct {
	dueDays      int
	population   []classSpec
	defaultClass string
	warnings     []*rule
	comparisons  []*comparison
	files        []string
	version      string // hash of the files' contents
	// uses says which departments' facts the rules of a subject kind read, so a fact
	// re-evaluates only the units whose output it can change.
	uses map[string]map[string]bool
}

// Version identifies the loaded rules: a hash of the files' names and contents.
func (r *Rules) Version() string { return r.version }

func (r *Rules) index() {
	r.uses = map[string]map[string]bool{SubjectPerson: {}, SubjectHousehold: {}}
	for _, w := range r.warnings {
		r.uses[w.subject][w.department] = true
	}
	for _, c := range r.comparisons {
		r.uses[c.subject][c.department] = true
	}
}

// DueDays is the default verification deadline in days.
func (r *Rules) DueDays() int { return r.dueDays }

// WarningRules lists the ids of the active warning rules, in order.
func (r *Rules) WarningRules() []string {
	out := make([]string, len(r.warnings))
	for i, w := range r.warnings {
		out[i] = w.id
	}
	return out
}

// ComparisonRules lists the ids of the active comparisons, in order.
func (r *Rules) ComparisonRules() []string {
	out := make([]string, len(r.comparisons))
	for i, c := range r.comparisons {
		out[i] = c.id
	}
	return out
}

type threshold struct {
	value    int64 // scaled by numScale
	text     string
	classes  map[string]bool
	regions  []string
	fromYear int
	toYear   int
}

type rule struct {
	id, department string
	factTypes      map[string]bool
	subject        string
	measure        fieldRef
	rolling        bool
	window         int
	op             string
	thresholds     []threshold
	where          []*pred
	dueDays        int
}

type comparison struct {
	id, department string
	factTypes      map[string]bool
	subject        string
	field          string
	where          []*pred
	registry       []fieldRef
	expect         string
	expectFrom     fieldRef
	mapping        map[string]string
	show           string
}

// Default returns the embedded default rules.
func Default() (*Rules, error) { return Load(defaultFS, DefaultFile) }

// DefaultFS is the file system holding DefaultFile, to layer configured files over.
func DefaultFS() fs.FS { return defaultFS }

// Load reads and compiles rules files from fsys, later files overriding earlier ones.
// Every problem is reported with file:line; no Rules is returned unless all compile.
func Load(fsys fs.FS, files ...string) (*Rules, error) {
	if len(files) == 0 {
		return nil, errors.New("warnings: no rules file given")
	}
	var errs []string
	bad := func(file string, line int, format string, a ...any) {
		errs = append(errs, fmt.Sprintf("%s:%d: %s", file, line, fmt.Sprintf(format, a...)))
	}
	due, newWithin := 15, 3
	var population []classSpec
	defaultClass := ClassOther
	var ruleOrder []string
	rules := map[string]ruleSpec{}
	ruleFile := map[string]string{}
	var cmpOrder []string
	cmps := map[string]compareSpec{}
	cmpFile := map[string]string{}
	sum := sha256.New()
	for _, file := range files {
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("warnings: %w", err)
		}
		fmt.Fprintf(sum, "%d:%s%d:", len(file), file, len(b))
		sum.Write(b)
		spec, err := parseFile(file, b)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if spec.Version != 1 {
			bad(file, 1, "version: %d is not supported (want 1)", spec.Version)
		}
		if spec.DueDays != nil {
			due = *spec.DueDays
			if due < 1 {
				bad(file, 1, "due_days: must be at least 1, got %d", due)
			}
		}
		if spec.NewWithinMonths != nil {
			newWithin = *spec.NewWithinMonths
		}
		if spec.Population != nil {
			population = spec.Population
			for i := range population {
				population[i].file = file
			}
		}
		if spec.DefaultClass != "" {
			defaultClass = spec.DefaultClass
		}
		for _, r := range spec.Warnings {
			if _, ok := rules[r.ID]; !ok {
				ruleOrder = append(ruleOrder, r.ID)
			}
			rules[r.ID], ruleFile[r.ID] = r, file
		}
		for _, c := range spec.Comparisons {
			if _, ok := cmps[c.ID]; !ok {
				cmpOrder = append(cmpOrder, c.ID)
			}
			cmps[c.ID], cmpFile[c.ID] = c, file
		}
		for _, id := range spec.Disable {
			_, r := rules[id]
			_, c := cmps[id]
			if !r && !c {
				bad(file, 1, "disable: %q is not a rule loaded so far", id)
			}
			delete(rules, id)
			delete(cmps, id)
		}
	}
	if len(errs) > 0 {
		return nil, errors.New("warnings: " + strings.Join(errs, "\nwarnings: "))
	}
	out := &Rules{dueDays: due, defaultClass: defaultClass, files: files, version: hex.EncodeToString(sum.Sum(nil))[:12]}
	classes := map[string]bool{defaultClass: true}
	for _, c := range population {
		if c.Class == "" {
			bad(c.file, c.line, "population: class is required")
		}
		if len(c.MonitoringCategories) == 0 && len(c.HouseholdTypes) == 0 {
			bad(c.file, c.line, "population: class %s needs monitoring_categories or household_types", c.Class)
		}
		classes[c.Class] = true
	}
	out.population = population
	for _, id := range ruleOrder {
		s, ok := rules[id]
		if !ok {
			continue
		}
		r, problems := compileRule(s, classes, newWithin)
		for _, p := range problems {
			bad(ruleFile[id], p.line, "warnings[%s]: %s", id, p.msg)
		}
		if r != nil {
			if r.dueDays == 0 {
				r.dueDays = due
			}
			out.warnings = append(out.warnings, r)
		}
	}
	for _, id := range cmpOrder {
		s, ok := cmps[id]
		if !ok {
			continue
		}
		c, problems := compileComparison(s, newWithin)
		for _, p := range problems {
			bad(cmpFile[id], p.line, "comparisons[%s]: %s", id, p.msg)
		}
		if c != nil {
			out.comparisons = append(out.comparisons, c)
		}
	}
	if len(errs) > 0 {
		return nil, errors.New("warnings: " + strings.Join(errs, "\nwarnings: "))
	}
	out.index()
	return out, nil
}

var lineRe = regexp.MustCompile(`line (\d+)`)

// decodeStrict decodes n into v refusing unknown keys, with errors at the file's lines.
func decodeStrict(file string, n *yaml.Node, v any) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(n); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
		// Report each problem as file:line so editors can jump to it.
		var parts []string
		for _, l := range strings.Split(msg, "\n") {
			l = strings.TrimSpace(l)
			if m := lineRe.FindStringSubmatch(l); m != nil {
				k, _ := strconv.Atoi(m[1])
				rest := strings.TrimPrefix(strings.TrimPrefix(l, m[0]), ":")
				parts = append(parts, fmt.Sprintf("%s:%d:%s", file, k+n.Line-1, rest))
			} else if l != "" {
				parts = append(parts, fmt.Sprintf("%s:%d: %s", file, n.Line, l))
			}
		}
		return errors.New(strings.Join(parts, "\nwarnings: "))
	}
	return nil
}

// parseFile decodes one file strictly, recording the line of every list entry.
func parseFile(file string, b []byte) (*fileSpec, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := lineRe.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("%s:%s:%s", file, m[1], strings.TrimPrefix(strings.TrimPrefix(msg, m[0]), ":"))
		}
		return nil, fmt.Errorf("%s: %s", file, msg)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:1: a rules file is a mapping (version, warnings, comparisons, …)", file)
	}
	root := doc.Content[0]
	var spec fileSpec
	if err := decodeStrict(file, root, &spec); err != nil {
		return nil, err
	}
	// Walk the node tree in parallel to attach lines to entries.
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i].Value, root.Content[i+1]
		switch key {
		case "population":
			for j, n := range val.Content {
				if j < len(spec.Population) {
					spec.Population[j].line = n.Line
				}
			}
		case "warnings":
			for j, n := range val.Content {
				if j < len(spec.Warnings) {
					r := &spec.Warnings[j]
					r.line = n.Line
					attachLines(n, "thresholds", func(k, line int) {
						if k < len(r.Thresholds) {
							r.Thresholds[k].line = line
						}
					})
					attachLines(n, "where", func(k, line int) {
						if k < len(r.Where) {
							r.Where[k].line = line
						}
					})
				}
			}
		case "comparisons":
			for j, n := range val.Content {
				if j < len(spec.Comparisons) {
					c := &spec.Comparisons[j]
					c.line = n.Line
					attachLines(n, "where", func(k, line int) {
						if k < len(c.Where) {
							c.Where[k].line = line
						}
					})
				}
			}
		}
	}
	return &spec, nil
}

func attachLines(n *yaml.Node, key string, set func(i, line int)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			for k, e := range n.Content[i+1].Content {
				set(k, e.Line)
			}
		}
	}
}

type problem struct {
	line int
	msg  string
}

var ops = map[string]bool{">=": true, ">": true, "<=": true, "<": true, "==": true, "!=": true}

func compileRule(s ruleSpec, classes map[string]bool, newWithin int) (*rule, []problem) {
	var ps []problem
	bad := func(line int, format string, a ...any) {
		if line == 0 {
			line = s.line
		}
		ps = append(ps, problem{line, fmt.Sprintf(format, a...)})
	}
	r := &rule{id: s.ID, department: s.Department, factTypes: set(s.FactTypes), subject: s.Subject,
		window: s.WindowMonths, op: s.Op, dueDays: s.DueDays}
	if s.ID == "" {
		bad(0, "id is required")
	}
	if s.Department == "" {
		bad(0, "department is required")
	}
	if len(s.FactTypes) == 0 {
		bad(0, "fact_types is required")
	}
	if s.Subject != SubjectPerson && s.Subject != SubjectHousehold {
		bad(0, "subject: %q must be person or household", s.Subject)
	}
	if s.DueDays < 0 {
		bad(0, "due_days: must not be negative")
	}
	if s.Measure != "" {
		f, err := parseRef(s.Measure, false)
		if err != nil {
			bad(0, "measure: %v", err)
		}
		r.measure = f
	}
	switch s.Aggregate {
	case "":
	case "rolling_sum":
		r.rolling = true
		if s.WindowMonths < 1 {
			bad(0, "window_months: a rolling_sum needs a window of at least 1 month, got %d", s.WindowMonths)
		}
		if s.Measure == "" {
			bad(0, "measure: a rolling_sum needs a measure")
		}
	default:
		bad(0, "aggregate: %q is not known (rolling_sum)", s.Aggregate)
	}
	if s.Measure != "" {
		if !ops[s.Op] {
			bad(0, "op: %q is not a comparison (>=, >, <=, <, ==, !=)", s.Op)
		}
		if len(s.Thresholds) == 0 {
			bad(0, "thresholds: a rule with a measure needs at least one threshold")
		}
	} else if len(s.Thresholds) > 0 || s.Op != "" {
		bad(0, "thresholds: a rule without a measure takes no op or thresholds")
	}
	for _, t := range s.Thresholds {
		v, err := parseNum(t.Value)
		if err != nil {
			bad(t.line, "thresholds: value %q is not a number", t.Value)
		}
		if t.FromYear != 0 && t.ToYear != 0 && t.ToYear < t.FromYear {
			bad(t.line, "thresholds: to_year %d is before from_year %d", t.ToYear, t.FromYear)
		}
		for _, c := range t.Classes {
			if !classes[c] {
				bad(t.line, "thresholds: class %q is not a population class", c)
			}
		}
		for _, p := range t.Regions {
			if !digits(p) || len(p) < 2 || len(p) > 12 {
				bad(t.line, "thresholds: region %q is not a region-code prefix (2 to 12 digits)", p)
			}
		}
		r.thresholds = append(r.thresholds, threshold{value: v, text: t.Value, classes: set(t.Classes), regions: t.Regions, fromYear: t.FromYear, toYear: t.ToYear})
	}
	for _, p := range s.Where {
		cp, err := compilePred(p, newWithin)
		if err != nil {
			bad(p.line, "where: %v", err)
			continue
		}
		r.where = append(r.where, cp)
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return r, nil
}

func compileComparison(s compareSpec, newWithin int) (*comparison, []problem) {
	var ps []problem
	bad := func(line int, format string, a ...any) {
		if line == 0 {
			line = s.line
		}
		ps = append(ps, problem{line, fmt.Sprintf(format, a...)})
	}
	c := &comparison{id: s.ID, department: s.Department, factTypes: set(s.FactTypes), subject: s.Subject,
		field: s.Field, expect: s.Expect, mapping: s.Map, show: s.Show}
	if s.ID == "" || s.Department == "" || s.Field == "" || len(s.FactTypes) == 0 {
		bad(0, "id, department, fact_types and field are required")
	}
	if s.Subject != SubjectPerson && s.Subject != SubjectHousehold {
		bad(0, "subject: %q must be person or household", s.Subject)
	}
	if len(s.Registry) == 0 {
		bad(0, "registry: at least one person.<field> or household.<field> is required")
	}
	for _, f := range s.Registry {
		ref, err := parseRef(f, true)
		if err != nil {
			bad(0, "registry: %v", err)
			continue
		}
		if ref.kind != refPerson && ref.kind != refHousehold {
			bad(0, "registry: %q is not a registry field", f)
		}
		c.registry = append(c.registry, ref)
	}
	if (s.Expect == "") == (s.ExpectFrom == "") {
		bad(0, "expect or expect_from: give exactly one")
	}
	if s.ExpectFrom != "" {
		ref, err := parseRef(s.ExpectFrom, false)
		if err != nil {
			bad(0, "expect_from: %v", err)
		}
		c.expectFrom = ref
	}
	for _, p := range s.Where {
		cp, err := compilePred(p, newWithin)
		if err != nil {
			bad(p.line, "where: %v", err)
			continue
		}
		c.where = append(c.where, cp)
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return c, nil
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Field references.
const (
	refAmount = iota + 1
	refValue
	refAge
	refFact
	refPerson
	refHousehold
)

type fieldRef struct {
	kind  int
	name  string
	index []int // Go field index for registry references
	text  string
}

var factFields = map[string]bool{"period": true, "occurred_on": true, "fact_type": true, "region_code": true, "household_no": true, "id_no": true, "dataset": true}

// parseRef parses amount, age, values.<name>, a fact field, person.<json field> or
// household.<json field>.
func parseRef(s string, registry bool) (fieldRef, error) {
	switch {
	case s == "amount":
		return fieldRef{kind: refAmount, text: s}, nil
	case s == "age":
		return fieldRef{kind: refAge, text: s}, nil
	case strings.HasPrefix(s, "values.") && len(s) > len("values."):
		return fieldRef{kind: refValue, name: s[len("values."):], text: s}, nil
	case factFields[s]:
		return fieldRef{kind: refFact, name: s, text: s}, nil
	case strings.HasPrefix(s, "person."):
		idx, err := jsonField(reflect.TypeOf(schemas.Person{}), s[len("person."):])
		return fieldRef{kind: refPerson, name: s[len("person."):], index: idx, text: s}, err
	case strings.HasPrefix(s, "household."):
		idx, err := jsonField(reflect.TypeOf(schemas.Household{}), s[len("household."):])
		return fieldRef{kind: refHousehold, name: s[len("household."):], index: idx, text: s}, err
	}
	return fieldRef{}, fmt.Errorf("%q is not a field (amount, age, values.<name>, %s, person.<field>, household.<field>)", s, strings.Join(sortedKeys(factFields), ", "))
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func jsonField(t reflect.Type, name string) ([]int, error) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name {
			return []int{i}, nil
		}
	}
	return nil, fmt.Errorf("%s has no field %q", strings.ToLower(t.Name()), name)
}
