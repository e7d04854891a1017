package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// entityChecks runs checkEntity for one entity type, in Entities() order.
var entityChecks = []struct {
	name  string
	check func(testing.TB, []byte)
}{
	{"household", checkEntity[Household]},
	{"person", checkEntity[Person]},
	{"monitoring_episode", checkEntity[MonitoringEpisode]},
	{"assistance_measure", checkEntity[AssistanceMeasure]},
	{"department_fact", checkEntity[DepartmentFact]},
	{"warning", checkEntity[Warning]},
	{"quality_issue", checkEntity[QualityIssue]},
	{"discrepancy", checkEntity[Discrepancy]},
}

func TestEntityChecksCoverEntities(t *testing.T) {
	ents := Entities()
	if len(ents) != len(entityChecks) {
		t.Fatalf("%d entities, %d entity decoders checked: teach CanonicalEntity, entityCodecOf and entityChecks", len(ents), len(entityChecks))
	}
	for i, e := range ents {
		if entityChecks[i].name != e.Name {
			t.Errorf("entityChecks[%d] is %s, Entities()[%d] is %s", i, entityChecks[i].name, i, e.Name)
		}
	}
}

// decodeFresh runs decode on a private copy of b and checks that it leaves the copy
// unchanged; the copy is scribbled over afterwards so a result aliasing the input
// would show.
func decodeFresh(t testing.TB, b []byte, decode func([]byte)) {
	t.Helper()
	in := append([]byte(nil), b...)
	decode(in)
	if string(in) != string(b) {
		t.Fatalf("decoder modified its input %q", b)
	}
	for i := range in {
		in[i] = 'X'
	}
}

// prefilled returns two independent values of T decoded by encoding/json from T's
// golden, so that decoding into a value that already holds slices, maps and *bools
// is compared too.
func prefilled[T CanonicalEntity](t testing.TB) (*T, *T) {
	t.Helper()
	golden, err := os.ReadFile(goldenPath(entityName[T](), 1))
	if err != nil {
		t.Fatal(err)
	}
	var a, b T
	if err := json.Unmarshal(golden, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(golden, &b); err != nil {
		t.Fatal(err)
	}
	return &a, &b
}

func entityName[T CanonicalEntity]() string {
	for _, e := range Entities() {
		if reflect.TypeOf(e.New()) == reflect.TypeFor[*T]() {
			return e.Name
		}
	}
	panic("no entity for " + reflect.TypeFor[T]().String())
}

// checkEntity is the differential check of the typed decoders for T: for input b,
// decodeEntityEnvelope, UnmarshalEntityEnvelope and DecodeEntity (into a zero and
// into a prefilled T) accept exactly when encoding/json does (UseNumber, trailing
// data refused), with reflect.DeepEqual results.
func checkEntity[T CanonicalEntity](t testing.TB, b []byte) {
	t.Helper()
	var want, got EntityEnvelope[T]
	var gerr error
	werr := oracleDecode(b, &want)
	decodeFresh(t, b, func(in []byte) { gerr = decodeEntityEnvelope(in, &got) })
	checkErr(t, "decodeEntityEnvelope", b, werr, gerr)
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeEntityEnvelope[%T](%q)\n got %#v\nwant %#v", got.After, b, got, want)
	}

	var genv *EntityEnvelope[T]
	var wenv *EntityEnvelope[T]
	werr = oracleDecode(b, &want)
	if werr == nil {
		if werr = want.Validate(); werr == nil {
			wenv = &want
		}
	}
	decodeFresh(t, b, func(in []byte) { genv, gerr = UnmarshalEntityEnvelope[T](in) })
	switch {
	case (werr == nil) != (gerr == nil):
		t.Fatalf("UnmarshalEntityEnvelope[%T](%q): error %v, encoding/json says %v", got.After, b, gerr, werr)
	case gerr != nil && genv != nil:
		t.Fatalf("UnmarshalEntityEnvelope returned an envelope with error %v", gerr)
	case gerr == nil && !reflect.DeepEqual(genv, wenv):
		t.Fatalf("UnmarshalEntityEnvelope[%T](%q)\n got %#v\nwant %#v", got.After, b, genv, wenv)
	}

	var wv, gv T
	werr = oracleDecode(b, &wv)
	decodeFresh(t, b, func(in []byte) { gerr = DecodeEntity(in, &gv) })
	checkErr(t, "DecodeEntity", b, werr, gerr)
	if werr == nil && !reflect.DeepEqual(gv, wv) {
		t.Fatalf("DecodeEntity[%T](%q)\n got %#v\nwant %#v", gv, b, gv, wv)
	}
	if werr == nil {
		checkEntityEncode(t, &gv)
	}

	wp, gp := prefilled[T](t)
	checkEntityEncode(t, gp)
	werr = oracleDecode(b, wp)
	decodeFresh(t, b, func(in []byte) { gerr = DecodeEntity(in, gp) })
	checkErr(t, "DecodeEntity (prefilled)", b, werr, gerr)
	if werr == nil && !reflect.DeepEqual(gp, wp) {
		t.Fatalf("DecodeEntity[%T](%q) into the golden\n got %#v\nwant %#v", gv, b, gp, wp)
	}
	if werr == nil {
		checkEntityEncode(t, gp)
	}
	checkEntityEncode[T](t, nil)
}

