package gen

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/testenv"
)

// TestFullScale is the documented full-scale run behind docs/benchmarks.md ("Synthetic
// generator (issue #2)"). It is skipped unless SHOUWANG_GEN_FULL=1 because it needs
// several minutes and ~15 GB of disk:
//
//	SHOUWANG_GEN_FULL=1 go test ./internal/gen/ -run TestFullScale -v -timeout 60m
//
// It starts a private MariaDB and PostgreSQL (testenv, under a 0755 directory in /tmp
// that it removes afterwards), generates the full province (2.2 M households) into
// MySQL, PostgreSQL and csv+gb18030 files, then runs `gen push --week 1` in truncate
// mode, and logs wall time, throughput and the process's peak RSS (VmHWM). Servers run
// in their own processes, so VmHWM is the generator's alone.
func TestFullScale(t *testing.T) {
	if os.Getenv("SHOUWANG_GEN_FULL") == "" {
		t.Skip("set SHOUWANG_GEN_FULL=1 to run the full-scale generation (minutes, ~15 GB disk)")
	}
	ctx := context.Background()
	base, err := os.MkdirTemp("/tmp", "shouwang-gen-full-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil { // the postgres user must traverse it
		t.Fatal(err)
	}
	m, err := testenv.StartMariaDB(ctx, testenv.MariaDBOptions{BaseDir: base, BufferPool: "1G"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	p, err := testenv.StartPostgres(ctx, testenv.PostgresOptions{BaseDir: base})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := m.CreateDatabase(ctx, "national"); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateDatabase(ctx, "departments"); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Households = FullScaleHouseholds
	out := filepath.Join(base, "out")
	start := time.Now()
	sum, err := Generate(ctx, cfg, Options{MySQLDSN: m.RootDSN("national"), PGDSN: p.ConnString("departments"),
		OutDir: out, Formats: []string{"csv", "gb18030"}})
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start).Seconds()
	var dept int64
	for _, n := range sum.DeptRows {
		dept += n
	}
	t.Logf("generate: %d households, %d persons, %d measures, %d department (PG) rows in %.1f s: %.0f households/s, %.0f persons/s, %.0f PG rows/s; peak RSS %s",
		sum.Households, sum.Persons, sum.Measures, dept, el, float64(sum.Households)/el, float64(sum.Persons)/el, float64(dept)/el, testenv.PeakRSS())
	if sum.Households != FullScaleHouseholds {
		t.Errorf("%d households, want %d", sum.Households, FullScaleHouseholds)
	}
	db, err := OpenMySQL(ctx, m.RootDSN("national"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// no ID may be shared (the generator injects no duplicate IDs; the
	// "999999" placeholders of Q-008 are excluded as they may coincide).
	var dupIDs, dupRows int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(n), 0) FROM (SELECT COUNT(*) n FROM person
		WHERE id_no IS NOT NULL AND id_no <> '' AND id_no NOT LIKE '999999%' GROUP BY id_no HAVING COUNT(*) > 1) d`).Scan(&dupIDs, &dupRows); err != nil {
		t.Fatal(err)
	}
	t.Logf("duplicate id_no values: %d (%d persons)", dupIDs, dupRows)
	if dupIDs != 0 {
		t.Errorf("%d ID numbers are shared by %d persons", dupIDs, dupRows)
	}
	start = time.Now()
	res, err := Push(ctx, cfg, PushOptions{Week: 1, MySQLDSN: m.RootDSN("national"), OutDir: out, Mode: PushTruncate})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push week 1 (truncate): rows %v, changes %v in %.1f s; peak RSS %s", res.Rows, res.Changes, time.Since(start).Seconds(), testenv.PeakRSS())
}
