package pglogical

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// BenchmarkDecodeToKafka measures catching up on 200k inserted rows (in 200
// transactions): slot → pgoutput decode → runner → kfake acks=all → position saved,
// against pg_recvlogical reading the same changes from a second slot to /dev/null.
// Run with -benchtime=1x; it reports changes/s of both and their ratio.
func BenchmarkDecodeToKafka(b *testing.B) {
	const rows, perTxn = 200000, 1000
	srv, db := testenv.PostgresDatabase(b)
	e := &pgEnv{srv: srv, db: db, name: db}
	recv := filepath.Join(filepath.Dir(findPostgresBin(b)), "pg_recvlogical")
	e.exec(b, `CREATE TABLE bench (id int PRIMARY KEY, name text, amount numeric(12,2), born date, active bool)`)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		o := e.options("public.bench")
		o.Slot, o.SnapshotMode = fmt.Sprintf("%s_%d", e.name[:min(len(e.name), 50)], i), SnapshotNever
		src, err := New(o)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := src.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		ref := o.Slot + "_ref"
		e.exec(b, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, ref), `TRUNCATE bench`)
		for start := 1; start <= rows; start += perTxn {
			e.exec(b, fmt.Sprintf(`INSERT INTO bench SELECT g, 'name '||g, g*1.5, date '2000-01-01' + g %% 1000, g %% 2 = 0 FROM generate_series(%d, %d) g`, start, start+perTxn-1))
		}
		end := e.scalar(b, `SELECT pg_current_wal_lsn()::text`)

		k := testenv.Kafka(b)
		opts := bus.Options{Brokers: k.Brokers()}
		topic := schemas.RawTopic("bp", "dept", "bench") // topics name the table without its schema
		if err := bus.EnsureTopics(ctx, opts, bus.TopicSpec{Name: topic, Partitions: 6, ReplicationFactor: 1},
			bus.TopicSpec{Name: schemas.DLQTopic("bp", "capture"), Partitions: 1, ReplicationFactor: 1}); err != nil {
			b.Fatal(err)
		}
		prod, err := bus.NewProducer(opts)
		if err != nil {
			b.Fatal(err)
		}
		store, _ := capture.NewFileStore(b.TempDir())
		var n atomic.Int64
		done := make(chan struct{})
		o.TopicPrefix = "bp"
		src, _ = New(o)
		run, err := capture.NewRunner(capture.RunnerOptions{Name: "dept", TopicPrefix: "bp", Source: src, Producer: prod, Positions: store,
			BatchSize: 5000, OnBatch: func(k int, _ capture.Position) {
				if n.Add(int64(k)) == rows+1 { // + the TRUNCATE event
					close(done)
				}
			}})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		t0 := time.Now()
		go func() { errc <- run.Run(rctx) }()
		select {
		case <-done:
		case err := <-errc:
			b.Fatalf("runner: %v", err)
		case <-time.After(5 * time.Minute):
			b.Fatalf("only %d of %d changes after 5m", n.Load(), rows)
		}
		ours := time.Since(t0)
		cancel()
		<-errc
		prod.Close()

		t1 := time.Now()
		cmd := exec.Command(recv, "-d", e.srv.ConnString(e.db), "--slot", ref, "--start", "--no-loop", "--endpos", end,
			"-o", "proto_version=2", "-o", "publication_names="+o.Publication, "-f", "/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("pg_recvlogical: %v: %s", err, out)
		}
		theirs := time.Since(t1)
		b.ReportMetric(float64(rows)/ours.Seconds(), "changes/s")
		b.ReportMetric(float64(rows)/theirs.Seconds(), "recvlogical_changes/s")
		b.ReportMetric(theirs.Seconds()/ours.Seconds(), "ratio")
		e.exec(b, fmt.Sprintf(`SELECT pg_drop_replication_slot('%s')`, ref))
		if err := src.Teardown(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func findPostgresBin(b *testing.B) string {
	for _, v := range []string{"17", "16", "15", "14"} {
		p := "/usr/lib/postgresql/" + v + "/bin/postgres"
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	b.Skip("pg_recvlogical not found under /usr/lib/postgresql/*/bin")
	return ""
}

// BenchmarkDecodeOnly is BenchmarkDecodeToKafka without Kafka: ReadN and Ack in a
// loop, to separate the connector's own cost from produce latency.
func BenchmarkDecodeOnly(b *testing.B) {
	const rows, perTxn = 200000, 1000
	srv, db := testenv.PostgresDatabase(b)
	e := &pgEnv{srv: srv, db: db, name: db}
	e.exec(b, `CREATE TABLE bench (id int PRIMARY KEY, name text, amount numeric(12,2), born date, active bool)`)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		o := e.options("public.bench")
		o.Slot, o.SnapshotMode = fmt.Sprintf("%s_%d", e.name[:min(len(e.name), 50)], i), SnapshotNever
		src, err := New(o)
		if err != nil {
			b.Fatal(err)
		}
		if err := src.Open(ctx, nil); err != nil {
			b.Fatal(err)
		}
		e.exec(b, `TRUNCATE bench`)
		for start := 1; start <= rows; start += perTxn {
			e.exec(b, fmt.Sprintf(`INSERT INTO bench SELECT g, 'name '||g, g*1.5, date '2000-01-01' + g %% 1000, g %% 2 = 0 FROM generate_series(%d, %d) g`, start, start+perTxn-1))
		}
		t0 := time.Now()
		n := 0
		for n < rows+1 {
			cs, err := src.ReadN(ctx, 5000)
			if err != nil {
				b.Fatal(err)
			}
			n += len(cs)
			for j := len(cs) - 1; j >= 0; j-- {
				if cs[j].Position != nil {
					_ = src.Ack(ctx, cs[j].Position)
					break
				}
			}
		}
		b.ReportMetric(float64(rows)/time.Since(t0).Seconds(), "changes/s")
		src.Close()
		if err := src.Teardown(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
