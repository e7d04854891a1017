package dict

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustDefault(t *testing.T) *Set {
	t.Helper()
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDefaultFields(t *testing.T) {
	s := mustDefault(t)
	sizes := map[string]int{
		"household_type": 3, "category": 3, "risk_type": 11, "disaster_subitem": 9, "elimination_method": 2,
		"yes_no": 2, "relationship": 12, "education": 7, "school_status": 15, "dropout_reason": 7, "health": 4,
		"disability_type": 7, "disability_grade": 4, "labour_skill": 5, "work_status": 4, "employment_channel": 8,
		"ethnic": 58, "id_type": 5, "measure_category": 14, "relocation_mode": 2, "housing_grade": 4,
		"dibao_status": 2, "tekun_status": 2, "sex": 4, "development_measure_status": 3,
		// fields sharing a table
		"resident_medical_insurance": 2, "serious_illness_insurance": 2, "risk_3": 11, "not_in_school_reason": 7,
	}
	for f, n := range sizes {
		d, err := s.Get(f)
		if err != nil {
			t.Errorf("Get(%s): %v", f, err)
			continue
		}
		if len(d.Entries) != n {
			t.Errorf("%s: %d entries, want %d", f, len(d.Entries), n)
		}
		if d.Title == "" {
			t.Errorf("%s: no title", f)
		}
	}
	if d, _ := s.Get("employee_pension_insurance"); d.Field != "yes_no" {
		t.Errorf("insurance field shares yes_no, got %s", d.Field)
	}
	// All 56 ethnic groups with GB 3304 codes.
	eth, _ := s.Get("ethnic")
	for code, name := range map[string]string{"01": "汉族", "04": "藏族", "07": "彝族", "33": "羌族", "56": "基诺族", "98": "外国血统中国籍人士"} {
		if e, ok := eth.ByCode(code); !ok || e.Name != name {
			t.Errorf("ethnic %s = %+v, want %s", code, e, name)
		}
	}
}

func TestLookups(t *testing.T) {
	s := mustDefault(t)
	cases := []struct {
		field, in, code string
		ok              bool
	}{
		{"risk_type", "因病", "01", true},
		{"risk_type", "01", "01", true},
		{"risk_type", "1", "01", true}, // leading zero dropped by a spreadsheet
		{"risk_type", " 因 病 ", "01", true},
		{"risk_type", "自然灾害", "04", true}, // alias
		{"risk_type", "其它", "11", true},
		{"risk_type", "因穷", "", false},
		{"risk_type", "", "", false},
		{"risk_type", "12", "", false},
		{"yes_no", "是", "1", true},
		{"yes_no", "n", "0", true}, // case-insensitive alias
		{"yes_no", "１", "1", true}, // full-width
		{"housing_grade", "c", "C", true},
		{"housing_grade", "Ｄ级", "D", true},
		{"school_status", "初二", "05", true},
		{"school_status", "高中二年级", "08", true},
		{"relationship", "儿子", "03", true},
		{"ethnic", "彝", "07", true},
		{"ethnic", "yi", "", false}, // roman codes are attributes, not aliases
		{"measure_category", "雨露计划", "06", true},
		{"disability_grade", "2级", "2", true},
		{"work_status", "\u200b省外务工", "1", true},
		{"disaster_subitem", "洪涝灾害", "01", true}, // 应急管理部 names in department records
		{"disaster_subitem", "风雹灾害", "05", true},
		{"disaster_subitem", "地质灾害", "04", true},
	}
	for _, c := range cases {
		d, err := s.Get(c.field)
		if err != nil {
			t.Fatal(err)
		}
		e, ok := d.Normalize(c.in)
		if ok != c.ok || e.Code != c.code {
			t.Errorf("%s.Normalize(%q) = %q,%v; want %q,%v", c.field, c.in, e.Code, ok, c.code, c.ok)
		}
	}
	d, _ := s.Get("risk_type")
	if e, ok := d.ByName("因自然灾害"); !ok || e.Attrs["requires"] != "disaster_subitem" {
		t.Errorf("ByName 因自然灾害 = %+v", e)
	}
	if e, ok := d.ByName("自然灾害"); !ok || e.Code != "04" {
		t.Errorf("ByName alias = %+v", e)
	}
	if _, ok := d.ByName("01"); ok {
		t.Error("ByName must not match codes")
	}
	if _, ok := d.ByCode("因病"); ok {
		t.Error("ByCode must not match names")
	}
	m, _ := s.Get("measure_category")
	var dev []string
	for _, e := range m.Entries {
		if e.Attrs["development"] == "true" {
			dev = append(dev, e.Name)
		}
	}
	if strings.Join(dev, ",") != "产业帮扶,就业帮扶,金融帮扶,公益岗位帮扶" {
		t.Errorf("development-type measures = %v", dev)
	}
	r, _ := s.Get("relationship")
	if e, _ := r.ByName("之女"); e.Attrs["sex"] != "F" {
		t.Errorf("之女 sex attr = %q", e.Attrs["sex"])
	}
}

func TestGetUnknown(t *testing.T) {
	s := mustDefault(t)
	_, err := s.Get("blood_type")
	if err == nil || !strings.Contains(err.Error(), `unknown field "blood_type"`) || !strings.Contains(err.Error(), "risk_type") {
		t.Errorf("Get(blood_type) = %v", err)
	}
}

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, body := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadDirOverride(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"disaster.yaml": `field: disaster_subitem
entries:
  - {code: "03", name: 地震灾害, aliases: [地震]}
  - {code: "10", name: 台风}
`,
		"grade.yml": `field: housing_grade
mode: replace
title: 危房等级
entries:
  - {code: C, name: C级}
  - {code: D, name: D级}
`,
		"new.yaml": `field: blood_type
title: 血型
also: [donor_blood_type]
entries:
  - {code: "1", name: A型}
  - {code: "2", name: B型}
`,
		"yesno.yaml": `field: yes_no
entries:
  - {code: "9", name: 不详, aliases: [未知]}
`,
		"README.txt": "ignored",
	})
	s, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := s.Get("disaster_subitem")
	if len(d.Entries) != 10 || d.Title != "因自然灾害子项" {
		t.Errorf("merged disaster_subitem: %d entries, title %q", len(d.Entries), d.Title)
	}
	if e, ok := d.Normalize("地震"); !ok || e.Name != "地震灾害" {
		t.Errorf("overridden entry: %+v", e)
	}
	if e, ok := d.Normalize("台风"); !ok || e.Code != "10" {
		t.Errorf("added entry: %+v", e)
	}
	h, _ := s.Get("housing_grade")
	if len(h.Entries) != 2 || h.Title != "危房等级" {
		t.Errorf("replaced housing_grade: %+v", h)
	}
	b, err := s.Get("donor_blood_type")
	if err != nil || b.Field != "blood_type" {
		t.Errorf("new field via also: %v %v", b, err)
	}
	// The shared yes_no table is updated for every field using it.
	ins, _ := s.Get("serious_illness_insurance")
	if e, ok := ins.Normalize("未知"); !ok || e.Code != "9" {
		t.Errorf("yes_no extension not visible through also: %+v", e)
	}
	// Defaults stay untouched.
	def := mustDefault(t)
	if d, _ := def.Get("disaster_subitem"); len(d.Entries) != 9 {
		t.Errorf("default modified: %d", len(d.Entries))
	}
	if _, err := def.Get("blood_type"); err == nil {
		t.Error("default gained blood_type")
	}
}

