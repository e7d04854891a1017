package schemas

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

func TestMarshalMapMatchesEncodingJSON(t *testing.T) {
	for _, m := range []map[string]any{
		nil,
		{},
		{"id": int64(42)},
		{"b": "x<y>&z", "a": json.Number("12.50"), "c": nil, "d": []byte("bytes")},
		{"k": "\xff\u2028身份证", "n": uint64(math.MaxUint64), "f": 1e-9, "g": float32(3.5)},
		{"nested": map[string]any{"z": 1, "y": []any{true, "s"}}},
	} {
		got, err := MarshalMap(m)
		want, werr := json.Marshal(m)
		if err != nil || werr != nil {
			t.Fatalf("MarshalMap(%v) err %v, json.Marshal err %v", m, err, werr)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("MarshalMap = %s, json.Marshal = %s", got, want)
		}
	}
	if _, err := MarshalMap(map[string]any{"x": math.NaN()}); err == nil {
		t.Error("NaN encoded without error")
	}
}

func FuzzMarshalMap(f *testing.F) {
	f.Add("id", "value", int64(7), 1.5)
	f.Fuzz(func(t *testing.T, k, s string, n int64, x float64) {
		m := map[string]any{k: s, k + "n": n, k + "x": x, "nested": map[string]any{s: k}}
		got, err := MarshalMap(m)
		want, werr := json.Marshal(m)
		if (err == nil) != (werr == nil) {
			t.Fatalf("errors differ: %v vs %v", err, werr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("MarshalMap = %s, json.Marshal = %s", got, want)
		}
	})
}
