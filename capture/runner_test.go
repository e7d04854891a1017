package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// scriptedSource replays a fixed list of changes; the position of change i is "i".
// It stands in for a connector so the runner's own guarantees can be tested against
// a real Kafka-protocol broker.
type scriptedSource struct {
	mu       sync.Mutex
	changes  []Change
	next     int
	openedAt Position
	acked    []string
	perRead  int
	failAt   int // when > 0: ReadN fails once every change before this index was read
}

func newScripted(n, perRead int, prefix string) *scriptedSource {
	s := &scriptedSource{perRead: perRead}
	for i := 0; i < n; i++ {
		c := Change{
			Topic: schemas.RawTopic(prefix, "src", "t"),
			Key:   []byte(fmt.Sprintf("k%d", i%7)),
			Envelope: schemas.Envelope{Op: schemas.OpCreate,
				Source: schemas.Source{System: "src", Kind: "test", Table: "t", CommitMs: time.Now().UnixMilli()},
				Key:    map[string]any{"id": i}, After: map[string]any{"id": i}},
			Position: Position(fmt.Sprintf("%d", i)),
		}
		if i%10 == 5 {
			c = Change{PositionOnly: true, Position: c.Position,
				Envelope: schemas.Envelope{Source: schemas.Source{CommitMs: time.Now().UnixMilli()}}}
		}
		if i%10 == 3 {
			c.DeadLetter = &schemas.DLQRecord{Reason: "row 3: bad text in 11010519491231002X", Key: "11010519491231002X",
				Payload: []byte("\xff,11010519491231002X,13800138000")}
			c.Key = []byte("11010519491231002X")
			c.DeadLetterReason = "invalid_text"
		}
		s.changes = append(s.changes, c)
	}
	return s
}

func (s *scriptedSource) Open(_ context.Context, last Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.openedAt = last
	s.next = 0
	if last != nil {
		var n int
		fmt.Sscanf(string(last), "%d", &n)
		s.next = n + 1
	}
	return nil
}

func (s *scriptedSource) ReadN(ctx context.Context, max int) ([]Change, error) {
	s.mu.Lock()
	if s.failAt > 0 && s.next >= s.failAt {
		s.mu.Unlock()
		return nil, fmt.Errorf("scripted read failure at change %d", s.next)
	}
	if s.next >= len(s.changes) {
		s.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	end := min(s.next+min(max, s.perRead), len(s.changes))
	out := append([]Change(nil), s.changes[s.next:end]...)
	s.next = end
	s.mu.Unlock()
	return out, nil
}

func (s *scriptedSource) Ack(_ context.Context, upTo Position) error {
	s.mu.Lock()
	s.acked = append(s.acked, string(upTo))
	s.mu.Unlock()
	return nil
}

func (s *scriptedSource) Close() error { return nil }

// runUntil runs the runner until the saved position equals want or the timeout hits.
func runUntil(t *testing.T, r *Runner, store PositionStore, want string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case err := <-done:
			return err
		case <-deadline:
			t.Fatalf("saved position never reached %s", want)
		case <-time.After(10 * time.Millisecond):
		}
		p, ok, err := store.Load(ctx, "src")
		if err != nil {
			t.Fatal(err)
		}
		if ok && string(p) == want {
			cancel()
			return <-done
		}
	}
}

func consumeAll(t *testing.T, opts bus.Options, topic string, n int) []bus.Message {
	t.Helper()
	c, err := bus.NewGroupConsumer(opts, "verify-"+topic, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []bus.Message
	for len(out) < n {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("fetched %d of %d messages from %s: %v", len(out), n, topic, err)
		}
		out = append(out, m)
	}
	return out
}

func TestRunnerProducesCommitsAndResumes(t *testing.T) {
	for _, inFlight := range []int{0, 4} {
		t.Run(fmt.Sprintf("max_in_flight_%d", inFlight), func(t *testing.T) { testRunnerProducesCommitsAndResumes(t, inFlight) })
	}
}

