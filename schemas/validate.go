package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"
)

// ValidateDocument checks one JSON document against a JSON Schema; it is
// ParseSchema followed by Schema.Validate, for one-off checks. Consumers validating
// every message parse the schema once instead.
func ValidateDocument(schema, doc []byte) []string {
	s, err := ParseSchema(schema)
	if err != nil {
		return []string{fmt.Sprintf("$: schema: %v", err)}
	}
	return s.Validate(doc)
}

// Schema is a parsed JSON Schema ready to validate documents. It is read-only after
// ParseSchema, so one Schema may be used by many goroutines.
type Schema struct {
	root    map[string]any
	regexps map[string]*regexp.Regexp
}

// ParseSchema parses a JSON Schema written in the subset used by the files under
// schemas/json (type, properties, required, additionalProperties, items, enum,
// const, pattern, format date and date-time, and the numeric, length and size
// bounds) and compiles its patterns.
func ParseSchema(b []byte) (*Schema, error) {
	root, err := decodeSchema(b)
	if err != nil {
		return nil, err
	}
	s := &Schema{root: root, regexps: map[string]*regexp.Regexp{}}
	if err := s.compilePatterns(root); err != nil {
		return nil, err
	}
	return s, nil
}

// compilePatterns compiles every "pattern" found anywhere in the schema.
func (s *Schema) compilePatterns(v any) error {
	switch x := v.(type) {
	case map[string]any:
		for k, sub := range x {
			if p, ok := sub.(string); ok && k == "pattern" {
				re, err := regexp.Compile(p)
				if err != nil {
					return fmt.Errorf("schema pattern %q: %w", p, err)
				}
				s.regexps[p] = re
				continue
			}
			if err := s.compilePatterns(sub); err != nil {
				return err
			}
		}
	case []any:
		for _, sub := range x {
			if err := s.compilePatterns(sub); err != nil {
				return err
			}
		}
	}
	return nil
}

// Validate checks one document and lists every violation with its JSON path. A
// schema keyword outside the supported subset is reported rather than ignored, so a
// document never passes by accident. Consumers use it to send entities that break
// the contract to the DLQ with a precise reason.
func (s *Schema) Validate(doc []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{fmt.Sprintf("$: document: decode JSON: %v", err)}
	}
	vr := validator{regexps: s.regexps}
	vr.check("$", s.root, v)
	return vr.problems
}

// validationKeywords are the keywords ValidateDocument understands.
var validationKeywords = func() map[string]bool {
	m := map[string]bool{}
	for k := range handledKeywords {
		m[k] = true
	}
	for k := range annotationKeywords {
		m[k] = true
	}
	return m
}()

type validator struct {
	problems []string
	regexps  map[string]*regexp.Regexp
}

func (vr *validator) addf(path, format string, args ...any) {
	vr.problems = append(vr.problems, path+": "+fmt.Sprintf(format, args...))
}

func (vr *validator) check(path string, s map[string]any, v any) {
	for kw := range s {
		if !validationKeywords[kw] {
			// Rare (a schema bug): sort only then, for a stable report.
			for _, kw := range sortedKeys(s) {
				if !validationKeywords[kw] {
					vr.addf(path, "schema keyword %s is not supported by this validator", kw)
				}
			}
			break
		}
	}
	if ts := typeSet(s["type"]); len(ts) > 0 && !ts[jsonType(v, ts)] {
		vr.addf(path, "type %s, want %v", jsonType(v, ts), sortedKeys(ts))
		return
	}
	if vals, ok := enumValues(s); ok && !slices.ContainsFunc(vals, func(x any) bool { return jsonEqual(x, v) }) {
		vr.addf(path, "value %v is not one of %v", v, vals)
	}
	switch x := v.(type) {
	case string:
		vr.checkString(path, s, x)
	case json.Number:
		f, _ := x.Float64()
		vr.bound(path, "minimum", s, f, func(b float64) bool { return f >= b })
		vr.bound(path, "exclusiveMinimum", s, f, func(b float64) bool { return f > b })
		vr.bound(path, "maximum", s, f, func(b float64) bool { return f <= b })
		vr.bound(path, "exclusiveMaximum", s, f, func(b float64) bool { return f < b })
	case []any:
		n := float64(len(x))
		vr.bound(path, "minItems", s, n, func(b float64) bool { return n >= b })
		vr.bound(path, "maxItems", s, n, func(b float64) bool { return n <= b })
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range x {
				vr.check(fmt.Sprintf("%s[%d]", path, i), items, e)
			}
		}
	case map[string]any:
		vr.checkObject(path, s, x)
	}
}

