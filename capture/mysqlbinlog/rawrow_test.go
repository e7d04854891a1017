package mysqlbinlog

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// rowPlan and rawKeyer must give exactly what the ordinary path gives (rowMap, then
// recEncoder / encodeKey), or a reload compared from row images would see every row
// of the stored image as changed.
func TestRowPlanMatchesRowMap(t *testing.T) {
	specs := []colSpec{
		{name: "person_no", kind: kText, charset: "utf8mb4"},
		{name: "village_code", kind: kText, charset: "utf8mb4"},
		{name: "county_code", kind: kText, charset: "utf8mb4"},
		{name: "age", kind: kInt},
		{name: "big", kind: kUint},
		{name: "income", kind: kDecimal, scale: 2},
		{name: "ratio", kind: kFloat},
		{name: "score", kind: kDouble},
		{name: "name", kind: kText, charset: "gbk"},
		{name: "photo", kind: kBinary},
		{name: "born", kind: kDate},
		{name: "updated_at", kind: kDateTime},
		{name: "sex", kind: kEnum, elems: []string{"男", "女"}},
		{name: "flags", kind: kSet, elems: []string{"a", "b", "c"}},
		{name: "Zeta", kind: kInt},
		{name: "alpha<&>", kind: kText, charset: "utf8mb4"},
	}
	countyCols := []string{"county_code", "village_code"}
	pk := []string{"person_no"}
	rnd := rand.New(rand.NewPCG(1, 2))
	pick := func(vs ...any) any { return vs[rnd.IntN(len(vs))] }
	gbkName := []byte{0xd5, 0xc5, 0xc8, 0xfd} // 张三 in GBK
	plan := newRowPlan(specs, countyCols)
	keyer := newRawKeyer(specs, pk)
	enc := recEncoder{countyCols: countyCols}
	good, bad := 0, 0
	for n := range 2000 {
		raw := []any{
			pick(fmt.Sprintf("P%08d", n), "5101\"04\u2028", nil),
			pick("510104001001", "5101", nil, "\xff\xfe bad utf8"),
			pick("510105", "51", nil),
			pick(int8(-3), int16(300), int32(-70000), int64(1)<<40, nil),
			pick(uint64(18446744073709551615), int64(-1), uint32(7), nil),
			pick("12345.50", decimal.RequireFromString("-0.5"), 3.14159, nil),
			pick(float32(1.1), 2.5, nil),
			pick(1e21, float32(0.1), 1e-7, nil),
			pick(gbkName, string(gbkName), nil),
			pick([]byte{0, 1, 254}, "xy", nil),
			pick("2001-02-03", "0000-00-00", time.Date(1990, 1, 2, 0, 0, 0, 0, time.UTC), nil),
			pick("2026-11-28 10:00:00", time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CST", 8*3600)), nil),
			pick(int64(0), int64(1), int64(2), int64(3), nil),
			pick(int64(5), int64(0), nil),
			pick(int64(9), "not an int", nil),
			pick("<script>&", "é😀", nil),
		}
		got, county, gerr := plan.encode(nil, raw)
		row, werr := rowMap(specs, raw)
		if (gerr != nil) != (werr != nil) {
			t.Fatalf("row %d %v: plan error %v, rowMap error %v", n, raw, gerr, werr)
		}
		if werr != nil {
			bad++
			continue
		}
		good++
		want, err := enc.rec([]byte("k"), row)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want.row) || county != string(want.county) {
			t.Fatalf("row %d %v:\nplan   %s county %q\nrowMap %s county %q", n, raw, got, county, want.row, want.county)
		}
		kb, ok := keyer.key(raw)
		if wk := encodeKey(keyOf(pk, row)); !ok || string(kb) != string(wk) {
			t.Fatalf("row %d: key %s (%v), want %s", n, kb, ok, wk)
		}
	}
	if good < 200 || bad < 200 {
		t.Fatalf("%d rows converted, %d did not: the generator should give plenty of both", good, bad)
	}

	// A plan fits the same layout only.
	same := append([]colSpec(nil), specs...)
	if !plan.fits(same) || !plan.fits(specs) {
		t.Error("plan does not fit its own layout")
	}
	other := append([]colSpec(nil), specs...)
	other[0], other[1] = other[1], other[0]
	typ := append([]colSpec(nil), specs...)
	typ[3].kind = kUint
	for _, o := range [][]colSpec{other, typ, specs[1:]} {
		if plan.fits(o) {
			t.Errorf("plan fits another layout %v", o[:2])
		}
	}
	if newRawKeyer(specs, nil) != nil || newRawKeyer(specs, []string{"nope"}) != nil {
		t.Error("rawKeyer made for a table without a usable primary key")
	}
}