// checkEntityEncode compares AppendEntityJSON with json.Marshal on v, and appending to
// a non-empty buffer with appending to none.
func checkEntityEncode[T CanonicalEntity](t testing.TB, v *T) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%#v): %v", v, err)
	}
	if got := AppendEntityJSON(nil, v); string(got) != string(want) {
		t.Fatalf("AppendEntityJSON[%T]\n got %s\nwant %s", v, got, want)
	}
	if got := AppendEntityJSON([]byte("x"), v); string(got) != "x"+string(want) {
		t.Fatalf("AppendEntityJSON[%T] after a prefix: %s", v, got)
	}
}

// fillEntity sets every field of the struct v to a distinct non-zero value.
func fillEntity(t *testing.T, v reflect.Value, seq *int) {
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		*seq++
		n := *seq
		name := v.Type().Field(i).Name
		switch {
		case f.Kind() == reflect.String:
			f.SetString(fmt.Sprintf("%d<%s", n, name))
		case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
			f.SetInt(int64(n))
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Bool:
			f.Set(reflect.ValueOf(new(n%2 == 0)))
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			f.Set(reflect.ValueOf([]string{name, fmt.Sprint(n)}))
		case f.Kind() == reflect.Map && f.Type() == reflect.TypeFor[map[string]string]():
			f.Set(reflect.ValueOf(map[string]string{name: fmt.Sprint(n)}))
		case f.Kind() == reflect.Struct:
			fillEntity(t, f, seq)
		default:
			t.Fatalf("field %s of type %s: teach the entity decoder (entity_decode.go) and this test", name, f.Type())
		}
	}
}

// TestEntityDecodeCoversEveryField decodes, for every entity type, a document with
// every field set to a distinct value (by reflection), so that a field added later
// without teaching the decoder, or a table entry pointing at the wrong field, fails.
func TestEntityDecodeCoversEveryField(t *testing.T) {
	for i, e := range Entities() {
		t.Run(e.Name, func(t *testing.T) {
			seq := 0
			v := reflect.ValueOf(e.New())
			fillEntity(t, v.Elem(), &seq)
			doc, err := json.Marshal(v.Interface())
			if err != nil {
				t.Fatal(err)
			}
			got := reflect.New(v.Elem().Type())
			decode := reflect.ValueOf(decodeEntityFuncs[i])
			if err, _ := decode.Call([]reflect.Value{reflect.ValueOf(doc), got})[0].Interface().(error); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Interface(), v.Interface()) {
				t.Fatalf("decoded\n %#v\nwant\n %#v", got.Interface(), v.Interface())
			}
			entityChecks[i].check(t, doc)
			envDoc := []byte(`{"v":1,"op":"u","source":{"system":"s","table":"t"},"before":` + string(doc) + `,"after":` + string(doc) + `}`)
			entityChecks[i].check(t, envDoc)
		})
	}
}

