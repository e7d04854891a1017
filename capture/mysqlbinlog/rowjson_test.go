package mysqlbinlog

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// The reload state compares rows by their encoding, so appendRowJSON must give the
// very bytes json.Marshal gives (state written by older builds stays comparable).
func TestAppendRowJSONMatchesMarshal(t *testing.T) {
	var enc rowEncoder
	for _, tc := range []struct {
		name string
		row  map[string]any
	}{
		{"nil", nil},
		{"empty", map[string]any{}},
		{"person", map[string]any{"id_no": "510104199001011234", "name": "张三", "income": "12345.50", "age": int64(34), "hh": uint64(18446744073709551615), "photo": []byte{0, 1, 254, 255}, "note": nil}},
		{"escapes", map[string]any{"s": "a\"b\\c\n\r\t\b\f\x00\x1f<>&\x7f\u2028\u2029 é 😀", "bad": "\xff\xfe ok \xc3"}},
		{"odd keys", map[string]any{"<k>": 1, "b\"": true, "": false, "é": -1}},
		{"same count, other keys", map[string]any{"<k>": 1, "b\"": true, "x": false, "é": -1}},
		{"other types", map[string]any{"f32": float32(1.1), "f64": 1e21, "small": 1e-7, "neg": math.Copysign(0, -1), "i32": int32(-5), "m": map[string]any{"x": 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(tc.row)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendRowJSON([]byte("prefix"), tc.row)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "prefix"+string(want) {
				t.Errorf("appendRowJSON = %s\njson.Marshal  = %s", got[6:], want)
			}
			// The shared encoder saw the previous case's keys: it must notice the
			// change, and reuse the order on the second call.
			for range 2 {
				if got, err = enc.append(nil, tc.row); err != nil || string(got) != string(want) {
					t.Errorf("rowEncoder = %s, %v\njson.Marshal = %s", got, err, want)
				}
			}
		})
	}
	if _, err := appendRowJSON(nil, map[string]any{"nan": math.NaN()}); err == nil {
		t.Error("NaN encoded without error; json.Marshal rejects it")
	}
}

func FuzzAppendRowJSON(f *testing.F) {
	f.Add("id", "张三<&>\u2028", int64(-7), []byte{1, 2, 3})
	f.Add("\xff", "\x00\x1f\"\\", int64(0), []byte(nil))
	f.Fuzz(func(t *testing.T, k, v string, n int64, b []byte) {
		row := map[string]any{k: v, k + "n": n, k + "u": uint64(n), k + "b": b, "z" + k: nil}
		want, err := json.Marshal(row)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendRowJSON(nil, row)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("appendRowJSON = %q, json.Marshal = %q", got, want)
		}
		// The encoder reusing its key order must give the same bytes twice.
		var enc rowEncoder
		for range 2 {
			if got, err := enc.append(nil, row); err != nil || string(got) != string(want) {
				t.Errorf("rowEncoder = %q, %v; json.Marshal = %q", got, err, want)
			}
		}
		if bound, ok := rowJSONBound(row); !ok || bound < len(want) {
			t.Errorf("rowJSONBound = %d, %v; the encoding has %d bytes", bound, ok, len(want))
		}
	})
}

func TestEnvelopeJSONBound(t *testing.T) {
	worst := strings.Repeat("\x00<\u2028\xff", 50)
	for _, tc := range []struct {
		name string
		env  schemas.Envelope
		ok   bool
	}{
		{"empty", schemas.Envelope{}, true},
		{"update", schemas.Envelope{V: 1, Op: schemas.OpUpdate, Source: schemas.Source{System: worst, Kind: Kind, DB: "d", Table: worst,
			BinlogFile: "binlog.000001", BinlogPos: 4294967295, GTID: worst, CommitMs: 1 << 62, Seq: 1 << 62},
			Key: map[string]any{"id": int64(-1 << 63)}, Before: benchRow(), After: map[string]any{worst: worst, "b": []byte(worst), "f": -1.2345678901234567e-300},
			Schema: schemas.SchemaRef{Name: worst, Version: 1 << 30}, TsMs: 1 << 62}, true},
		{"unknown type", schemas.Envelope{After: map[string]any{"m": map[string]any{}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.env)
			if err != nil {
				t.Fatal(err)
			}
			bound, ok := envelopeJSONBound(&tc.env)
			if ok != tc.ok {
				t.Fatalf("envelopeJSONBound ok = %v, want %v", ok, tc.ok)
			}
			if ok && bound < len(b) {
				t.Errorf("bound %d below the encoding's %d bytes", bound, len(b))
			}
		})
	}
}

// A row whose envelope exceeds MaxRowBytes goes to the DLQ as oversized; the bound
// must not let it through, nor stop an ordinary row.
func TestOversizedRowDeadLettered(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	exec(t, d, "CREATE TABLE t (id INT PRIMARY KEY, note TEXT)")
	opts := testOptions(t, srv, db)
	opts.SnapshotMode, opts.MaxRowBytes = SnapshotNever, 4000
	s := openSource(t, opts, nil)
	exec(t, d, "INSERT INTO t VALUES (1, 'small')", "INSERT INTO t VALUES (2, REPEAT('x', 5000))", "INSERT INTO t VALUES (3, REPEAT('<', 1000))")
	chs, _ := readUntilCaughtUp(t, s, headPos(t, d))
	got := map[int64]string{}
	for _, c := range chs {
		var id int64
		if c.DeadLetter != nil {
			if !strings.Contains(c.DeadLetter.Reason, "max_row_bytes") {
				t.Errorf("dead letter reason %q, want the size limit", c.DeadLetter.Reason)
			}
			id = 2
			if strings.Contains(c.DeadLetter.Key, "3") {
				id = 3
			}
			got[id] = "dlq"
			continue
		}
		id = c.Envelope.After["id"].(int64)
		got[id] = "emitted"
	}
	// Row 3 is 1000 bytes in the table but 6000 in JSON (\u003c each).
	want := map[int64]string{1: "emitted", 2: "dlq", 3: "dlq"}
	if !jsonEqual(t, want, got) {
		t.Errorf("rows %v, want %v", got, want)
	}
}

func benchRow() map[string]any {
	row := map[string]any{}
	for i, c := range []string{"id_no", "name", "gender", "birth", "relation", "village_code", "hh_no", "health", "edu", "labor", "insured", "income", "updated_at"} {
		row[c] = "值" + c
		if i%3 == 0 {
			row[c+"_n"] = int64(i * 1000)
		}
	}
	return row
}

// BenchmarkRowEncoding compares the state record encoding with json.Marshal.
func BenchmarkRowEncoding(b *testing.B) {
	row := benchRow()
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(row); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendRowJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = appendRowJSON(buf[:0], row); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rowEncoder", func(b *testing.B) {
		var buf []byte
		var enc rowEncoder
		for b.Loop() {
			var err error
			if buf, err = enc.append(buf[:0], row); err != nil {
				b.Fatal(err)
			}
		}
	})
}
