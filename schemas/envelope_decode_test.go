package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The oracle: the encoding/json implementation UnmarshalEnvelope had before the
// reflection-free decoder, kept here only. json.Decoder.Decode ignores bytes after the
// value; the new decoder refuses trailing non-whitespace (as json.Unmarshal does), so
// the oracle adds exactly that check and nothing else.

// oracleDecode decodes b into v with json.Decoder and UseNumber, refusing trailing
// non-whitespace.
func oracleDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if rest := b[dec.InputOffset():]; len(bytes.TrimLeft(rest, " \t\r\n")) != 0 {
		return errors.New("oracle: data after the top-level value")
	}
	return nil
}

// oracleUnmarshalEnvelope is the previous UnmarshalEnvelope (plus the trailing check).
func oracleUnmarshalEnvelope(b []byte) (*Envelope, error) {
	var e Envelope
	if err := oracleDecode(b, &e); err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// checkDecode runs every decoder of this file on b and its oracle, and fails unless
// both accept or both refuse, with reflect.DeepEqual results when they accept. Each
// decoder gets a fresh copy of b, checked to be unchanged and then scribbled over
// before the results are compared, so a result aliasing the input would show. It
// returns whether the envelope decoding (before Validate) accepted b.
func checkDecode(t testing.TB, b []byte) bool {
	t.Helper()
	in := make([]byte, len(b))
	run := func(decode func([]byte)) {
		copy(in, b)
		decode(in)
		if !bytes.Equal(in, b) {
			t.Fatalf("decoder modified its input %q", b)
		}
		for i := range in {
			in[i] = 'X'
		}
	}

	var want, got Envelope
	var gerr error
	werr := oracleDecode(b, &want)
	run(func(in []byte) { gerr = decodeEnvelope(in, &got) })
	checkErr(t, "decodeEnvelope", b, werr, gerr)
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeEnvelope(%q)\n got %#v\nwant %#v", b, got, want)
	}
	accepted := werr == nil

	var genv *Envelope
	var uerr error
	wenv, werr := oracleUnmarshalEnvelope(b)
	run(func(in []byte) { genv, uerr = UnmarshalEnvelope(in) })
	if (werr == nil) != (uerr == nil) {
		t.Fatalf("UnmarshalEnvelope(%q): error %v, encoding/json says %v", b, uerr, werr)
	}
	switch {
	case uerr != nil && genv != nil:
		t.Fatalf("UnmarshalEnvelope returned an envelope with error %v", uerr)
	case uerr != nil && gerr != nil && !strings.HasPrefix(uerr.Error(), "envelope: decode: "):
		t.Fatalf("decode error %q lacks the envelope: decode: prefix", uerr)
	case uerr == nil && !reflect.DeepEqual(genv, wenv):
		t.Fatalf("UnmarshalEnvelope(%q)\n got %#v\nwant %#v", b, genv, wenv)
	}

	checkDecodeCells(t, b, genv, uerr)

	var wv, gv any
	werr = oracleDecode(b, &wv)
	run(func(in []byte) { gv, gerr = DecodeValue(in) })
	checkErr(t, "DecodeValue", b, werr, gerr)
	if werr == nil && !reflect.DeepEqual(gv, wv) {
		t.Fatalf("DecodeValue(%q)\n got %#v\nwant %#v", b, gv, wv)
	}

	// DecodeObject is DecodeValue restricted to objects (null refused).
	var gm map[string]any
	wm, isObject := wv.(map[string]any)
	if werr == nil && !isObject {
		werr = errors.New("oracle: not an object")
	}
	run(func(in []byte) { gm, gerr = DecodeObject(in) })
	checkErr(t, "DecodeObject", b, werr, gerr)
	if werr == nil && !reflect.DeepEqual(gm, wm) {
		t.Fatalf("DecodeObject(%q)\n got %#v\nwant %#v", b, gm, wm)
	}
	if gerr == nil && gm == nil {
		t.Fatalf("DecodeObject(%q) = nil, nil", b)
	}
	return accepted
}