// decodeEntityFuncs are DecodeEntity instantiated for each entity, in Entities() order.
var decodeEntityFuncs = []any{
	DecodeEntity[Household], DecodeEntity[Person], DecodeEntity[MonitoringEpisode],
	DecodeEntity[AssistanceMeasure], DecodeEntity[DepartmentFact], DecodeEntity[Warning],
	DecodeEntity[QualityIssue], DecodeEntity[Discrepancy],
}

// TestEntityCodecFieldOrder checks that each field table lists the type's JSON names
// in struct order (embedded Meta first), which the case-insensitive tie-break relies
// on.
func TestEntityCodecFieldOrder(t *testing.T) {
	names := func(typ reflect.Type) []string {
		var out []string
		var walk func(reflect.Type)
		walk = func(typ reflect.Type) {
			for i := 0; i < typ.NumField(); i++ {
				f := typ.Field(i)
				if f.Anonymous {
					walk(f.Type)
					continue
				}
				out = append(out, strings.Split(f.Tag.Get("json"), ",")[0])
			}
		}
		walk(typ)
		return out
	}
	fieldNames := func(c any) []string {
		v := reflect.ValueOf(c).Elem().FieldByName("fields")
		var out []string
		for i := 0; i < v.Len(); i++ {
			out = append(out, v.Index(i).FieldByName("name").String())
		}
		return out
	}
	for _, c := range []struct {
		typ   reflect.Type
		codec any
	}{
		{reflect.TypeFor[Household](), householdCodec}, {reflect.TypeFor[Person](), personCodec},
		{reflect.TypeFor[MonitoringEpisode](), episodeCodec}, {reflect.TypeFor[AssistanceMeasure](), measureCodec},
		{reflect.TypeFor[DepartmentFact](), departmentFactCodec}, {reflect.TypeFor[Warning](), warningCodec},
		{reflect.TypeFor[QualityIssue](), qualityIssueCodec}, {reflect.TypeFor[Discrepancy](), discrepancyCodec},
	} {
		if got, want := fieldNames(c.codec), names(c.typ); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoder fields\n %v\nwant\n %v", c.typ, got, want)
		}
	}
	if got, want := sourceRefFields, names(reflect.TypeFor[SourceRef]()); !reflect.DeepEqual(got, want) {
		t.Errorf("SourceRef: decoder fields %v, want %v", got, want)
	}
}

// entityEnvelopeSeeds wraps every golden as before and after of a canonical
// envelope, as a transform writes it (through Envelope.Marshal), and returns the
// goldens too; seed i belongs to entity i%8.
func entityEnvelopeSeeds(t testing.TB) (docs [][]byte, kinds []uint8) {
	for i, e := range Entities() {
		golden, err := os.ReadFile(goldenPath(e.Name, e.Version))
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeObject(golden)
		if err != nil {
			t.Fatal(err)
		}
		env := &Envelope{V: EnvelopeVersion, Op: OpUpdate,
			Source: Source{System: "sc", Kind: "transform", Table: e.Name, Seq: 3},
			Key:    map[string]any{"key": m["key"]}, Before: m, After: m,
			Schema: SchemaRef{Name: e.Name, Version: e.Version}, TsMs: 1717200001500}
		b, err := env.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, golden, b)
		kinds = append(kinds, uint8(i), uint8(i))
	}
	return docs, kinds
}