func testRunnerProducesCommitsAndResumes(t *testing.T, maxInFlight int) {
	k := testenv.Kafka(t)
	prefix := "rt"
	raw, dlq := schemas.RawTopic(prefix, "src", "t"), schemas.DLQTopic(prefix, "capture")
	opts := bus.Options{Brokers: k.Brokers()}
	ctx := context.Background()
	if err := bus.EnsureTopics(ctx, opts, bus.TopicSpec{Name: raw, Partitions: 3, ReplicationFactor: 1},
		bus.TopicSpec{Name: dlq, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	realProd, err := bus.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer realProd.Close()
	prod := &testProducer{p: realProd}
	store, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := newScripted(50, 8, prefix)
	reg := prometheus.NewRegistry()
	r, err := NewRunner(RunnerOptions{Name: "src", TopicPrefix: prefix, Source: src, Producer: prod, Positions: store, BatchSize: 8,
		Registerer: reg, MaxInFlight: maxInFlight})
	if err != nil {
		t.Fatal(err)
	}
	if err := runUntil(t, r, store, "49"); err != nil {
		t.Fatal(err)
	}
	if src.openedAt != nil {
		t.Fatalf("first run opened at %q, want nil (no saved position)", src.openedAt)
	}
	// 5 dead letters (i%10==3), 5 heartbeats (i%10==5), 40 changes; per-key order
	// preserved in the raw topic.
	msgs := consumeAll(t, opts, raw, 40)
	lastPerKey := map[string]int{}
	for _, m := range msgs {
		e, err := schemas.UnmarshalEnvelope(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := e.Key["id"].(json.Number).Int64()
		if prev, ok := lastPerKey[string(m.Key)]; ok && int(id) <= prev {
			t.Fatalf("key %s: id %d after %d: order broken", m.Key, id, prev)
		}
		lastPerKey[string(m.Key)] = int(id)
		if id%10 == 3 || id%10 == 5 {
			t.Fatalf("dead letter or heartbeat %d reached the raw topic", id)
		}
	}
	dl := consumeAll(t, opts, dlq, 5)
	var rec schemas.DLQRecord
	if err := json.Unmarshal(dl[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Stage != "capture" || rec.Source != "src" || !strings.Contains(rec.Reason, "bad text") {
		t.Fatalf("dead letter = %+v", rec)
	}
	// No full ID number or phone at rest in the DLQ: masked by default (pii.MaskText).
	for _, m := range dl {
		for _, full := range []string{"11010519491231002X", "13800138000"} {
			if bytes.Contains(m.Value, []byte(full)) || bytes.Contains(m.Key, []byte(full)) {
				t.Fatalf("dead letter keeps %s in full: key %q value %s", full, m.Key, m.Value)
			}
		}
	}
	if rec.Key != "1101**********002X" || !strings.Contains(string(rec.Payload), "138****8000") {
		t.Fatalf("dead letter not masked as expected: key %q payload %q", rec.Key, rec.Payload)
	}
	if got := counterValue(t, reg, "shouwang_dlq_records_total"); got != 5 {
		t.Fatalf("dlq counter = %v, want 5", got)
	}
	if got := counterValue(t, reg, "shouwang_capture_events_total"); got != 40 {
		t.Fatalf("events counter = %v, want 40", got)
	}
	if got := src.acked[len(src.acked)-1]; got != "49" {
		t.Fatalf("last ack %s, want 49", got)
	}
	if maxInFlight == 0 && prod.maxConcurrent.Load() != 1 {
		t.Fatalf("the default MaxInFlight let %d Produce calls run at once", prod.maxConcurrent.Load())
	}

	// A new runner over the same store resumes after the saved position.
	src2 := newScripted(60, 8, prefix)
	r2, err := NewRunner(RunnerOptions{Name: "src", TopicPrefix: prefix, Source: src2, Producer: prod, Positions: store, BatchSize: 8,
		MaxInFlight: maxInFlight})
	if err != nil {
		t.Fatal(err)
	}
	if err := runUntil(t, r2, store, "59"); err != nil {
		t.Fatal(err)
	}
	if string(src2.openedAt) != "49" {
		t.Fatalf("resumed at %q, want 49", src2.openedAt)
	}
	all := consumeAll(t, opts, raw, 40+8) // 10 more: 53 a dead letter, 55 a heartbeat
	if len(all) != 48 {
		t.Fatalf("got %d messages", len(all))
	}
}

func TestRunnerStopsWithoutAdvancingWhenKafkaRefuses(t *testing.T) {
	k := testenv.Kafka(t)
	opts := bus.Options{Brokers: k.Brokers(), RetryMaxElapsed: -1}
	prod, err := bus.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	store, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The raw topic does not exist and auto-creation is off: every produce fails.
	src := newScripted(5, 5, "missing")
	r, err := NewRunner(RunnerOptions{Name: "src", TopicPrefix: "missing", Source: src, Producer: prod, Positions: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "position not advanced") {
		t.Fatalf("Run = %v, want a produce error", err)
	}
	if _, ok, _ := store.Load(ctx, "src"); ok {
		t.Fatal("a position was saved although Kafka acknowledged nothing")
	}
	if len(src.acked) != 0 {
		t.Fatalf("source acked %v although Kafka acknowledged nothing", src.acked)
	}
}

func TestPGStoreRoundTrip(t *testing.T) {
	pg, db := testenv.PostgresDatabase(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s, err := NewPGStore(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load(ctx, "national"); err != nil || ok {
		t.Fatalf("empty store: ok=%v err=%v", ok, err)
	}
	for _, p := range []string{`{"v":1,"file":"binlog.000001","pos":4}`, `{"v":1,"file":"binlog.000002","pos":123}`} {
		if err := s.Save(ctx, "national", Position(p)); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := s.Load(ctx, "national")
	if err != nil || !ok {
		t.Fatalf("load: ok=%v err=%v", ok, err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil || m["file"] != "binlog.000002" {
		t.Fatalf("loaded %s", got)
	}
	// A second store on the same database sees the same position (workers may move).
	s2, err := NewPGStore(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if got2, _, _ := s2.Load(ctx, "national"); string(got2) != string(got) {
		t.Fatalf("second store loaded %s", got2)
	}
}

func TestFileStoreRejectsBadNames(t *testing.T) {
	s, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(context.Background(), "../etc", Position("{}")); err == nil {
		t.Fatal("saved under a path-traversing source name")
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// refusingSource cannot be opened, the way a connector fails against a server that is
// down; its error names the source as connectors' errors do.
type refusingSource struct{ scriptedSource }

func (s *refusingSource) Open(context.Context, Position) error {
	return errors.New("capture src: connect to 127.0.0.1:1: connection refused")
}

// TestRunnerOpenFailureNamesTheSourceOnce checks that a source that cannot be opened
// stops the runner with one "capture src:" prefix (not two), keeps the cause reachable,
// and never reports the source as open.
func TestRunnerOpenFailureNamesTheSourceOnce(t *testing.T) {
	k := testenv.Kafka(t)
	prod, err := bus.NewProducer(bus.Options{Brokers: k.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	store, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opened := false
	r, err := NewRunner(RunnerOptions{Name: "src", TopicPrefix: "p", Source: &refusingSource{}, Producer: prod,
		Positions: store, OnOpen: func() { opened = true }})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Run(context.Background())
	const want = "capture src: open: connect to 127.0.0.1:1: connection refused"
	if err == nil || err.Error() != want {
		t.Fatalf("Run = %v, want %q", err, want)
	}
	var cause interface{ Unwrap() error }
	if !errors.As(err, &cause) || cause.Unwrap() == nil {
		t.Errorf("the open error does not wrap its cause")
	}
	if opened {
		t.Error("OnOpen was called although Open failed")
	}
}
