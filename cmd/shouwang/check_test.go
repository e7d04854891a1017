package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/xuri/excelize/v2"

	"github.com/shouwang/shouwang/internal/consistency"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/sinks/postgres"
)

// `shouwang check totals` against real servers: exit 0 on a match, 1 with the
// differing keys on a mismatch (JSON and a workbook written), 2 with one line for an
// unknown region or an unreachable database.
func TestCheckTotalsCommand(t *testing.T) {
	ctx := context.Background()
	m, mdb := testenv.NewMariaDBDatabase(t, testenv.MariaDBOptions{})
	nat, err := m.Open(mdb)
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	if err := gen.CreateNationalTables(ctx, nat); err != nil {
		t.Fatal(err)
	}
	p, pdb := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{})
	if _, err := postgres.MigrateDSN(ctx, p.ConnString(pdb), nil); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, p.ConnString(pdb))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	villages := map[string]string{"H1": "513423101001", "H2": "513423101001", "H3": "513423101002", "H4": "510104021001", "H5": "510104021001"}
	for hh, v := range villages {
		if _, err := nat.Exec(`INSERT INTO household (hh_no, county_name, township_name, village_name, village_code, household_type, category, head_name, size, updated_at)
VALUES (?, '县', '乡', '村', ?, '一般农户', '边缘易致贫户', '户主', 1, NOW())`, hh, v); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO fpjc.household (key, version, household_no, region_code, monitoring_category) VALUES ($1, 1, $1, $2, 2)`, hh, v); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	config := func(sinkDSN string) string {
		return writeConfig(t, fmt.Sprintf(`kafka:
  brokers: ["127.0.0.1:9092"]
  topic_prefix: chk
regions:
  province: "51"
sources:
  - name: national
    kind: mysqlbinlog
    mysql:
      dsn: %q
      flavor: %s
      server_id: 4242
      tables: [%s.household, %s.person]
sinks:
  - name: provincial
    kind: postgres
    dsn: %q
    topics: [household, person]
checkers:
  - name: nat_prov
    source: national
    sink: provincial
    level: county
    schedule: 24h
`, m.RootDSN(mdb), m.Flavor(), mdb, mdb, sinkDSN))
	}
	good := config(p.ConnString(pdb))
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runCheck(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := run("totals", "-c", good, "--settle", "0"); code != 0 || !strings.Contains(out, "match by county in every indicator") {
		t.Fatalf("identical stores: exit %d\n%s\n%s", code, out, errs)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM fpjc.household WHERE key = 'H3'`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jsonPath, xlsxPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.xlsx")
	code, out, errs := run("totals", "-c", good, "--settle", "0", "--json", jsonPath, "--xlsx", xlsxPath)
	if code != 1 || !strings.Contains(out, "513423 ") || !strings.Contains(out, "missing H3 513423101002") {
		t.Fatalf("H3 missing: exit %d\n%s\n%s", code, out, errs)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep consistency.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Match || rep.MismatchedRegions() != 1 || len(rep.DifferingKeys()["households"]) != 1 {
		t.Errorf("JSON report: %s", b)
	}
	x, err := excelize.OpenFile(xlsxPath)
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := x.GetRows("差异明细")
	if len(rows) != 3 || rows[1][4] != "H3" || rows[1][5] != "源端有、目标端无" { // households and category_2
		t.Errorf("差异明细 rows %v", rows)
	}
	// Another county alone matches.
	if code, out, _ := run("totals", "-c", good, "--settle", "0", "--region", "510104"); code != 0 {
		t.Errorf("--region 510104: exit %d\n%s", code, out)
	}
	for _, c := range []struct {
		args []string
		line string
	}{
		{[]string{"totals", "-c", good, "--region", "519999"}, "--region 519999: no such region"},
		{[]string{"totals", "-c", good, "--region", "51x"}, "--region 51x: not a region code"},
		{[]string{"totals", "-c", config("postgres://postgres@" + closed + "/db")}, "sink provincial: cannot reach the database"},
		{[]string{"totals", "-c", good, "--checker", "nope"}, `--checker "nope" is not configured`},
	} {
		code, _, errs := run(c.args...)
		if code != 2 || !strings.Contains(errs, c.line) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line with %q", c.args, code, errs, c.line)
		}
	}
}
