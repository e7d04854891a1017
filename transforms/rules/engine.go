package rules

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

//go:embed defaults/*.yaml
var defaultFS embed.FS

// DefaultFiles are the embedded default rule files (under defaults/ of Default's FS).
var DefaultFiles = []string{"defaults/quality.v1.yaml"}

// Subject kinds of findings and quality issues.
const (
	SubjectPerson    = "person"
	SubjectHousehold = "household"
)

// Finding is one subject failing one rule at one evaluation.
type Finding struct {
	RuleID      string `json:"rule_id"`
	Severity    string `json:"severity"`
	SubjectKind string `json:"subject_kind"`
	SubjectKey  string `json:"subject_key"`
	// RegionCode is the household's village code.
	RegionCode string `json:"region_code"`
	// Message is the rule's message for the county staff.
	Message string `json:"message,omitempty"`
	// Evidence holds the rule's evidence expressions evaluated on the subject (masked
	// ID numbers and phones only, as the rule files write them).
	Evidence map[string]any `json:"evidence,omitempty"`
	// Err is set when the rule could not be evaluated on the subject (a runtime
	// error of its expression). Such a finding says "unknown", not "fails": the
	// Tracker keeps the subject's previous state for the rule.
	Err string `json:"error,omitempty"`
}

// Engine holds compiled rule sets. It is read-only after Load and safe for
// concurrent use.
type Engine struct {
	version string
	rules   []*rule
}

type rule struct {
	id, title, subject, severity, message string
	when, fail                            *vm.Program
	evidence                              []evidence
}

type evidence struct {
	name string
	prog *vm.Program
}

// personEnv is what a person rule's expressions see.
type personEnv struct {
	P        *PersonView    `expr:"p"`
	HH       *HouseholdView `expr:"hh"`
	Members  []*PersonView  `expr:"members"`
	Measures []*MeasureView `expr:"measures"`
}

// householdEnv is what a household rule's expressions see (no p).
type householdEnv struct {
	HH       *HouseholdView `expr:"hh"`
	Members  []*PersonView  `expr:"members"`
	Measures []*MeasureView `expr:"measures"`
}

// Options adjust Load.
type Options struct {
	// Params override rule-set parameters by name (e.g. from the pipeline config). A
	// value must have the parameter's type (an integer also fits a float parameter);
	// an unknown name is an error.
	Params map[string]any
}

// Default loads the embedded default rule set (defaults/quality.v1.yaml).
func Default() (*Engine, error) { return Load(defaultFS, DefaultFiles...) }

// DefaultWith loads the embedded default rule set with parameter overrides.
func DefaultWith(opts Options) (*Engine, error) { return LoadOptions(defaultFS, opts, DefaultFiles...) }

// DefaultFS is the file system holding the embedded default rule files.
func DefaultFS() fs.FS { return defaultFS }

// Load reads and compiles rule files from fsys. See LoadOptions.
func Load(fsys fs.FS, files ...string) (*Engine, error) {
	return LoadOptions(fsys, Options{}, files...)
}

