package mysqlbinlog

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/testenv"
)

// BenchmarkStreamToKafka is issue #3 figure 1: already-written binlog (generated national
// tables loaded with LOAD DATA, then UPDATEs of person rows in 1000-row transactions)
// read by Source + capture.Runner + bus.Producer (acks=all) into kfake, in changes/s
// from Run until the saved position reached the binlog end. The baseline is
// `mariadb-binlog --base64-output=decode-rows -vv` decoding the same binlog files to
// /dev/null, timed in the same function; ratio = our changes/s ÷ the tool's.
//
// Size: SHOUWANG_BENCH_STREAM_ROWS row changes (default 20000; about half inserts, half
// updates). Runner batch: SHOUWANG_BENCH_BATCH (default 2000, the production default).
func BenchmarkStreamToKafka(b *testing.B) {
	target := benchEnvInt(b, "SHOUWANG_BENCH_STREAM_ROWS", 20000)
	srv, d := benchServer(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	gdb, err := gen.OpenMySQL(ctx, srv.RootDSN("bench"))
	if err != nil {
		b.Fatal(err)
	}
	defer gdb.Close()
	if err := gen.CreateNationalTables(ctx, gdb); err != nil {
		b.Fatal(err)
	}
	start := benchHead(b, d)

	// Inserts: about half the target (≈ 1 household + 3.5 persons + 0.6 measures each).
	cfg := gen.DefaultConfig()
	cfg.Households = max(100, target/10)
	sum, err := gen.Generate(ctx, cfg, gen.Options{MySQLDSN: srv.RootDSN("bench")})
	if err != nil {
		b.Fatal(err)
	}
	inserts := int(sum.Households + sum.Persons + sum.Measures)
	updates := max(0, target-inserts)
	if err := benchUpdatePersons(ctx, d, updates); err != nil {
		b.Fatal(err)
	}
	end := benchHead(b, d)
	want := inserts + updates
	// Close the last file so the baseline tool reads it as a finished binlog.
	if _, err := d.Exec("FLUSH BINARY LOGS"); err != nil {
		b.Fatal(err)
	}
	files, err := benchBinlogFiles(d, srv.BinlogDir(), start.File, end.File)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("binlog %v..%v: %d inserts (%d households, %d persons, %d measures) + %d person updates",
		start, end, inserts, sum.Households, sum.Persons, sum.Measures, updates)

	startPos := Position{File: start.File, Pos: start.Pos}.Encode()
	tool := firstTool("mariadb-binlog", "mysqlbinlog")
	toolArgs := append([]string{"--base64-output=decode-rows", "-vv", fmt.Sprintf("--start-position=%d", start.Pos)}, files...)

	b.ResetTimer()
	var ours, theirs, oursCPU, theirCPU, sourceOnly time.Duration
	for i := 0; i < b.N; i++ {
		k := benchKafka(b)
		src, err := New(benchOptions(b, srv, SnapshotNever))
		if err != nil {
			b.Fatal(err)
		}
		res := runUntil(b, k, src, startPos, time.Hour, func(p Position) bool {
			return (binlogPos{p.File, p.Pos}).compare(end) >= 0
		}, nil)
		// The few extra changes are the schema events of CREATE TABLE IF NOT EXISTS,
		// which the binlog records again when gen starts.
		if res.messages < want || res.messages > want+10 {
			b.Fatalf("Kafka acknowledged %d messages, want %d row changes (+ up to 10 schema events)", res.messages, want)
		}
		ours += res.elapsed
		oursCPU += res.cpu
		wall, cpu := timeTool(b, tool, toolArgs...)
		theirs += wall
		theirCPU += cpu
		sourceOnly += benchReadAll(b, srv, startPos, end, want)
	}
	b.StopTimer()
	oursRate := float64(want*b.N) / ours.Seconds()
	theirRate := float64(want*b.N) / theirs.Seconds()
	b.ReportMetric(float64(want), "changes")
	b.ReportMetric(oursRate, "changes/s")
	b.ReportMetric(theirRate, "baseline_changes/s")
	b.ReportMetric(oursRate/theirRate, "ratio")
	b.ReportMetric(float64(oursCPU.Microseconds())/float64(want*b.N), "cpu_us/change")
	b.ReportMetric(float64(theirCPU.Microseconds())/float64(want*b.N), "baseline_cpu_us/change")
	b.ReportMetric(float64(want*b.N)/sourceOnly.Seconds(), "source_only_changes/s")
}

// benchReadAll reads the same binlog with Source.ReadN alone (decode, convert, envelope,
// no JSON encoding for Kafka, no Kafka) and returns the time, to show where the full
// path's time goes.
func benchReadAll(b *testing.B, srv *testenv.MariaDBServer, start capture.Position, end binlogPos, want int) time.Duration {
	b.Helper()
	s, err := New(benchOptions(b, srv, SnapshotNever))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	began := time.Now()
	if err := s.Open(ctx, start); err != nil {
		b.Fatal(err)
	}
	got := 0
	for {
		chs, err := s.ReadN(ctx, 2000)
		if err != nil {
			b.Fatalf("ReadN after %d changes: %v", got, err)
		}
		got += len(chs)
		for _, c := range chs {
			if c.Position == nil {
				continue
			}
			if p, ok, err := DecodePosition(c.Position); err == nil && ok && (binlogPos{p.File, p.Pos}).compare(end) >= 0 {
				if got < want {
					b.Fatalf("source reached the end after %d changes, want %d", got, want)
				}
				return time.Since(began)
			}
		}
	}
}

// benchUpdatePersons writes n single-row updates of person (updated_at + 1 s, so each
// row really changes) in transactions of 1000 rows, cycling over the table as needed.
func benchUpdatePersons(ctx context.Context, d *sql.DB, n int) error {
	if n == 0 {
		return nil
	}
	var keys []string
	rows, err := d.QueryContext(ctx, "SELECT person_no FROM person ORDER BY person_no")
	if err != nil {
		return fmt.Errorf("list person keys: %w", err)
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return fmt.Errorf("list person keys: %w", err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list person keys: %w", err)
	}
	if len(keys) == 0 {
		return fmt.Errorf("update persons: the person table is empty")
	}
	const tx = 1000
	for done := 0; done < n; {
		i := done % len(keys)
		m := min(tx, n-done, len(keys)-i)
		res, err := d.ExecContext(ctx, "UPDATE person SET updated_at = updated_at + INTERVAL 1 SECOND WHERE person_no BETWEEN ? AND ?", keys[i], keys[i+m-1])
		if err != nil {
			return fmt.Errorf("update persons %s..%s: %w", keys[i], keys[i+m-1], err)
		}
		if got, _ := res.RowsAffected(); got != int64(m) {
			return fmt.Errorf("update persons %s..%s: %d rows changed, want %d", keys[i], keys[i+m-1], got, m)
		}
		done += m
	}
	return nil
}

// benchBinlogFiles lists the server's binlog files from first to last (inclusive) as
// paths in dir, in order.
func benchBinlogFiles(d *sql.DB, dir, first, last string) ([]string, error) {
	rows, err := d.Query("SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("SHOW BINARY LOGS: %w", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var files []string
	in := false
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("SHOW BINARY LOGS: %w", err)
		}
		name := vals[0].String
		if name == first {
			in = true
		}
		if in {
			files = append(files, filepath.Join(dir, name))
		}
		if name == last {
			break
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("binlog files %s..%s not among the server's files", first, last)
	}
	return files, rows.Err()
}