// entityEdgeCases are hand-written inputs for every entity type; each runs against
// all types.
var entityEdgeCases = []string{
	// Slices reused as reflect reuses them (length, capacity, null elements).
	`{"risks":["a","b","c"],"risks":["x"],"risks":[null,null,null,null]}`,
	`{"risks":["a","b"],"risks":[],"risks":[null]}`,
	`{"risks":null,"measures":[null,"m"],"fact_keys":["k",null],"fact_keys":[null,null,null]}`,
	`{"risks":["a",1]}`, `{"risks":"a"}`, `{"risks":[["a"]]}`, `{"risks":{}}`, `{"fact_keys":[,]}`, `{"fact_keys":["a",]}`,
	// Maps merged; null values store "".
	`{"values":{"a":"1","b":null},"values":{"b":"2","c":null},"evidence":{"x":"1"},"evidence":null,"evidence":{"y":"2"}}`,
	`{"values":{"a":1}}`, `{"evidence":[]}`, `{"values":{"a":{}}}`, `{"values":null}`,
	// *bool and bool.
	`{"relocated":true,"relocated":null,"deceased":false,"risk_eliminated":true,"risk_eliminated":false}`,
	`{"eliminated":true,"eliminated":null,"development":true}`, `{"deceased":"true"}`, `{"eliminated":1}`,
	// Integers.
	`{"version":9223372036854775807,"updated_ms":-9223372036854775808,"due_days":-0,"category":3}`,
	`{"version":9223372036854775808}`, `{"updated_ms":-9223372036854775809}`, `{"due_days":1.0}`, `{"category":1e1}`,
	`{"member_count":"3"}`, `{"version":null,"work_months":null}`,
	// Strings and decimals.
	`{"amount":12.5}`, `{"amount":"12.50","amount":null}`, `{"id":"\ud83d\ude00\ud83d` + "\xff" + `"}`, `{"key":true}`,
	// Meta source struct.
	`{"source":{"system":"a","table":"b"},"source":{"position":"p"},"SOURCE":{"SYSTEM":"c"},"source":null}`,
	`{"source":"x"}`, `{"source":{"system":1}}`, `{"source":{"extra":[1,{"a":null}],"system":"s"}}`, `{"source":[]}`,
	// Field names: folding, exact preference, unknown.
	`{"Household_No":"a","household_no":"b","HOUSEHOLD_NO":"c"}`, `{"ſtatus":"open","Status":"closed"}`,
	`{"\u212aey":"k","unknown":{"deep":[[[]]]},"":1}`, `{"status ":"x"}`,
	// Top level and envelope.
	`null`, `[]`, `"x"`, `{}`, `{} {}`, `{"key":"a"`, ` {"key":"a"} `,
	`{"v":1,"op":"c","source":{"system":"s","table":"t"},"after":{}}`,
	`{"v":1,"op":"c","source":{"system":"s","table":"t"},"after":null}`,
	`{"v":1,"op":"d","source":{"system":"s","table":"t"},"before":{"key":"k"},"before":null,"key":{"k":1}}`,
	`{"v":1,"op":"u","source":{"system":"s","table":"t"},"after":{"risks":["a","b"]},"after":{"risks":["c"],"status":"x"}}`,
	`{"v":1,"op":"c","source":{"system":"s","table":"t"},"after":[]}`,
	`{"v":1,"op":"c","source":{"system":"s","table":"t"},"after":{"source":{"system":5}}}`,
	`{"v":1,"op":"c","source":{"system":"s","table":"t"},"AFTER":{"Key":"k"},"Before":{"values":{"a":"b"}}}`,
}

func TestEntityEdgeCasesMatchEncodingJSON(t *testing.T) {
	for _, in := range entityEdgeCases {
		for _, c := range entityChecks {
			c.check(t, []byte(in))
		}
	}
	docs, kinds := entityEnvelopeSeeds(t)
	for i, b := range docs {
		entityChecks[kinds[i]].check(t, b)
	}
	// The envelope decoder's cases, and the nesting limit inside an entity: the
	// entity document is level 1 (DecodeEntity) or 2 (envelope), its source 2 or 3.
	var more []string
	for _, tc := range decodeEdgeCases {
		more = append(more, tc.in)
	}
	for _, n := range []int{9997, 9998, 9999} {
		deep := strings.Repeat("[", n) + strings.Repeat("]", n)
		more = append(more, `{"source":{"x":`+deep+`}}`, `{"x":`+deep+`}`,
			`{"v":1,"after":{"source":{"x":`+deep+`}}}`, `{"v":1,"before":{"x":`+deep+`}}`)
	}
	for _, in := range more {
		for _, c := range entityChecks {
			c.check(t, []byte(in))
		}
	}
}

