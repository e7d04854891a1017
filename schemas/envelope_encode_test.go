package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// personRow is a realistic national person row (45 columns, the converter's value
// types: strings for text, decimals and dates, int64 for INT, nil for NULL).
func personRow(i int64) map[string]any {
	return map[string]any{
		"person_no": "52262710010100001" + "01", "hh_no": "5226271001010000" + "1", "id_type": "居民身份证",
		"id_no": "522627198503120027", "name": "杨秀英", "sex": "女", "birth_date": "1985-03-12", "ethnic": "苗族",
		"relationship": "户主", "education": "初中", "school_status": nil, "not_in_school_reason": nil,
		"dropout_reason": nil, "health": "健康", "disability_type": nil, "disability_grade": nil,
		"disability_cert_no": nil, "labour_skill": "普通劳动力", "work_status": "省外务工",
		"work_place": "广东省东莞市", "work_months": int64(10), "work_monthly_income": "3850.00",
		"employment_channel": "劳务协作", "welfare_job": "否", "welfare_job_months": int64(0),
		"ins_resident_medical": "是", "ins_employee_medical": "否", "ins_serious_illness": "是",
		"ins_resident_pension": "是", "ins_employee_pension": "否", "medical_assistance": "否",
		"dibao": "否", "tekun": "否", "phone": "13985012345", "deceased": "否", "deregistered_date": nil,
		"updated_at": "2024-05-31 18:02:11", "county_name": "天柱县", "township_name": "凤城街道",
		"village_name": "联山村", "village_code": "522627100101", "category": "脱贫不稳定户",
		"annual_income": "41230.50", "per_capita_income": "10307.63", "row_version": i,
	}
}

func personEnvelope(i int64) *Envelope {
	return &Envelope{V: EnvelopeVersion, Op: OpUpdate,
		Source: Source{System: "national", Kind: "mysqlbinlog", DB: "gb", Table: "person",
			BinlogFile: "binlog.000042", BinlogPos: 123456789, GTID: "0-1-98765", CommitMs: 1717149731000, Seq: i},
		Key:    map[string]any{"person_no": "5226271001010000101"},
		Before: personRow(i - 1), After: personRow(i),
		Schema: SchemaRef{Name: "national.person", Version: 3}, TsMs: 1717149731123}
}

// checkSame asserts that Marshal and AppendJSON give exactly json.Marshal's bytes, or
// fail exactly when it fails.
func checkSame(t testing.TB, e *Envelope) {
	t.Helper()
	want, werr := json.Marshal(e)
	got, gerr := e.Marshal()
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("json.Marshal error %v, Marshal error %v", werr, gerr)
	}
	if werr != nil {
		if werr.Error() != gerr.Error() {
			t.Fatalf("error %q, json.Marshal says %q", gerr, werr)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal differs from json.Marshal:\n got %s\nwant %s", got, want)
	}
	app, err := e.AppendJSON([]byte("prefix"))
	if err != nil || string(app) != "prefix"+string(want) {
		t.Fatalf("AppendJSON = %s, %v; want prefix%s", app, err, want)
	}
	checkSameFields(t, e, want, werr)
}

