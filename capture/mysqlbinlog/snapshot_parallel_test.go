package mysqlbinlog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/gen"
)

// BenchmarkSnapshotParallel compares Options.Parallel 1 and 4 on the initial snapshot
// of the generated person table (38 columns), read through Source.ReadN alone (no
// Kafka), in rows/s from Open until the position has no snapshot work left.
//
// Size: SHOUWANG_BENCH_PARALLEL_ROWS persons (default 20000). Chunk size:
// SHOUWANG_BENCH_CHUNK (default 2000).
//
//	SHOUWANG_BENCH_PARALLEL_ROWS=1000000 go test ./capture/mysqlbinlog/ -run '^$' -bench SnapshotParallel -benchtime 1x -timeout 1h
func BenchmarkSnapshotParallel(b *testing.B) {
	target := benchEnvInt(b, "SHOUWANG_BENCH_PARALLEL_ROWS", 20000)
	chunk := benchEnvInt(b, "SHOUWANG_BENCH_CHUNK", 2000)
	srv, d := benchServer(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	cfg := gen.DefaultConfig()
	cfg.Households = max(100, target*100/338) // ≈ 3.38 persons per household
	if _, err := gen.Generate(ctx, cfg, gen.Options{MySQLDSN: srv.RootDSN("bench")}); err != nil {
		b.Fatal(err)
	}
	var persons int
	if err := d.QueryRowContext(ctx, "SELECT COUNT(*) FROM person").Scan(&persons); err != nil {
		b.Fatal(err)
	}
	b.Logf("person table: %d rows, chunk %d", persons, chunk)
	for _, par := range []int{1, 4} {
		b.Run(fmt.Sprintf("parallel=%d", par), func(b *testing.B) {
			var took time.Duration
			for i := 0; i < b.N; i++ {
				opts := benchOptions(b, srv, SnapshotInitial)
				opts.Databases, opts.Tables, opts.ChunkSize, opts.Parallel = nil, []string{"bench.person"}, chunk, par
				src, err := New(opts)
				if err != nil {
					b.Fatal(err)
				}
				head := headPos(b, d)
				began := time.Now()
				if err := src.Open(ctx, nil); err != nil {
					b.Fatal(err)
				}
				n, _ := benchRead(b, src, head)
				took += time.Since(began)
				src.Close()
				if n != persons {
					b.Fatalf("snapshot emitted %d rows, the table holds %d", n, persons)
				}
			}
			b.ReportMetric(float64(persons*b.N)/took.Seconds(), "rows/s")
		})
	}
}
