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

	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/sinks/postgres"
)

// `shouwang feedback export` against a real provincial database: one workbook per
// department with the open discrepancies, ID numbers decrypted or masked, the export
// in the audit log; one line and exit 2 for a bad flag or an unreachable database.
func TestFeedbackExportCommand(t *testing.T) {
	ctx := context.Background()
	p, pdb := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{})
	if _, err := postgres.MigrateDSN(ctx, p.ConnString(pdb), nil); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, p.ConnString(pdb))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `INSERT INTO fpjc.discrepancy (key, version, id, department, subject_kind, subject_key, household_no,
		region_code, field, registry_value, department_value, status, detected_at) VALUES
		('a', 1, 'a', 'canlian', 'person', '513423199001011234', 'H1', '513423101001', 'health', '健康', '残疾', 'pending', '2026-12-01'),
		('b', 1, 'b', 'gongan', 'person', '510104198502023456', 'H4', '510104017001', 'deceased', '在世', '死亡', 'pending', '2026-12-02'),
		('c', 1, 'c', 'gongan', 'person', '510104198502029999', 'H5', '510104017001', 'deceased', '在世', '死亡', 'rejected', '2026-12-02'),
		('d', 1, 'd', 'canlian', 'person', '513423199901011111', NULL, NULL, 'health', '健康', '残疾', 'pending', '2026-12-03')`); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	state := t.TempDir()
	config := func(sinkDSN, kind string) string {
		return writeConfig(t, fmt.Sprintf(`kafka:
  brokers: ["127.0.0.1:9092"]
  topic_prefix: fb
regions:
  province: "51"
state:
  dir: %q
sinks:
  - name: provincial
    kind: %s
    dsn: %q
    topics: [household, person]
`, state, kind, sinkDSN))
	}
	good := config(p.ConnString(pdb), "postgres")
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runFeedback(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	out := filepath.Join(t.TempDir(), "反馈")
	code, stdout, stderr := run("export", "-c", good, "--out", out)
	if code != 0 {
		t.Fatalf("export: exit %d\n%s\n%s", code, stdout, stderr)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.xlsx"))
	// canlian: one in 盐源县, one whose subject the registry does not know (no region).
	if len(files) != 2 || !strings.Contains(stdout, "canlian 残联: 2 条差异, 2 个县") || !strings.Contains(stdout, "gongan 公安: 1 条差异, 1 个县") {
		t.Fatalf("files %v\n%s", files, stdout)
	}
	var gongan string
	for _, f := range files {
		if strings.Contains(f, "_公安_") {
			gongan = f
		}
	}
	x, err := excelize.OpenFile(gongan)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := x.GetRows("锦江区510104")
	x.Close()
	if err != nil || len(rows) != 2 || rows[1][1] != "b" || rows[1][7] != "510104198502023456" || rows[1][8] != "死亡" {
		t.Fatalf("公安 workbook, 锦江区 sheet: %q, %v", rows, err)
	}
	// --mask, one department, one county.
	code, stdout, stderr = run("export", "-c", good, "--out", out, "--mask", "--department", "gongan", "--region", "510104")
	if code != 0 || strings.Contains(stdout, "canlian") {
		t.Fatalf("--mask --department gongan: exit %d\n%s\n%s", code, stdout, stderr)
	}
	x, err = excelize.OpenFile(gongan)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := x.GetCellValue("锦江区510104", "H2")
	x.Close()
	if id == "510104198502023456" || !strings.HasPrefix(id, "5101") || !strings.HasSuffix(id, "3456") {
		t.Errorf("--mask wrote %q", id)
	}
	// Nothing open in a county: exit 0 and a line saying so.
	if code, stdout, _ := run("export", "-c", good, "--out", out, "--region", "510105"); code != 0 || !strings.Contains(stdout, "no open discrepancies in 510105") {
		t.Errorf("empty region: exit %d\n%s", code, stdout)
	}
	// Every export is in the audit log.
	b, err := os.ReadFile(filepath.Join(state, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var last auditEntry
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || len(lines) != 3 {
		t.Fatalf("audit log: %s (%v)", b, err)
	}
	if last.Action != "feedback export" || last.User == "" || last.Result != "ok" || !strings.Contains(last.Reason, "region 510105") {
		t.Errorf("audit entry %+v", last)
	}
	for _, c := range []struct {
		args []string
		line string
	}{
		{[]string{"export", "-c", good}, "--out DIR are required"},
		{[]string{"export", "-c", good, "--out", out, "--region", "519999"}, "--region 519999: no such region"},
		{[]string{"export", "-c", good, "--out", out, "--department", "yiba"}, "--department yiba: not a department code (use canlian,"},
		{[]string{"export", "-c", good, "--out", out, "--status", "open"}, `status "open": use pending, confirmed, corrected or rejected`},
		{[]string{"export", "-c", good, "--out", out, "--sink", "nope"}, "--sink nope: not a postgres sink"},
		{[]string{"export", "-c", config("postgres://postgres@"+closed+"/db", "postgres"), "--out", out}, "sink provincial: cannot reach the database"},
	} {
		code, _, errs := run(c.args...)
		if code != 2 || !strings.Contains(errs, c.line) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.line)
		}
	}
}