// checkSameFields encodes e's row (before for a delete, after otherwise) given as
// Fields, sorted (nested maps too) and reversed, through MarshalEnvelopeFields: the
// bytes or error of json.Marshal(e) either way.
func checkSameFields(t testing.TB, e *Envelope, want []byte, werr error) {
	t.Helper()
	if e == nil {
		return
	}
	c := *e
	row := c.After
	if c.Op == OpDelete {
		row, c.Before = c.Before, nil
	} else {
		c.After = nil
	}
	sorted := toFields(row, 0)
	reversed := slices.Clone(sorted)
	slices.Reverse(reversed)
	for _, f := range []Fields{sorted, reversed} {
		got, gerr := MarshalEnvelopeFields(&c, f)
		switch {
		case (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error():
			t.Fatalf("MarshalEnvelopeFields error %v, json.Marshal error %v", gerr, werr)
		case werr == nil && !bytes.Equal(got, want):
			t.Fatalf("MarshalEnvelopeFields differs from json.Marshal:\n got %s\nwant %s", got, want)
		}
	}
}

// toFields turns a map into Fields sorted by name, nested maps too (down to a depth
// past the fast encoder's, so that deep and cyclic maps reach its fallback).
func toFields(m map[string]any, depth int) Fields {
	if m == nil {
		return nil
	}
	f := make(Fields, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if n, ok := v.(map[string]any); ok && n != nil && depth < 2*maxFastDepth {
			v = toFields(n, depth+1)
		}
		f = append(f, Field{Name: k, Value: v})
	}
	return f
}

type namedString string

type marshalerValue struct{ A int }

func (marshalerValue) MarshalJSON() ([]byte, error) { return []byte(`{ "x" : "<&>" }`), nil }

func TestEnvelopeMarshalMatchesEncodingJSON(t *testing.T) {
	str := "pointer"
	cycle := map[string]any{}
	cycle["self"] = cycle
	deep := map[string]any{"leaf": 1}
	for range 200 {
		deep = map[string]any{"d": deep}
	}
	values := []struct {
		name string
		v    any
	}{
		{"nil", nil},
		{"plain string", "杨秀英"},
		{"html", "<script>&amp;</script>"},
		{"controls", "a\x00b\x01\x1f\b\f\n\r\t\x7f\"\\/"},
		{"line separators", "x\u2028y\u2029z"},
		{"invalid utf8", "ok\xffno\xc3(\xed\xa0\x80end"},
		{"empty string", ""},
		{"int64 extremes", []any{int64(math.MinInt64), int64(math.MaxInt64), int64(0)}},
		{"uint64 max", uint64(math.MaxUint64)},
		{"small ints", []any{int(-1), int8(-8), int16(16), int32(-32), uint(1), uint8(8), uint16(16), uint32(32)}},
		{"floats", []any{0.0, math.Copysign(0, -1), 0.1, 1e-7, 1e-6, 123456789.125, 1e20, 1e21, 1e300, -4.9e-324, math.MaxFloat64}},
		{"float32", []any{float32(0.1), float32(1e-7), float32(3.4e38), float32(1e21), float32(-2.5)}},
		{"bools", []any{true, false}},
		{"numbers", []any{json.Number("9007199254740993"), json.Number("12345678901234567.89"), json.Number("-0.5e+10"), json.Number("")}},
		{"bytes", []byte("\x00\xff<binary>")},
		{"empty bytes", []byte{}},
		{"nil bytes", []byte(nil)},
		{"time", time.Date(2024, 5, 31, 18, 2, 11, 123456789, time.FixedZone("CST", 8*3600))},
		{"raw message", json.RawMessage(`{"b" : [1, 2], "a":"<x>"}`)},
		{"nil raw message", json.RawMessage(nil)},
		{"named string", namedString("<named>")},
		{"pointer", &str},
		{"marshaler", marshalerValue{1}},
		{"nested", map[string]any{"z": []any{map[string]any{"b": 1, "a": nil}}, "a": map[string]any(nil), "m": []any(nil)}},
		{"typed map", map[string]int{"b": 2, "a": 1}},
		{"typed slice", []string{"x", "<y>"}},
		{"deep", deep},
		{"cycle", cycle},
		{"NaN", math.NaN()},
		{"Inf float32", float32(math.Inf(1))},
		{"invalid number", json.Number("1.")},
		{"unsupported", make(chan int)},
	}
	for _, tc := range values {
		t.Run(tc.name, func(t *testing.T) {
			e := personEnvelope(7)
			e.After["value"] = tc.v
			e.After["<key & \u2028 \xff>"] = tc.v
			checkSame(t, e)
		})
	}
}

func TestEnvelopeMarshalOmitsAndOrdersFields(t *testing.T) {
	cases := []struct {
		name string
		e    *Envelope
	}{
		{"zero", &Envelope{}},
		{"truncate", &Envelope{V: 1, Op: OpTruncate, Source: Source{System: "s", Kind: "pglogical", Table: "t", LSN: "0/16B3748"}}},
		{"schema event", &Envelope{V: 1, Op: OpSchema, Source: Source{System: "s", Table: "t"}, DDL: "ALTER TABLE t ADD <c> INT"}},
		{"file", &Envelope{V: 1, Op: OpRead, Source: Source{System: "s", Kind: "filedrop", Table: "t", File: "a.xlsx", Line: 3, Snapshot: true},
			After: map[string]any{"a": "1"}}},
		{"poll", &Envelope{V: 1, Op: OpCreate, Source: Source{System: "s", Kind: "poll", Table: "t", Watermark: "2024-05-31"}, After: map[string]any{"a": 1}}},
		{"empty maps omitted", &Envelope{V: 1, Op: OpDelete, Key: map[string]any{}, Before: map[string]any{}, After: map[string]any{}}},
		{"person", personEnvelope(3)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkSame(t, tc.e) })
	}
	var nilEnv *Envelope
	checkSame(t, nilEnv)
}

// everyFieldEnvelope sets every field of Envelope, Source and SchemaRef by
// reflection, so that a field added later without teaching the encoder and the
// decoder fails their tests rather than silently disappearing from Kafka.
func everyFieldEnvelope(t *testing.T) Envelope {
	var e Envelope
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			switch f.Kind() {
			case reflect.String:
				f.SetString("x<" + v.Type().Field(i).Name)
			case reflect.Int, reflect.Int64, reflect.Int32:
				f.SetInt(int64(i + 1))
			case reflect.Uint32, reflect.Uint64:
				f.SetUint(uint64(i + 1))
			case reflect.Bool:
				f.SetBool(true)
			case reflect.Map:
				// json.Number: what the decoder gives back for a number.
				f.Set(reflect.ValueOf(map[string]any{v.Type().Field(i).Name: json.Number(strconv.Itoa(i))}))
			case reflect.Struct:
				fill(f)
			default:
				t.Fatalf("field %s of kind %s: teach the test, the encoder and the decoder", v.Type().Field(i).Name, f.Kind())
			}
		}
	}
	fill(reflect.ValueOf(&e).Elem())
	return e
}

