package rules

import (
	"encoding/json"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/shouwang/shouwang/schemas"
)

func fixedClock() func() time.Time {
	t0 := time.Date(2024, 7, 1, 8, 0, 0, 0, time.UTC)
	n := 0
	return func() time.Time { n++; return t0.Add(time.Duration(n) * time.Minute) }
}

type step struct {
	version int64
	mut     mutation // nil: the clean household
	delete  bool
}

// runSteps evaluates the household after each step and applies the findings.
func runSteps(t *testing.T, e *Engine, tr *Tracker, steps []step) [][]schemas.QualityIssue {
	t.Helper()
	var out [][]schemas.QualityIssue
	for _, s := range steps {
		var evs []schemas.QualityIssue
		var err error
		if s.delete {
			evs, err = tr.Delete("H1", s.version)
		} else {
			h, ps, ms := cleanHousehold(t)
			if s.mut != nil {
				s.mut(t, h, ps, &ms)
			}
			evs, err = tr.Apply("H1", s.version, e.Evaluate(NewHouseholdContext(h, ps, ms), asOf))
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs)
	}
	return out
}

func TestTrackerLifecycle(t *testing.T) {
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	farRoad := func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.DistanceToMainRoadKm = "6.50"
	}
	farRoadAndChild := func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		farRoad(t, h, ps, ms)
		ps[2].LabourSkill = "普通劳动力" // Q-022 on P3
	}
	steps := []step{
		{version: 10, mut: farRoad},         // open Q-113 on H1
		{version: 11, mut: farRoad},         // unchanged: nothing
		{version: 12, mut: farRoadAndChild}, // open Q-022 on P3
		{version: 12, mut: nil},             // redelivered version: ignored
		{version: 9, mut: nil},              // stale version: ignored
		{version: 13, mut: farRoad},         // P3 passes: close Q-022
		{version: 14, mut: nil},             // road fixed: close Q-113
		{version: 15, mut: farRoadAndChild}, // both open again (same IDs)
		{version: 16, delete: true},         // household deleted: both close
		{version: 16, delete: true},         // redelivered delete: ignored
	}
	store := NewMemoryStore()
	tr := NewTracker(store)
	tr.Now, tr.RuleSet = fixedClock(), e.Version()
	got := runSteps(t, e, tr, steps)

	q113 := IssueID("Q-113", SubjectHousehold, "H1")
	q022 := IssueID("Q-022", SubjectPerson, "P3")
	if q113 != schemas.DeterministicID("Q-113", "household", "H1") {
		t.Errorf("issue ID is not DeterministicID(rule, kind, key)")
	}
	type ev struct {
		id, status string
		version    int64
	}
	byID := func(evs ...ev) []ev { // events come ordered by issue ID
		sort.Slice(evs, func(i, j int) bool { return evs[i].id < evs[j].id })
		return evs
	}
	want := [][]ev{
		{{q113, schemas.IssueOpen, 10}},
		nil,
		{{q022, schemas.IssueOpen, 12}},
		nil,
		nil,
		{{q022, schemas.IssueClosed, 13}},
		{{q113, schemas.IssueClosed, 14}},
		byID(ev{q113, schemas.IssueOpen, 15}, ev{q022, schemas.IssueOpen, 15}),
		byID(ev{q113, schemas.IssueClosed, 16}, ev{q022, schemas.IssueClosed, 16}),
		nil,
	}
	for i := range steps {
		var g []ev
		for _, q := range got[i] {
			g = append(g, ev{q.ID, q.Status, q.Version})
			if q.Key != q.ID || q.SubjectKey == "" || q.RegionCode != "510104001001" || q.Severity == "" || q.FirstSeen == "" {
				t.Errorf("step %d: incomplete issue %+v", i, q)
			}
			if (q.Status == schemas.IssueClosed) != (q.ClosedAt != "") {
				t.Errorf("step %d: status %s with closed_at %q", i, q.Status, q.ClosedAt)
			}
			if q.Source.Table != "quality.v1" {
				t.Errorf("step %d: source table %q", i, q.Source.Table)
			}
		}
		if !reflect.DeepEqual(g, want[i]) {
			t.Errorf("step %d (version %d): events %v, want %v", i, steps[i].version, g, want[i])
		}
	}
	// The close of Q-113 at step 6 carries when it was first seen (step 0) and last
	// seen (step 5).
	closed := got[6][0]
	if closed.FirstSeen != got[0][0].FirstSeen || closed.LastSeen == closed.FirstSeen || closed.ClosedAt <= closed.LastSeen {
		t.Errorf("close event first %s last %s closed %s", closed.FirstSeen, closed.LastSeen, closed.ClosedAt)
	}
	if st, ok, _ := tr.State("H1"); !ok || st.Version != 16 || len(st.Open) != 0 {
		t.Errorf("final state %+v", st)
	}

	// Replaying the same input from scratch gives identical events.
	tr2 := NewTracker(NewMemoryStore())
	tr2.Now, tr2.RuleSet = fixedClock(), e.Version()
	if again := runSteps(t, e, tr2, steps); !reflect.DeepEqual(again, got) {
		t.Errorf("replay gave other events:\n%v\nwant\n%v", again, got)
	}
}

