package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// CheckCompatible compares two versions of one JSON Schema and lists every change
// that would break a reader, each prefixed with the JSON path of the data it
// concerns ("$" is the document, "$.source.system" a nested property, "$.risks[]"
// the items of an array). An empty result means new is a compatible successor of
// old.
//
// Readers of either version must keep reading documents of the other (sinks replay
// old events; old consumers see new ones), so the checker forbids: removing a
// property, changing a type, making a property required, removing an enum value,
// adding or changing a format or pattern, tightening a bound (minimum, maxLength,
// …), closing additionalProperties, and changing any keyword it does not
// understand (oneOf, $ref, …), because it cannot prove such a change harmless.
// Adding optional properties and enum values, widening bounds and editing
// annotations (title, description, $id, …) are allowed.
//
// The checker is structural: it assumes no $ref indirection, which is how the
// files under schemas/json are written.
func CheckCompatible(old, new []byte) []string {
	o, err := decodeSchema(old)
	if err != nil {
		return []string{fmt.Sprintf("$: old schema: %v", err)}
	}
	n, err := decodeSchema(new)
	if err != nil {
		return []string{fmt.Sprintf("$: new schema: %v", err)}
	}
	var c compatChecker
	c.compare("$", o, n)
	return c.problems
}

// decodeSchema parses a schema file, keeping numbers exact.
func decodeSchema(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode JSON schema: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("decode JSON schema: top level is null, want an object")
	}
	return m, nil
}

// annotationKeywords never affect which documents are valid.
var annotationKeywords = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "title": true, "description": true,
	"examples": true, "default": true, "deprecated": true, "readOnly": true, "writeOnly": true,
}

// lowerBounds and upperBounds are the numeric keywords a new version may only widen.
var (
	lowerBounds = []string{"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"}
	upperBounds = []string{"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"}
)

// handledKeywords are compared by dedicated rules; any other non-annotation keyword
// must stay identical.
var handledKeywords = func() map[string]bool {
	m := map[string]bool{"type": true, "properties": true, "required": true, "items": true,
		"additionalProperties": true, "enum": true, "const": true, "format": true, "pattern": true}
	for _, k := range append(slices.Clone(lowerBounds), upperBounds...) {
		m[k] = true
	}
	return m
}()

type compatChecker struct{ problems []string }

func (c *compatChecker) addf(path, format string, args ...any) {
	c.problems = append(c.problems, path+": "+fmt.Sprintf(format, args...))
}

func (c *compatChecker) compare(path string, o, n map[string]any) {
	c.compareType(path, o, n)
	c.compareEnum(path, o, n)
	for _, kw := range []string{"format", "pattern"} {
		ov, oHas := o[kw]
		nv, nHas := n[kw]
		switch {
		case !oHas && nHas:
			c.addf(path, "%s %v added (narrows what is valid)", kw, nv)
		case oHas && nHas && !reflect.DeepEqual(ov, nv):
			c.addf(path, "%s changed from %v to %v", kw, ov, nv)
		}
	}
	for _, kw := range lowerBounds {
		c.compareBound(path, kw, o, n, func(oldV, newV float64) bool { return newV > oldV })
	}
	for _, kw := range upperBounds {
		c.compareBound(path, kw, o, n, func(oldV, newV float64) bool { return newV < oldV })
	}

	// Properties: none may disappear, and each surviving one must be compatible.
	op, _ := o["properties"].(map[string]any)
	np, _ := n["properties"].(map[string]any)
	for _, name := range sortedKeys(op) {
		osub, _ := op[name].(map[string]any)
		nraw, ok := np[name]
		if !ok {
			c.addf(joinPath(path, name), "property removed")
			continue
		}
		nsub, _ := nraw.(map[string]any)
		c.compare(joinPath(path, name), osub, nsub)
	}
	oreq := stringSet(o["required"])
	for _, name := range sortedKeys(stringSet(n["required"])) {
		if !oreq[name] {
			c.addf(joinPath(path, name), "property became required")
		}
	}

	// Array items.
	if oi, ok := o["items"].(map[string]any); ok {
		if ni, ok := n["items"].(map[string]any); ok {
			c.compare(path+"[]", oi, ni)
		} else if _, has := n["items"]; has {
			c.addf(path+"[]", "items changed from a schema to %v", n["items"])
		}
	} else if _, has := n["items"]; has {
		c.addf(path+"[]", "items schema added (narrows what is valid)")
	}

	c.compareAdditional(path, o, n)

	// Anything else must be unchanged: the checker cannot reason about it.
	for _, kw := range sortedKeys(unionKeys(o, n)) {
		if annotationKeywords[kw] || handledKeywords[kw] {
			continue
		}
		if !reflect.DeepEqual(o[kw], n[kw]) {
			c.addf(path, "keyword %s changed; the checker cannot prove this compatible", kw)
		}
	}
}

