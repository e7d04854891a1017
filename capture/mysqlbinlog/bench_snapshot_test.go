package mysqlbinlog

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/gen"
)

// BenchmarkSnapshotPerson is issue #3 figure 2: the initial snapshot of the generated
// national person table (38 columns) through Source + capture.Runner + bus.Producer
// (acks=all) into kfake, in rows/s from Run until the saved position has no snapshot
// work left. The baseline is `mariadb-dump --single-transaction` of the same table to
// /dev/null, timed in the same function; ratio = our rows/s ÷ the tool's.
//
// Size: SHOUWANG_BENCH_SNAPSHOT_ROWS persons (default 20000; full scale is ≈ 7 M).
// Chunk size: SHOUWANG_BENCH_CHUNK (default 2000, the production default); chunks read
// at once: SHOUWANG_BENCH_PARALLEL (default 1, the production default).
func BenchmarkSnapshotPerson(b *testing.B) {
	target := benchEnvInt(b, "SHOUWANG_BENCH_SNAPSHOT_ROWS", 20000)
	srv, d := benchServer(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	cfg := gen.DefaultConfig()
	cfg.Households = max(100, target*100/338) // ≈ 3.38 persons per household
	sum, err := gen.Generate(ctx, cfg, gen.Options{MySQLDSN: srv.RootDSN("bench")})
	if err != nil {
		b.Fatal(err)
	}
	var persons int
	if err := d.QueryRowContext(ctx, "SELECT COUNT(*) FROM person").Scan(&persons); err != nil {
		b.Fatal(err)
	}
	if int64(persons) != sum.Persons {
		b.Fatalf("person table holds %d rows, the generator reported %d", persons, sum.Persons)
	}
	b.Logf("person table: %d rows (%d households generated)", persons, sum.Households)
	tool := firstTool("mariadb-dump", "mysqldump")
	toolArgs := []string{"--no-defaults", "-h", srv.Host(), "-P", strconv.Itoa(srv.Port()), "-u", "root",
		"--single-transaction", "bench", "person"}
	chunk := benchEnvInt(b, "SHOUWANG_BENCH_CHUNK", 2000)
	parallel := benchEnvInt(b, "SHOUWANG_BENCH_PARALLEL", 1)

	b.ResetTimer()
	var ours, theirs, oursCPU, theirCPU time.Duration
	for i := 0; i < b.N; i++ {
		k := benchKafka(b)
		opts := benchOptions(b, srv, SnapshotInitial)
		opts.Databases, opts.Tables, opts.ChunkSize, opts.Parallel = nil, []string{"bench.person"}, chunk, parallel
		src, err := New(opts)
		if err != nil {
			b.Fatal(err)
		}
		res := runUntil(b, k, src, nil, time.Hour, func(p Position) bool { return len(p.Snapshot) == 0 }, nil)
		if res.messages != persons {
			b.Fatalf("Kafka acknowledged %d snapshot rows, the table holds %d", res.messages, persons)
		}
		ours += res.elapsed
		oursCPU += res.cpu
		wall, cpu := timeTool(b, tool, toolArgs...)
		theirs += wall
		theirCPU += cpu
	}
	b.StopTimer()
	oursRate := float64(persons*b.N) / ours.Seconds()
	theirRate := float64(persons*b.N) / theirs.Seconds()
	b.ReportMetric(float64(persons), "rows")
	b.ReportMetric(oursRate, "rows/s")
	b.ReportMetric(theirRate, "baseline_rows/s")
	b.ReportMetric(oursRate/theirRate, "ratio")
	b.ReportMetric(float64(oursCPU.Microseconds())/float64(persons*b.N), "cpu_us/row")
	b.ReportMetric(float64(theirCPU.Microseconds())/float64(persons*b.N), "baseline_cpu_us/row")
}
