package consistency

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/xuri/excelize/v2"

	"github.com/shouwang/shouwang/internal/dict"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/region"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/sinks/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is a national front-end database and a provincial database holding the
// same households and persons, over the villages of four real counties.
type fixture struct {
	t          *testing.T
	nat, prov  *sql.DB
	cats       *dict.Dict
	regions    *region.Table
	counties   []string
	households map[string]string // key → village
}

var categoryLabels = []string{"", "脱贫不稳定户", "边缘易致贫户", "突发严重困难户"}

func newFixture(t *testing.T, perCounty int) *fixture {
	t.Helper()
	ctx := context.Background()
	m, mdb := testenv.MariaDBDatabase(t)
	nat, err := m.Open(mdb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nat.Close() })
	if err := gen.CreateNationalTables(ctx, nat); err != nil {
		t.Fatal(err)
	}
	p, pdb := testenv.PostgresDatabase(t)
	if _, err := postgres.MigrateDSN(ctx, p.ConnString(pdb), nil); err != nil {
		t.Fatal(err)
	}
	prov, err := sql.Open("pgx", p.ConnString(pdb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.Close() })
	ds, err := dict.Default()
	if err != nil {
		t.Fatal(err)
	}
	regions, err := region.Default()
	if err != nil {
		t.Fatal(err)
	}
	cats, err := ds.Get("category")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, nat: nat, prov: prov, cats: cats, regions: regions, households: map[string]string{}}
	counties := regions.Counties()
	for _, c := range []int{3, 40, 77, 150} {
		code := region.Prefix(counties[c].Code, region.County)
		f.counties = append(f.counties, code)
		var villages []region.Region
		for _, v := range regions.Villages() {
			if strings.HasPrefix(v.Code, code) {
				villages = append(villages, v)
			}
		}
		for i := 0; i < perCounty; i++ {
			f.add(fmt.Sprintf("H%s%05d", code, i), villages[i%len(villages)].Code, i%4, i%5 == 0, i%7 == 0, 1+i%3)
		}
	}
	return f
}

// add writes one household with its members to both databases.
func (f *fixture) add(hh, village string, cat int, eliminated, relocated bool, members int) {
	f.t.Helper()
	flag := func(b bool) string {
		if b {
			return "是"
		}
		return "否"
	}
	var label any
	var code any
	if cat > 0 {
		label, code = categoryLabels[cat], cat
	}
	f.exec(f.nat, `INSERT INTO household (hh_no, county_name, township_name, village_name, village_code, household_type, category, head_name, size, risk_eliminated, relocated, updated_at)
VALUES (?, '县', '乡', '村', ?, '一般农户', ?, '户主', ?, ?, ?, NOW())`, hh, village, label, members, flag(eliminated), flag(relocated))
	f.exec(f.prov, `INSERT INTO fpjc.household (key, version, household_no, region_code, village_code, monitoring_category, risk_eliminated, relocated) VALUES ($1, 1, $1, $2, $2, $3, $4, $5)`,
		hh, village, code, eliminated, relocated)
	for j := 0; j < members; j++ {
		pn := fmt.Sprintf("%s-%d", hh, j)
		f.exec(f.nat, `INSERT INTO person (person_no, hh_no, id_type, name, sex, relationship, updated_at) VALUES (?, ?, '居民身份证', '人', '男', '户主', NOW())`, pn, hh)
		f.exec(f.prov, `INSERT INTO fpjc.person (key, version, person_no, household_no) VALUES ($1, 1, $1, $2)`, pn, hh)
	}
	f.households[hh] = village
}

func (f *fixture) exec(db *sql.DB, q string, args ...any) {
	f.t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
}

func (f *fixture) options() Options {
	return Options{Checker: "test",
		Source:     &Store{Name: "national", DB: f.nat, Dialect: MySQL, Sets: NationalSets(f.mdbName(), f.cats)},
		Sink:       &Store{Name: "provincial", DB: f.prov, Dialect: Postgres, Sets: ProvincialSets(f.cats)},
		Indicators: Indicators(f.cats), Level: region.County, Settle: -1, Regions: f.regions}
}

