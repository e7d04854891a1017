package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a configuration, located by file, line and dotted
// key path (e.g. sources[2].mysql.server_id) so that the operator can go straight to it.
type Problem struct {
	// File is the configuration file, "" when the configuration was built in code.
	File string
	// Line is the 1-based line in File, 0 when unknown.
	Line int
	// Path is the dotted key path, "" for problems with the whole document.
	Path string
	// Msg says what is wrong and what to do.
	Msg string
}

// Error formats the problem as "file:line: path: message", leaving out unknown parts.
func (p *Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Duration is a time.Duration written as a Go duration string ("30s", "5m", "1h30m")
// in YAML; a bare number is refused because its unit would be a guess.
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration the way it is written in YAML.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a Go duration string. Errors are yaml.TypeErrors so that
// decoding continues and every bad value is reported, each with its line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: expected a duration like 30s, 5m or 1h30m", n.Line)}}
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: invalid duration %q: write a Go duration like 30s, 5m or 1h30m", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Load reads, substitutes, decodes, defaults and validates the configuration file at
// path, taking ${ENV} values from the process environment. On any problem it returns
// every problem found (errors.Join of *Problem) and no Config.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w (pass the configuration file with -c)", path, err)
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse is Load without reading the file: name is the file name used in messages and
// for relative paths, lookupEnv resolves ${VAR} (os.LookupEnv in production).
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Problem{File: name, Msg: "the file is empty: start from deploy/config/shouwang.example.yaml"}
		}
		return nil, syntaxProblem(name, err)
	}
	l := &loader{file: name, env: lookupEnv, lines: map[string]int{}}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Problem{File: name, Line: root.Line, Msg: "the document must be a mapping of sections (kafka:, sources:, …)"}
	}
	l.substitute(root, "", false)
	l.strict(root, reflect.TypeOf(Config{}), "")
	cfg := &Config{file: name, lines: l.lines}
	if err := root.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// yaml.v3 keeps decoding past type mismatches (bad durations included), so
			// cfg holds every value that did decode and validation can still run.
			for _, msg := range te.Errors {
				p := l.typeProblem(msg)
				l.markFailed(p.Path)
				l.problems = append(l.problems, p)
			}
		} else {
			// Anything else stops the decoder: report it with what was found so far.
			l.problems = append(l.problems, syntaxProblem(name, err))
			return nil, errors.Join(l.problems...)
		}
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		for _, e := range unjoin(err) {
			// A key whose value failed to decode (or whose ${ENV} was unset) is already
			// reported; its zero value would only add a misleading "required".
			var p *Problem
			if errors.As(e, &p) && l.failedAt(p.Path) {
				continue
			}
			l.problems = append(l.problems, e)
		}
	}
	if len(l.problems) > 0 {
		sortByLine(l.problems)
		return nil, errors.Join(l.problems...)
	}
	return cfg, nil
}

// unjoin splits an errors.Join result into its parts.
func unjoin(err error) []error {
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		return m.Unwrap()
	}
	return []error{err}
}

// sortByLine orders problems as they appear in the file, so that an operator can fix
// them top to bottom; problems without a line keep their order after the others.
func sortByLine(problems []error) {
	line := func(e error) int {
		var p *Problem
		if errors.As(e, &p) && p.Line > 0 {
			return p.Line
		}
		return math.MaxInt
	}
	sort.SliceStable(problems, func(i, j int) bool { return line(problems[i]) < line(problems[j]) })
}

// markFailed records that the value at path could not be taken from the file.
func (l *loader) markFailed(path string) {
	if path == "" {
		return
	}
	if l.failed == nil {
		l.failed = map[string]bool{}
	}
	l.failed[path] = true
}

// failedAt reports whether path, or a key containing it, failed to decode.
func (l *loader) failedAt(path string) bool {
	for path != "" {
		if l.failed[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return false
		}
		path = path[:i]
	}
	return false
}