// checkErr compares accept/refuse and checks the shape of the new decoder's error.
func checkErr(t testing.TB, name string, b []byte, werr, gerr error) {
	t.Helper()
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%s(%q): error %v, encoding/json says %v", name, b, gerr, werr)
	}
	if gerr == nil {
		return
	}
	var de *DecodeError
	if !errors.As(gerr, &de) {
		t.Fatalf("%s(%q): error %v (%T) is not a *DecodeError", name, b, gerr, gerr)
	}
	if de.Offset < 0 || de.Offset > len(b) || de.Msg == "" {
		t.Fatalf("%s(%q): error %+v has a bad offset or no message", name, b, de)
	}
	if !strings.Contains(gerr.Error(), " at offset ") {
		t.Fatalf("%s: error %q does not give the offset", name, gerr)
	}
}

const testSrc = `"source":{"system":"s","kind":"mysqlbinlog","table":"t"}`

// env builds an envelope document around the given members.
func env(members string) string {
	return `{"v":1,"op":"c",` + testSrc + `,"after":{"a":1}` + members + `}`
}

// decodeEdgeCases are the hand-written inputs of the table test and fuzz seeds: name,
// input, and whether encoding/json (with the trailing-data rule) decodes it into an
// Envelope.
var decodeEdgeCases = []struct {
	name   string
	in     string
	accept bool
}{
	// Field names: case-insensitive, exact preferred, Unicode folding, escapes.
	{"upper-case names", `{"V":1,"OP":"c","SOURCE":{"SYSTEM":"s","Table":"t","Binlog_Pos":7},"AFTER":{"a":1},"Schema":{"NAME":"n","VERSION":2},"TS_MS":5}`, true},
	{"exact then folded, last wins", `{"op":"c","OP":"u","v":1,` + testSrc + `,"after":{"a":1}}`, true},
	{"folded then exact, last wins", `{"Op":"u","op":"c","v":1,` + testSrc + `,"after":{"a":1}}`, true},
	{"long s folds to s", `{"v":1,"op":"c","ſource":{"ſyſtem":"x","table":"t"},"after":{"a":1},"ts_mſ":3}`, true},
	{"long s as escape", `{"v":1,"op":"c","\u017fource":{"system":"x","table":"t"},"after":{"a":1}}`, true},
	{"kelvin sign folds to k", `{"v":1,"op":"d",` + testSrc + `,"\u212aey":{"id":1}}`, true},
	{"escaped field name", `{"\u0076":1,"o\u0070":"c",` + testSrc + `,"\u0061fter":{"a":1}}`, true},
	{"near miss is unknown", `{"v":1,"op":"c",` + testSrc + `,"aftér":{"a":1},"after ":{"b":1},"after":{"c":1}}`, true},
	{"unknown fields skipped", env(`,"x":{"y":[1,{"z":null}],"w":"\ud800"},"":true,"ttl":-1.5e3`), true},
	{"unknown field with bad syntax", env(`,"x":[1,}`), false},
	{"unknown field bad string", env(`,"x":"\q"`), false},
	{"unknown field bad number", env(`,"x":01`), false},

	// Duplicate keys and null.
	{"maps merge", `{"v":1,"op":"c",` + testSrc + `,"after":{"a":1,"b":2},"after":{"b":3,"c":4}}`, true},
	{"map duplicate key last wins", env(`,"key":{"k":1,"k":"two","K":3}`), true},
	{"null clears a map", `{"v":1,"op":"d",` + testSrc + `,"key":{"id":1},"before":{"a":1},"before":null}`, true},
	{"null then map", env(`,"before":null,"before":{"b":1}`), true},
	{"structs merge", `{"v":1,"op":"c","source":{"system":"s","binlog_pos":4},"source":{"table":"t"},"SOURCE":{"gtid":"g"},"after":{"a":1}}`, true},
	{"null leaves fields", `{"v":1,"op":"c",` + testSrc + `,"v":null,"op":null,"source":null,"schema":null,"ddl":null,"ts_ms":null,"after":{"a":1}}`, true},
	{"null in source fields", `{"v":1,"op":"c","source":{"system":"s","table":"t","binlog_pos":1,"binlog_pos":null,"snapshot":true,"snapshot":null,"line":null,"seq":null,"commit_ms":null,"kind":null,"db":null}}`, true},
	{"empty maps are not nil", `{"v":1,"op":"t",` + testSrc + `,"key":{},"before":{},"after":{}}`, true},
	{"nested empty containers", env(`,"before":{"a":[],"b":{},"c":[[]],"d":[{}]}`), true},

	// Strings.
	{"invalid utf8 replaced", env(",\"before\":{\"a\":\"ok\xffno\xc3(\",\"\xfe\":\"x\",\"b\":\"\xed\xa0\x80\",\"c\":\"\xe6\x9d\"}"), true},
	{"invalid utf8 with escapes", env(`,"before":{"a":"\n` + "\xff" + `\t` + "\xe6\x9d\xa8\xe6" + `"}`), true},
	{"surrogate pair", env(`,"before":{"a":"\ud83d\ude00","b":"\uD83D\uDE00x"}`), true},
	{"lone surrogates", env(`,"before":{"a":"\ud83d","b":"\ud83dx","c":"\ude00","d":"\ud83d\ud83d\ude00","e":"\ud83d\u0041","f":"\udbff\udfff\udc00\ud800"}`), true},
	{"high surrogate then short escape", env(`,"before":{"a":"\ud83d\u12"}`), false},
	{"escapes", env(`,"before":{"a":"\"\\\/\b\f\n\r\t\u0000\u00e9\u4e2d","b":"\u2028<&>"}`), true},
	{"DEL and high bytes are not controls", env(`,"before":{"a":"` + "\x7f\x80" + `\u007f"}`), true},
	{"raw control char", env(`,"before":{"a":"x` + "\x01" + `"}`), false},
	{"raw newline in string", env(`,"before":{"a":"x` + "\n" + `"}`), false},
	{"raw NUL in key", env(`,"before":{"` + "\x00" + `":1}`), false},
	{"bad escape", env(`,"before":{"a":"\x"}`), false},
	{"single-quote escape", env(`,"before":{"a":"\'"}`), false},
	{"short unicode escape", env(`,"before":{"a":"\u12"}`), false},
	{"bad hex in escape", env(`,"before":{"a":"\u12G4"}`), false},
	{"unterminated string", `{"v":1,"op":"c","ddl":"abc`, false},
	{"unterminated escape", `{"v":1,"op":"c","ddl":"abc\`, false},
	{"unterminated unicode escape", `{"v":1,"op":"c","ddl":"\u00`, false},
	{"string ddl with escapes", `{"v":1,"op":"s",` + testSrc + `,"ddl":"ALTER TABLE \"t\" ADD c INT -- \u4e2d` + "\xff" + `"}`, true},

	// Numbers into integer fields.
	{"int with fraction", env(`,"v":1.0`), false},
	{"int with exponent", env(`,"v":1e0`), false},
	{"int exponent integral", env(`,"ts_ms":1E2`), false},
	{"negative zero int", env(`,"ts_ms":-0`), true},
	{"int64 max", env(`,"ts_ms":9223372036854775807`), true},
	{"int64 overflow", env(`,"ts_ms":9223372036854775808`), false},
	{"int64 min", env(`,"ts_ms":-9223372036854775808`), true},
	{"int64 underflow", env(`,"ts_ms":-9223372036854775809`), false},
	{"int huge", env(`,"source":{"line":123456789012345678901234567890}`), false},
	{"uint32 max", env(`,"source":{"binlog_pos":4294967295}`), true},
	{"uint32 overflow", env(`,"source":{"binlog_pos":4294967296}`), false},
	{"uint32 negative zero", env(`,"source":{"binlog_pos":-0}`), false},
	{"uint32 negative", env(`,"source":{"binlog_pos":-1}`), false},
	{"uint32 fraction", env(`,"source":{"binlog_pos":1.5}`), false},
	{"schema version", env(`,"schema":{"name":"n","version":-3}`), true},
	{"schema version fraction", env(`,"schema":{"version":3.5}`), false},
	{"version as string", env(`,"v":"1"`), false},

	// Numbers as values (json.Number keeps the literal).
	{"number literals", env(`,"before":{"a":0,"b":-0,"c":0.5,"d":1e5,"e":1E+5,"f":-1.5e-300,"g":1e999999,"h":123456789012345678901234567890,"i":-0.0E-0}`), true},
	{"leading zero", env(`,"before":{"a":01}`), false},
	{"negative leading zero", env(`,"before":{"a":-01}`), false},
	{"trailing dot", env(`,"before":{"a":1.}`), false},
	{"leading dot", env(`,"before":{"a":.5}`), false},
	{"plus sign", env(`,"before":{"a":+1}`), false},
	{"lone minus", env(`,"before":{"a":-}`), false},
	{"empty exponent", env(`,"before":{"a":1e}`), false},
	{"signed empty exponent", env(`,"before":{"a":1e+}`), false},
	{"hex", env(`,"before":{"a":0x1}`), false},
	{"NaN", env(`,"before":{"a":NaN}`), false},
	{"Infinity", env(`,"before":{"a":-Infinity}`), false},
	{"number then letter", env(`,"before":{"a":1x}`), false},

	// Literals.
	{"bools and null", env(`,"before":{"a":true,"b":false,"c":null},"source":{"system":"s","table":"t","snapshot":true}`), true},
	{"short literal", env(`,"before":{"a":tru}`), false},
	{"long literal", env(`,"before":{"a":truex}`), false},
	{"capitalised literal", env(`,"before":{"a":True}`), false},
	{"upper-case null", env(`,"before":NULL`), false},
	{"literal cut off", `{"v":nul`, false},

	// Type mismatches.
	{"source array", env(`,"source":[]`), false},
	{"source string", env(`,"source":"s"`), false},
	{"after array", `{"v":1,"op":"c",` + testSrc + `,"after":[1]}`, false},
	{"after string", `{"v":1,"op":"c",` + testSrc + `,"after":"x"}`, false},
	{"key number", env(`,"key":1`), false},
	{"key bool", env(`,"key":true`), false},
	{"snapshot string", env(`,"source":{"snapshot":"true"}`), false},
	{"snapshot number", env(`,"source":{"snapshot":1}`), false},
	{"ddl number", env(`,"ddl":1`), false},
	{"op number", env(`,"op":1`), false},
	{"op object", env(`,"op":{}`), false},
	{"schema array", env(`,"schema":[]`), false},
	{"system object", env(`,"source":{"system":{}}`), false},
	{"ts_ms bool", env(`,"ts_ms":false`), false},

	// Syntax.
	{"missing colon", `{"v" 1}`, false},
	{"missing comma", `{"v":1 "op":"c"}`, false},
	{"trailing comma object", env(`,`), false},
	{"trailing comma array", env(`,"before":{"a":[1,]}`), false},
	{"array missing comma", env(`,"before":{"a":[1 2]}`), false},
	{"array leading comma", env(`,"before":{"a":[,1]}`), false},
	{"number key", `{1:2}`, false},
	{"single quotes", `{'v':1}`, false},
	{"unclosed object", `{"v":1`, false},
	{"unclosed array", env(`,"before":{"a":[1`), false},
	{"unclosed nested", `{"v":1,"after":{"a":{`, false},
	{"colon only", `{"v":}`, false},
	{"byte order mark", "\xef\xbb\xbf" + env(""), false},

	// Whitespace and the top level.
	{"all whitespace kinds", " \t\r\n{ \t\r\n\"v\" \t\r\n: \t\r\n1 ,\"op\":\"c\"," + testSrc + ",\"after\":{ \"a\" : [ 1 , 2 ] } } \t\r\n", true},
	{"form feed is not whitespace", "\f" + env(""), false},
	{"vertical tab is not whitespace", env("") + "\v", false},
	{"no-break space is not whitespace", env("") + "\u00a0", false},
	{"trailing garbage", env("") + "x", false},
	{"second object", env("") + env(""), false},
	{"trailing NUL", env("") + "\x00", false},
	{"trailing newline", env("") + "\n", true},
	{"empty input", ``, false},
	{"only whitespace", " \n\t", false},
	{"top-level null", `null`, true},
	{"top-level null trailing", `null x`, false},
	{"top-level array", `[]`, false},
	{"top-level number", `1`, false},
	{"top-level string", `"x"`, false},
	{"top-level bool", `true`, false},
	{"empty object", `{}`, true},
}

// nested returns an envelope whose after.a value is n nested arrays (n+2 levels in
// all, with the envelope and after).
func nested(n int, open, close string) string {
	return `{"v":1,"op":"c",` + testSrc + `,"after":{"a":` + strings.Repeat(open, n) + strings.Repeat(close, n) + `}}`
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, tc := range decodeEdgeCases {
		t.Run(tc.name, func(t *testing.T) {
			var e Envelope
			if err := oracleDecode([]byte(tc.in), &e); (err == nil) != tc.accept {
				t.Fatalf("the table is wrong: encoding/json error %v, table says accept=%v", err, tc.accept)
			}
			if got := checkDecode(t, []byte(tc.in)); got != tc.accept {
				t.Fatalf("accepted %v, want %v", got, tc.accept)
			}
		})
	}
}

func TestDecodeNestingLimit(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		accept bool
	}{
		// The envelope and after are two levels: 9998 arrays reach encoding/json's
		// limit of 10000, one more exceeds it.
		{"arrays at the limit", nested(9998, "[", "]"), true},
		{"arrays over the limit", nested(9999, "[", "]"), false},
		{"objects at the limit", `{"v":1,"after":` + strings.Repeat(`{"a":`, 9999) + `1` + strings.Repeat(`}`, 9999) + `}`, true},
		{"objects over the limit", `{"v":1,"after":` + strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000) + `}`, false},
		{"unknown field at the limit", `{"x":` + strings.Repeat(`[`, 9999) + strings.Repeat(`]`, 9999) + `}`, true},
		{"unknown field over the limit", `{"x":` + strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000) + `}`, false},
		{"unknown object over the limit", `{"x":` + strings.Repeat(`{"":`, 10000) + `0` + strings.Repeat(`}`, 10000) + `}`, false},
		{"source over the limit", `{"source":{"x":` + strings.Repeat(`[`, 9999) + strings.Repeat(`]`, 9999) + `}}`, false},
		{"source at the limit", `{"source":{"x":` + strings.Repeat(`[`, 9998) + strings.Repeat(`]`, 9998) + `}}`, true},
		{"unclosed deep", `{"after":{"a":` + strings.Repeat(`[`, 20000), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkDecode(t, []byte(tc.in)); got != tc.accept {
				t.Fatalf("accepted %v, want %v", got, tc.accept)
			}
		})
	}
	// A bare value: 10000 levels decode, 10001 do not.
	for n, accept := range map[int]bool{10000: true, 10001: false} {
		in := strings.Repeat("[", n) + strings.Repeat("]", n)
		if _, err := DecodeValue([]byte(in)); (err == nil) != accept {
			t.Errorf("DecodeValue of %d nested arrays: error %v, want accept=%v", n, err, accept)
		}
		checkDecode(t, []byte(in))
	}
}