// TestEnvelopeMarshalCoversEveryField encodes everyFieldEnvelope.
func TestEnvelopeMarshalCoversEveryField(t *testing.T) {
	e := everyFieldEnvelope(t)
	checkSame(t, &e)
}

// TestEnvelopeMarshalKeyOrderCache encodes rows whose key sets change between calls
// (same size, different names; subsets; supersets) so that a stale cached key order
// would show.
func TestEnvelopeMarshalKeyOrderCache(t *testing.T) {
	rows := []map[string]any{
		{"a": 1, "b": 2, "c": 3},
		{"a": 1, "b": 2, "d": 3},
		{"a": 1, "b": 2, "d": 3},
		{"a": 1, "b": 2},
		{"c": 1, "b": 2, "a": 3, "d": 4},
		{"x": nil},
		{"a": 1, "b": 2, "c": 3},
	}
	for _, r := range rows {
		checkSame(t, &Envelope{V: 1, Op: OpCreate, Key: r, Before: r, After: r})
	}
}

func TestMarshalRoundTripsThroughUnmarshal(t *testing.T) {
	e := personEnvelope(11)
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := back.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, again) {
		t.Fatalf("re-encoding a decoded envelope changed it:\n%s\n%s", b, again)
	}
}

// FuzzEnvelopeMarshal is the differential check: envelopes built from fuzz input
// (weird strings as keys and values, integers, float bit patterns, number literals,
// bytes) must encode to exactly json.Marshal's bytes, and fail exactly when it fails.
func FuzzEnvelopeMarshal(f *testing.F) {
	f.Add("national", "<a&b>", "杨秀英\u2028", int64(-1), uint64(1<<63), math.Float64bits(0.1), "12.50", []byte("\xff"), uint8(0))
	f.Add("", "\x00\x7f\"\\", "\xed\xa0\x80", int64(math.MaxInt64), uint64(0), math.Float64bits(1e21), "", []byte(nil), uint8(255))
	f.Add("k", "k", "v", int64(0), uint64(7), math.Float64bits(math.NaN()), "1e", []byte{}, uint8(3))
	f.Add("a", "b", "c", int64(1), uint64(2), math.Float64bits(1e-7), "-0.0e-0", []byte("x"), uint8(9))
	f.Fuzz(func(t *testing.T, s1, s2, s3 string, i int64, u uint64, fbits uint64, num string, raw []byte, shape uint8) {
		fl := math.Float64frombits(fbits)
		vals := []any{s1, s2, s3, i, u, fl, float32(fl), json.Number(num), raw, nil, shape&1 == 1,
			[]any{s3, i, fl}, map[string]any{s2: s1, s3: u}, int(i), uint32(u), Fields{{s2, s1}, {s3, fl}, {s1, Fields{{s1, i}}}}, Fields(nil)}
		row := map[string]any{}
		for j, v := range vals {
			if shape&2 != 0 && j%3 == 0 {
				continue
			}
			row[[]string{s1, s2, s3}[j%3]+strings.Repeat("_", j)] = v
		}
		e := &Envelope{V: int(i % 3), Op: Op(s3), Source: Source{System: s1, Kind: s2, DB: s3, Table: s1 + s2,
			GTID: s3, LSN: s2, Watermark: s1, Line: i, BinlogPos: uint32(u), CommitMs: i, Seq: int64(shape), Snapshot: shape&4 != 0},
			After: row, Schema: SchemaRef{Name: s2, Version: int(shape)}, DDL: s1, TsMs: -i}
		if shape&8 != 0 {
			e.Key = map[string]any{s1: vals[int(shape)%len(vals)]}
		}
		if shape&16 != 0 {
			e.Before = row
		}
		checkSame(t, e)
	})
}

// BenchmarkEnvelopeMarshal compares the envelope encoder with encoding/json on an
// update of a 45-column person row (before and after images), the streaming hot path.
func BenchmarkEnvelopeMarshal(b *testing.B) {
	e := personEnvelope(5)
	ref, _ := json.Marshal(e)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(ref)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(ref)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestEnvelopeMarshalKeySets encodes rows of many different key sets of one size in
// turn (more than the encoder remembers, and sets that differ in one key), each equal
// to json.Marshal's bytes.
func TestEnvelopeMarshalKeySets(t *testing.T) {
	for round := range 3 {
		for n := range 12 {
			row := map[string]any{"id": n, "z": "x"}
			for j := range 5 {
				row[fmt.Sprintf("c%d_%d", (n+j)%7, j)] = j
			}
			e := &Envelope{V: 1, Op: OpCreate, Source: Source{System: "s", Table: "t"}, After: row, Key: map[string]any{"id": n}}
			if round == 2 {
				e.Before = map[string]any{}
			}
			checkSame(t, e)
		}
	}
}
