package schemas

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestGoTypesMatchLatestSchema fails when a Go struct and its latest schema file
// disagree, so that editing a canonical type without publishing a new schema
// version (or editing a published file in place) fails CI.
func TestGoTypesMatchLatestSchema(t *testing.T) {
	types := map[string]any{"envelope": new(Envelope)}
	for _, e := range Entities() {
		vs := SchemaVersions(e.Name)
		if len(vs) == 0 || vs[len(vs)-1] != e.Version {
			t.Errorf("entity %s: registry says version %d, schema files have %v", e.Name, e.Version, vs)
			continue
		}
		types[e.Name] = e.New()
	}
	for name, v := range types {
		vs := SchemaVersions(name)
		if len(vs) == 0 {
			t.Errorf("%s: no schema file", name)
			continue
		}
		s, err := decodeSchema(mustSchema(t, name, vs[len(vs)-1]))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range goSchemaMismatches("$", reflect.TypeOf(v), s) {
			t.Errorf("%s.v%d: %s", name, vs[len(vs)-1], p)
		}
	}
}

// TestGoSchemaMismatchesCatches proves the comparison above is able to fail.
func TestGoSchemaMismatchesCatches(t *testing.T) {
	type inner struct {
		System string `json:"system"`
	}
	type doc struct {
		Key    string            `json:"key"`
		Count  int               `json:"count,omitempty"`
		Tags   []string          `json:"tags,omitempty"`
		Inner  inner             `json:"inner"`
		Values map[string]string `json:"values,omitempty"`
		Ignore string            `json:"-"`
	}
	const good = `{"type":"object","required":["key","inner"],"properties":{
		"key":{"type":"string"},"count":{"type":"integer"},
		"tags":{"type":"array","items":{"type":"string"}},
		"inner":{"type":"object","properties":{"system":{"type":"string"}}},
		"values":{"type":"object","additionalProperties":{"type":"string"}}}}`
	cases := []struct {
		name   string
		schema string
		want   string
	}{
		{"matching", good, ""},
		{"field missing from schema", strings.Replace(good, `"count":{"type":"integer"},`, ``, 1), "$.count: Go field Count is not in the schema"},
		{"type differs", strings.Replace(good, `"count":{"type":"integer"}`, `"count":{"type":"string"}`, 1), "$.count: Go type int is JSON [integer], schema says [string]"},
		{"item type differs", strings.Replace(good, `"items":{"type":"string"}`, `"items":{"type":"integer"}`, 1), "$.tags[]: Go type string"},
		{"nested type differs", strings.Replace(good, `"system":{"type":"string"}`, `"system":{"type":"boolean"}`, 1), "$.inner.system:"},
		{"map value type differs", strings.Replace(good, `"additionalProperties":{"type":"string"}`, `"additionalProperties":{"type":"number"}`, 1), "$.values.*:"},
		{"required field the Go type lacks", strings.Replace(good, `"required":["key","inner"]`, `"required":["key","inner","status"]`, 1), "$.status: schema requires it"},
		{"required field Go omits when empty", strings.Replace(good, `"required":["key","inner"]`, `"required":["key","inner","count"]`, 1), "$.count: schema requires it but the Go field omits it when empty"},
		{"schema property Go would drop", strings.Replace(good, `"key":{"type":"string"},`, `"key":{"type":"string"},"extra":{"type":"string"},`, 1), "$.extra: schema property has no Go field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := decodeSchema([]byte(tc.schema))
			if err != nil {
				t.Fatal(err)
			}
			got := goSchemaMismatches("$", reflect.TypeOf(doc{}), s)
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("got %q, want no mismatch", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("got %q, want one mismatch containing %q", got, tc.want)
			}
		})
	}
}

// goField is one JSON-visible field of a Go struct, embedded structs flattened.
type goField struct {
	goName    string
	typ       reflect.Type
	omitEmpty bool
}

func jsonFields(t reflect.Type) map[string]goField {
	out := map[string]goField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = goField{goName: f.Name, typ: f.Type, omitEmpty: strings.Contains(opts, "omitempty")}
	}
	return out
}

var jsonNumberType = reflect.TypeOf(json.Number(""))

// goJSONType is the JSON Schema type encoding/json writes for a Go type ("" for
// interfaces, which may hold anything).
func goJSONType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == jsonNumberType {
		return "number"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string" // base64
		}
		return "array"
	case reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return ""
}

// goSchemaMismatches lists every disagreement between a Go type and a schema.
func goSchemaMismatches(path string, t reflect.Type, s map[string]any) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	want := goJSONType(t)
	if want == "" {
		return nil
	}
	if k := t.Kind(); k == reflect.Float32 || k == reflect.Float64 {
		out = append(out, path+": float field; carry exact numbers as Decimal")
	}
	ts := typeSet(s["type"])
	if len(ts) != 1 || !ts[want] {
		return append(out, path+": Go type "+t.String()+" is JSON ["+want+"], schema says "+strings.Join(fmtTypes(ts), ","))
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if items, ok := s["items"].(map[string]any); ok {
			out = append(out, goSchemaMismatches(path+"[]", t.Elem(), items)...)
		} else {
			out = append(out, path+"[]: schema has no items schema")
		}
	case reflect.Map:
		if goJSONType(t.Elem()) == "" {
			break
		}
		if ap, ok := s["additionalProperties"].(map[string]any); ok {
			out = append(out, goSchemaMismatches(path+".*", t.Elem(), ap)...)
		} else {
			out = append(out, path+".*: schema does not give the map's value type")
		}
	case reflect.Struct:
		props, _ := s["properties"].(map[string]any)
		fields := jsonFields(t)
		for _, name := range sortedKeys(fields) {
			f := fields[name]
			ps, ok := props[name].(map[string]any)
			if !ok {
				out = append(out, joinPath(path, name)+": Go field "+f.goName+" is not in the schema")
				continue
			}
			out = append(out, goSchemaMismatches(joinPath(path, name), f.typ, ps)...)
		}
		for _, name := range sortedKeys(props) {
			if _, ok := fields[name]; !ok {
				out = append(out, joinPath(path, name)+": schema property has no Go field (decoding would drop it)")
			}
		}
		for _, name := range sortedKeys(stringSet(s["required"])) {
			f, ok := fields[name]
			switch {
			case !ok:
				out = append(out, joinPath(path, name)+": schema requires it, the Go type has no such field")
			case f.omitEmpty:
				out = append(out, joinPath(path, name)+": schema requires it but the Go field omits it when empty")
			}
		}
	}
	return out
}

func fmtTypes(ts map[string]bool) []string {
	keys := sortedKeys(ts)
	return []string{"[" + strings.Join(keys, " ") + "]"}
}