// TestDecodeValues pins a few decoded values, so that the table above is not only a
// comparison with encoding/json.
func TestDecodeValues(t *testing.T) {
	e, err := UnmarshalEnvelope([]byte(`{"V":1,"OP":"u","ſource":{"SYSTEM":"s","table":"t","binlog_pos":7},"source":{"gtid":"g"},
		"after":{"a":"\ud83d\ude00\ud83d` + "\xff" + `","n":-0.0E-0},"after":{"b":[],"a":null},"\u212aey":{}}  `))
	if err != nil {
		t.Fatal(err)
	}
	want := Envelope{V: 1, Op: OpUpdate, Source: Source{System: "s", Table: "t", BinlogPos: 7, GTID: "g"},
		After: map[string]any{"a": nil, "n": json.Number("-0.0E-0"), "b": []any{}}, Key: map[string]any{}}
	if !reflect.DeepEqual(*e, want) {
		t.Fatalf("got  %#v\nwant %#v", *e, want)
	}
	v, err := DecodeValue([]byte(`"\ud83d\ude00\ud83d` + "\xff" + `\ude00"`))
	if err != nil || v != "😀\uFFFD\uFFFD\uFFFD" {
		t.Fatalf("DecodeValue = %q, %v", v, err)
	}
	if v, err := DecodeValue([]byte(" null ")); v != nil || err != nil {
		t.Fatalf("DecodeValue(null) = %v, %v; want nil, nil", v, err)
	}
	if m, err := DecodeObject([]byte("null")); err == nil {
		t.Fatalf("DecodeObject(null) = %v, want an error", m)
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		in, want string
		offset   int
	}{
		{`{"v":1,"op":"c","source":{"binlog_pos":4294967296}}`, `envelope: decode: field source.binlog_pos: number 4294967296 is not a uint32 at offset 39`, 39},
		{`{"v":1.5}`, `envelope: decode: field v: number 1.5 is not an int at offset 5`, 5},
		{`{"after":[1]}`, `envelope: decode: field after: found an array, want an object at offset 9`, 9},
		{`{"after":{"a":"x` + "\x01" + `"}}`, `envelope: decode: field after: invalid character '\x01' in string literal at offset 16`, 16},
		{`{"v":1} x`, `envelope: decode: invalid character 'x' after top-level value at offset 8`, 8},
		{`{"v":1`, `envelope: decode: unexpected end of input at offset 6`, 6},
		{`{"source":{"table":5}}`, `envelope: decode: field source.table: found a number, want a string at offset 19`, 19},
		{`{"after":{"a":[1 2]}}`, `envelope: decode: field after: invalid character '2' after array element at offset 17`, 17},
		{nested(9999, "[", "]"), `envelope: decode: field after: nesting deeper than 10000 arrays and objects at offset`, 9998 + len(`{"v":1,"op":"c",`+testSrc+`,"after":{"a":`)},
	}
	for _, tc := range cases {
		_, err := UnmarshalEnvelope([]byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("UnmarshalEnvelope(%.60q) error %v, want %q", tc.in, err, tc.want)
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) || de.Offset != tc.offset {
			t.Errorf("UnmarshalEnvelope(%.60q): offset of %v, want %d", tc.in, err, tc.offset)
		}
	}
	// Error messages never quote string values (rows carry ID numbers and phones).
	_, err := UnmarshalEnvelope([]byte(`{"v":"513423198503120027"}`))
	if err == nil || strings.Contains(err.Error(), "5134") {
		t.Errorf("error %v quotes the value", err)
	}
}