// LoadOptions reads and compiles rule files from fsys, each a versioned rule set,
// and compiles every expression once. Every problem of every file is reported as a
// *LoadError ("file:line: reason", joined with errors.Join): unknown fields, bad
// expressions (syntax, unknown names, type errors), parameter values of the wrong
// type, duplicate rule IDs across files. No Engine is returned then.
func LoadOptions(fsys fs.FS, opts Options, files ...string) (*Engine, error) {
	if len(files) == 0 {
		return nil, errors.New("rules: no rule files given")
	}
	var errs []error
	var specs []*fileSpec
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			errs = append(errs, &LoadError{File: f, Reason: err.Error()})
			continue
		}
		s, perrs := parseFile(f, b)
		errs = append(errs, perrs...)
		if s != nil {
			specs = append(specs, s)
		}
	}
	used := map[string]bool{}
	declared := map[string]string{}
	for _, s := range specs {
		for _, p := range s.Params {
			declared[p.Name] = p.Type
		}
	}
	for name, v := range opts.Params {
		typ, ok := declared[name]
		if !ok {
			errs = append(errs, &LoadError{File: "params", Reason: fmt.Sprintf("param %s is not declared by any rule file", name)})
			continue
		}
		if _, ok := overrideValue(v, typ); !ok {
			errs = append(errs, &LoadError{File: "params", Reason: fmt.Sprintf("param %s: want %s, got %T (%v)", name, typ, v, v)})
		}
		used[name] = true
	}
	e := &Engine{}
	var versions []string
	ids := map[string]string{}
	for _, s := range specs {
		versions = append(versions, fmt.Sprintf("%s.v%d", s.RuleSet, s.Version))
		params := map[string]any{}
		for _, p := range s.Params {
			params[p.Name] = p.Value
			if v, ok := opts.Params[p.Name]; ok {
				if cv, ok := overrideValue(v, p.Type); ok {
					params[p.Name] = cv
				}
			}
		}
		for i := range s.Rules {
			rs := &s.Rules[i]
			where := fmt.Sprintf("%s:%d", s.file, rs.line)
			if prev, dup := ids[rs.ID]; dup {
				errs = append(errs, &LoadError{File: s.file, Line: rs.line, Reason: fmt.Sprintf("rule %s is defined twice (first at %s)", rs.ID, prev)})
				continue
			}
			ids[rs.ID] = where
			r, rerrs := compileRule(s.file, rs, params)
			errs = append(errs, rerrs...)
			if r != nil {
				e.rules = append(e.rules, r)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.SliceStable(e.rules, func(i, j int) bool { return e.rules[i].id < e.rules[j].id })
	e.version = strings.Join(versions, "+")
	return e, nil
}

// overrideValue converts a configured override to the parameter's type.
func overrideValue(v any, typ string) (any, bool) {
	switch typ {
	case "int":
		switch x := v.(type) {
		case int:
			return x, true
		case int64:
			return int(x), true
		case float64:
			if x == float64(int(x)) {
				return int(x), true
			}
		}
	case "float":
		switch x := v.(type) {
		case int:
			return float64(x), true
		case int64:
			return float64(x), true
		case float64:
			return x, true
		}
	case "string":
		s, ok := v.(string)
		return s, ok
	case "bool":
		b, ok := v.(bool)
		return b, ok
	case "list":
		switch x := v.(type) {
		case []string:
			return x, true
		case []any:
			out := make([]string, 0, len(x))
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, false
				}
				out = append(out, s)
			}
			return out, true
		}
	case "int_list":
		switch x := v.(type) {
		case []int:
			return x, true
		case []any:
			out := make([]int, 0, len(x))
			for _, e := range x {
				i, ok := overrideValue(e, "int")
				if !ok {
					return nil, false
				}
				out = append(out, i.(int))
			}
			return out, true
		}
	case "map":
		switch x := v.(type) {
		case map[string]float64:
			return x, true
		case map[string]any:
			out := make(map[string]float64, len(x))
			for k, e := range x {
				f, ok := overrideValue(e, "float")
				if !ok {
					return nil, false
				}
				out[k] = f.(float64)
			}
			return out, true
		}
	}
	return nil, false
}

