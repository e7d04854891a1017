package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// goldenPath is the example document of one schema version.
func goldenPath(name string, v int) string {
	return filepath.Join("testdata", fmt.Sprintf("%s.v%d.golden.json", name, v))
}

// TestGoldenRoundTrip decodes the golden document of every version of every
// entity into the current Go type. Old versions' goldens stay forever: they are
// what proves that readers built today still read what was written before.
func TestGoldenRoundTrip(t *testing.T) {
	for _, e := range Entities() {
		for _, v := range SchemaVersions(e.Name) {
			t.Run(fmt.Sprintf("%s.v%d", e.Name, v), func(t *testing.T) {
				golden, err := os.ReadFile(goldenPath(e.Name, v))
				if err != nil {
					t.Fatalf("every schema version needs a golden example document: %v", err)
				}
				// The golden is a valid document of its own version …
				for _, p := range ValidateDocument(mustSchema(t, e.Name, v), golden) {
					t.Errorf("golden does not follow its schema: %s", p)
				}
				// … decodes into today's type without unknown fields …
				ent := e.New()
				dec := json.NewDecoder(bytes.NewReader(golden))
				dec.DisallowUnknownFields()
				if err := dec.Decode(ent); err != nil {
					t.Fatalf("decode %s into %T: %v", goldenPath(e.Name, v), ent, err)
				}
				if _, ok := ent.(Entity); !ok {
					t.Fatalf("%T does not implement Entity", ent)
				}
				// … loses nothing when re-encoded, and re-encodes stably.
				out := checkReencode(t, golden, ent)
				if v == e.Version {
					for _, p := range ValidateDocument(mustSchema(t, e.Name, v), out) {
						t.Errorf("re-encoded document does not follow the latest schema: %s", p)
					}
					checkCoverage(t, mustSchema(t, e.Name, v), golden)
				}
			})
		}
	}
}

// TestGoldenEnvelope does the same for the envelope, through UnmarshalEnvelope.
func TestGoldenEnvelope(t *testing.T) {
	for _, v := range SchemaVersions("envelope") {
		golden, err := os.ReadFile(goldenPath("envelope", v))
		if err != nil {
			t.Fatalf("every schema version needs a golden example document: %v", err)
		}
		for _, p := range ValidateDocument(mustSchema(t, "envelope", v), golden) {
			t.Errorf("envelope.v%d golden does not follow its schema: %s", v, p)
		}
		env, err := UnmarshalEnvelope(golden)
		if err != nil {
			t.Fatalf("envelope.v%d golden: %v", v, err)
		}
		checkReencode(t, golden, env)
		if v == EnvelopeVersion {
			checkCoverage(t, mustSchema(t, "envelope", v), golden)
		}
	}
}

// checkReencode encodes v and checks that every golden property survived (apart
// from empty strings, zeros and false, which omitempty fields legitimately drop), that
// nothing was invented, and that a second decode/encode cycle gives the same bytes.
func checkReencode(t *testing.T, golden []byte, v any) []byte {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	want, got := decodeGeneric(t, golden), decodeGeneric(t, out)
	compareDocs(t, "$", want, got)

	again := reflect.New(reflect.TypeOf(v).Elem()).Interface()
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(again); err != nil {
		t.Fatalf("decode re-encoded %T: %v", v, err)
	}
	out2, err := json.Marshal(again)
	if err != nil {
		t.Fatalf("encode %T again: %v", v, err)
	}
	if !bytes.Equal(out, out2) {
		t.Errorf("re-encoding is not stable:\n first %s\nsecond %s", out, out2)
	}
	return out
}

func compareDocs(t *testing.T, path string, want, got any) {
	t.Helper()
	wm, wok := want.(map[string]any)
	gm, gok := got.(map[string]any)
	if !wok || !gok {
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: golden has %v, re-encoded has %v", path, want, got)
		}
		return
	}
	for _, k := range sortedKeys(wm) {
		g, ok := gm[k]
		if !ok {
			if !isEmptyScalar(wm[k]) {
				t.Errorf("%s: lost on re-encoding (golden value %v)", joinPath(path, k), wm[k])
			}
			continue
		}
		compareDocs(t, joinPath(path, k), wm[k], g)
	}
	for _, k := range sortedKeys(gm) {
		if _, ok := wm[k]; !ok {
			t.Errorf("%s: appears on re-encoding but not in the golden (%v)", joinPath(path, k), gm[k])
		}
	}
}

func isEmptyScalar(v any) bool {
	switch x := v.(type) {
	case string:
		return x == ""
	case json.Number:
		return x == "0"
	case bool:
		return !x // only plain bool fields with omitempty drop false; *bool keeps it
	}
	return false
}

// checkCoverage makes the latest golden exercise every top-level property, so a
// property added to the schema must also be shown in the example.
func checkCoverage(t *testing.T, schema, golden []byte) {
	t.Helper()
	s, err := decodeSchema(schema)
	if err != nil {
		t.Fatal(err)
	}
	doc := decodeGeneric(t, golden).(map[string]any)
	props, _ := s["properties"].(map[string]any)
	for _, name := range sortedKeys(props) {
		if _, ok := doc[name]; !ok {
			t.Errorf("golden lacks property %s: show every property in the latest example", name)
		}
	}
}

func decodeGeneric(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode JSON: %v", err)
	}
	return v
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