func (f *fixture) mdbName() string {
	var db string
	if err := f.nat.QueryRow("SELECT DATABASE()").Scan(&db); err != nil {
		f.t.Fatal(err)
	}
	return db
}

func diffKeys(rep *Report, ind string) []string {
	var out []string
	for _, d := range rep.DifferingKeys()[ind] {
		out = append(out, d.Kind+":"+d.Key)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// The check matches identical stores; a seeded difference — households missing from
// the sink, extra in it, with a changed category or moved to another county —
// is reported to the exact keys, in the regions where it is, by bucket bisection as
// well as by listing.
func TestSeededDifferencesFoundToTheKey(t *testing.T) {
	f := newFixture(t, 300)
	ctx := context.Background()
	rep, err := Run(ctx, f.options())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Match {
		t.Fatalf("identical stores: %s", rep)
	}
	for _, ind := range rep.Indicators {
		if ind.Source == 0 || ind.Source != ind.Sink {
			t.Errorf("%s: totals %d / %d", ind.Name, ind.Source, ind.Sink)
		}
	}
	if got := rep.Indicators[0]; got.Name != "households" || got.Source != 1200 || len(got.Regions) != 4 {
		t.Fatalf("households: %+v", got)
	}
	a, b, c := f.counties[0], f.counties[1], f.counties[2]
	// missing in county a: two households deleted from the sink (their members too)
	for _, hh := range []string{"H" + a + "00010", "H" + a + "00011"} {
		f.exec(f.prov, "DELETE FROM fpjc.person WHERE household_no = $1", hh)
		f.exec(f.prov, "DELETE FROM fpjc.household WHERE key = $1", hh)
	}
	// soft-deleted in county a: not a member any more
	f.exec(f.prov, "UPDATE fpjc.household SET deleted = true WHERE key = $1", "H"+a+"00012")
	// extra in county b: a household only the sink has
	f.exec(f.prov, `INSERT INTO fpjc.household (key, version, household_no, region_code, monitoring_category) VALUES ('HEXTRA', 1, 'HEXTRA', $1, 2)`, f.households["H"+b+"00000"])
	// changed in county c: category 1 → 3 in the sink
	f.exec(f.prov, "UPDATE fpjc.household SET monitoring_category = 3 WHERE key = $1", "H"+c+"00001")
	// moved: a county-c household sits in county b in the sink
	f.exec(f.prov, "UPDATE fpjc.household SET region_code = $1 WHERE key = $2", f.households["H"+b+"00005"], "H"+c+"00002")

	for _, direct := range []int{2000, 16} { // listing whole regions, bisecting buckets
		o := f.options()
		o.DirectKeys = direct
		rep, err := Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Match {
			t.Fatalf("direct %d: a seeded difference went unnoticed", direct)
		}
		for ind, want := range map[string][]string{
			"households": {"extra:HEXTRA", "missing:H" + a + "00010", "missing:H" + a + "00011", "missing:H" + a + "00012", "moved:H" + c + "00002"},
			"category_1": {"missing:H" + c + "00001"},
			"category_3": {"extra:H" + c + "00001", "missing:H" + a + "00011"},
			"category_2": {"extra:HEXTRA", "missing:H" + a + "00010", "moved:H" + c + "00002"},
			"persons":    append(personsOf(f, a, 10, 11, 12), "moved:H"+c+"00002-0", "moved:H"+c+"00002-1", "moved:H"+c+"00002-2"),
			"eliminated": {"missing:H" + a + "00010"},
			"relocated":  {},
		} {
			if got := diffKeys(rep, ind); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("direct %d, %s: differing keys %v, want %v", direct, ind, got, want)
			}
		}
		hh := rep.Indicators[0]
		for _, g := range hh.Regions {
			wantMismatch := g.Code == a || g.Code == b || g.Code == c
			if g.Mismatch != wantMismatch {
				t.Errorf("direct %d: county %s (%s) mismatch %v, want %v: %+v", direct, g.Code, g.Name, g.Mismatch, wantMismatch, g)
			}
			if g.Name == "" {
				t.Errorf("county %s has no name", g.Code)
			}
		}
		if n := rep.MismatchedRegions(); n != 3 {
			t.Errorf("direct %d: %d mismatched regions, want 3", direct, n)
		}
	}

	// The workbook has the Chinese headers and one row per differing key.
	var buf bytes.Buffer
	if err := rep.WriteXLSX(&buf); err != nil {
		t.Fatal(err)
	}
	x, err := excelize.OpenReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := x.GetRows("差异明细")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range rep.DifferingKeys() {
		n += len(d)
	}
	if len(rows) != n+1 || rows[0][4] != "键" || rows[0][5] != "差异" {
		t.Errorf("差异明细 has %d rows (want %d) headed %v", len(rows), n+1, rows[0])
	}
	if h, _ := x.GetRows("地区总数"); len(h) < 2 || h[0][2] != "区划代码" {
		t.Errorf("地区总数 sheet: %v", h)
	}
}

// personsOf are the missing: keys of the members of county's households i….
func personsOf(f *fixture, county string, idx ...int) []string {
	var out []string
	for _, i := range idx {
		for j := 0; j < 1+i%3; j++ {
			out = append(out, fmt.Sprintf("missing:H%s%05d-%d", county, i, j))
		}
	}
	slices.Sort(out)
	return out
}

// A difference that is only a change in flight — in the source, not yet in the sink,
// arriving within the settle interval — is not reported; one that stays is.
func TestChangesInFlightAreNotDifferences(t *testing.T) {
	f := newFixture(t, 50)
	a := f.counties[0]
	village := f.households["H"+a+"00000"]
	f.exec(f.nat, `INSERT INTO household (hh_no, county_name, township_name, village_name, village_code, household_type, head_name, size, updated_at)
VALUES ('HNEW1', '县', '乡', '村', ?, '一般农户', '户主', 1, NOW()), ('HNEW2', '县', '乡', '村', ?, '一般农户', '户主', 1, NOW())`, village, village)
	o := f.options()
	o.Indicators = o.Indicators[:1]
	o.Settle = 2 * time.Second
	done := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond) // the pipeline delivers HNEW1 meanwhile
		_, err := f.prov.Exec(`INSERT INTO fpjc.household (key, version, household_no, region_code) VALUES ('HNEW1', 1, 'HNEW1', $1)`, village)
		done <- err
	}()
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := diffKeys(rep, "households"); strings.Join(got, " ") != "missing:HNEW2" {
		t.Errorf("differing keys %v, want only missing:HNEW2 (HNEW1 arrived in time)", got)
	}
	for _, g := range rep.Indicators[0].Regions {
		if g.Code == a && (g.InFlight != 1 || !g.Mismatch) {
			t.Errorf("county %s: %+v, want 1 in flight and a mismatch", a, g)
		}
	}
}

