package mapping

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shouwang/shouwang/schemas"
)

func TestEmbeddedMappingsCompile(t *testing.T) {
	set, err := Load(Embedded, &Env{})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][2]string{{"national", "household"}, {"national", "person"}, {"national", "measure"},
		{"departments", "settlement"}, {"dept_files", "settlement"}, {"departments", "death"}, {"dept_files", "disaster"}} {
		if _, ok := set.For(in[0], in[1]); !ok {
			t.Errorf("no embedded mapping for %s.%s", in[0], in[1])
		}
	}
}

func TestConversions(t *testing.T) {
	for _, tc := range []struct {
		f        func(string) (string, error)
		in, want string
	}{
		{func(s string) (string, error) { return parseDecimal(s, nil) }, "29545.60", "29545.60"},
		{func(s string) (string, error) { return parseDecimal(s, nil) }, "1,234.5", "1234.5"},
		{func(s string) (string, error) { return parseDecimal(s, nil) }, "1.5万", "15000"},
		{func(s string) (string, error) { return parseDecimal(s, nil) }, "2.345万元", "23450"},
		{func(s string) (string, error) { return parseDecimal(s, nil) }, "1.2E3", "1200"},
		{func(s string) (string, error) { return parseDecimal(s, nil) }, "+12元", "12"},
		{parseDate, "2024-05-09", "2024-05-09"},
		{parseDate, "2024/5/9", "2024-05-09"},
		{parseDate, "20240509", "2024-05-09"},
		{parseDate, "2024年5月9日", "2024-05-09"},
		{parseDate, "45421", "2024-05-09"},
		{parseDate, "2024-05-09 00:00:00", "2024-05-09"},
		{parseYM, "202405", "202405"},
		{parseYM, "2024-05", "202405"},
		{parseYM, "2024年5月", "202405"},
		{parseYM, "2024-05-31", "202405"},
	} {
		got, err := tc.f(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%q → %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "abc", "1/2", "12.3.4"} {
		if _, err := parseDecimal(bad, nil); err == nil {
			t.Errorf("decimal %q accepted", bad)
		}
	}
	for _, bad := range []string{"2024-13-01", "yesterday", "3000000"} {
		if _, err := parseDate(bad); err == nil {
			t.Errorf("date %q accepted", bad)
		}
	}
	if _, err := parseBool("也许"); err == nil {
		t.Error("bool 也许 accepted")
	}
}

func writeSpec(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadErrorsNameFileAndLine: every problem of a mapping file is reported at load,
// with file:line and what is wrong.
func TestLoadErrorsNameFileAndLine(t *testing.T) {
	p := writeSpec(t, `mapping: t.person
version: 1
source: national
table: person
entity: person
key: [person_no]
fields:
  person_no: person_no
  shoe_size: shoe
  sex: {from: sex, dict: sexes}
  birth_date: {from: birth_date, type: decimal}
  name: {from: name, type: words}
  health: {from: health, derive: age_from_id}
`)
	_, err := Load(p, &Env{})
	if err == nil {
		t.Fatal("a bad mapping loaded")
	}
	for _, want := range []string{
		p + ":9: fields.shoe_size: person has no such field",
		p + `:10: fields.sex: dict "sexes"`,
		p + ":11: fields.birth_date: type decimal cannot fill this field",
		p + `:12: fields.name: type "words" is not known`,
		p + `:13: fields.health: derive: "age_from_id" is not known`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	p = writeSpec(t, "mapping: x\nversion: 1\nsource: a\ntable: b\nentity: person\nkey: [k]\nfields:\n  name: {from: n, typo: text}\n")
	if _, err := Load(p, &Env{}); err == nil || !strings.Contains(err.Error(), "line 8") || !strings.Contains(err.Error(), "typo") {
		t.Errorf("unknown option: %v", err)
	}
	p = writeSpec(t, "mapping: x\nversion: 1\nsource: a\ntable: b\nentity: ghost\nkey: [k]\n")
	if _, err := Load(p, &Env{}); err == nil || !strings.Contains(err.Error(), `entity: "ghost" is not a canonical entity`) {
		t.Errorf("unknown entity: %v", err)
	}
}

func envelope(op schemas.Op, key map[string]any, after map[string]any) *schemas.Envelope {
	return &schemas.Envelope{V: 1, Op: op, Source: schemas.Source{System: "national", Kind: "mysqlbinlog", Table: "person"}, Key: key, After: after}
}

func personRow() map[string]any {
	return map[string]any{"person_no": "P1", "hh_no": "H1", "id_type": "居民身份证", "id_no": "11010519491231002x",
		"name": "张三", "sex": "", "birth_date": nil, "ethnic": "汉族", "relationship": "户主", "education": nil,
		"school_status": nil, "not_in_school_reason": nil, "dropout_reason": nil, "health": "健康", "disability_type": nil,
		"disability_grade": nil, "disability_cert_no": nil, "labour_skill": "普通劳动力", "work_status": nil, "work_place": nil,
		"work_months": json.Number("6"), "work_monthly_income": "3,000.50", "employment_channel": nil, "welfare_job": "否",
		"welfare_job_months": nil, "ins_resident_medical": "是", "ins_employee_medical": "否", "ins_serious_illness": "是",
		"ins_resident_pension": "是", "ins_employee_pension": "否", "medical_assistance": "否", "dibao": "否", "tekun": "否",
		"phone": "138-0013-8000", "deceased": "否", "deregistered_date": nil, "updated_at": "2026-01-01 00:00:00",
		"a_new_column": "ignored"}
}

func TestApplyPerson(t *testing.T) {
	set, err := Load(Embedded, &Env{})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := set.For("national", "person")
	out, err := m.Apply(envelope(schemas.OpCreate, map[string]any{"person_no": "P1"}, personRow()), 42, "binlog.000001:100", 7)
	if err != nil {
		t.Fatal(err)
	}
	d := out.Doc
	for k, want := range map[string]any{"key": "P1", "version": int64(42), "id_no": "11010519491231002X", "sex": "女",
		"birth_date": "1949-12-31", "work_months": 6, "work_monthly_income": "3000.50", "public_welfare_job": false,
		"resident_medical_insurance": true, "phone": "13800138000", "dibao_status": "未享受低保"} {
		if d[k] != want {
			t.Errorf("%s = %#v, want %#v", k, d[k], want)
		}
	}
	if _, ok := d["a_new_column"]; ok {
		t.Error("an unmapped column reached the entity")
	}
	// Decodes into the Go entity type: the document has the schema's types.
	b, _ := json.Marshal(d)
	var p schemas.Person
	if err := json.Unmarshal(b, &p); err != nil || p.PersonNo != "P1" || p.HouseholdNo != "H1" {
		t.Fatalf("doc does not decode as schemas.Person: %v %+v", err, p)
	}

	// An ID number failing its checksum is kept for the supervision rules.
	row := personRow()
	row["id_no"] = "110105194912310021"
	if out, err := m.Apply(envelope(schemas.OpUpdate, map[string]any{"person_no": "P1"}, row), 43, "", 0); err != nil || out.Doc["id_no"] != "110105194912310021" {
		t.Errorf("invalid registry ID: %v %v", out.Doc["id_no"], err)
	}
	// A code outside the dictionary goes to the dead-letter queue, with every reason.
	row["relationship"], row["work_months"] = "邻居", "six"
	_, err = m.Apply(envelope(schemas.OpUpdate, map[string]any{"person_no": "P1"}, row), 44, "", 0)
	var re *RecordError
	if !errors.As(err, &re) || len(re.Fields) != 2 || !strings.Contains(err.Error(), `field relation_to_head (column relationship): "邻居" is not in dictionary relationship`) ||
		!strings.Contains(err.Error(), `field work_months (column work_months): "six" is not a whole number`) {
		t.Errorf("bad codes: %v", err)
	}
	// A mapped column missing from the row is schema drift.
	row = personRow()
	delete(row, "health")
	if _, err := m.Apply(envelope(schemas.OpUpdate, map[string]any{"person_no": "P1"}, row), 45, "", 0); !errors.Is(err, ErrSchemaDrift) || !strings.Contains(err.Error(), "health") {
		t.Errorf("missing column: %v", err)
	}
	// A delete carries the key and version only.
	out, err = m.Apply(&schemas.Envelope{V: 1, Op: schemas.OpDelete, Source: schemas.Source{System: "national", Table: "person"}, Key: map[string]any{"person_no": "P1"}}, 46, "", 0)
	if err != nil || out.Op != schemas.OpDelete || out.Key != "P1" || out.Doc["version"] != int64(46) {
		t.Errorf("delete: %+v %v", out, err)
	}
}

func TestApplyDepartmentFact(t *testing.T) {
	set, err := Load(Embedded, &Env{})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := set.For("dept_files", "settlement")
	row := map[string]any{"settlement_no": "S1", "id_no": "11010519491231002X", "name": "张三", "region_code": "510104017001",
		"settle_date": "2026/3/5", "visit_type": "住院", "total_cost": "12,000.50", "fund_paid": "8000", "serious_illness_paid": "0",
		"medical_assistance_paid": "0", "out_of_pocket": "4000.5", "compliant_out_of_pocket": "3500"}
	env := &schemas.Envelope{V: 1, Op: schemas.OpCreate, Source: schemas.Source{System: "dept_files", Table: "settlement"}, Key: map[string]any{"settlement_no": "S1"}, After: row}
	out, err := m.Apply(env, 1, "settlement.csv:2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if out.Key != schemas.DeterministicID("yibao", "settlement", "dept_files", "S1") || out.Doc["period"] != "202603" ||
		out.Doc["occurred_on"] != "2026-03-05" || out.Doc["amount"] != "3500" || out.Doc["department"] != "yibao" {
		t.Errorf("fact: key %s doc %v", out.Key, out.Doc)
	}
	if v := out.Doc["values"].(map[string]any); v["total_cost"] != "12,000.50" && v["total_cost"] != "12000.50" {
		t.Errorf("values: %v", v)
	}
	// The table delivery of the same record is another key (another input).
	env.Source.System = "departments"
	if out2, _ := m.Apply(env, 1, "", 0); out2.Key == out.Key {
		t.Error("table and file deliveries share a key: their versions would not compare")
	}
	// A department fact without a valid ID number cannot be joined: dead-letter queue.
	row["id_no"] = "11010519491231002"
	if _, err := m.Apply(env, 2, "", 0); err == nil || !strings.Contains(err.Error(), "invalid ID number 1101*********1002") {
		t.Errorf("invalid department ID: %v", err)
	}
	row["id_no"], row["region_code"] = "11010519491231002X", "519999999999"
	if _, err := m.Apply(env, 3, "", 0); err == nil || !strings.Contains(err.Error(), `region code "519999999999" is not in the region table`) {
		t.Errorf("unknown region: %v", err)
	}
}

// TestEmptyColumnName: a field mapped from the empty column name is ignored by a
// single-column field and read as the row's "" member by a map field, whichever cell
// the key columns take.
func TestEmptyColumnName(t *testing.T) {
	spec, err := ParseSpec("empty.yaml", []byte(`mapping: t.empty
version: 1
source: s
table: t
entity: department_fact
key: [record_no]
fields:
  department: {const: yibao}
  dataset: {const: settlement}
  id_no: id_no
  region_code: ""
  values: {from: [record_no, ""]}
`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Compile(spec, &Env{})
	if err != nil {
		t.Fatal(err)
	}
	env, err := schemas.UnmarshalEnvelope([]byte(`{"v":1,"op":"c","source":{"system":"s","table":"t"},"after":{"record_no":"R1","id_no":"11010519491231002X","":"E"}}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Apply(env, 1, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out.Doc["region_code"]; ok {
		t.Errorf("region_code read from the empty column: %v", out.Doc["region_code"])
	}
	if v := out.Doc["values"].(map[string]any); v[""] != "E" || v["record_no"] != "R1" {
		t.Errorf("values: %v", v)
	}
}