// TestTrackerKeepsStateOnEvaluationError: a finding with Err neither opens nor closes.
func TestTrackerKeepsStateOnEvaluationError(t *testing.T) {
	tr := NewTracker(NewMemoryStore())
	tr.Now = fixedClock()
	f := Finding{RuleID: "Q-113", Severity: "warning", SubjectKind: SubjectHousehold, SubjectKey: "H1", RegionCode: "510104001001"}
	if evs, _ := tr.Apply("H1", 1, []Finding{f}); len(evs) != 1 || evs[0].Status != schemas.IssueOpen {
		t.Fatalf("open: %v", evs)
	}
	broken := f
	broken.Err = "fail: runtime error"
	if evs, _ := tr.Apply("H1", 2, []Finding{broken}); len(evs) != 0 {
		t.Errorf("an evaluation error closed or opened: %v", evs)
	}
	if st, _, _ := tr.State("H1"); len(st.Open) != 1 || st.Version != 2 {
		t.Errorf("state after error %+v", st)
	}
	other := Finding{RuleID: "Q-110", Severity: "warning", SubjectKind: SubjectHousehold, SubjectKey: "H1", Err: "boom"}
	if evs, _ := tr.Apply("H1", 3, []Finding{other, f}); len(evs) != 0 {
		t.Errorf("an erroring rule without issue opened one: %v", evs)
	}
}

func TestMemoryStoreSnapshot(t *testing.T) {
	s := NewMemoryStore()
	tr := NewTracker(s)
	tr.Now = fixedClock()
	f := Finding{RuleID: "Q-113", Severity: "warning", SubjectKind: SubjectHousehold, SubjectKey: "H1", RegionCode: "510104001001", Message: "far"}
	if _, err := tr.Apply("H1", 5, []Finding{f}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Apply("H2", 7, nil); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	restored := NewMemoryStore()
	if err := json.Unmarshal(b, restored); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"H1", "H2"} {
		a, _, _ := s.Get(k)
		r, ok, _ := restored.Get(k)
		if !ok || !reflect.DeepEqual(a, r) {
			t.Errorf("%s: restored %+v, want %+v", k, r, a)
		}
	}
	// The restored store keeps idempotence: version 5 again is ignored, 6 closes.
	tr2 := NewTracker(restored)
	tr2.Now = fixedClock()
	if evs, _ := tr2.Apply("H1", 5, nil); len(evs) != 0 {
		t.Errorf("replayed version after restore: %v", evs)
	}
	if evs, _ := tr2.Apply("H1", 6, nil); len(evs) != 1 || evs[0].Status != schemas.IssueClosed || evs[0].Detail != "far" {
		t.Errorf("close after restore: %+v", evs)
	}
	if err := json.Unmarshal([]byte(`{"households": 3}`), restored); err == nil {
		t.Error("bad snapshot accepted")
	}
}

// TestConcurrentUse evaluates and tracks households from several goroutines with one
// Engine and one MemoryStore (run with -race).
func TestConcurrentUse(t *testing.T) {
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker(NewMemoryStore())
	done := make(chan []schemas.QualityIssue)
	for g := 0; g < 4; g++ {
		go func(g int) {
			var all []schemas.QualityIssue
			h, ps, ms := cleanHousehold(t)
			h.Key = "H" + string(rune('A'+g))
			h.DistanceToMainRoadKm = "9.00"
			hc := NewHouseholdContext(h, ps, ms)
			for v := int64(1); v <= 20; v++ {
				evs, err := tr.Apply(hc.Key, v, e.Evaluate(hc, asOf))
				if err != nil {
					t.Error(err)
				}
				all = append(all, evs...)
			}
			done <- all
		}(g)
	}
	for g := 0; g < 4; g++ {
		if evs := <-done; len(evs) != 1 || evs[0].RuleID != "Q-113" || evs[0].Status != schemas.IssueOpen {
			t.Errorf("events %v, want one Q-113 open", evs)
		}
	}
}
