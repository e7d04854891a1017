package pglogical

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

const accountsDDL = `CREATE TABLE public.accounts (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2), born date, attrs jsonb, active bool);
ALTER TABLE public.accounts REPLICA IDENTITY FULL`

func seedAccounts(t testing.TB, e *pgEnv, n int) {
	e.exec(t, fmt.Sprintf(`INSERT INTO accounts SELECT g, 'name '||g, g*1.25, date '2000-01-01' + g, jsonb_build_object('g', g, 'tag', 'x'), g %% 2 = 0 FROM generate_series(1, %d) g`, n))
}

// writer mutates accounts until stopped: inserts above 1e6, updates and deletes of
// random existing keys, in small transactions.
func writer(t *testing.T, e *pgEnv, stop <-chan struct{}, wg *sync.WaitGroup, ops *atomic.Int64) {
	defer wg.Done()
	ctx := context.Background()
	conn, err := e.srv.Connect(ctx, e.db)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(ctx)
	next := 1_000_000
	for {
		select {
		case <-stop:
			return
		default:
		}
		k := rand.IntN(3000) + 1
		var q string
		switch rand.IntN(4) {
		case 0:
			next++
			q = fmt.Sprintf(`INSERT INTO accounts VALUES (%d, 'new', 1.5, '2020-02-02', '{"n":1}', true)`, next)
		case 1:
			q = fmt.Sprintf(`DELETE FROM accounts WHERE id = %d`, k)
		default:
			q = fmt.Sprintf(`UPDATE accounts SET amount = amount + 1, name = name || '+' WHERE id = %d`, k)
		}
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Error(err)
			return
		}
		ops.Add(1)
	}
}

type runEnv struct {
	k      *testenv.KafkaCluster
	opts   bus.Options
	store  *capture.FileStore
	topic  string
	prefix string
}

func newRunEnv(t *testing.T, prefix, table string) *runEnv {
	k := testenv.Kafka(t)
	opts := bus.Options{Brokers: k.Brokers()}
	topic := schemas.RawTopic(prefix, "dept", table[strings.LastIndexByte(table, '.')+1:])                                  // topics name the table without its schema
	if err := bus.EnsureTopics(context.Background(), opts, bus.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}, // one partition: the marker is read last
		bus.TopicSpec{Name: schemas.DLQTopic(prefix, "capture"), Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	store, err := capture.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &runEnv{k: k, opts: opts, store: store, topic: topic, prefix: prefix}
}

// run starts a runner over a new Source; stop cancels it and waits.
func (r *runEnv) run(t *testing.T, o Options, onBatch func(n int, saved capture.Position)) (stop func() error) {
	t.Helper()
	o.TopicPrefix = r.prefix
	src, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := bus.NewProducer(r.opts)
	if err != nil {
		t.Fatal(err)
	}
	run, err := capture.NewRunner(capture.RunnerOptions{Name: "dept", TopicPrefix: r.prefix, Source: src, Producer: prod,
		Positions: r.store, BatchSize: 1000, OnBatch: onBatch})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run.Run(ctx) }()
	return func() error {
		cancel()
		err := <-done
		prod.Close()
		return err
	}
}

// consumeUntil reads the topic from the start until a message satisfies last.
func (r *runEnv) consumeUntil(t *testing.T, last func(*schemas.Envelope) bool) []*schemas.Envelope {
	t.Helper()
	c, err := bus.NewGroupConsumer(r.opts, fmt.Sprintf("verify-%d", time.Now().UnixNano()), []string{r.topic})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out []*schemas.Envelope
	for {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(out), err)
		}
		e, err := schemas.UnmarshalEnvelope(m.Value)
		if err != nil {
			t.Fatalf("offset %d: %v", m.Offset, err)
		}
		out = append(out, e)
		if last(e) {
			return out
		}
	}
}

// TestInitialLoadStreamAndRestarts runs the source through the runner against kfake
// with concurrent writes, kills it mid-snapshot and mid-stream, restarts it from the
// stored position, and checks that replaying every event reproduces the table.
func TestInitialLoadStreamAndRestarts(t *testing.T) {
	e := newPG(t)
	e.exec(t, accountsDDL)
	seedAccounts(t, e, 3000)
	r := newRunEnv(t, "tp", "public.accounts")
	o := e.options("public.accounts")
	o.ChunkSize = 200
	before := runtime.NumGoroutine()

	var wg sync.WaitGroup
	var ops atomic.Int64
	stopW := make(chan struct{})
	wg.Add(1)
	go writer(t, e, stopW, &wg, &ops)

	// 1: stop after the first snapshot batches (mid-snapshot).
	var batches atomic.Int64
	midSnap := make(chan struct{})
	stop := r.run(t, o, func(n int, saved capture.Position) {
		if batches.Add(1) == 3 {
			close(midSnap)
		}
	})
	select {
	case <-midSnap:
	case <-time.After(60 * time.Second):
		t.Fatal("no snapshot batches")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	p, _, _ := r.store.Load(context.Background(), "dept")
	pos, _, err := DecodePosition(p)
	if err != nil || pos.Snapshot == nil || pos.Snapshot.Done {
		t.Fatalf("expected a saved mid-snapshot position, got %s (%v)", p, err)
	}

	// 2: restart; stop once streaming positions are saved (mid-stream).
	streamed := make(chan struct{})
	var once sync.Once
	stop = r.run(t, o, func(n int, saved capture.Position) {
		if saved == nil {
			return
		}
		if sp, _, _ := DecodePosition(saved); sp.Snapshot == nil && ops.Load() > 200 {
			once.Do(func() { close(streamed) })
		}
	})
	select {
	case <-streamed:
	case <-time.After(90 * time.Second):
		t.Fatal("never reached streaming")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// 3: more writes while down, then restart and run to the end.
	time.Sleep(300 * time.Millisecond)
	close(stopW)
	wg.Wait()
	e.exec(t, `INSERT INTO accounts VALUES (-1, 'marker', 0, NULL, NULL, NULL)`)
	stop = r.run(t, o, nil)
	envs := r.consumeUntil(t, func(e *schemas.Envelope) bool { return e.Op == schemas.OpCreate && fmt.Sprint(e.Key["id"]) == "-1" })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	state := map[string]string{}
	applyEnvelopes(t, state, envs, "id")
	want := e.tableState(t, "accounts", "id")
	if len(state) != len(want) {
		t.Errorf("replayed %d rows, table has %d (writer ran %d statements)", len(state), len(want), ops.Load())
	}
	diff := 0
	for k, v := range want {
		if state[k] != v {
			if diff < 5 {
				t.Errorf("key %s: replayed %q, table %q", k, state[k], v)
			}
			diff++
		}
	}
	if diff > 0 {
		t.Fatalf("%d rows differ", diff)
	}
	byOp := map[schemas.Op]int{}
	for _, e := range envs {
		byOp[e.Op]++
	}
	t.Logf("events by op %v, %d rows, writer statements %d", byOp, len(want), ops.Load())
	if byOp[schemas.OpRead] < 2000 || byOp[schemas.OpUpdate] == 0 || byOp[schemas.OpDelete] == 0 {
		t.Errorf("op counts %v: want snapshot reads, updates and deletes", byOp)
	}
	// The slot survives every restart.
	if got := e.scalar(t, `SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = $1`, o.Slot); got != "1" {
		t.Errorf("slot count %s after restarts, want 1", got)
	}
	waitGoroutines(t, before)
}

// waitGoroutines fails when goroutines started by the test do not end.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
