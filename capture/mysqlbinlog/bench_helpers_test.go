package mysqlbinlog

// Shared set-up for the issue #3 benchmarks (bench_stream_test.go, bench_snapshot_test.go,
// bench_latency_test.go): a private MariaDB with a buffer pool large enough to hold the
// generated national tables, an in-process Kafka (kfake), and the real capture.Runner
// with bus.Producer (acks=all) and a FileStore, so the figures cover the same path as
// production: binlog decode → envelope → JSON → Kafka ack → position save.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	osexec "os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// benchEnvInt reads a size from the environment so `make bench` stays quick while a
// figures run can ask for millions of rows.
func benchEnvInt(b *testing.B, name string, def int) int {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("environment %s=%q: want a positive integer", name, s)
	}
	return n
}

// benchServer starts a private MariaDB (the shared one has a 64 MB buffer pool, which
// would turn a million-row snapshot into a disk benchmark) and creates database bench.
func benchServer(b *testing.B) (*testenv.MariaDBServer, *sql.DB) {
	b.Helper()
	srv := testenv.NewMariaDB(b, testenv.MariaDBOptions{BufferPool: "2G"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.CreateDatabase(ctx, "bench"); err != nil {
		b.Fatalf("create database bench: %v", err)
	}
	d, err := srv.Open("bench")
	if err != nil {
		b.Fatalf("open database bench: %v", err)
	}
	b.Cleanup(func() { d.Close() })
	return srv, d
}

// benchHead returns the server's current binlog end.
func benchHead(b *testing.B, d *sql.DB) binlogPos {
	b.Helper()
	p, err := benchHeadErr(d)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchHeadErr is benchHead for goroutines other than the benchmark's.
func benchHeadErr(d *sql.DB) (binlogPos, error) {
	rows, err := d.Query("SHOW MASTER STATUS")
	if err != nil {
		return binlogPos{}, fmt.Errorf("SHOW MASTER STATUS: %w", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return binlogPos{}, fmt.Errorf("SHOW MASTER STATUS returned no row: binary logging is off")
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return binlogPos{}, fmt.Errorf("SHOW MASTER STATUS: %w", err)
	}
	p, err := strconv.ParseUint(vals[1].String, 10, 32)
	if err != nil {
		return binlogPos{}, fmt.Errorf("SHOW MASTER STATUS position %q: %w", vals[1].String, err)
	}
	return binlogPos{vals[0].String, uint32(p)}, nil
}

// benchOptions are the connector options a production deployment would use, apart from
// the server address.
// SHOUWANG_BENCH_MAX_ROW_BYTES overrides Options.MaxRowBytes (-1 turns the per-row size
// check off) to measure what that check costs.
func benchOptions(b *testing.B, srv *testenv.MariaDBServer, mode SnapshotMode) Options {
	b.Helper()
	maxRow := 0
	if s := os.Getenv("SHOUWANG_BENCH_MAX_ROW_BYTES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("environment SHOUWANG_BENCH_MAX_ROW_BYTES=%q: want an integer (-1: no check)", s)
		}
		maxRow = n
	}
	return Options{MaxRowBytes: maxRow, Name: "national", TopicPrefix: "sc", Host: srv.Host(), Port: srv.Port(),
		User: srv.ReplUser(), Password: srv.ReplPassword(), Flavor: srv.Flavor(),
		ServerID: serverIDs.Add(1), Databases: []string{"bench"}, StateDir: b.TempDir(),
		SnapshotMode: mode}
}

// benchKafka starts kfake with the raw topics of the national tables (6 partitions, as
// the deployment samples) plus the capture DLQ and any extra tables.
//
// kfake keeps every message in memory unless it has a data directory (≈ 2 KB of heap per
// person change: a 7 M-row snapshot would need more than 16 GB), so with
// SHOUWANG_BENCH_KAFKA_DISK=1 the segments go to files under the test's temp directory.
func benchKafka(b *testing.B, extraTables ...string) *testenv.KafkaCluster {
	b.Helper()
	var opts []testenv.KafkaOption
	if os.Getenv("SHOUWANG_BENCH_KAFKA_DISK") == "1" {
		opts = append(opts, testenv.WithKfakeOptions(kfake.DataDir(b.TempDir())))
	}
	k := testenv.Kafka(b, opts...)
	topics := []string{schemas.DLQTopic("sc", "capture")}
	for _, t := range append([]string{"household", "person", "measure"}, extraTables...) {
		topics = append(topics, schemas.RawTopic("sc", "national", t))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.CreateTopics(ctx, 6, topics...); err != nil {
		b.Fatal(err)
	}
	return k
}

// producerFunc lets a benchmark observe the moment Produce returned (Kafka acked).
type producerFunc func(ctx context.Context, msgs ...bus.Message) error

func (f producerFunc) Produce(ctx context.Context, msgs ...bus.Message) error { return f(ctx, msgs...) }

// runResult is what one runner pass measured.
type runResult struct {
	changes  int           // changes handed to the runner (OnBatch n)
	messages int           // messages acknowledged by Kafka
	elapsed  time.Duration // from Run until done() first returned true
	cpu      time.Duration // process CPU time over the same span
	last     Position      // last saved position
}

// runUntil runs a capture.Runner over src (starting from start, nil for none) into k
// until done reports true for a saved position, and returns the counts and the time.
// observe, when set, sees every acknowledged batch right after Produce returned.
func runUntil(b *testing.B, k *testenv.KafkaCluster, src *Source, start capture.Position, timeout time.Duration,
	done func(p Position) bool, observe func(acked time.Time, msgs []bus.Message)) runResult {
	b.Helper()
	prod, err := bus.NewProducer(bus.Options{Brokers: k.Brokers(), ClientID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	store, err := capture.NewFileStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if start != nil {
		if err := store.Save(ctx, "national", start); err != nil {
			b.Fatal(err)
		}
	}
	var res runResult
	finished := false
	var began time.Time
	var cpu0 time.Duration
	r, err := capture.NewRunner(capture.RunnerOptions{
		Name: "national", TopicPrefix: "sc", Source: src, Positions: store,
		BatchSize: benchEnvInt(b, "SHOUWANG_BENCH_BATCH", 2000),
		Producer: producerFunc(func(ctx context.Context, msgs ...bus.Message) error {
			err := prod.Produce(ctx, msgs...)
			if err == nil {
				res.messages += len(msgs)
				if observe != nil {
					observe(time.Now(), msgs)
				}
			}
			return err
		}),
		OnBatch: func(n int, saved capture.Position) {
			res.changes += n
			if saved == nil || finished {
				return
			}
			p, ok, err := DecodePosition(saved)
			if err != nil || !ok {
				b.Errorf("runner saved an undecodable position %s: %v", saved, err)
				cancel()
				return
			}
			res.last = p
			if done(p) {
				finished = true
				res.elapsed = time.Since(began)
				res.cpu = processCPU(b) - cpu0
				cancel()
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	began, cpu0 = time.Now(), processCPU(b)
	if err := r.Run(ctx); err != nil {
		b.Fatalf("runner: %v", err)
	}
	if !finished {
		b.Fatalf("runner stopped after %d changes before reaching the end (last position %s): timeout %s", res.changes, res.last, timeout)
	}
	return res
}

// processCPU is the CPU time (user+system) this process used so far. The machine is
// shared, so wall-clock rates depend on what else runs; CPU per change does not (it
// includes kfake, which runs in this process, but not the MariaDB server).
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timeTool runs a baseline tool with stdout to /dev/null and returns its wall time and
// CPU time (user+system).
func timeTool(b *testing.B, name string, args ...string) (wall, cpu time.Duration) {
	b.Helper()
	path, err := osexec.LookPath(name)
	if err != nil {
		b.Skipf("baseline tool %s not on PATH (apt-get install mariadb-client): %v", name, err)
	}
	cmd := osexec.Command(path, args...)
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = devnull, &stderr
	began := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return time.Since(began), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// firstTool returns the first of names found on PATH (MariaDB ships mariadb-binlog and
// mariadb-dump, older installs only mysqlbinlog and mysqldump).
func firstTool(names ...string) string {
	for _, n := range names {
		if _, err := osexec.LookPath(n); err == nil {
			return n
		}
	}
	return names[0]
}