// The sharing platform's exchange table is compared like the provincial database.
func TestSharingExchangeTable(t *testing.T) {
	f := newFixture(t, 20)
	f.exec(f.prov, `CREATE TABLE fpjc_base_data (entity varchar(32) NOT NULL, record_key varchar(64) NOT NULL, version bigint NOT NULL,
  op varchar(8) NOT NULL, data jsonb, pushed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (entity, record_key))`)
	f.exec(f.prov, `INSERT INTO fpjc_base_data (entity, record_key, version, op, data)
SELECT 'household', key, version, 'upsert', jsonb_build_object('household_no', key, 'region_code', region_code, 'monitoring_category', monitoring_category, 'risk_eliminated', risk_eliminated, 'relocated', relocated) FROM fpjc.household`)
	f.exec(f.prov, `INSERT INTO fpjc_base_data (entity, record_key, version, op, data)
SELECT 'person', key, version, 'upsert', jsonb_build_object('person_no', key, 'household_no', household_no) FROM fpjc.person`)
	o := f.options()
	o.Sink = &Store{Name: "sharing", DB: f.prov, Dialect: Postgres, Sets: SharingSets(Postgres, "fpjc_base_data", f.cats)}
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Match {
		t.Fatalf("%s: %+v", rep, rep.DifferingKeys())
	}
	hh := "H" + f.counties[1] + "00003"
	f.exec(f.prov, `UPDATE fpjc_base_data SET op = 'delete' WHERE entity = 'household' AND record_key = $1`, hh)
	rep, err = Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := diffKeys(rep, "households"); strings.Join(got, " ") != "missing:"+hh {
		t.Errorf("differing households %v, want missing:%s", got, hh)
	}
	if got := diffKeys(rep, "category_3"); strings.Join(got, " ") != "missing:"+hh {
		t.Errorf("differing category_3 %v, want missing:%s", got, hh)
	}
}

