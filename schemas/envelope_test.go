package schemas

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestUnmarshalEnvelopeKeepsNumbersExact(t *testing.T) {
	in := `{"v":1,"op":"c","source":{"system":"national","kind":"mysqlbinlog","table":"fp_person"},
		"key":{"id":9007199254740993},
		"after":{"id":9007199254740993,"income":"31260.00","amount":12345678901234567.89,"ratio":0.1},
		"schema":{"name":"national.fp_person","version":1},"ts_ms":1717200000123}`
	e, err := UnmarshalEnvelope([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]any{
		"id":     json.Number("9007199254740993"), // 2^53+1: a float64 would round it
		"amount": json.Number("12345678901234567.89"),
		"ratio":  json.Number("0.1"),
		"income": "31260.00",
	}
	for k, want := range cases {
		if got := e.After[k]; got != want {
			t.Errorf("after.%s = %#v (%T), want %#v", k, got, got, want)
		}
	}
	if got := e.Key["id"]; got != json.Number("9007199254740993") {
		t.Errorf("key.id = %#v, want json.Number 9007199254740993", got)
	}
	out, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"id":9007199254740993`, `"amount":12345678901234567.89`, `"ratio":0.1`} {
		if !strings.Contains(string(out), s) {
			t.Errorf("re-encoded envelope lacks %s: %s", s, out)
		}
	}
}

func TestUnmarshalEnvelopeRejects(t *testing.T) {
	src := `"source":{"system":"national","kind":"mysqlbinlog","table":"fp_person"}`
	cases := []struct {
		name, in, want string
	}{
		{"bad op", `{"v":1,"op":"x",` + src + `,"after":{}}`, `field op: unknown operation "x"`},
		{"empty op", `{"v":1,"op":"",` + src + `,"after":{}}`, `field op`},
		{"version zero", `{"op":"c",` + src + `,"after":{}}`, `unsupported version 0`},
		{"future version", `{"v":2,"op":"c",` + src + `,"after":{}}`, `unsupported version 2 (this build reads 1..1)`},
		{"no system", `{"v":1,"op":"c","source":{"table":"t"},"after":{}}`, `field source: system and table are required`},
		{"no table", `{"v":1,"op":"c","source":{"system":"s"},"after":{}}`, `field source`},
		{"create without after", `{"v":1,"op":"c",` + src + `}`, `op "c" needs field after`},
		{"create with empty after", `{"v":1,"op":"c",` + src + `,"after":{}}`, `op "c" needs field after`},
		{"delete with empty before", `{"v":1,"op":"d",` + src + `,"before":{}}`, `op d needs field before or key`},
		{"update without after", `{"v":1,"op":"u",` + src + `,"before":{"a":1}}`, `op "u" needs field after`},
		{"delete without before or key", `{"v":1,"op":"d",` + src + `}`, `op d needs field before or key`},
		{"not json", `{"v":1,`, `envelope: decode`},
		{"wrong type", `{"v":"1","op":"c",` + src + `,"after":{}}`, `envelope: decode`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := UnmarshalEnvelope([]byte(tc.in))
			if err == nil {
				t.Fatalf("accepted %s as %+v", tc.in, e)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if e != nil {
				t.Errorf("returned an envelope together with error %v", err)
			}
		})
	}
}

func TestEnvelopeAccepts(t *testing.T) {
	src := Source{System: "national", Kind: "mysqlbinlog", Table: "fp_person"}
	cases := []struct {
		name string
		e    Envelope
	}{
		{"create", Envelope{V: 1, Op: OpCreate, Source: src, After: map[string]any{"a": 1}}},
		{"snapshot read", Envelope{V: 1, Op: OpRead, Source: src, After: map[string]any{"id": 1}}},
		{"delete by key", Envelope{V: 1, Op: OpDelete, Source: src, Key: map[string]any{"id": 1}}},
		{"delete by before", Envelope{V: 1, Op: OpDelete, Source: src, Before: map[string]any{"id": 1}}},
		{"truncate", Envelope{V: 1, Op: OpTruncate, Source: src}},
		{"schema change", Envelope{V: 1, Op: OpSchema, Source: src, DDL: "ALTER TABLE fp_person ADD COLUMN x INT"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.e.Validate(); err != nil {
				t.Fatal(err)
			}
			b, err := tc.e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := UnmarshalEnvelope(b)
			if err != nil {
				t.Fatalf("round trip of %s: %v", b, err)
			}
			if back.Op != tc.e.Op || back.Source != tc.e.Source || back.DDL != tc.e.DDL {
				t.Errorf("round trip changed the envelope: %+v → %+v", tc.e, back)
			}
			envSchema := mustSchema(t, "envelope", EnvelopeVersion)
			for _, p := range ValidateDocument(envSchema, b) {
				t.Errorf("valid envelope breaks envelope.v%d.json: %s", EnvelopeVersion, p)
			}
		})
	}
}

// FuzzUnmarshalEnvelope checks that any input is either rejected with an error or
// yields an envelope that validates, re-encodes, and decodes to the same bytes; and,
// differentially, that the reflection-free decoders accept exactly what
// encoding/json accepts with the same result (checkDecode for the map envelope,
// checkEntity for the typed envelope of the entity its schema names, person when
// it names none). Seeds: the goldens, encoder outputs, canonical envelopes.
func FuzzUnmarshalEnvelope(f *testing.F) {
	for _, b := range goldenSeeds(f) {
		f.Add(b)
	}
	for _, b := range encodedSeeds(f) {
		f.Add(b)
	}
	docs, _ := entityEnvelopeSeeds(f)
	for _, b := range docs {
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"op":"c","source":{"system":"s","table":"t"},"after":{"id":9007199254740993}}`))
	f.Add([]byte(`{"v":1,"op":"d","source":{"system":"s","table":"t"},"key":{"id":"x"}}`))
	f.Add([]byte(`{"v":1,"op":"s","source":{"system":"s","table":"t"},"ddl":"DROP TABLE t"}`))
	f.Add([]byte(`{"v":1,"op":"u","source":{"system":"s","table":"t","binlog_pos":4294967295},"after":{"a":[1.5e300,{"b":null}]}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		entityCheckFor(b)(t, b)
		e, err := UnmarshalEnvelope(b)
		if err != nil {
			if e != nil {
				t.Fatalf("envelope returned with error %v", err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted envelope fails Validate: %v", err)
		}
		out, err := e.Marshal()
		if err != nil {
			t.Fatalf("accepted envelope does not encode: %v", err)
		}
		back, err := UnmarshalEnvelope(out)
		if err != nil {
			t.Fatalf("re-encoded envelope %s rejected: %v", out, err)
		}
		out2, err := back.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("unstable encoding:\n%s\n%s", out, out2)
		}
	})
}