func (vr *validator) checkString(path string, s map[string]any, x string) {
	n := float64(utf8.RuneCountInString(x))
	vr.bound(path, "minLength", s, n, func(b float64) bool { return n >= b })
	vr.bound(path, "maxLength", s, n, func(b float64) bool { return n <= b })
	if p, ok := s["pattern"].(string); ok {
		re, err := vr.compile(p)
		if err != nil {
			vr.addf(path, "schema pattern %q: %v", p, err)
		} else if !re.MatchString(x) {
			vr.addf(path, "value %q does not match pattern %s", x, p)
		}
	}
	switch s["format"] {
	case "date":
		if _, err := time.Parse(time.DateOnly, x); err != nil {
			vr.addf(path, "value %q is not a date (YYYY-MM-DD)", x)
		}
	case "date-time":
		if _, err := time.Parse(time.RFC3339Nano, x); err != nil {
			vr.addf(path, "value %q is not an RFC 3339 date-time", x)
		}
	}
}

func (vr *validator) checkObject(path string, s map[string]any, x map[string]any) {
	props, _ := s["properties"].(map[string]any)
	for _, name := range sortedKeys(stringSet(s["required"])) {
		if _, ok := x[name]; !ok {
			vr.addf(joinPath(path, name), "required property missing")
		}
	}
	n := float64(len(x))
	vr.bound(path, "minProperties", s, n, func(b float64) bool { return n >= b })
	vr.bound(path, "maxProperties", s, n, func(b float64) bool { return n <= b })
	for _, name := range sortedKeys(x) {
		if ps, ok := props[name]; ok {
			if sub, ok := ps.(map[string]any); ok {
				vr.check(joinPath(path, name), sub, x[name])
			} else if ps == false {
				vr.addf(joinPath(path, name), "property not allowed")
			}
			continue
		}
		switch ap := s["additionalProperties"].(type) {
		case bool:
			if !ap {
				vr.addf(joinPath(path, name), "property not allowed")
			}
		case map[string]any:
			vr.check(joinPath(path, name), ap, x[name])
		}
	}
}

func (vr *validator) bound(path, kw string, s map[string]any, got float64, ok func(float64) bool) {
	if b, has := number(s[kw]); has && !ok(b) {
		vr.addf(path, "%s %v violated by %v", kw, s[kw], got)
	}
}

func (vr *validator) compile(p string) (*regexp.Regexp, error) {
	if re, ok := vr.regexps[p]; ok {
		return re, nil
	}
	return regexp.Compile(p) // not reached for schemas built by ParseSchema
}

// jsonType names the JSON Schema type of a decoded value. A number counts as
// "integer" when it has no fraction and the schema asks for integers.
func jsonType(v any, want map[string]bool) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if want["integer"] {
			if _, err := x.Int64(); err == nil {
				return "integer"
			}
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// jsonEqual compares decoded JSON values, numbers by value.
func jsonEqual(a, b any) bool {
	if as, ok := a.(string); ok {
		bs, ok := b.(string)
		return ok && as == bs
	}
	an, aok := a.(json.Number)
	bn, bok := b.(json.Number)
	if aok && bok {
		af, err1 := an.Float64()
		bf, err2 := bn.Float64()
		return err1 == nil && err2 == nil && af == bf
	}
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	return bytes.Equal(ab, bb)
}