// TestDecodeCoversEveryField decodes everyFieldEnvelope, so a field added later
// without teaching the decoder fails here.
func TestDecodeCoversEveryField(t *testing.T) {
	e := everyFieldEnvelope(t)
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var got Envelope
	if err := decodeEnvelope(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, e) {
		t.Fatalf("decoded\n %#v\nwant\n %#v", got, e)
	}
	checkDecode(t, b)
}

// encodedSeeds are envelopes written by the encoder: what consumers really read.
func encodedSeeds(t testing.TB) [][]byte {
	envs := []*Envelope{personEnvelope(5), {},
		{V: 1, Op: OpTruncate, Source: Source{System: "s", Kind: "pglogical", Table: "t", LSN: "0/16B3748"}},
		{V: 1, Op: OpSchema, Source: Source{System: "s", Table: "t"}, DDL: "ALTER TABLE t ADD <c> INT"},
		{V: 1, Op: OpRead, Source: Source{System: "s", Kind: "filedrop", Table: "t", File: "a.xlsx", Line: 3, Snapshot: true},
			After: map[string]any{"a": "1", "n": nil, "f": 0.1, "big": uint64(math.MaxUint64), "neg": int64(math.MinInt64),
				"nested": map[string]any{"x": []any{1, "y", true, nil, map[string]any{}}}, "bytes": []byte("\x00\xff"),
				"str": "\u2028<&>\xff\"\\\x01杨"}},
		{V: 1, Op: OpDelete, Source: Source{System: "s", Kind: "poll", Table: "t", Watermark: "2024-05-31"},
			Key: map[string]any{"id": json.Number("9007199254740993")}},
	}
	var out [][]byte
	for _, e := range envs {
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func goldenSeeds(t testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestDecodeSeedsMatchEncodingJSON(t *testing.T) {
	for _, b := range append(encodedSeeds(t), goldenSeeds(t)...) {
		checkDecode(t, b)
	}
	// Every encoded envelope and the envelope golden are accepted.
	for _, b := range append(encodedSeeds(t)[2:], mustRead(t, goldenPath("envelope", 1))) {
		if _, err := UnmarshalEnvelope(b); err != nil {
			t.Errorf("UnmarshalEnvelope(%s): %v", b, err)
		}
	}
}

// TestDecodeInternedNamesAreStable decodes envelopes of different tables in turn and
// past the interning table's size, so a stale or shared string would show.
func TestDecodeInternedNamesAreStable(t *testing.T) {
	var kept []*Envelope
	for i := range maxInterned + 100 {
		name := strings.Repeat("c", i%70) + string(rune('a'+i%26))
		b := []byte(`{"v":1,"op":"c","source":{"system":"` + name + `","table":"t"},"after":{"` + name + `":1}}`)
		e, err := UnmarshalEnvelope(b)
		if err != nil {
			t.Fatal(err)
		}
		for j := range b {
			b[j] = 'X'
		}
		if e.Source.System != name || e.After[name] != json.Number("1") {
			t.Fatalf("envelope %d: system %q, after %v; want %q", i, e.Source.System, e.After, name)
		}
		if i%500 == 0 {
			kept = append(kept, e)
		}
	}
	for i, e := range kept {
		name := strings.Repeat("c", (i*500)%70) + string(rune('a'+(i*500)%26))
		if e.Source.System != name {
			t.Fatalf("kept envelope %d changed: system %q, want %q", i, e.Source.System, name)
		}
	}
}

// FuzzDecodeEnvelope is the differential check of the envelope decoder: for any input,
// UnmarshalEnvelope and decodeEnvelope accept exactly when encoding/json (UseNumber,
// trailing data refused) accepts, with reflect.DeepEqual results; DecodeValue and
// DecodeObject likewise against decoding into an any.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, b := range encodedSeeds(f) {
		f.Add(b)
	}
	for _, b := range goldenSeeds(f) {
		f.Add(b)
	}
	for _, tc := range decodeEdgeCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

// FuzzDecodeValue does the same starting from bare values, where the fuzzer reaches
// the value grammar (escapes, numbers, nesting) without an envelope around it.
func FuzzDecodeValue(f *testing.F) {
	for _, s := range []string{"\"\\ud83d\\ude00\\ud83dx\xff\"", `-0.5e+10`, `[1,{"a":[true,false,null]},"x"]`,
		`{"a":{"b":{}},"a":[]}`, ` 0 `, `1e999`, `"\u0000\/\b\f\n\r\t"`, `[[[[[]]]]]`, `{"ſ":1,"s":2}`, `tru`, `01`} {
		f.Add([]byte(s))
	}
	for _, b := range goldenSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

// checkDecodeCells checks UnmarshalEnvelopeCells against UnmarshalEnvelope's result
// for b (full, ferr): the same errors, the same envelope without its maps, and for
// the indexed columns (names of even length in any of the maps, and a few fixed
// ones) cells that hold what the maps hold.
func checkDecodeCells(t testing.TB, b []byte, full *Envelope, ferr error) {
	t.Helper()
	rows := &Rows{Index: map[string]int{}}
	add := func(k string) {
		if _, ok := rows.Index[k]; !ok {
			rows.Index[k] = len(rows.Index)
		}
	}
	for _, k := range []string{"", "id", "name", "pk", "ſs", "sfz_hm"} {
		add(k)
	}
	if full != nil {
		for _, m := range []map[string]any{full.Key, full.Before, full.After} {
			for k := range m {
				if len(k)%2 == 0 {
					add(k)
				}
			}
		}
	}
	// Stale cells from an earlier decode must not survive the reset.
	rows.Reset()
	for i := range rows.After {
		rows.After[i] = Cell{Kind: CellString, S: "stale"}
	}
	got, err := UnmarshalEnvelopeCells(b, rows)
	if (err == nil) != (ferr == nil) || err != nil && err.Error() != ferr.Error() {
		t.Fatalf("UnmarshalEnvelopeCells(%q): error %v, UnmarshalEnvelope says %v", b, err, ferr)
	}
	if err != nil {
		if got != nil {
			t.Fatalf("UnmarshalEnvelopeCells returned an envelope with error %v", err)
		}
		return
	}
	want := *full
	want.Key, want.Before, want.After = nil, nil, nil
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("UnmarshalEnvelopeCells(%q)\n got %#v\nwant %#v", b, got, &want)
	}
	for _, role := range []struct {
		name  string
		m     map[string]any
		cells []Cell
	}{{"key", full.Key, rows.Key}, {"before", full.Before, rows.Before}, {"after", full.After, rows.After}} {
		for col, i := range rows.Index {
			v, ok := role.m[col]
			c := role.cells[i]
			var w Cell
			switch x := v.(type) {
			case nil:
				if ok {
					w = Cell{Kind: CellNull}
				}
			case string:
				w = Cell{Kind: CellString, S: x}
			case json.Number:
				w = Cell{Kind: CellNumber, S: string(x)}
			case bool:
				w = Cell{Kind: CellBool, S: strconv.FormatBool(x)}
			default:
				w = Cell{Kind: CellOther, V: x}
			}
			if !reflect.DeepEqual(c, w) {
				t.Fatalf("UnmarshalEnvelopeCells(%q): %s[%q] = %#v, the map holds %#v (present %v)", b, role.name, col, c, v, ok)
			}
		}
	}
}