func compileRule(fileName string, rs *ruleSpec, params map[string]any) (*rule, []error) {
	var errs []error
	var env any = personEnv{}
	if rs.Subject == SubjectHousehold {
		env = householdEnv{}
	}
	comp := func(what, src string, line int, asBool bool) *vm.Program {
		pp := &paramPatcher{params: params}
		opts := []expr.Option{expr.Env(env), expr.Patch(pp)}
		if asBool {
			opts = append(opts, expr.AsBool())
		}
		prog, err := expr.Compile(src, opts...)
		if err == nil && len(pp.unknown) > 0 {
			err = fmt.Errorf("unknown param %s (declare it under params)", strings.Join(pp.unknown, ", "))
		}
		if err != nil {
			l := line
			msg := err.Error()
			var fe *file.Error
			if errors.As(err, &fe) {
				if fe.Line > 1 {
					l += fe.Line - 1
				}
				msg = fmt.Sprintf("%s (column %d)", fe.Message, fe.Column+1)
			}
			if len(pp.unknown) > 0 {
				msg = fmt.Sprintf("unknown param %s (declare it under params)", strings.Join(pp.unknown, ", "))
			}
			errs = append(errs, &LoadError{File: fileName, Line: l, Reason: fmt.Sprintf("rule %s: %s: %s", rs.ID, what, msg)})
			return nil
		}
		return prog
	}
	r := &rule{id: rs.ID, title: rs.Title, subject: rs.Subject, severity: rs.Severity, message: rs.Message}
	if rs.Message == "" {
		r.message = rs.Title
	}
	if strings.TrimSpace(rs.When) != "" {
		r.when = comp("when", rs.When, rs.whenLine, true)
	}
	r.fail = comp("fail", rs.Fail, rs.failLine, true)
	for _, ev := range rs.Evidence {
		if p := comp("evidence "+ev.Name, ev.Expr, ev.line, false); p != nil {
			r.evidence = append(r.evidence, evidence{name: ev.Name, prog: p})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

// paramPatcher replaces params.NAME (and params["NAME"]) with the parameter's value
// as a constant, so parameters are type-checked with the expression and cost nothing
// at run time (string patterns used with `matches` are compiled once).
type paramPatcher struct {
	params  map[string]any
	unknown []string
}

func (p *paramPatcher) Visit(node *ast.Node) {
	m, ok := (*node).(*ast.MemberNode)
	if !ok {
		return
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || id.Value != "params" {
		return
	}
	prop, ok := m.Property.(*ast.StringNode)
	if !ok {
		return
	}
	v, ok := p.params[prop.Value]
	if !ok {
		if !contains(p.unknown, prop.Value) {
			p.unknown = append(p.unknown, prop.Value)
		}
		return
	}
	var n ast.Node
	switch x := v.(type) {
	case int:
		n = &ast.IntegerNode{Value: x}
	case float64:
		n = &ast.FloatNode{Value: x}
	case string:
		n = &ast.StringNode{Value: x}
	case bool:
		n = &ast.BoolNode{Value: x}
	case []string:
		arr := &ast.ArrayNode{}
		for _, s := range x {
			sn := &ast.StringNode{Value: s}
			sn.SetType(reflect.TypeOf(""))
			arr.Nodes = append(arr.Nodes, sn)
		}
		n = arr
	case []int:
		arr := &ast.ArrayNode{}
		for _, i := range x {
			in := &ast.IntegerNode{Value: i}
			in.SetType(reflect.TypeOf(0))
			arr.Nodes = append(arr.Nodes, in)
		}
		n = arr
	default:
		n = &ast.ConstantNode{Value: x}
	}
	ast.Patch(node, n)
}

// Version names the loaded rule sets and their versions, e.g. "quality.v1".
func (e *Engine) Version() string { return e.version }

// RuleIDs lists the loaded rules in evaluation order.
func (e *Engine) RuleIDs() []string {
	out := make([]string, len(e.rules))
	for i, r := range e.rules {
		out[i] = r.id
	}
	return out
}

// Title is the title of a loaded rule ("" when id is not loaded).
func (e *Engine) Title(id string) string {
	for _, r := range e.rules {
		if r.id == id {
			return r.title
		}
	}
	return ""
}

// Evaluate runs every rule on the household and its members at the date asOf (ages
// and months are computed for it) and returns the failing subjects, in rule order,
// then member order. A rule that cannot be evaluated on a subject yields a Finding
// with Err set.
func (e *Engine) Evaluate(hc *HouseholdContext, asOf time.Time) []Finding {
	hc.at(asOf)
	var out []Finding
	penv := &personEnv{HH: hc.hh, Members: hc.members, Measures: hc.measures}
	henv := &householdEnv{HH: hc.hh, Members: hc.members, Measures: hc.measures}
	var m vm.VM // reused across rules: its stack and scopes are allocated once
	for _, r := range e.rules {
		if r.subject == SubjectHousehold {
			if f, ok := r.eval(&m, henv, SubjectHousehold, hc.Key, hc.RegionCode); ok {
				out = append(out, f)
			}
			continue
		}
		for _, p := range hc.members {
			penv.P = p
			if f, ok := r.eval(&m, penv, SubjectPerson, p.Key, hc.RegionCode); ok {
				out = append(out, f)
			}
		}
	}
	return out
}

func (r *rule) eval(m *vm.VM, env any, kind, key, region string) (Finding, bool) {
	mk := func() Finding {
		return Finding{RuleID: r.id, Severity: r.severity, SubjectKind: kind, SubjectKey: key, RegionCode: region, Message: r.message}
	}
	if r.when != nil {
		v, err := m.Run(r.when, env)
		if err != nil {
			f := mk()
			f.Err = "when: " + err.Error()
			return f, true
		}
		if b, _ := v.(bool); !b {
			return Finding{}, false
		}
	}
	v, err := m.Run(r.fail, env)
	if err != nil {
		f := mk()
		f.Err = "fail: " + err.Error()
		return f, true
	}
	if b, _ := v.(bool); !b {
		return Finding{}, false
	}
	f := mk()
	if len(r.evidence) > 0 {
		f.Evidence = make(map[string]any, len(r.evidence))
		for _, ev := range r.evidence {
			x, err := m.Run(ev.prog, env)
			if err != nil {
				x = "error: " + err.Error()
			}
			f.Evidence[ev.name] = x
		}
	}
	return f, true
}

// Detail renders a finding's message and evidence as one line for a quality issue
// (evidence sorted by name).
func (f *Finding) Detail() string {
	if len(f.Evidence) == 0 {
		return f.Message
	}
	names := make([]string, 0, len(f.Evidence))
	for k := range f.Evidence {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(f.Message)
	b.WriteString(" (")
	for i, k := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(valueText(f.Evidence[k]))
	}
	b.WriteString(")")
	return b.String()
}

func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []string:
		return "[" + strings.Join(x, " ") + "]"
	}
	return fmt.Sprint(v)
}
