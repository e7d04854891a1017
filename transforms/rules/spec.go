package rules

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// LoadError is one problem of a rule file, with the line it is on. Load reports every
// problem of every file (errors.Join of LoadErrors) and returns no Engine, so a bad
// edit never half-applies.
type LoadError struct {
	File   string
	Line   int
	Reason string
}

func (e *LoadError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
	}
	return e.File + ": " + e.Reason
}

// fileSpec is one rule file as written.
type fileSpec struct {
	file        string
	RuleSet     string
	Version     int
	Description string
	Params      []paramSpec
	Rules       []ruleSpec
	line        int
}

// paramSpec is one parameter: a scalar, list or map, with an optional declared type.
type paramSpec struct {
	Name  string
	Type  string // int, float, string, bool, list, map
	Value any
	Doc   string
	line  int
}

// ruleSpec is one rule as written; *Line are the lines of the fields, for errors.
type ruleSpec struct {
	ID       string
	Title    string
	Subject  string
	Severity string
	When     string
	Fail     string
	Message  string
	Evidence []evidenceSpec

	line, whenLine, failLine int
}

type evidenceSpec struct {
	Name string
	Expr string
	line int
}

var ruleIDSyntax = regexp.MustCompile(`^Q-[0-9]{3}$`)
var paramNameSyntax = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// parseFile reads one rule file strictly: unknown fields, wrong kinds of values and
// missing required fields are errors with their line.
func parseFile(file string, b []byte) (*fileSpec, []error) {
	var errs []error
	bad := func(line int, format string, a ...any) {
		errs = append(errs, &LoadError{File: file, Line: line, Reason: fmt.Sprintf(format, a...)})
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		line := 0
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
			msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
		}
		return nil, []error{&LoadError{File: file, Line: line, Reason: "not valid YAML: " + msg}}
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, []error{&LoadError{File: file, Line: 1, Reason: "a rule file is a mapping with ruleset, version, params and rules"}}
	}
	fs := &fileSpec{file: file, line: doc.Content[0].Line}
	top := doc.Content[0]
	seen := map[string]bool{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if seen[k.Value] {
			bad(k.Line, "%s given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "ruleset":
			fs.RuleSet = scalar(v, "ruleset", bad)
		case "version":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
				bad(v.Line, "version must be an integer, got %q", v.Value)
			} else if err := v.Decode(&fs.Version); err != nil || fs.Version < 1 {
				bad(v.Line, "version must be a positive integer, got %q", v.Value)
			}
		case "description":
			fs.Description = scalar(v, "description", bad)
		case "params":
			fs.Params = parseParams(v, bad)
		case "rules":
			if v.Kind != yaml.SequenceNode {
				bad(v.Line, "rules must be a list of rules")
				continue
			}
			for _, rn := range v.Content {
				if r, ok := parseRule(rn, bad); ok {
					fs.Rules = append(fs.Rules, r)
				}
			}
		default:
			bad(k.Line, "unknown field %q (allowed: ruleset, version, description, params, rules)", k.Value)
		}
	}
	if fs.RuleSet == "" {
		bad(fs.line, "ruleset (the rule set's name) is required")
	} else if !paramNameSyntax.MatchString(fs.RuleSet) {
		bad(fs.line, "ruleset %q: use lower-case letters, digits and _", fs.RuleSet)
	}
	if !seen["version"] {
		bad(fs.line, "version is required (bump it on every change of the rule set)")
	}
	if len(fs.Rules) == 0 && !seen["rules"] {
		bad(fs.line, "rules is required")
	}
	return fs, errs
}

func scalar(v *yaml.Node, what string, bad func(int, string, ...any)) string {
	if v.Kind != yaml.ScalarNode {
		bad(v.Line, "%s must be a single value", what)
		return ""
	}
	return v.Value
}

var paramTypes = map[string]bool{"int": true, "float": true, "string": true, "bool": true, "list": true, "int_list": true, "map": true}

func parseParams(n *yaml.Node, bad func(int, string, ...any)) []paramSpec {
	if n.Kind != yaml.MappingNode {
		bad(n.Line, "params must be a mapping of name to value")
		return nil
	}
	var out []paramSpec
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := paramSpec{Name: k.Value, line: k.Line}
		if !paramNameSyntax.MatchString(k.Value) {
			bad(k.Line, "param %q: use lower-case letters, digits and _", k.Value)
			continue
		}
		if seen[k.Value] {
			bad(k.Line, "param %s given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		valNode := v
		if v.Kind == yaml.MappingNode && hasKey(v, "value") {
			valNode = nil
			for j := 0; j+1 < len(v.Content); j += 2 {
				fk, fv := v.Content[j], v.Content[j+1]
				switch fk.Value {
				case "type":
					p.Type = scalar(fv, "param "+p.Name+": type", bad)
					if p.Type != "" && !paramTypes[p.Type] {
						bad(fv.Line, "param %s: type %q is not known (int, float, string, bool, list, int_list, map)", p.Name, p.Type)
						p.Type = ""
					}
				case "value":
					valNode = fv
				case "doc":
					p.Doc = scalar(fv, "param "+p.Name+": doc", bad)
				default:
					bad(fk.Line, "param %s: unknown field %q (allowed: type, value, doc)", p.Name, fk.Value)
				}
			}
		}
		val, typ, why := paramValue(valNode)
		if why != "" {
			bad(valNode.Line, "param %s: %s", p.Name, why)
			continue
		}
		if p.Type != "" {
			cv, ok := convertParam(val, typ, p.Type)
			if !ok {
				bad(valNode.Line, "param %s: declared %s, but the value %s is a %s", p.Name, p.Type, valNode.Value, typ)
				continue
			}
			val, typ = cv, p.Type
		}
		p.Type, p.Value = typ, val
		out = append(out, p)
	}
	return out
}

func hasKey(n *yaml.Node, key string) bool {
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value == key {
			return true
		}
	}
	return false
}

