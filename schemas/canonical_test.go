package schemas

import (
	"encoding/json"
	"regexp"
	"testing"
)

func TestDeterministicID(t *testing.T) {
	id := DeterministicID("yibao.oop_12m", "person", "513423198503120027", "202405")
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("id %q is not 32 lower-case hex characters", id)
	}
	// Pinned (computed independently: Python hashlib over "13:yibao.oop_12m6:person…"):
	// ids are stored in sinks and topics, so the derivation must never change.
	if want := "b23ba9a03eeccb32e3a6c45aa5cac0a9"; id != want {
		t.Errorf("DeterministicID changed: got %s, want %s (stored ids would no longer match)", id, want)
	}
	if again := DeterministicID("yibao.oop_12m", "person", "513423198503120027", "202405"); again != id {
		t.Errorf("same parts gave %s then %s", id, again)
	}
	distinct := [][]string{
		{"ab", "c"},
		{"a", "bc"},
		{"abc"},
		{"c", "ab"},
		{"ab", "c", ""},
		{""},
		{},
		{"1:a"},
		{"1", "a"},
		{"a\x00b"},
		{"a", "b"},
		{"规则", "户"},
	}
	seen := map[string][]string{}
	for _, parts := range distinct {
		id := DeterministicID(parts...)
		if prev, dup := seen[id]; dup {
			t.Errorf("DeterministicID(%q) == DeterministicID(%q) = %s; parts must stay apart", parts, prev, id)
		}
		seen[id] = parts
	}
}

func TestEntitiesRegistry(t *testing.T) {
	wantTopics := map[string]string{
		"household":          "sc.canonical.household",
		"person":             "sc.canonical.person",
		"monitoring_episode": "sc.canonical.monitoring_episode",
		"assistance_measure": "sc.canonical.assistance_measure",
		"department_fact":    "sc.canonical.department_fact",
		"warning":            "sc.warning",
		"quality_issue":      "sc.quality_issue",
		"discrepancy":        "sc.discrepancy",
	}
	ents := Entities()
	if len(ents) != len(wantTopics) {
		t.Fatalf("Entities() has %d entries, want %d", len(ents), len(wantTopics))
	}
	for _, e := range ents {
		if got := e.Topic("sc"); got != wantTopics[e.Name] {
			t.Errorf("%s: topic %q, want %q", e.Name, got, wantTopics[e.Name])
		}
		a, b := e.New(), e.New()
		ea, ok := a.(Entity)
		if !ok {
			t.Fatalf("%s: New() gives %T, which does not implement Entity", e.Name, a)
		}
		ea.Common().Key = "k"
		if b.(Entity).Common().Key != "" {
			t.Errorf("%s: New() returns shared values", e.Name)
		}
		if _, err := SchemaFile(e.Name, e.Version); err != nil {
			t.Errorf("%s: %v", e.Name, err)
		}
	}
}

func TestMetaFlattened(t *testing.T) {
	h := Household{Meta: Meta{Key: "h1", Version: 7, Source: SourceRef{System: "national"}, UpdatedMs: 1}, HouseholdNo: "h1"}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"key", "version", "source", "updated_ms", "household_no"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s missing at the top level of %s", k, b)
		}
	}
	if _, ok := m["Meta"]; ok {
		t.Errorf("Meta must be flattened, got %s", b)
	}
}

func TestDecimalValid(t *testing.T) {
	cases := []struct {
		in   Decimal
		want bool
	}{
		{"", true},
		{"0", true},
		{"12345.60", true},
		{"-3.5", true},
		{"007", true},
		{"1e3", false},
		{"1,000.00", false},
		{".5", false},
		{"5.", false},
		{"+5", false},
		{" 5", false},
		{"NaN", false},
		{"１２", false},
	}
	for _, tc := range cases {
		if got := tc.in.Valid(); got != tc.want {
			t.Errorf("Decimal(%q).Valid() = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestVersionedTopic(t *testing.T) {
	cases := []struct {
		base string
		v    int
		want string
	}{
		{"sc.canonical.household", 1, "sc.canonical.household"},
		{"sc.canonical.household", 0, "sc.canonical.household"},
		{"sc.canonical.household", 2, "sc.canonical.household.v2"},
		{"sc.warning", 12, "sc.warning.v12"},
	}
	for _, tc := range cases {
		if got := VersionedTopic(tc.base, tc.v); got != tc.want {
			t.Errorf("VersionedTopic(%q, %d) = %q, want %q", tc.base, tc.v, got, tc.want)
		}
	}
}