// TestEntityEnvelopeSeedsDecode checks that the typed decoder reads what the encoder
// writes, and the goldens, into the same value as encoding/json into the Go type.
func TestEntityEnvelopeSeedsDecode(t *testing.T) {
	docs, kinds := entityEnvelopeSeeds(t)
	for i := 0; i < len(docs); i += 2 {
		name := Entities()[kinds[i]].Name
		want := Entities()[kinds[i]].New()
		if err := json.Unmarshal(docs[i], want); err != nil {
			t.Fatal(err)
		}
		got := reflect.New(reflect.TypeOf(want).Elem())
		res := reflect.ValueOf(decodeEntityFuncs[kinds[i]]).Call([]reflect.Value{reflect.ValueOf(docs[i]), got})
		if err, _ := res[0].Interface().(error); err != nil {
			t.Fatalf("%s golden: %v", name, err)
		}
		if !reflect.DeepEqual(got.Interface(), want) {
			t.Fatalf("%s golden decoded\n %#v\nwant\n %#v", name, got.Interface(), want)
		}
	}
	// A person envelope as a canonical-topic consumer reads it.
	e, err := UnmarshalEntityEnvelope[Person](docs[3])
	if err != nil {
		t.Fatal(err)
	}
	if e.After == nil || e.Before == nil || e.After.IDNo == "" || e.After.Source.System == "" || e.Schema.Name != "person" {
		t.Fatalf("person envelope decoded as %+v", e)
	}
}

func TestEntityDecodeErrorsNameTheField(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{`{"v":1,"op":"c","after":{"member_count":"3"}}`, `envelope: decode: field after.member_count: found a string, want an int at offset 40`},
		{`{"v":1,"op":"c","before":{"source":{"table":1}}}`, `envelope: decode: field before.source.table: found a number, want a string at offset 44`},
		{`{"v":1,"op":"c","after":{"risks":["a",true]}}`, `envelope: decode: field after.risks: found a bool, want a string (array element) at offset 38`},
		{`{"v":1,"op":"c","after":{"version":1e3}}`, `envelope: decode: field after.version: number 1e3 is not an int64 at offset 35`},
		{`{"v":1,"op":"c","after":7}`, `envelope: decode: field after: found a number, want an object at offset 24`},
		{`{"v":1,"op":"c","after":{"relocated":nul}}`, `envelope: decode: field after.relocated: invalid character '}' in literal null (expecting 'l') at offset 40`},
	}
	for _, tc := range cases {
		_, err := UnmarshalEntityEnvelope[Household]([]byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("UnmarshalEntityEnvelope(%s) error\n %v\nwant\n %s", tc.in, err, tc.want)
		}
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("error %v is not a *DecodeError", err)
		}
	}
	var h Household
	err := DecodeEntity([]byte(`{"household_no":"513423198503120027","dangerous_house":"513423198503120027"}`), &h)
	if err == nil || !strings.Contains(err.Error(), "field dangerous_house:") || strings.Contains(err.Error(), "5134") {
		t.Errorf("DecodeEntity error %v: want the field named and no value quoted", err)
	}
}

// FuzzEntityEnvelope is the differential check of the typed decoders: kind picks
// the entity type (Entities() order), and for any input the typed envelope and
// DecodeEntity accept exactly when encoding/json does, with reflect.DeepEqual
// results.
func FuzzEntityEnvelope(f *testing.F) {
	docs, kinds := entityEnvelopeSeeds(f)
	for i, b := range docs {
		f.Add(kinds[i], b)
	}
	for _, in := range entityEdgeCases {
		for k := range entityChecks {
			f.Add(uint8(k), []byte(in))
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		entityChecks[int(kind)%len(entityChecks)].check(t, b)
	})
}

// entityCheckFor returns the checkEntity of the entity that envelope b's schema
// names (as encoding/json reads it), or person's.
func entityCheckFor(b []byte) func(testing.TB, []byte) {
	var e Envelope
	if oracleDecode(b, &e) == nil {
		for _, c := range entityChecks {
			if c.name == e.Schema.Name {
				return c.check
			}
		}
	}
	return checkEntity[Person]
}
