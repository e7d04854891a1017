package consistency

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/dict"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/region"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/sinks/postgres"
)

// benchPersons is the benchmark's person count: SHOUWANG_BENCH_PERSONS, default 300k
// (the recorded figure uses 7,000,000: Sichuan's registry).
func benchPersons(b *testing.B) int {
	if s := os.Getenv("SHOUWANG_BENCH_PERSONS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			b.Fatalf("SHOUWANG_BENCH_PERSONS=%q: want a number ≥ 1000", s)
		}
		return n
	}
	return 300_000
}

// BenchmarkTotalsCheck measures the regional totals check (every indicator, by
// county, over the province) between a national front-end database and a provincial
// database holding the same households and persons (3.2 persons per household, spread
// over Sichuan's 34,412 real villages), first when they match, then with differing
// persons deleted from the provincial side and drilled down to the key. Each server is
// a private instance with a buffer pool large enough to hold the tables. Settle is off
// (no second lookup), as in a quiet window.
//
//	SHOUWANG_BENCH_PERSONS=7000000 go test -run '^$' -bench BenchmarkTotalsCheck -benchtime 1x -timeout 2h ./internal/consistency
func BenchmarkTotalsCheck(b *testing.B) {
	ctx := context.Background()
	persons := benchPersons(b)
	households := persons * 10 / 32
	m := testenv.NewMariaDB(b, testenv.MariaDBOptions{BufferPool: "3G"})
	if err := m.CreateDatabase(ctx, "national"); err != nil {
		b.Fatal(err)
	}
	nat, err := m.Open("national")
	if err != nil {
		b.Fatal(err)
	}
	defer nat.Close()
	nat.SetMaxOpenConns(8)
	p := testenv.NewPostgres(b, testenv.PostgresOptions{AsyncCommit: true, Settings: map[string]string{
		"shared_buffers": "3GB", "max_wal_size": "8GB", "work_mem": "64MB", "maintenance_work_mem": "512MB"}})
	if err := p.CreateDatabase(ctx, "provincial"); err != nil {
		b.Fatal(err)
	}
	if _, err := postgres.MigrateDSN(ctx, p.ConnString("provincial"), nil); err != nil {
		b.Fatal(err)
	}
	prov, err := sql.Open("pgx", p.ConnString("provincial"))
	if err != nil {
		b.Fatal(err)
	}
	defer prov.Close()
	regions, err := region.Default()
	if err != nil {
		b.Fatal(err)
	}
	ds, err := dict.Default()
	if err != nil {
		b.Fatal(err)
	}
	cats, err := ds.Get("category")
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	loadBenchData(b, nat, prov, regions, households, persons)
	b.Logf("loaded %d households and %d persons into both databases in %s", households, persons, time.Since(start).Round(time.Second))

	opts := Options{Checker: "bench",
		Source:     &Store{Name: "national", DB: nat, Dialect: MySQL, Sets: NationalSets("national", cats)},
		Sink:       &Store{Name: "provincial", DB: prov, Dialect: Postgres, Sets: ProvincialSets(cats)},
		Indicators: Indicators(cats), Level: region.County, Settle: -1, Regions: regions}
	if os.Getenv("SHOUWANG_BENCH_PROGRESS") != "" {
		t0 := time.Now()
		opts.Progress = func(f string, args ...any) { b.Logf("%6.2fs "+f, append([]any{time.Since(t0).Seconds()}, args...)...) }
	}
	run := func(b *testing.B, wantDiffs int) {
		var rep *Report
		for b.Loop() {
			if rep, err = Run(ctx, opts); err != nil {
				b.Fatal(err)
			}
		}
		if got := len(rep.DifferingKeys()["persons"]); got != wantDiffs {
			b.Fatalf("persons differing: %d, want %d", got, wantDiffs)
		}
		b.ReportMetric(float64(persons), "persons")
		b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/check")
	}
	if os.Getenv("SHOUWANG_BENCH_PROGRESS") != "" {
		names := make([]string, len(opts.Indicators))
		for i, ind := range opts.Indicators {
			names[i] = ind.Name
		}
		for _, st := range []*Store{opts.Source, opts.Sink} {
			for _, bounds := range [][]string{nil, SplitBounds(regions, "")} {
				t0 := time.Now()
				if _, err := st.Totals(ctx, names, 6, "", bounds); err != nil {
					b.Fatal(err)
				}
				b.Logf("%s alone: totals in %s (%d region ranges for split sets)", st.Name, time.Since(t0).Round(time.Millisecond), len(bounds)+1)
			}
		}
	}
	b.Run("match", func(b *testing.B) { run(b, 0) })
	const differing = 1000
	// Persons spread over the province: every (persons/differing)-th one.
	if _, err := prov.ExecContext(ctx, `DELETE FROM fpjc.person WHERE key IN (
SELECT 'P' || lpad((i * $1)::text, 10, '0') FROM generate_series(0, $2 - 1) i)`, persons/differing, differing); err != nil {
		b.Fatal(err)
	}
	b.Run("drilldown_1000_keys", func(b *testing.B) { run(b, differing) })
}