func (c *compatChecker) compareType(path string, o, n map[string]any) {
	ot, nt := typeSet(o["type"]), typeSet(n["type"])
	switch {
	case len(ot) == 0 && len(nt) > 0:
		c.addf(path, "type %v added (narrows what is valid)", sortedKeys(nt))
	case len(ot) > 0 && !reflect.DeepEqual(ot, nt):
		c.addf(path, "type changed from %v to %v", sortedKeys(ot), sortedKeys(nt))
	}
}

func (c *compatChecker) compareEnum(path string, o, n map[string]any) {
	oe, oHas := enumValues(o)
	ne, nHas := enumValues(n)
	if !nHas {
		return // no restriction in the new version: everything old is still valid
	}
	if !oHas {
		c.addf(path, "enum %v added (narrows what is valid)", ne)
		return
	}
	for _, v := range oe {
		if !slices.ContainsFunc(ne, func(x any) bool { return reflect.DeepEqual(x, v) }) {
			c.addf(path, "enum value %v removed", v)
		}
	}
}

func (c *compatChecker) compareBound(path, kw string, o, n map[string]any, tighter func(oldV, newV float64) bool) {
	nv, nHas := number(n[kw])
	if !nHas {
		return
	}
	ov, oHas := number(o[kw])
	if !oHas {
		c.addf(path, "%s %v added (narrows what is valid)", kw, n[kw])
		return
	}
	if tighter(ov, nv) {
		c.addf(path, "%s tightened from %v to %v", kw, o[kw], n[kw])
	}
}

func (c *compatChecker) compareAdditional(path string, o, n map[string]any) {
	oa, oHas := o["additionalProperties"]
	na, nHas := n["additionalProperties"]
	if !nHas || na == true {
		return // open in the new version
	}
	if !oHas || oa == true {
		c.addf(path, "additionalProperties closed or restricted (readers of the old version may send other properties)")
		return
	}
	if na == false {
		if oa != false {
			c.addf(path, "additionalProperties closed")
		}
		return
	}
	osub, ok1 := oa.(map[string]any)
	nsub, ok2 := na.(map[string]any)
	if ok1 && ok2 {
		c.compare(path+".*", osub, nsub)
	}
	// oa == false and na a schema: widened, fine.
}

// joinPath appends a property name to a data path, quoting names that are not
// plain identifiers.
func joinPath(path, name string) string {
	if name != "" && strings.IndexFunc(name, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0 {
		return path + "." + name
	}
	return fmt.Sprintf("%s[%q]", path, name)
}

// typeSet turns a "type" keyword (string or array) into a set.
func typeSet(v any) map[string]bool {
	s := map[string]bool{}
	switch t := v.(type) {
	case string:
		s[t] = true
	case []any:
		for _, x := range t {
			if str, ok := x.(string); ok {
				s[str] = true
			}
		}
	}
	return s
}

// enumValues returns the allowed values of enum or const.
func enumValues(m map[string]any) ([]any, bool) {
	if e, ok := m["enum"].([]any); ok {
		return e, true
	}
	if c, ok := m["const"]; ok {
		return []any{c}, true
	}
	return nil, false
}

func stringSet(v any) map[string]bool {
	s := map[string]bool{}
	if arr, ok := v.([]any); ok {
		for _, x := range arr {
			if str, ok := x.(string); ok {
				s[str] = true
			}
		}
	}
	return s
}

func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func unionKeys(a, b map[string]any) map[string]bool {
	u := map[string]bool{}
	for k := range a {
		u[k] = true
	}
	for k := range b {
		u[k] = true
	}
	return u
}
