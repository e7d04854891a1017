package gen

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/shouwang/shouwang/internal/testenv"
)

func checksums(t *testing.T, db *sql.DB) string {
	t.Helper()
	var out []string
	for _, tb := range []string{"household", "person", "measure"} {
		var name string
		var sum sql.NullInt64
		if err := db.QueryRow("CHECKSUM TABLE "+tb).Scan(&name, &sum); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM " + tb).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s:%d:%d", tb, n, sum.Int64))
	}
	return strings.Join(out, " ")
}

type genRun struct {
	dir, mysqlDSN, pgDSN string
	sum                  *Summary
}

func runGen(t *testing.T, dir string, cfg Config, workers int, formats ...string) genRun {
	t.Helper()
	m, mdb := testenv.MariaDBDatabase(t)
	p, pdb := testenv.PostgresDatabase(t)
	r := genRun{dir: dir, mysqlDSN: m.RootDSN(mdb), pgDSN: p.ConnString(pdb)}
	var err error
	r.sum, err = Generate(context.Background(), cfg, Options{MySQLDSN: r.mysqlDSN, PGDSN: r.pgDSN, OutDir: r.dir, Formats: formats, Workers: workers, ChunkBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestDeterminism generates the same seed twice with different worker counts: manifest,
// summary, files and table checksums must be identical.
func TestDeterminism(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Households = 1500
	var runs []genRun
	var sums []string
	for i, w := range []int{1, 3} {
		dir := filepath.Join(t.TempDir(), fmt.Sprint(w))
		t.Run(fmt.Sprintf("workers%d", w), func(t *testing.T) {
			r := runGen(t, dir, cfg, w, "csv")
			db, err := OpenMySQL(context.Background(), r.mysqlDSN)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			sums = append(sums, checksums(t, db))
			runs = append(runs, r)
			if r.sum.Households != int64(cfg.Households) {
				t.Errorf("run %d: %d households, want %d", i, r.sum.Households, cfg.Households)
			}
			var hh, pp int64
			for _, c := range r.sum.Counties {
				hh += c.Households
				pp += c.Persons
			}
			if hh != r.sum.Households || pp != r.sum.Persons {
				t.Errorf("county totals %d/%d != totals %d/%d", hh, pp, r.sum.Households, r.sum.Persons)
			}
		})
	}
	if len(runs) != 2 {
		t.FailNow()
	}
	if sums[0] != sums[1] {
		t.Errorf("table checksums differ:\n%s\n%s", sums[0], sums[1])
	}
	for _, f := range []string{"manifest.jsonl", "manifest.summary.json", "files/yibao/settlement/settlement.csv", "files/jiaoyu/student/student.csv"} {
		a, _ := os.ReadFile(filepath.Join(runs[0].dir, f))
		b, _ := os.ReadFile(filepath.Join(runs[1].dir, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between runs (or is empty: %d bytes)", f, len(a))
		}
	}
}

// TestDepartmentFiles re-reads the GB18030 CSV, the UTF-8 CSV with BOM and the XLSX of
// every dataset and compares them with the PostgreSQL tables.
func TestDepartmentFiles(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Households = 1200
	cfg.Signals.OOPRate = 0.02
	r := runGen(t, t.TempDir(), cfg, 2, "csv-bom", "gb18030", "xlsx")
	ctx := context.Background()
	conn, err := connectPG(ctx, r.pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, ds := range Datasets {
		cols := make([]string, len(ds.Columns))
		for i, c := range ds.Columns {
			cols[i] = fmt.Sprintf("coalesce(%s::text, '')", c)
		}
		rows, err := conn.Query(ctx, fmt.Sprintf("SELECT %s FROM %s", strings.Join(cols, ","), ds.Table()))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			s := make([]string, len(vals))
			for i, v := range vals {
				s[i] = v.(string)
			}
			want = append(want, strings.Join(s, "|"))
		}
		rows.Close()
		sort.Strings(want)
		if int64(len(want)) != r.sum.DeptRows[ds.Table()] {
			t.Errorf("%s: %d rows in PostgreSQL, summary says %d", ds.Table(), len(want), r.sum.DeptRows[ds.Table()])
		}
		dir := filepath.Join(r.dir, "files", ds.Department, ds.Name)
		// GB18030 CSV
		raw, err := os.ReadFile(filepath.Join(dir, ds.Name+".gb18030.csv"))
		if err != nil {
			t.Fatal(err)
		}
		dec, err := simplifiedchinese.GB18030.NewDecoder().Bytes(raw)
		if err != nil {
			t.Fatal(err)
		}
		compareRecords(t, ds, "gb18030", readCSV(t, dec), want)
		// UTF-8 CSV with BOM
		raw, err = os.ReadFile(filepath.Join(dir, ds.Name+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(raw, []byte("\uFEFF")) {
			t.Errorf("%s: UTF-8 CSV without BOM", ds.Table())
		}
		compareRecords(t, ds, "csv", readCSV(t, bytes.TrimPrefix(raw, []byte("\uFEFF"))), want)
		// XLSX
		x, err := excelize.OpenFile(filepath.Join(dir, ds.Name+".xlsx"))
		if err != nil {
			t.Fatal(err)
		}
		xr, err := x.GetRows("Sheet1")
		x.Close()
		if err != nil {
			t.Fatal(err)
		}
		for i := range xr {
			for len(xr[i]) < len(ds.Columns) {
				xr[i] = append(xr[i], "") // trailing empty cells are not stored
			}
		}
		compareRecords(t, ds, "xlsx", xr, want)
	}
}

func readCSV(t *testing.T, b []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func compareRecords(t *testing.T, ds Dataset, format string, recs [][]string, want []string) {
	t.Helper()
	if len(recs) == 0 || !slices.Equal(recs[0], ds.Headers) {
		t.Errorf("%s %s: header %v, want %v", ds.Table(), format, recs[0], ds.Headers)
		return
	}
	got := make([]string, 0, len(recs)-1)
	for _, r := range recs[1:] {
		got = append(got, strings.Join(r, "|"))
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s %s: %d rows differ from PostgreSQL's %d", ds.Table(), format, len(got), len(want))
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("first difference:\n file %s\n   pg %s", got[i], want[i])
				break
			}
		}
	}
}

// snapshot reads a table as key → row text.
func snapshot(t *testing.T, db *sql.DB, table string, cols []string) map[string][]string {
	t.Helper()
	tr, err := openReader(context.Background(), db, table, cols, cols[0])
	if err != nil {
		t.Fatal(err)
	}
	defer tr.rows.Close()
	out := map[string][]string{}
	for tr.next != nil {
		s := make([]string, len(tr.next))
		for i := range tr.next {
			s[i] = fmtp(tr.next[i])
		}
		out[tr.next.get(0)] = s
		tr.advance()
	}
	if tr.err != nil {
		t.Fatal(tr.err)
	}
	return out
}

// TestPush diffs the tables before and after each push mode and compares the diff with
// the change manifest exactly.
func TestPush(t *testing.T) {
	for week, mode := range []string{PushTruncate, PushDelete, PushSpread} {
		t.Run(mode, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Households = 800
			cfg.Push.ChangeRate = 0.05
			cfg.Push.NewHouseholdRate = 0.01
			cfg.Push.ChunkRows = 700
			cfg.Push.SpreadDuration = 0
			m, mdb := testenv.MariaDBDatabase(t)
			dir := t.TempDir()
			dsn := m.RootDSN(mdb)
			ctx := context.Background()
			if _, err := Generate(ctx, cfg, Options{MySQLDSN: dsn}); err != nil {
				t.Fatal(err)
			}
			db, err := openMySQL(ctx, dsn, false)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			specs := []struct {
				name string
				cols []string
			}{{"household", HouseholdColumns}, {"person", PersonColumns}, {"measure", MeasureColumns}}
			before := map[string]map[string][]string{}
			for _, s := range specs {
				before[s.name] = snapshot(t, db, s.name, s.cols)
			}
			w := week + 1
			res, err := Push(ctx, cfg, PushOptions{Week: w, MySQLDSN: dsn, OutDir: dir, Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			// actual diff
			actual := map[string]string{}
			for _, s := range specs {
				after := snapshot(t, db, s.name, s.cols)
				if int64(len(after)) != res.Rows[s.name] {
					t.Errorf("%s: %d rows after push, push wrote %d", s.name, len(after), res.Rows[s.name])
				}
				for k, a := range after {
					b, ok := before[s.name][k]
					if !ok {
						actual[s.name+"/"+k] = "c"
						continue
					}
					var changed []string
					for i := range a {
						if a[i] != b[i] {
							changed = append(changed, s.cols[i])
						}
					}
					if len(changed) > 0 {
						actual[s.name+"/"+k] = "u " + strings.Join(sortFields(changed), ",")
					}
				}
				for k := range before[s.name] {
					if _, ok := after[k]; !ok {
						actual[s.name+"/"+k] = "d"
					}
				}
			}
			// manifest
			raw, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("push-week-%d.manifest.jsonl", w)))
			if err != nil {
				t.Fatal(err)
			}
			manifest := map[string]string{}
			for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
				var l ManifestLine
				if err := jsonUnmarshal(line, &l); err != nil {
					t.Fatal(err)
				}
				v := l.Op
				if l.Op == "u" {
					v += " " + strings.Join(sortFields(l.Fields), ",")
				}
				k := l.Table + "/" + l.Key
				if prev, dup := manifest[k]; dup && l.Op == "u" && prev != "c" {
					t.Errorf("%s changed twice in the manifest", k)
				}
				if _, dup := manifest[k]; !dup {
					manifest[k] = v
				}
			}
			if len(manifest) < 10 {
				t.Fatalf("only %d changes in the manifest", len(manifest))
			}
			for k, v := range actual {
				if manifest[k] != v {
					t.Errorf("%s: table diff %q, manifest %q", k, v, manifest[k])
				}
			}
			for k, v := range manifest {
				if _, ok := actual[k]; !ok {
					t.Errorf("%s: manifest %q but the table did not change", k, v)
				}
			}
			var logs, finished int
			if err := db.QueryRow("SELECT COUNT(*), COUNT(finished_at) FROM push_log WHERE week = ?", w).Scan(&logs, &finished); err != nil {
				t.Fatal(err)
			}
			if logs != 3 || finished != 3 {
				t.Errorf("push_log: %d rows, %d finished; want 3 and 3", logs, finished)
			}
		})
	}
}
