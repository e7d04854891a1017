package mysqlbinlog

import (
	"encoding/json"
	"math"
	"testing"
)

// The reload state compares rows by their encoding, so appendRowJSON must give the
// very bytes json.Marshal gives (state written by older builds stays comparable).
func TestAppendRowJSONMatchesMarshal(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  map[string]any
	}{
		{"nil", nil},
		{"empty", map[string]any{}},
		{"person", map[string]any{"id_no": "510104199001011234", "name": "张三", "income": "12345.50", "age": int64(34), "hh": uint64(18446744073709551615), "photo": []byte{0, 1, 254, 255}, "note": nil}},
		{"escapes", map[string]any{"s": "a\"b\\c\n\r\t\b\f\x00\x1f<>&\x7f\u2028\u2029 é 😀", "bad": "\xff\xfe ok \xc3"}},
		{"odd keys", map[string]any{"<k>": 1, "b\"": true, "": false, "é": -1}},
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
	})
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
}