var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func syntaxProblem(file string, err error) *Problem {
	msg := err.Error()
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Problem{File: file, Line: n, Msg: m[2]}
	}
	return &Problem{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// loader carries state through the node walks.
type loader struct {
	file     string
	env      func(string) (string, bool)
	lines    map[string]int
	byLine   map[int]string
	problems []error
	// failed holds the key paths whose value could not be decoded or substituted.
	failed map[string]bool
	// expanding holds the anchors being walked through aliases, to stop on cycles.
	expanding map[*yaml.Node]bool
}

func (l *loader) addf(line int, path, format string, args ...any) {
	l.problems = append(l.problems, &Problem{File: l.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// typeProblem converts a yaml.v3 "line N: cannot unmarshal …" message to a Problem
// naming the key recorded at that line.
func (l *loader) typeProblem(msg string) *Problem {
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return &Problem{File: l.file, Msg: msg}
	}
	n, _ := strconv.Atoi(m[1])
	if l.byLine == nil {
		l.byLine = map[int]string{}
		for p, ln := range l.lines {
			// Prefer the deepest path on a line (the scalar, not its parent mapping).
			if old, ok := l.byLine[ln]; !ok || len(p) > len(old) {
				l.byLine[ln] = p
			}
		}
	}
	text := m[2]
	text = strings.Replace(text, "cannot unmarshal !!str", "cannot use the string", 1)
	text = strings.Replace(text, "cannot unmarshal !!seq", "cannot use a list", 1)
	text = strings.Replace(text, "cannot unmarshal !!map", "cannot use a mapping", 1)
	text = strings.Replace(text, "cannot unmarshal !!int", "cannot use the number", 1)
	text = strings.Replace(text, "cannot unmarshal !!float", "cannot use the number", 1)
	text = strings.Replace(text, "cannot unmarshal !!bool", "cannot use the boolean", 1)
	text = strings.Replace(text, " into ", " as ", 1)
	return &Problem{File: l.file, Line: n, Path: l.byLine[n], Msg: text}
}

// envRe matches ${VAR} and ${VAR:-default}; $$ escapes a dollar sign.
var envRe = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// substitute replaces ${VAR} and ${VAR:-default} in every scalar value (keys are left
// alone). A substituted scalar is re-resolved as if written plainly, so "${PORT}" may
// fill an integer field.
func (l *loader) substitute(n *yaml.Node, path string, isKey bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			l.substitute(c, path, false)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			l.substitute(n.Content[i+1], joinKey(path, n.Content[i].Value), false)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			l.substitute(c, fmt.Sprintf("%s[%d]", path, i), false)
		}
	case yaml.ScalarNode:
		if isKey || !strings.Contains(n.Value, "$") {
			return
		}
		changed := false
		out := envRe.ReplaceAllStringFunc(n.Value, func(m string) string {
			changed = true
			if m == "$$" {
				return "$"
			}
			sm := envRe.FindStringSubmatch(m)
			if v, ok := l.env(sm[1]); ok && (v != "" || sm[2] == "") {
				return v
			}
			if sm[2] != "" {
				return sm[3]
			}
			l.markFailed(path)
			l.addf(n.Line, path, "environment variable %s is not set: set it, or write ${%s:-default} to give a default", sm[1], sm[1])
			return ""
		})
		if changed {
			n.Value = out
			n.Tag = ""
			n.Style = 0
		}
	}
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// strict walks the document along the Go type it decodes into, reporting unknown keys
// (typos would otherwise silently fall back to defaults) and recording the line of
// every key path for later messages.
func (l *loader) strict(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if l.expanding[n.Alias] {
			l.addf(n.Line, path, "alias *%s refers to a value containing itself: remove the cycle", n.Value)
			return
		}
		if l.expanding == nil {
			l.expanding = map[*yaml.Node]bool{}
		}
		l.expanding[n.Alias] = true
		defer delete(l.expanding, n.Alias)
		n = n.Alias
	}
	if path != "" {
		if _, seen := l.lines[path]; !seen {
			l.lines[path] = n.Line
		}
	}
	if t == reflect.TypeOf(Duration(0)) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // yaml.v3 reports the type mismatch with its line
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			fields[tag] = f.Type
			names = append(names, tag)
		}
		sort.Strings(names)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				l.strict(v, t, path) // merge key: the merged mapping must fit the same type
				continue
			}
			p := joinKey(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				l.addf(k.Line, p, "unknown key %q (valid keys here: %s)", k.Value, strings.Join(names, ", "))
				continue
			}
			l.lines[p] = k.Line
			l.strict(v, ft, p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			l.strict(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinKey(path, n.Content[i].Value)
			l.lines[p] = n.Content[i].Line
			l.strict(n.Content[i+1], t.Elem(), p)
		}
	}
}

// lineOf finds the line of path, or of its nearest ancestor present in the file (a
// missing key is reported at the block that should contain it).
func (c *Config) lineOf(path string) int {
	for path != "" {
		if n, ok := c.lines[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}
