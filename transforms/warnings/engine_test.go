package warnings

import (
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/schemas"
)

var testNow = time.Date(2024, 7, 1, 8, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func hh(no, region, typ string, category int) *schemas.Household {
	return &schemas.Household{HouseholdNo: no, RegionCode: region, VillageCode: region, HouseholdType: typ,
		MonitoringCategory: category, DangerousHouse: ptr(false)}
}

func person(no, hhNo, id string) *schemas.Person {
	return &schemas.Person{PersonNo: no, HouseholdNo: hhNo, IDNo: id, Health: "健康", Deceased: ptr(false),
		ResidentMedicalInsurance: ptr(true), EmployeeMedicalInsurance: ptr(false), DibaoStatus: "未享受低保", TekunStatus: "未享受特困供养",
		BirthDate: "1960-01-01"}
}

func settlement(id, date, visit, amount string) *schemas.DepartmentFact {
	return &schemas.DepartmentFact{Meta: schemas.Meta{UpdatedMs: testNow.UnixMilli()}, Department: "yibao", Dataset: "settlement",
		FactType: "medical_settlement", IDNo: id, Period: strings.ReplaceAll(date[:7], "-", ""), OccurredOn: date,
		Amount: schemas.Decimal(amount), Values: map[string]string{"visit_type": visit}}
}

func assistance(id, date, typ string) *schemas.DepartmentFact {
	return &schemas.DepartmentFact{Meta: schemas.Meta{UpdatedMs: testNow.UnixMilli()}, Department: "minzheng", Dataset: "assistance_recipient",
		FactType: "assistance_recipient", IDNo: id, Period: strings.ReplaceAll(date[:7], "-", ""), OccurredOn: date,
		Amount: "500.00", Values: map[string]string{"assistance_type": typ}}
}

func death(id, date string) *schemas.DepartmentFact {
	return &schemas.DepartmentFact{Meta: schemas.Meta{UpdatedMs: testNow.UnixMilli()}, Department: "gongan", Dataset: "death",
		FactType: "death", IDNo: id, Period: strings.ReplaceAll(date[:7], "-", ""), OccurredOn: date}
}

type harness struct {
	t *testing.T
	e *Engine
}

func newHarness(t *testing.T, r *Rules) *harness {
	return &harness{t: t, e: New(r, NewMemoryStore(), func() time.Time { return testNow })}
}

func (h *harness) ok(ev []Event, err error) []Event {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
	return ev
}

func warningsOf(ev []Event, rule string) []*schemas.Warning {
	var out []*schemas.Warning
	for _, e := range ev {
		if e.Warning != nil && (rule == "" || e.Warning.RuleID == rule) {
			out = append(out, e.Warning)
		}
	}
	return out
}

func discrepanciesOf(ev []Event) []*schemas.Discrepancy {
	var out []*schemas.Discrepancy
	for _, e := range ev {
		if e.Discrepancy != nil {
			out = append(out, e.Discrepancy)
		}
	}
	return out
}

const id1 = "510114196001010011"

func mustDefault(t *testing.T) *Rules {
	t.Helper()
	r, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRollingOOPByClass: the 12-month window sums in-scope out-of-pocket; the
// threshold follows the class, so a fact arriving before its registry person is
// evaluated as "other rural" and warns once the 脱贫 person arrives.
func TestRollingOOPByClass(t *testing.T) {
	h := newHarness(t, mustDefault(t))
	const rule = "yibao.oop_12m"
	if w := warningsOf(h.ok(h.e.ApplyFact("s1", 1, settlement(id1, "2023-08-10", "门诊", "3000.00"), false)), rule); len(w) != 0 {
		t.Fatalf("3000 warned: %+v", w[0])
	}
	if w := warningsOf(h.ok(h.e.ApplyFact("s2", 1, settlement(id1, "2024-05-10", "门诊", "2500.50"), false)), rule); len(w) != 0 {
		t.Fatalf("5500.50 for a person not in the registry (threshold 20000) warned: %+v", w[0])
	}
	h.ok(h.e.ApplyHousehold("H1", 1, hh("H1", "510114001010", "脱贫户", 0), false))
	ev := h.ok(h.e.ApplyPerson("P1", 1, person("P1", "H1", id1), false))
	w := warningsOf(ev, rule)
	if len(w) != 1 || w[0].Period != "202405" || w[0].Evidence["amount"] != "5500.50" || w[0].Evidence["threshold"] != "5000" ||
		w[0].Evidence["class"] != ClassLifted || w[0].Evidence["window"] != "202306..202405" || len(w[0].FactKeys) != 2 || w[0].HouseholdNo != "H1" {
		t.Fatalf("after the person arrived: %+v", w)
	}
	if w[0].RaisedAt != "2024-07-01T08:00:00Z" || w[0].DueAt != "2024-07-16T08:00:00Z" || w[0].DueDays != 15 {
		t.Errorf("dates: raised %s due %s (%d days)", w[0].RaisedAt, w[0].DueAt, w[0].DueDays)
	}
	// A settlement outside the window (13 months before) adds nothing.
	if ev := h.ok(h.e.ApplyFact("s0", 1, settlement(id1, "2022-01-10", "门诊", "900.00"), false)); len(ev) != 0 {
		t.Errorf("a settlement outside every window changed the warning: %+v", ev)
	}
	// A later settlement inside the same over-threshold episode: same warning, no event.
	if ev := h.ok(h.e.ApplyFact("s3", 1, settlement(id1, "2024-06-01", "门诊", "100.00"), false)); len(ev) != 0 {
		t.Errorf("a settlement within the open episode re-raised: %+v", ev)
	}
	// The same fact again at a higher version, unchanged: nothing.
	if ev := h.ok(h.e.ApplyFact("s2", 2, settlement(id1, "2024-05-10", "门诊", "2500.50"), false)); len(ev) != 0 {
		t.Errorf("an unchanged fact re-raised: %+v", ev)
	}
	// An older version is ignored.
	if ev := h.ok(h.e.ApplyFact("s2", 1, settlement(id1, "2024-05-10", "门诊", "1.00"), false)); len(ev) != 0 {
		t.Errorf("a stale version applied: %+v", ev)
	}
	// The evidence changes with a corrected amount: same ID, same deadline, new version.
	w2 := warningsOf(h.ok(h.e.ApplyFact("s2", 3, settlement(id1, "2024-05-10", "门诊", "2600.00"), false)), rule)
	if len(w2) != 1 || w2[0].ID != w[0].ID || w2[0].Evidence["amount"] != "5600.00" || w2[0].RaisedAt != w[0].RaisedAt || w2[0].Version != 2 {
		t.Fatalf("corrected amount: %+v", w2)
	}
	// Deleting a settlement drops the sum below the threshold: the warning is withdrawn.
	w3 := warningsOf(h.ok(h.e.ApplyFact("s1", 2, nil, true)), rule)
	if len(w3) != 1 || w3[0].ID != w[0].ID || w3[0].Status != schemas.WarningDismissed || w3[0].Resolution == "" {
		t.Fatalf("after delete: %+v", w3)
	}
	// A redelivered create older than the delete stays deleted.
	if ev := h.ok(h.e.ApplyFact("s1", 1, settlement(id1, "2023-08-10", "门诊", "3000.00"), false)); len(ev) != 0 {
		t.Errorf("a create older than its delete applied: %+v", ev)
	}
	// The household becomes a monitored one in 凉山 … the lifted/monitored threshold
	// still applies (and no warning while under it).
	if ev := h.ok(h.e.ApplyHousehold("H1", 2, hh("H1", "510114001010", "监测户", 1), false)); len(warningsOf(ev, rule)) != 0 {
		t.Errorf("class change alone raised: %+v", ev)
	}
}

// TestThresholdsByYearClassPlace: the most specific region prefix wins, then the later
// entry; from_year/to_year select the year of the evaluated month.
func TestThresholdsByYearClassPlace(t *testing.T) {
	r, err := loadText(t, map[string]string{"r.yaml": `version: 1
population:
  - {class: monitored, monitoring_categories: [1, 2, 3]}
  - {class: lifted, household_types: [脱贫户]}
warnings:
  - id: oop
    department: yibao
    fact_types: [medical_settlement]
    subject: person
    measure: amount
    aggregate: rolling_sum
    window_months: 12
    op: ">="
    thresholds:
      - {value: 5000, classes: [lifted, monitored]}
      - {value: 20000, classes: [other]}
      - {value: 6000, classes: [lifted, monitored], from_year: 2025}
      - {value: 4000, classes: [lifted, monitored], regions: ["5134"]}
      - {value: 3000, classes: [monitored], regions: ["513401"], to_year: 2024}
`}, "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rl := r.warnings[0]
	for _, tc := range []struct {
		year          int
		class, region string
		want          int64
	}{
		{2024, ClassLifted, "510114001010", 5000},
		{2025, ClassLifted, "510114001010", 6000},
		{2024, ClassOther, "510114001010", 20000},
		{2025, ClassOther, "", 20000},
		{2024, ClassLifted, "513401001001", 4000},
		{2025, ClassLifted, "513401001001", 4000},
		{2024, ClassMonitored, "513401001001", 3000},
		{2025, ClassMonitored, "513401001001", 4000},
	} {
		thr, ok := rl.thresholdFor(tc.year, tc.class, tc.region)
		if !ok || thr.value != tc.want*numScale {
			t.Errorf("%d %s %s: %v %v, want %d", tc.year, tc.class, tc.region, formatNum(thr.value), ok, tc.want)
		}
	}
	// Through the engine: a 凉山 monitored household in 2024 warns at 3000.
	h := newHarness(t, r)
	h.ok(h.e.ApplyHousehold("H1", 1, hh("H1", "513401001001", "监测户", 2), false))
	h.ok(h.e.ApplyPerson("P1", 1, person("P1", "H1", id1), false))
	w := warningsOf(h.ok(h.e.ApplyFact("s1", 1, settlement(id1, "2024-03-01", "住院", "3000"), false)), "oop")
	if len(w) != 1 || w[0].Evidence["threshold"] != "3000" || w[0].Evidence["class"] != ClassMonitored {
		t.Fatalf("凉山 monitored: %+v", w)
	}
}

// TestInpatientStayAndOutpatientSpecial: the two 医保 rules the generator does not seed.
func TestInpatientStayAndOutpatientSpecial(t *testing.T) {
	h := newHarness(t, mustDefault(t))
	h.ok(h.e.ApplyHousehold("H1", 1, hh("H1", "510114001010", "脱贫户", 0), false))
	h.ok(h.e.ApplyPerson("P1", 1, person("P1", "H1", id1), false))
	if w := warningsOf(h.ok(h.e.ApplyFact("a", 1, settlement(id1, "2024-02-01", "住院", "6000.00"), false)), "yibao.inpatient_stay"); len(w) != 0 {
		t.Errorf("a stay of exactly 6000 (rule: > 6000) warned")
	}
	w := warningsOf(h.ok(h.e.ApplyFact("b", 1, settlement(id1, "2024-03-01", "住院", "6000.01"), false)), "yibao.inpatient_stay")
	if len(w) != 1 || w[0].Period != "202403" || w[0].Evidence["amount"] != "6000.01" || w[0].Evidence["values.visit_type"] != "住院" {
		t.Fatalf("stay of 6000.01: %+v", w)
	}
	if w := warningsOf(h.ok(h.e.ApplyFact("c", 1, settlement(id1, "2024-04-01", "门诊", "9000.00"), false)), "yibao.inpatient_stay"); len(w) != 0 {
		t.Errorf("an outpatient visit counted as a stay")
	}
	// Outpatient special illness: 500 a month, summed within the month only.
	h.ok(h.e.ApplyFact("d", 1, settlement(id1, "2024-05-02", "门诊慢特病", "300.00"), false))
	if w := warningsOf(h.ok(h.e.ApplyFact("e", 1, settlement(id1, "2024-06-02", "门诊慢特病", "300.00"), false)), "yibao.outpatient_special_month"); len(w) != 0 {
		t.Errorf("300 + 300 in two months warned: %+v", w[0])
	}
	w = warningsOf(h.ok(h.e.ApplyFact("f", 1, settlement(id1, "2024-06-20", "门诊慢特病", "200.00"), false)), "yibao.outpatient_special_month")
	if len(w) != 1 || w[0].Period != "202406" || w[0].Evidence["amount"] != "500.00" {
		t.Fatalf("500 in June: %+v", w)
	}
}

// TestAssistanceBeforeRegistry: a new 低保 recipient not in the registry warns (not
// monitored); when the registry shows a monitored household the warning is withdrawn,
// and the discrepancy appears once the registry person is known.
func TestAssistanceBeforeRegistry(t *testing.T) {
	h := newHarness(t, mustDefault(t))
	const rule = "minzheng.new_assistance_unmonitored"
	ev := h.ok(h.e.ApplyFact("m1", 1, assistance(id1, "2024-06-01", "低保"), false))
	w := warningsOf(ev, rule)
	if len(w) != 1 || w[0].Status != schemas.WarningOpen || w[0].HouseholdNo != "" || len(discrepanciesOf(ev)) != 0 {
		t.Fatalf("unmatched new recipient: %+v", ev)
	}
	ev = h.ok(h.e.ApplyPerson("P1", 1, person("P1", "H1", id1), false))
	d := discrepanciesOf(ev)
	if len(d) != 1 || d[0].Field != "dibao_status" || d[0].RegistryValue != "未享受低保" || d[0].DepartmentValue != "享受低保" || d[0].FactKey != "m1" {
		t.Fatalf("discrepancy: %+v", d)
	}
	w = warningsOf(h.ok(h.e.ApplyHousehold("H1", 1, hh("H1", "510114001010", "监测户", 2), false)), rule)
	if len(w) != 1 || w[0].Status != schemas.WarningDismissed {
		t.Fatalf("monitored household: %+v", w)
	}
	// An old recipient (start more than new_within_months before delivery) is not new.
	if w := warningsOf(h.ok(h.e.ApplyFact("m2", 1, assistance("510114196001010038", "2023-01-01", "临时救助"), false)), rule); len(w) != 0 {
		t.Errorf("an old record warned: %+v", w[0])
	}
	// The registry corrects the status: the discrepancy resolves as corrected.
	p := person("P1", "H1", id1)
	p.DibaoStatus = "享受低保"
	d = discrepanciesOf(h.ok(h.e.ApplyPerson("P1", 2, p, false)))
	if len(d) != 1 || d[0].Status != schemas.DiscrepancyCorrected || d[0].ResolvedAt == "" || d[0].ID != schemas.DeterministicID("minzheng", "person", id1, "dibao_status") {
		t.Fatalf("corrected: %+v", d)
	}
}

// TestDeathDiscrepancyLifecycle: raised once, not raised again while unchanged,
// resolved when the department withdraws the record, raised again when it comes back.
func TestDeathDiscrepancyLifecycle(t *testing.T) {
	h := newHarness(t, mustDefault(t))
	h.ok(h.e.ApplyHousehold("H1", 1, hh("H1", "510114001010", "脱贫户", 0), false))
	h.ok(h.e.ApplyPerson("P1", 1, person("P1", "H1", id1), false))
	ev := h.ok(h.e.ApplyFact("g1", 1, death(id1, "2024-06-03"), false))
	d := discrepanciesOf(ev)
	if len(d) != 1 || d[0].Field != "deceased" || d[0].RegistryValue != "false" || d[0].Status != schemas.DiscrepancyPending ||
		len(warningsOf(ev, "gongan.death_recorded_alive")) != 1 {
		t.Fatalf("death: %+v", ev)
	}
	// Another person of the household changes: nothing new for this one.
	if ev := h.ok(h.e.ApplyPerson("P2", 1, person("P2", "H1", "510114196001010038"), false)); len(ev) != 0 {
		t.Errorf("unrelated change re-raised: %+v", ev)
	}
	ev = h.ok(h.e.ApplyFact("g1", 2, nil, true))
	d = discrepanciesOf(ev)
	if len(d) != 1 || d[0].Status != schemas.DiscrepancyRejected || d[0].Reason == "" {
		t.Fatalf("withdrawn: %+v", d)
	}
	ev = h.ok(h.e.ApplyFact("g1", 3, death(id1, "2024-06-03"), false))
	if d := discrepanciesOf(ev); len(d) != 1 || d[0].Status != schemas.DiscrepancyPending || d[0].ResolvedAt != "" || d[0].Version != 3 {
		t.Fatalf("back again: %+v", d)
	}
	// The registry records the death: warning withdrawn, discrepancy corrected.
	p := person("P1", "H1", id1)
	p.Deceased = ptr(true)
	ev = h.ok(h.e.ApplyPerson("P1", 2, p, false))
	if w := warningsOf(ev, ""); len(w) != 1 || w[0].Status != schemas.WarningDismissed {
		t.Errorf("warning after the registry agrees: %+v", w)
	}
	if d := discrepanciesOf(ev); len(d) != 1 || d[0].Status != schemas.DiscrepancyCorrected {
		t.Errorf("discrepancy after the registry agrees: %+v", d)
	}
}

// TestDueDaysConfigurable: a later file changes the deadline.
func TestDueDaysConfigurable(t *testing.T) {
	r, err := Load(mergedFS(t, "local.yaml", "version: 1\ndue_days: 10\n"), DefaultFile, "local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, r)
	h.ok(h.e.ApplyHousehold("H1", 1, hh("H1", "510114001010", "脱贫户", 0), false))
	h.ok(h.e.ApplyPerson("P1", 1, person("P1", "H1", id1), false))
	w := warningsOf(h.ok(h.e.ApplyFact("g1", 1, death(id1, "2024-06-03"), false)), "")
	if len(w) != 1 || w[0].DueDays != 10 || w[0].DueAt != "2024-07-11T08:00:00Z" {
		t.Fatalf("due: %+v", w)
	}
}

// TestRegistryDeleteAndMove: a deleted registry person takes its comparisons and its
// registry-dependent warnings with it; a household rule follows its head to a new
// household.
func TestRegistryDeleteAndMove(t *testing.T) {
	h := newHarness(t, mustDefault(t))
	h.ok(h.e.ApplyHousehold("H1", 1, hh("H1", "510114001010", "脱贫户", 0), false))
	h.ok(h.e.ApplyHousehold("H2", 1, hh("H2", "510114001010", "脱贫户", 0), false))
	h.ok(h.e.ApplyPerson("P1", 1, person("P1", "H1", id1), false))
	appraisal := &schemas.DepartmentFact{Department: "zhujian", Dataset: "housing_appraisal", FactType: "house_appraisal", IDNo: id1,
		Period: "202405", OccurredOn: "2024-05-20", Values: map[string]string{"grade": "D"}}
	ev := h.ok(h.e.ApplyFact("z1", 1, appraisal, false))
	w, d := warningsOf(ev, "zhujian.housing_cd"), discrepanciesOf(ev)
	if len(w) != 1 || w[0].SubjectKey != "H1" || len(d) != 1 || d[0].SubjectKey != "H1" || d[0].RegistryValue != "false" {
		t.Fatalf("appraisal D for a safe household: %+v", ev)
	}
	h.ok(h.e.ApplyFact("g1", 1, death(id1, "2024-06-03"), false))
	// The head moves to H2: H1's warning and discrepancy go, H2's come.
	ev = h.ok(h.e.ApplyPerson("P1", 2, person("P1", "H2", id1), false))
	open, closed := map[string]bool{}, map[string]bool{}
	for _, e := range ev {
		if e.Warning != nil && e.Warning.RuleID == "zhujian.housing_cd" {
			if e.Warning.Status == schemas.WarningOpen {
				open[e.Warning.SubjectKey] = true
			} else {
				closed[e.Warning.SubjectKey] = true
			}
		}
	}
	if !open["H2"] || !closed["H1"] || len(open) != 1 || len(closed) != 1 {
		t.Fatalf("move: open %v closed %v (%+v)", open, closed, ev)
	}
	// Deleting the person: every registry-dependent output is withdrawn.
	ev = h.ok(h.e.ApplyPerson("P1", 3, nil, true))
	for _, e := range ev {
		if (e.Warning != nil && e.Warning.Status == schemas.WarningOpen) || (e.Discrepancy != nil && e.Discrepancy.Status == schemas.DiscrepancyPending) {
			t.Errorf("still raised after the person was deleted: %+v %+v", e.Warning, e.Discrepancy)
		}
	}
	if len(warningsOf(ev, "gongan.death_recorded_alive")) != 1 || len(discrepanciesOf(ev)) != 2 {
		t.Errorf("delete: %d death warnings, %d discrepancies closed, want 1 and 2", len(warningsOf(ev, "gongan.death_recorded_alive")), len(discrepanciesOf(ev)))
	}
}

// TestSameRecordTwoChannels: a settlement delivered both as a replicated table row and
// in a file is two facts (keys differ by channel) but one record: the rolling sum counts
// it once, while two distinct settlements with the same figures count twice.
func TestSameRecordTwoChannels(t *testing.T) {
	const rule = "yibao.oop_12m"
	rec := func(no, amount string) *schemas.DepartmentFact {
		f := settlement(id1, "2024-05-10", "门诊", amount)
		f.Values["settlement_no"] = no
		f.Values["total_cost"] = "9000.50"
		return f
	}
	h := newHarness(t, mustDefault(t))
	h.ok(h.e.ApplyHousehold("H1", 1, hh("H1", "510114001010", "脱贫户", 0), false))
	h.ok(h.e.ApplyPerson("P1", 1, person("P1", "H1", id1), false))
	// 3000 through the table, the same record again through the file: 3000, under 5000.
	if w := warningsOf(h.ok(h.e.ApplyFact("table/S1", 1, rec("S1", "3000.00"), false)), rule); len(w) != 0 {
		t.Fatalf("one 3000 settlement warned: %+v", w[0])
	}
	// The file channel writes decimals without trailing fraction zeros.
	fromFile := rec("S1", "3000")
	fromFile.Values["total_cost"] = "9000.5"
	if w := warningsOf(h.ok(h.e.ApplyFact("file/S1", 1, fromFile, false)), rule); len(w) != 0 {
		t.Fatalf("the same settlement through a second channel was counted twice: %+v", w[0])
	}
	// A second, distinct settlement with the same figures: 6000, over 5000.
	w := warningsOf(h.ok(h.e.ApplyFact("table/S2", 1, rec("S2", "3000.00"), false)), rule)
	if len(w) != 1 || w[0].Evidence["amount"] != "6000.00" || len(w[0].FactKeys) != 2 {
		t.Fatalf("two distinct settlements: %+v", w)
	}
	if w[0].FactKeys[0] != "file/S1" && w[0].FactKeys[1] != "file/S1" {
		t.Errorf("the duplicate kept is not the smallest key: %v", w[0].FactKeys)
	}
	// Deleting one channel's copy keeps the record counted through the other.
	if ev := h.ok(h.e.ApplyFact("file/S1", 2, nil, true)); len(warningsOf(ev, rule)) != 1 || warningsOf(ev, rule)[0].Status == schemas.WarningDismissed {
		t.Errorf("deleting one channel's copy changed the sum: %+v", ev)
	}
}

// TestAsOfIsTheReferenceForNew: with an as-of date, "new" is judged against it
// instead of each fact's delivery time.
func TestAsOfIsTheReferenceForNew(t *testing.T) {
	const rule = "minzheng.new_assistance_unmonitored"
	late := assistance(id1, "2024-06-01", "低保")
	late.UpdatedMs = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC).UnixMilli() // delivered 2½ years later
	h := newHarness(t, mustDefault(t))
	if w := warningsOf(h.ok(h.e.ApplyFact("m1", 1, late, false)), rule); len(w) != 0 {
		t.Fatalf("a record 30 months older than its delivery was new: %+v", w[0])
	}
	h = newHarness(t, mustDefault(t))
	h.e.SetAsOf(time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC))
	if w := warningsOf(h.ok(h.e.ApplyFact("m1", 1, late, false)), rule); len(w) != 1 {
		t.Fatalf("as of 2024-07-01 a record of 2024-06-01 is new: %d warnings", len(w))
	}
}
