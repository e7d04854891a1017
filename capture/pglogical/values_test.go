package pglogical

import (
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestDecodeValue(t *testing.T) {
	tests := []struct {
		name   string
		oid    uint32
		in     string
		want   string // JSON encoding of the result
		reason string // valueError reason when it must fail
	}{
		{"int4", pgtype.Int4OID, "42", "42", ""},
		{"int8 big", pgtype.Int8OID, "9223372036854775807", "9223372036854775807", ""},
		{"int bad", pgtype.Int4OID, "4x", "", "invalid_number"},
		{"numeric keeps scale", pgtype.NumericOID, "1.50", `"1.50"`, ""},
		{"numeric exp", pgtype.NumericOID, "-1.5e+10", `"-1.5e+10"`, ""},
		{"numeric NaN", pgtype.NumericOID, "NaN", `"NaN"`, ""},
		{"numeric bad", pgtype.NumericOID, "1..2", "", "invalid_number"},
		{"float", pgtype.Float8OID, "0.1", "0.1", ""},
		{"float inf", pgtype.Float8OID, "Infinity", `"Infinity"`, ""},
		{"bool t", pgtype.BoolOID, "t", "true", ""},
		{"bool f", pgtype.BoolOID, "f", "false", ""},
		{"bool bad", pgtype.BoolOID, "y", "", "invalid_text"},
		{"jsonb", pgtype.JSONBOID, `{"a": [1, 2]}`, `{"a":[1,2]}`, ""},
		{"json bad", pgtype.JSONOID, `{"a":`, "", "invalid_json"},
		{"date", pgtype.DateOID, "2024-02-29", `"2024-02-29"`, ""},
		{"date infinity", pgtype.DateOID, "infinity", `"infinity"`, ""},
		{"date bad", pgtype.DateOID, "2024-13-01", "", "invalid_time"},
		{"timestamp", pgtype.TimestampOID, "2024-01-02 03:04:05.123456", `"2024-01-02 03:04:05.123456"`, ""},
		{"timestamptz", pgtype.TimestamptzOID, "2024-01-02 03:04:05+00", `"2024-01-02 03:04:05+00"`, ""},
		{"text chinese", pgtype.TextOID, "四川省", `"四川省"`, ""},
		{"text invalid utf8", pgtype.TextOID, "a\xffb", "", "invalid_text"},
		{"uuid as text", pgtype.UUIDOID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, ""},
		{"array as text", pgtype.Int4ArrayOID, "{1,2}", `"{1,2}"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := decodeValue(tt.oid, []byte(tt.in))
			if tt.reason != "" {
				ve, ok := err.(*valueError)
				if !ok || ve.Reason != tt.reason {
					t.Fatalf("decodeValue(%q) = %v, %v; want reason %s", tt.in, v, err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("decodeValue(%q) encodes as %s, want %s", tt.in, b, tt.want)
			}
		})
	}
}

// FuzzDecodeValue: any input either decodes to a value that JSON-encodes, or fails
// with a valueError; it never panics.
func FuzzDecodeValue(f *testing.F) {
	for _, s := range []string{"1", "1.5", "NaN", "t", `{"a":1}`, "2024-01-01", "2024-01-01 00:00:00+08", "\xff", "1e5"} {
		f.Add(uint32(pgtype.NumericOID), s)
		f.Add(uint32(pgtype.JSONBOID), s)
		f.Add(uint32(pgtype.TimestamptzOID), s)
	}
	oids := []uint32{pgtype.Int4OID, pgtype.Int8OID, pgtype.NumericOID, pgtype.Float8OID, pgtype.BoolOID, pgtype.JSONOID,
		pgtype.JSONBOID, pgtype.DateOID, pgtype.TimestampOID, pgtype.TimestamptzOID, pgtype.TextOID}
	f.Fuzz(func(t *testing.T, oid uint32, s string) {
		oid = oids[oid%uint32(len(oids))]
		v, err := decodeValue(oid, []byte(s))
		if err != nil {
			if _, ok := err.(*valueError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("decodeValue(%d, %q) = %#v does not encode: %v", oid, s, v, err)
		}
	})
}

func TestOptionsValidate(t *testing.T) {
	good := Options{Name: "a", TopicPrefix: "p", ConnString: "postgres://u@h/db", Slot: "s", Publication: "p", Tables: []string{"public.t"}}
	if _, err := New(good); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Options)
	}{
		{"no name", func(o *Options) { o.Name = "" }},
		{"bad slot", func(o *Options) { o.Slot = "Bad-Slot" }},
		{"bad publication", func(o *Options) { o.Publication = "" }},
		{"no tables", func(o *Options) { o.Tables = nil }},
		{"table without schema", func(o *Options) { o.Tables = []string{"t"} }},
		{"duplicate table", func(o *Options) { o.Tables = []string{"public.t", "public.t"} }},
		{"bad snapshot mode", func(o *Options) { o.SnapshotMode = "sometimes" }},
		{"bad conn string", func(o *Options) { o.ConnString = "postgres://h:notaport/db" }},
	}
	for _, tt := range tests {
		o := good
		o.Tables = append([]string(nil), good.Tables...)
		tt.mod(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", tt.name, o)
		}
	}
}

func TestPositionRoundTrip(t *testing.T) {
	p := Position{lsn: 0x16B3748, Snapshot: &SnapshotState{LSN: "0/16B3748", Tables: map[string]*TableCursor{"public.t": {Cursor: []string{"5"}}}}}
	got, ok, err := DecodePosition(p.Encode())
	if err != nil || !ok || got.lsn != p.lsn || got.LSN != "0/16B3748" || got.Snapshot.Tables["public.t"].Cursor[0] != "5" {
		t.Fatalf("round trip: %+v %v %v", got, ok, err)
	}
	for _, bad := range []string{`{`, `{"v":9,"lsn":"0/1"}`, `{"v":1,"lsn":"zz"}`} {
		if _, _, err := DecodePosition([]byte(bad)); err == nil {
			t.Errorf("DecodePosition(%s) accepted", bad)
		}
	}
}