// paramValue reads a parameter value: int, float, string, bool, a list of strings or
// a map of string to number.
func paramValue(n *yaml.Node) (any, string, string) {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int":
			var i int
			if err := n.Decode(&i); err != nil {
				return nil, "", "bad integer " + n.Value
			}
			return i, "int", ""
		case "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				return nil, "", "bad number " + n.Value
			}
			return f, "float", ""
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, "", "bad boolean " + n.Value
			}
			return b, "bool", ""
		case "!!str":
			return n.Value, "string", ""
		}
		return nil, "", "value " + n.Value + " is neither a number, a string nor a boolean"
	case yaml.SequenceNode:
		ints := len(n.Content) > 0
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, "", "a list param holds strings or integers only"
			}
			ints = ints && c.Tag == "!!int"
		}
		if ints {
			list := []int{}
			for _, c := range n.Content {
				var i int
				if err := c.Decode(&i); err != nil {
					return nil, "", "bad integer " + c.Value
				}
				list = append(list, i)
			}
			return list, "int_list", ""
		}
		list := []string{}
		for _, c := range n.Content {
			list = append(list, c.Value)
		}
		return list, "list", ""
	case yaml.MappingNode:
		m := map[string]float64{}
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, v := n.Content[j], n.Content[j+1]
			var f float64
			if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") || v.Decode(&f) != nil {
				return nil, "", fmt.Sprintf("map param entry %s: want a number, got %q", k.Value, v.Value)
			}
			m[k.Value] = f
		}
		return m, "map", ""
	}
	return nil, "", "unsupported value"
}

// convertParam converts a value of type from to the declared type to, where exact.
func convertParam(v any, from, to string) (any, bool) {
	if from == to {
		return v, true
	}
	switch {
	case from == "int" && to == "float":
		return float64(v.(int)), true
	case from == "float" && to == "int":
		f := v.(float64)
		if f == float64(int(f)) {
			return int(f), true
		}
	}
	return nil, false
}

var subjects = map[string]bool{SubjectPerson: true, SubjectHousehold: true}
var severities = map[string]bool{"error": true, "warning": true, "info": true}

func parseRule(n *yaml.Node, bad func(int, string, ...any)) (ruleSpec, bool) {
	r := ruleSpec{line: n.Line}
	if n.Kind != yaml.MappingNode {
		bad(n.Line, "a rule is a mapping with id, subject, severity and fail")
		return r, false
	}
	ok := true
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			bad(k.Line, "%s given twice", k.Value)
			ok = false
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "id":
			r.ID = scalar(v, "id", bad)
		case "title":
			r.Title = scalar(v, "title", bad)
		case "subject":
			r.Subject = scalar(v, "subject", bad)
		case "severity":
			r.Severity = scalar(v, "severity", bad)
		case "message":
			r.Message = scalar(v, "message", bad)
		case "when":
			r.When, r.whenLine = scalar(v, "when", bad), exprLine(v)
		case "fail":
			r.Fail, r.failLine = scalar(v, "fail", bad), exprLine(v)
		case "evidence":
			if v.Kind != yaml.MappingNode {
				bad(v.Line, "evidence must be a mapping of name to expression")
				ok = false
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				ek, ev := v.Content[j], v.Content[j+1]
				r.Evidence = append(r.Evidence, evidenceSpec{Name: ek.Value, Expr: scalar(ev, "evidence "+ek.Value, bad), line: exprLine(ev)})
			}
		default:
			bad(k.Line, "unknown field %q in rule %s (allowed: id, title, subject, severity, message, when, fail, evidence)", k.Value, r.ID)
			ok = false
		}
	}
	switch {
	case r.ID == "":
		bad(n.Line, "rule without id")
		ok = false
	case !ruleIDSyntax.MatchString(r.ID):
		bad(n.Line, "rule id %q: want Q- and three digits (the catalogue number)", r.ID)
		ok = false
	}
	if !subjects[r.Subject] {
		bad(n.Line, "rule %s: subject %q: want person or household", r.ID, r.Subject)
		ok = false
	}
	if !severities[r.Severity] {
		bad(n.Line, "rule %s: severity %q: want error, warning or info", r.ID, r.Severity)
		ok = false
	}
	if strings.TrimSpace(r.Fail) == "" {
		bad(n.Line, "rule %s: fail (the expression that is true for an offending subject) is required", r.ID)
		ok = false
	}
	return r, ok
}

// exprLine is the line an expression's text starts on (block scalars start on the
// line after the indicator).
func exprLine(v *yaml.Node) int {
	if v.Style == yaml.LiteralStyle || v.Style == yaml.FoldedStyle {
		return v.Line + 1
	}
	return v.Line
}
