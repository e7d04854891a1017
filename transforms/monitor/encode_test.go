package monitor

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/rules"
	"github.com/shouwang/shouwang/transforms/warnings"
)

// TestRecordEncodingMatchesJSON applies the generated province's canonical changes and
// evaluates every household, then compares appendRecord with json.Marshal on every
// record of the state, and on empty and deleted records of every type.
func TestRecordEncodingMatchesJSON(t *testing.T) {
	d := generated(t)
	mon, canon := monitorInput(t, d)
	st, err := openState(filepath.Join(t.TempDir(), "monitor.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	r := mon.newRun(st)
	for _, m := range canon {
		if err := r.apply(m); err != nil {
			t.Fatal(err)
		}
	}
	for st.len(bucketDirty) > 0 {
		if err := r.evaluateWaiting(); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, v any) {
		t.Helper()
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendRecord([]byte("x"), v)
		if err != nil || string(got) != "x"+string(want) {
			t.Fatalf("%s: appendRecord\n got %s (err %v)\nwant x%s", what, got, err, want)
		}
	}
	types := map[string]int{}
	for bn, recs := range st.buckets {
		for k, v := range recs {
			check(bn+" "+k, v)
			types[fmt.Sprintf("%T", v)]++
		}
	}
	one := int64(1)
	for _, v := range []any{
		&warnings.PersonRecord{}, &warnings.PersonRecord{Version: 3, Deleted: true}, &warnings.PersonRecord{Person: &schemas.Person{}},
		&warnings.HouseholdRecord{}, &warnings.HouseholdRecord{Version: 3, Deleted: true}, &warnings.HouseholdRecord{Household: &schemas.Household{}},
		&warnings.FactRecord{}, &warnings.FactRecord{Version: 3, Deleted: true, Identity: "<&>"}, &warnings.FactRecord{Fact: &schemas.DepartmentFact{}},
		&measureRecord{}, &measureRecord{Version: 3, Deleted: true}, &measureRecord{Measure: &schemas.AssistanceMeasure{}},
		&warnings.WarningRecord{}, &warnings.WarningRecord{Hash: "\u2028", Open: true},
		&warnings.DiscrepancyRecord{}, &warnings.DiscrepancyRecord{Hash: "h", Open: true},
		&warnings.KeyList{}, new(warnings.KeyList), &warnings.KeyList{"a", "\"b\""},
		&one, &rules.HouseholdState{}, &metaRecord{}, &warnings.UnitRecord{},
	} {
		check(fmt.Sprintf("%T %+v", v, v), v)
	}
	// The generated province must have made records of every type appendRecord writes
	// itself, with their entities.
	for _, typ := range []string{"*warnings.PersonRecord", "*warnings.HouseholdRecord", "*warnings.FactRecord", "*monitor.measureRecord",
		"*warnings.WarningRecord", "*warnings.DiscrepancyRecord", "*warnings.KeyList"} {
		if types[typ] == 0 {
			t.Errorf("no %s in the state of the generated province (records by type: %v)", typ, types)
		}
	}
}
