package rules

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

const goodFile = `ruleset: extra
version: 2
params:
  max_km: {type: float, value: 5}
  label: 健康
rules:
  - id: Q-113
    title: too far
    subject: household
    severity: warning
    fail: hh.distance_to_main_road_km > params.max_km
`

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	cases := []struct {
		name, file string
		want       []string // substrings of the joined error, each "file:line: …"
	}{
		{"unknown top-level field", goodFile + "colour: blue\n", []string{`r.yaml:12: unknown field "colour"`}},
		{"unknown rule field", strings.Replace(goodFile, "    severity: warning\n", "    severity: warning\n    sevrity: error\n", 1),
			[]string{`r.yaml:11: unknown field "sevrity" in rule Q-113`}},
		{"bad expression syntax", strings.Replace(goodFile, "hh.distance_to_main_road_km > params.max_km", "hh.distance_to_main_road_km >> 1", 1),
			[]string{"r.yaml:11: rule Q-113: fail:"}},
		{"unknown field in expression", strings.Replace(goodFile, "hh.distance_to_main_road_km", "hh.distance_km", 1),
			[]string{"r.yaml:11: rule Q-113: fail:", "distance_km"}},
		{"person field in a household rule", strings.Replace(goodFile, "hh.distance_to_main_road_km > params.max_km", "p.age > 3", 1),
			[]string{"r.yaml:11: rule Q-113: fail:", "unknown name p"}},
		{"not a boolean", strings.Replace(goodFile, "hh.distance_to_main_road_km > params.max_km", "hh.distance_to_main_road_km", 1),
			[]string{"r.yaml:11: rule Q-113: fail:", "bool"}},
		{"unknown param", strings.Replace(goodFile, "params.max_km", "params.max_kms", 1),
			[]string{"r.yaml:11: rule Q-113: fail: unknown param max_kms"}},
		{"param used with the wrong type", strings.Replace(goodFile, "params.max_km", "params.label", 1),
			[]string{"r.yaml:11: rule Q-113: fail:"}},
		{"declared param type mismatch", strings.Replace(goodFile, "{type: float, value: 5}", "{type: int, value: five}", 1),
			[]string{"r.yaml:4: param max_km: declared int, but the value five is a string"}},
		{"unknown param type", strings.Replace(goodFile, "{type: float, value: 5}", "{type: decimal, value: 5}", 1),
			[]string{`r.yaml:4: param max_km: type "decimal" is not known`}},
		{"bad severity", strings.Replace(goodFile, "severity: warning", "severity: fatal", 1),
			[]string{`r.yaml:7: rule Q-113: severity "fatal"`}},
		{"bad rule id", strings.Replace(goodFile, "id: Q-113", "id: Q113", 1),
			[]string{`r.yaml:7: rule id "Q113"`}},
		{"duplicate rule id", goodFile + `  - id: Q-113
    subject: household
    severity: info
    fail: "true"
`, []string{"r.yaml:12: rule Q-113 is defined twice (first at r.yaml:7)"}},
		{"version missing", strings.Replace(goodFile, "version: 2\n", "", 1), []string{"r.yaml:1: version is required"}},
		{"broken YAML", "ruleset: x\n  version: [\n", []string{"r.yaml:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fsys := fstest.MapFS{"r.yaml": {Data: []byte(c.file)}}
			e, err := Load(fsys, "r.yaml")
			if err == nil {
				t.Fatalf("loaded (%d rules), want an error", len(e.RuleIDs()))
			}
			if e != nil {
				t.Errorf("an Engine came with the error")
			}
			var le *LoadError
			if !errors.As(err, &le) || le.File != "r.yaml" {
				t.Errorf("error %v is not a LoadError of r.yaml", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadReportsEveryProblemAndDuplicatesAcrossFiles(t *testing.T) {
	bad := strings.Replace(strings.Replace(goodFile, "params.max_km", "params.nope", 1), "id: Q-113", "id: Q-112", 1) + "colour: blue\n"
	fsys := fstest.MapFS{"a.yaml": {Data: []byte(goodFile)}, "b.yaml": {Data: []byte(bad)},
		"c.yaml": {Data: []byte(strings.Replace(goodFile, "ruleset: extra", "ruleset: more", 1))}}
	_, err := Load(fsys, "a.yaml", "b.yaml", "c.yaml")
	if err == nil {
		t.Fatal("loaded")
	}
	for _, w := range []string{"b.yaml:12: unknown field", "b.yaml:11: rule Q-112: fail: unknown param nope",
		"c.yaml:7: rule Q-113 is defined twice (first at a.yaml:7)"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error\n%v\nlacks %q", err, w)
		}
	}
}

func TestParamOverrides(t *testing.T) {
	h, ps, ms := cleanHousehold(t)
	h.DistanceToMainRoadKm = "6.50"
	hc := NewHouseholdContext(h, ps, ms)
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleSet(def.Evaluate(hc, asOf)); len(got) != 1 || got[0] != "Q-113" {
		t.Fatalf("default: %v, want [Q-113]", got)
	}
	// A larger limit from the config: the same household passes.
	wide, err := DefaultWith(Options{Params: map[string]any{"road_max_km": 10, "elderly_age": 65}})
	if err != nil {
		t.Fatal(err)
	}
	if got := wide.Evaluate(hc, asOf); len(got) != 0 {
		t.Errorf("road_max_km 10: %v, want nothing", ruleSet(got))
	}
	for _, c := range []struct {
		params map[string]any
		want   string
	}{
		{map[string]any{"road_max_km": "ten"}, "params: param road_max_km: want float, got string"},
		{map[string]any{"elderly_age": 60.5}, "params: param elderly_age: want int, got float64"},
		{map[string]any{"no_such_param": 1}, "params: param no_such_param is not declared"},
		{map[string]any{"able_skills": []any{"x", 3}}, "params: param able_skills: want list"},
	} {
		if _, err := DefaultWith(Options{Params: c.params}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("override %v: error %v, want %q", c.params, err, c.want)
		}
	}
	// A list override changes what the rule compares with.
	h2, ps2, ms2 := cleanHousehold(t)
	ps2[1].LabourSkill = "弱劳动力或半劳动力"
	e, err := DefaultWith(Options{Params: map[string]any{"weak_skill": "半劳动力"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Evaluate(NewHouseholdContext(h2, ps2, ms2), asOf); len(got) != 0 {
		t.Errorf("weak_skill overridden: %v, want nothing", ruleSet(got))
	}
}

func TestVersionAndMissingThresholdYear(t *testing.T) {
	fsys := fstest.MapFS{"r.yaml": {Data: []byte(goodFile)}}
	e, err := Load(fsys, "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if e.Version() != "extra.v2" {
		t.Errorf("version %q", e.Version())
	}
	def, _ := Default()
	if def.Version() != "quality.v1" {
		t.Errorf("default version %q", def.Version())
	}
	// Q-093 with an elimination year the threshold map lacks: no threshold, no
	// finding and no evaluation error.
	h, ps, ms := cleanHousehold(t)
	h.RiskEliminated, h.EliminatedYM, h.EliminationMethod = yes(), "203001", "帮扶消除"
	h.PerCapitaNetIncome = "5000.00"
	for _, f := range def.Evaluate(NewHouseholdContext(h, ps, ms), asOf) {
		t.Errorf("%s: %s %s", f.RuleID, f.Detail(), f.Err)
	}
}
