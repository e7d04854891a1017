package warnings

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestDefaultLoads(t *testing.T) {
	r, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.WarningRules()) < 9 || len(r.ComparisonRules()) < 9 || r.DueDays() != 15 {
		t.Errorf("default: %v %v %d", r.WarningRules(), r.ComparisonRules(), r.DueDays())
	}
}

func loadText(t *testing.T, files map[string]string, names ...string) (*Rules, error) {
	t.Helper()
	fsys := fstest.MapFS{}
	for n, b := range files {
		fsys[n] = &fstest.MapFile{Data: []byte(b)}
	}
	return Load(fsys, names...)
}

// mergedFS serves the embedded default rules plus extra files (name, content pairs).
func mergedFS(t testing.TB, extra ...string) fstest.MapFS {
	t.Helper()
	b, err := defaultFS.ReadFile(DefaultFile)
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{DefaultFile: &fstest.MapFile{Data: b}}
	for i := 0; i+1 < len(extra); i += 2 {
		fsys[extra[i]] = &fstest.MapFile{Data: []byte(extra[i+1])}
	}
	return fsys
}

// TestLoadErrors: unknown fields, bad types and bad thresholds are reported at load,
// each with file:line, all in one pass.
func TestLoadErrors(t *testing.T) {
	_, err := loadText(t, map[string]string{"bad.yaml": `version: 1
due_days: 15
colour: red
warnings:
  - id: a
    department: yibao
    fact_types: [medical_settlement]
    subject: person
    measure: amount
    aggregate: rolling_sum
    window_months: twelve
    op: ">="
    thresholds:
      - {value: 5000}
  - id: b
    department: yibao
    fact_types: [medical_settlement]
    subject: person
    measure: amount
    op: ">="
    treshold: 5
`}, "bad.yaml")
	for _, want := range []string{"bad.yaml:3: field colour not found", "bad.yaml:11: cannot unmarshal !!str `twelve` into int", "bad.yaml:21: field treshold not found"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	_, err = loadText(t, map[string]string{"thr.yaml": `version: 1
warnings:
  - id: a
    department: yibao
    fact_types: [medical_settlement]
    subject: person
    measure: amount
    op: ">="
    thresholds:
      - {value: 5000}
      - {value: 5千, classes: [lifted]}
      - {value: 1, classes: [poor]}
      - {value: 1, regions: ["51x"]}
      - {value: 1, from_year: 2025, to_year: 2024}
  - id: b
    department: yibao
    fact_types: [medical_settlement]
    subject: person
    measure: amount
    op: "≥"
    thresholds: [{value: 1}]
  - id: c
    department: yibao
    fact_types: [medical_settlement]
    subject: somebody
    measure: shoe_size
    aggregate: rolling_sum
    where:
      - {field: values.x, in: [a], not_in: [b]}
`}, "thr.yaml")
	for _, want := range []string{
		`thr.yaml:11: warnings[a]: thresholds: value "5千" is not a number`,
		`thr.yaml:11: warnings[a]: thresholds: class "lifted" is not a population class`, // this file defines no population
		`thr.yaml:12: warnings[a]: thresholds: class "poor" is not a population class`,
		`thr.yaml:13: warnings[a]: thresholds: region "51x" is not a region-code prefix`,
		`thr.yaml:14: warnings[a]: thresholds: to_year 2024 is before from_year 2025`,
		`thr.yaml:15: warnings[b]: op: "≥" is not a comparison`,
		`thr.yaml:22: warnings[c]: subject: "somebody" must be person or household`,
		`thr.yaml:22: warnings[c]: measure: "shoe_size" is not a field`,
		`thr.yaml:22: warnings[c]: window_months: a rolling_sum needs a window of at least 1 month`,
		`thr.yaml:22: warnings[c]: thresholds: a rule with a measure needs at least one threshold`,
		`thr.yaml:29: warnings[c]: where: field values.x: give exactly one of`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	_, err = loadText(t, map[string]string{"cmp.yaml": `version: 1
comparisons:
  - id: x
    department: gongan
    fact_types: [death]
    subject: person
    field: deceased
    registry: [person.alive]
    expect: "true"
    expect_from: values.x
`}, "cmp.yaml")
	for _, want := range []string{`cmp.yaml:3: comparisons[x]: registry: person has no field "alive"`, `cmp.yaml:3: comparisons[x]: expect or expect_from: give exactly one`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// An override file may disable only rules that exist.
	if _, err := Load(mergedFS(t, "o.yaml", "version: 1\ndisable: [nope]\n"), DefaultFile, "o.yaml"); err == nil || !strings.Contains(err.Error(), `o.yaml:1: disable: "nope" is not a rule loaded so far`) {
		t.Errorf("disable unknown: %v", err)
	}
	if _, err := loadText(t, map[string]string{"syntax.yaml": "version: 1\nwarnings: [\n"}, "syntax.yaml"); err == nil || !strings.Contains(err.Error(), "syntax.yaml:") {
		t.Errorf("syntax error: %v", err)
	}
}

// TestOverride: a later file replaces a rule by id (here: a place- and year-specific
// threshold) and disables another.
func TestOverride(t *testing.T) {
	r, err := Load(mergedFS(t, "sc2025.yaml", `version: 1
warnings:
  - id: yingji.disaster_loss
    department: yingji
    fact_types: [disaster]
    subject: household
    measure: amount
    op: ">="
    thresholds:
      - {value: 10000}
      - {value: 8000, regions: ["5134"], from_year: 2025}
disable: [yibao.outpatient_special_month]
`), DefaultFile, "sc2025.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.Join(r.WarningRules(), ",")
	if strings.Contains(ids, "outpatient_special") || !strings.Contains(ids, "yingji.disaster_loss") {
		t.Errorf("rules: %s", ids)
	}
	for _, w := range r.warnings {
		if w.id == "yingji.disaster_loss" {
			if thr, _ := w.thresholdFor(2025, ClassLifted, "513401001001"); thr.text != "8000" {
				t.Errorf("override threshold %s", thr.text)
			}
			if len(w.where) != 0 {
				t.Error("the replaced rule kept the default's where")
			}
		}
	}
}