// loadBenchData fills both databases in-server (MariaDB's sequence engine,
// PostgreSQL's generate_series): household i lives in village i mod V, person j
// belongs to household j·H/P.
func loadBenchData(b *testing.B, nat, prov *sql.DB, regions *region.Table, households, persons int) {
	ctx := context.Background()
	if err := gen.CreateNationalTables(ctx, nat); err != nil {
		b.Fatal(err)
	}
	villages := regions.Villages()
	codes := make([]string, len(villages))
	for i, v := range villages {
		codes[i] = v.Code
	}
	exec := func(db *sql.DB, q string, args ...any) {
		b.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			b.Fatalf("%.120s: %v", q, err)
		}
	}
	exec(nat, "CREATE TABLE v (idx INT PRIMARY KEY, code VARCHAR(12) NOT NULL)")
	for lo := 0; lo < len(codes); lo += 5000 {
		var sb strings.Builder
		sb.WriteString("INSERT INTO v VALUES ")
		for i := lo; i < min(lo+5000, len(codes)); i++ {
			if i > lo {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, "(%d,'%s')", i, codes[i])
		}
		exec(nat, sb.String())
	}
	nv := len(codes)
	// Households and persons in slices of 500k so that no single statement grows
	// MariaDB's undo log without bound.
	const slice = 500_000
	for lo := 0; lo < households; lo += slice {
		hi := min(lo+slice, households) - 1
		exec(nat, fmt.Sprintf(`INSERT INTO household (hh_no, county_name, township_name, village_name, village_code, household_type, category, head_name, size, risk_eliminated, relocated, updated_at)
SELECT CONCAT('H', LPAD(s.seq, 9, '0')), '县', '乡', '村', v.code, '一般农户',
  CASE s.seq %% 4 WHEN 1 THEN '脱贫不稳定户' WHEN 2 THEN '边缘易致贫户' WHEN 3 THEN '突发严重困难户' END,
  '户主', 3, IF(s.seq %% 5 = 0, '是', '否'), IF(s.seq %% 7 = 0, '是', '否'), NOW()
FROM seq_%d_to_%d s JOIN v ON v.idx = s.seq %% %d`, lo, hi, nv))
	}
	for lo := 0; lo < persons; lo += slice {
		hi := min(lo+slice, persons) - 1
		exec(nat, fmt.Sprintf(`INSERT INTO person (person_no, hh_no, id_type, name, sex, relationship, updated_at)
SELECT CONCAT('P', LPAD(s.seq, 10, '0')), CONCAT('H', LPAD(s.seq * %d DIV %d, 9, '0')), '居民身份证', '人', '男', '户主', NOW()
FROM seq_%d_to_%d s`, households, persons, lo, hi))
	}
	exec(prov, "CREATE UNLOGGED TABLE bench_v (idx int PRIMARY KEY, code text NOT NULL)")
	exec(prov, "INSERT INTO bench_v SELECT i - 1, c FROM unnest($1::text[]) WITH ORDINALITY AS u(c, i)", "{"+strings.Join(codes, ",")+"}")
	for lo := 0; lo < households; lo += slice {
		hi := min(lo+slice, households) - 1
		exec(prov, `INSERT INTO fpjc.household (key, version, household_no, region_code, village_code, monitoring_category, risk_eliminated, relocated)
SELECT 'H' || lpad(s::text, 9, '0'), 1, 'H' || lpad(s::text, 9, '0'), v.code, v.code, NULLIF(s % 4, 0), s % 5 = 0, s % 7 = 0
FROM generate_series($1::bigint, $2::bigint) s JOIN bench_v v ON v.idx = s % $3`, lo, hi, nv)
	}
	for lo := 0; lo < persons; lo += slice {
		hi := min(lo+slice, persons) - 1
		exec(prov, `INSERT INTO fpjc.person (key, version, person_no, household_no)
SELECT 'P' || lpad(s::text, 10, '0'), 1, 'P' || lpad(s::text, 10, '0'), 'H' || lpad((s * $3::bigint / $4::bigint)::text, 9, '0')
FROM generate_series($1::bigint, $2::bigint) s`, lo, hi, households, persons)
	}
	exec(prov, "ANALYZE")
	exec(nat, "ANALYZE TABLE household, person")
}