func TestLoadDirErrors(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"dup code", "field: x\nentries:\n  - {code: \"1\", name: a}\n  - {code: \"1\", name: b}\n",
			[]string{"bad.yaml", "field x", "entry 2 repeats code \"1\" of entry 1"}},
		{"dup name", "field: x\nentries:\n  - {code: \"1\", name: a}\n  - {code: \"2\", name: a}\n",
			[]string{"bad.yaml", "field x", "entry 2 (name \"a\") clashes with entry 1"}},
		{"alias clashes with other entry's name", "field: x\nentries:\n  - {code: \"1\", name: 是}\n  - {code: \"2\", name: 否, aliases: [是]}\n",
			[]string{"field x", "entry 2"}},
		{"folded clash", "field: x\nentries:\n  - {code: \"A\", name: 甲}\n  - {code: \"a\", name: 乙}\n",
			[]string{"field x", "entry 2 (value \"A\") clashes with entry 1"}},
		{"zero-stripped clash", "field: x\nentries:\n  - {code: \"01\", name: 甲}\n  - {code: \"1\", name: 乙}\n",
			[]string{"field x", "entry 2"}},
		{"empty name", "field: x\nentries:\n  - {code: \"1\", name: \"\"}\n", []string{"entry 1 has an empty code or name"}},
		{"no field", "entries:\n  - {code: \"1\", name: a}\n", []string{"no field name"}},
		{"no entries", "field: x\n", []string{"field x has no entries"}},
		{"unknown key", "field: x\nentriez: []\n", []string{"bad.yaml", "entriez"}},
		{"bad mode", "field: x\nmode: append\nentries:\n  - {code: \"1\", name: a}\n", []string{"mode \"append\" unknown"}},
		{"override shared", "field: resident_medical_insurance\nentries:\n  - {code: \"1\", name: a}\n", []string{"shared with table yes_no"}},
		{"merge creates clash", "field: risk_type\nentries:\n  - {code: \"99\", name: 因病}\n", []string{"field risk_type", "clashes with entry 1"}},
		{"not yaml", "field: [x\n", []string{"bad.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"bad.yaml": c.body})
			s, err := LoadDir(dir)
			if err == nil || s != nil {
				t.Fatalf("loaded, want error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := LoadDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing dir accepted")
	}
	dir := writeDir(t, map[string]string{
		"a.yaml": "field: x\nentries:\n  - {code: \"1\", name: a}\n",
		"b.yaml": "field: x\nentries:\n  - {code: \"1\", name: a}\n",
	})
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "one file per field") {
		t.Errorf("two files for one field: %v", err)
	}
}

func BenchmarkNormalize(b *testing.B) {
	s, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	d, _ := s.Get("risk_type")
	for b.Loop() {
		d.Normalize("因病")
		d.Normalize(" 1 ")
	}
}