// A split scan (region ranges between bounds) counts exactly what one whole scan
// counts, members with codes outside the region table included, whatever the bounds.
func TestSplitTotalsEqualWholeScan(t *testing.T) {
	f := newFixture(t, 30)
	f.add("HUNKNOWN1", "519999999999", 1, false, false, 2) // not in the region table
	f.add("HUNKNOWN2", "510000000001", 0, true, false, 1)  // before every county of Sichuan
	o := f.options()
	names := make([]string, len(o.Indicators))
	for i, ind := range o.Indicators {
		names[i] = ind.Name
	}
	ctx := context.Background()
	for _, scope := range []string{"", "51", f.counties[1]} {
		whole, err := o.Source.Totals(ctx, names, 6, scope, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(whole["persons"]) == 0 {
			t.Fatalf("scope %q: no persons counted", scope)
		}
		for _, bounds := range [][]string{SplitBounds(f.regions, scope), SplitBounds(nil, scope), {f.counties[2]}, {f.counties[0], f.counties[0] + "1", f.counties[3]}} {
			split, err := o.Source.Totals(ctx, names, 6, scope, bounds)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.EqualFunc(whole, split, maps.Equal[map[string]Total]) {
				t.Errorf("scope %q, bounds %v: split totals %v, whole %v", scope, bounds, split["persons"], whole["persons"])
			}
		}
	}
	if b := SplitBounds(f.regions, "51"); len(b) < 32 || len(b) > 100 || !slices.IsSorted(b) {
		t.Errorf("SplitBounds(51): %d bounds, sorted %t; want about 64", len(b), slices.IsSorted(b))
	}
}

// A key that moves, while it settles, into a region with no member on either side
// (so absent from the totals) is still reported, in that region: a difference is never
// dropped because of where it went.
func TestDifferenceMovedToAnUnlistedRegion(t *testing.T) {
	f := newFixture(t, 20)
	b := f.counties[1]
	f.exec(f.prov, `INSERT INTO fpjc.household (key, version, household_no, region_code) VALUES ('HEXTRA', 1, 'HEXTRA', $1)`, f.households["H"+b+"00000"])
	// A village of a county the fixture does not populate.
	var elsewhere string
	for _, v := range f.regions.Villages() {
		if c := region.Prefix(v.Code, region.County); !slices.Contains(f.counties, c) {
			elsewhere = v.Code
			break
		}
	}
	o := f.options()
	o.Indicators = o.Indicators[:1]
	o.Settle = 500 * time.Millisecond
	o.Progress = func(format string, args ...any) {
		if strings.HasPrefix(format, "%d indicators have differing keys: waiting") { // the pipeline moves the household meanwhile
			f.exec(f.prov, `UPDATE fpjc.household SET region_code = $1, version = 2 WHERE key = 'HEXTRA'`, elsewhere)
		}
	}
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Match {
		t.Fatal("the extra household that moved away is not reported: the check says match")
	}
	county := region.Prefix(elsewhere, region.County)
	found := false
	for _, g := range rep.Indicators[0].Regions {
		if g.Code == county {
			found = len(g.Diffs) == 1 && g.Diffs[0].Key == "HEXTRA" && g.Diffs[0].Kind == "extra" && g.Mismatch
		}
	}
	if !found {
		t.Errorf("county %s does not list extra:HEXTRA; regions %+v", county, rep.Indicators[0].Regions)
	}
}
