package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/testenv"
)

// BenchmarkPipelineLatency measures source commit → provincial database commit through
// the whole pipeline, at a steady rate: a writer commits 10-person INSERT transactions
// into the national front-end database (private MariaDB) every 2 ms (5,000 changes/s,
// SHOUWANG_BENCH_SECONDS long, default 20 s), and the same workers as `shouwang run
// --role all` — binlog capture, the registry mapping pipeline, the postgres sink — carry
// them through the embedded Kafka broker into the provincial database (private
// PostgreSQL, fsync on, track_commit_timestamp on). A change's latency runs from a
// timestamp taken just before its INSERT was sent to the commit timestamp of the
// provincial transaction that wrote its row. Every change is measured. The monitor is
// off: it is a side branch (issues, warnings) that the person rows do not wait for.
func BenchmarkPipelineLatency(b *testing.B) {
	seconds := 20
	if v := os.Getenv("SHOUWANG_BENCH_SECONDS"); v != "" {
		var err error
		if seconds, err = strconv.Atoi(v); err != nil || seconds <= 0 {
			b.Fatalf("SHOUWANG_BENCH_SECONDS=%q: want a positive number", v)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := testenv.NewMariaDB(b, testenv.MariaDBOptions{})
	if err := m.CreateDatabase(ctx, "national"); err != nil {
		b.Fatal(err)
	}
	src, err := gen.OpenMySQL(ctx, m.RootDSN("national"))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	if err := gen.CreateNationalTables(ctx, src); err != nil {
		b.Fatal(err)
	}
	pg := testenv.NewPostgres(b, testenv.PostgresOptions{Durable: true, Settings: map[string]string{"track_commit_timestamp": "on"}})
	if err := pg.CreateDatabase(ctx, "provincial"); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	yaml := fmt.Sprintf(`kafka:
  embedded: true
  topic_prefix: lat
  partitions: 3
metrics:
  addr: 127.0.0.1:0
regions:
  province: "11"
state:
  dir: %q
sources:
  - name: national
    kind: mysqlbinlog
    mysql:
      dsn: %q
      flavor: %s
      server_id: %d
      gtid: true
      tables: [national.person]
      snapshot:
        mode: initial
pipelines:
  - name: registry
    inputs: [national.person]
    mapping: embedded
    outputs: [person]
monitor:
  enabled: false
sinks:
  - name: provincial
    kind: postgres
    dsn: %q
    topics: [person]
    batch_size: 2000
`, filepath.Join(dir, "state"), m.ReplDSN("national"), m.Flavor(), m.ServerID()+100, pg.ConnString("provincial"))
	startPipeline(b, ctx, "latency.yaml", yaml)
	pool, err := pgxpool.New(ctx, pg.ConnString("provincial"))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	count := func() int {
		var n int
		_ = pool.QueryRow(ctx, "SELECT count(*) FROM fpjc.person").Scan(&n) // 0 before the sink migrated
		return n
	}
	// One person through first: every worker has started and joined its group.
	sent := map[string]time.Time{}
	insert := func(db *sql.DB, from, n int) {
		var q strings.Builder
		q.WriteString("INSERT INTO person (person_no, hh_no, id_type, id_no, name, sex, birth_date, relationship, phone, updated_at) VALUES ")
		at := time.Now()
		for i := from; i < from+n; i++ {
			if i > from {
				q.WriteByte(',')
			}
			no := fmt.Sprintf("P%09d", i)
			fmt.Fprintf(&q, "('%s','H%08d','居民身份证','11010519491231002X','张三','女','1949-12-31','户主','13800138000',NOW())", no, i/4)
			sent[no] = at
		}
		if _, err := db.ExecContext(ctx, q.String()); err != nil {
			b.Fatal(err)
		}
	}
	insert(src, 0, 1)
	for deadline := time.Now().Add(2 * time.Minute); count() < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the first person did not reach the provincial database in 2 minutes")
		}
	}
	b.ResetTimer()
	const perTx, every = 10, 2 * time.Millisecond
	total := seconds * 5000
	start := time.Now()
	for i := 0; i < total/perTx; i++ {
		if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
			time.Sleep(d)
		}
		insert(src, 1+i*perTx, perTx)
	}
	wrote := time.Since(start)
	for deadline := time.Now().Add(2 * time.Minute); count() < total+1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d persons in the provincial database after 2 minutes", count(), total+1)
		}
	}
	b.StopTimer()
	rows, err := pool.Query(ctx, "SELECT key, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6)::bigint FROM fpjc.person")
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	for rows.Next() {
		var key string
		var us int64
		if err := rows.Scan(&key, &us); err != nil {
			b.Fatal(err)
		}
		if key == "P000000000" {
			continue
		}
		lat = append(lat, time.UnixMicro(us).Sub(sent[key]))
	}
	rows.Close()
	if len(lat) != total {
		b.Fatalf("%d latencies for %d changes", len(lat), total)
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(float64(total)/wrote.Seconds(), "changes/s")
	b.ReportMetric(float64(pct(0.5).Milliseconds()), "p50_ms")
	b.ReportMetric(float64(pct(0.9).Milliseconds()), "p90_ms")
	b.ReportMetric(float64(pct(0.99).Milliseconds()), "p99_ms")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max_ms")
	b.ReportMetric(0, "ns/op")
}
