package capture

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// testProducer wraps the real bus.Producer (talking to a kfake broker): it records
// how many Produce calls ran at once and lets a test hold back, or send to a missing
// topic (a real refusal by Kafka), the batch whose first change has a given id.
type testProducer struct {
	p                         *bus.Producer
	concurrent, maxConcurrent atomic.Int64

	mu       sync.Mutex
	hold     map[int64]chan struct{} // first id → Produce waits until the channel is closed
	redirect map[int64]string        // first id → topic to write to instead
	acked    chan int64              // first id of every acknowledged call, when not nil
	ackedIDs []int64                 // every id acknowledged, in order of the calls' return
}

func (tp *testProducer) Produce(ctx context.Context, msgs ...bus.Message) error {
	n := tp.concurrent.Add(1)
	defer tp.concurrent.Add(-1)
	for m := tp.maxConcurrent.Load(); n > m && !tp.maxConcurrent.CompareAndSwap(m, n); m = tp.maxConcurrent.Load() {
	}
	id := firstID(msgs)
	tp.mu.Lock()
	hold, topic := tp.hold[id], tp.redirect[id]
	tp.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if topic != "" {
		msgs = slices.Clone(msgs)
		for i := range msgs {
			msgs[i].Topic = topic
		}
	}
	err := tp.p.Produce(ctx, msgs...)
	if err == nil {
		tp.mu.Lock()
		for _, m := range msgs {
			if e, derr := schemas.UnmarshalEnvelope(m.Value); derr == nil {
				n, _ := e.Key["id"].(json.Number).Int64()
				tp.ackedIDs = append(tp.ackedIDs, n)
			}
		}
		tp.mu.Unlock()
		if tp.acked != nil {
			tp.acked <- id
		}
	}
	return err
}

func (tp *testProducer) wasAcked(id int64) bool {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Contains(tp.ackedIDs, id)
}

// uniqueKeys gives every change of s its own Kafka key, so that no batch holds back
// messages for an earlier one.
func uniqueKeys(s *scriptedSource) *scriptedSource {
	for i := range s.changes {
		s.changes[i].Key = fmt.Appendf(nil, "u%d", i)
	}
	return s
}

// firstID is the key id of the first change envelope among msgs (dead letters are
// skipped), -1 when there is none.
func firstID(msgs []bus.Message) int64 {
	for _, m := range msgs {
		e, err := schemas.UnmarshalEnvelope(m.Value)
		if err != nil {
			continue
		}
		if id, err := e.Key["id"].(json.Number).Int64(); err == nil {
			return id
		}
	}
	return -1
}

// waitAcked waits until every id in want was reported acknowledged.
func waitAcked(t *testing.T, acked <-chan int64, want ...int64) {
	t.Helper()
	missing := map[int64]bool{}
	for _, id := range want {
		missing[id] = true
	}
	timeout := time.After(30 * time.Second)
	for len(missing) > 0 {
		select {
		case id := <-acked:
			delete(missing, id)
		case <-timeout:
			t.Fatalf("batches starting at ids %v were never acknowledged", missing)
		}
	}
}

// savedLog collects the positions OnBatch reports, in call order.
type savedLog struct {
	mu  sync.Mutex
	pos []string
}

func (l *savedLog) add(_ int, p Position) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p != nil {
		l.pos = append(l.pos, string(p))
	}
}

func (l *savedLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.pos)
}

func (s *scriptedSource) ackedSoFar() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acked)
}

func pipelineSetup(t *testing.T, prefix string, opts func(*bus.Options)) (bus.Options, *bus.Producer, PositionStore) {
	t.Helper()
	k := testenv.Kafka(t)
	o := bus.Options{Brokers: k.Brokers()}
	if opts != nil {
		opts(&o)
	}
	if err := bus.EnsureTopics(context.Background(), o,
		bus.TopicSpec{Name: schemas.RawTopic(prefix, "src", "t"), Partitions: 3, ReplicationFactor: 1},
		bus.TopicSpec{Name: schemas.DLQTopic(prefix, "capture"), Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	prod, err := bus.NewProducer(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	store, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return o, prod, store
}

// TestRunnerCommitsInOrderWhenALaterBatchIsAckedFirst holds the first batch back until
// the two after it were acknowledged by Kafka: nothing may be saved or acked before the
// first batch is, and then the positions follow in read order.
func TestRunnerCommitsInOrderWhenALaterBatchIsAckedFirst(t *testing.T) {
	prefix := "io"
	opts, prod, store := pipelineSetup(t, prefix, nil)
	release := make(chan struct{})
	tp := &testProducer{p: prod, hold: map[int64]chan struct{}{0: release}, acked: make(chan int64, 16)}
	src := uniqueKeys(newScripted(24, 8, prefix)) // batches 0-7, 8-15, 16-23
	var saved savedLog
	r, err := NewRunner(RunnerOptions{Name: "src", TopicPrefix: prefix, Source: src, Producer: tp, Positions: store,
		BatchSize: 8, MaxInFlight: 4, OnBatch: saved.add})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	waitAcked(t, tp.acked, 8, 16)
	if p, ok, err := store.Load(ctx, "src"); err != nil || ok {
		t.Fatalf("position %s saved (err %v) while the first batch was not acknowledged", p, err)
	}
	if a := src.ackedSoFar(); len(a) != 0 {
		t.Fatalf("source acked %v while the first batch was not acknowledged", a)
	}
	if s := saved.get(); len(s) != 0 {
		t.Fatalf("OnBatch reported %v while the first batch was not acknowledged", s)
	}
	if got := tp.maxConcurrent.Load(); got < 3 {
		t.Fatalf("at most %d Produce calls ran at once, want 3 (MaxInFlight 4)", got)
	}

	close(release)
	deadline := time.After(30 * time.Second)
	for len(saved.get()) < 3 {
		select {
		case err := <-done:
			t.Fatalf("runner stopped early: %v", err)
		case <-deadline:
			t.Fatalf("saved only %v", saved.get())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []string{"7", "15", "23"}
	if got := saved.get(); !slices.Equal(got, want) {
		t.Fatalf("positions committed in order %v, want %v", got, want)
	}
	if got := src.ackedSoFar(); !slices.Equal(got, want) {
		t.Fatalf("source acked %v, want %v", got, want)
	}
	if p, _, _ := store.Load(context.Background(), "src"); string(p) != "23" {
		t.Fatalf("saved position %s, want 23", p)
	}
	// Every change reached the topic exactly once (24 - 3 dead letters - 2 heartbeats).
	ids := map[int64]bool{}
	for _, m := range consumeAll(t, opts, schemas.RawTopic(prefix, "src", "t"), 19) {
		e, err := schemas.UnmarshalEnvelope(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := e.Key["id"].(json.Number).Int64()
		if ids[id] {
			t.Fatalf("id %d produced twice", id)
		}
		ids[id] = true
	}
}

// TestRunnerFailedBatchStopsWithEarlierPositionsSaved makes the third batch fail for
// real (its messages go to a topic the broker does not have) after the two batches
// behind it were acknowledged: the runner stops with the produce error, having saved
// and acked the first two batches' positions and nothing later.
func TestRunnerFailedBatchStopsWithEarlierPositionsSaved(t *testing.T) {
	prefix := "fb"
	_, prod, store := pipelineSetup(t, prefix, func(o *bus.Options) { o.RetryMaxElapsed = -1 })
	release := make(chan struct{})
	tp := &testProducer{p: prod, hold: map[int64]chan struct{}{16: release},
		redirect: map[int64]string{16: "fb.raw.src.does_not_exist"}, acked: make(chan int64, 16)}
	src := uniqueKeys(newScripted(40, 8, prefix)) // batches 0-7, 8-15, 16-23 (fails), 24-31, 32-39
	var saved savedLog
	r, err := NewRunner(RunnerOptions{Name: "src", TopicPrefix: prefix, Source: src, Producer: tp, Positions: store,
		BatchSize: 8, MaxInFlight: 4, OnBatch: saved.add})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	waitAcked(t, tp.acked, 0, 8, 24, 32)
	close(release)
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "position not advanced") || !strings.Contains(err.Error(), "does_not_exist") {
		t.Fatalf("Run = %v, want the produce error of the third batch", err)
	}
	want := []string{"7", "15"}
	if got := saved.get(); !slices.Equal(got, want) {
		t.Fatalf("committed %v, want %v (nothing after the failed batch)", got, want)
	}
	if got := src.ackedSoFar(); !slices.Equal(got, want) {
		t.Fatalf("source acked %v, want %v", got, want)
	}
	if p, _, _ := store.Load(context.Background(), "src"); string(p) != "15" {
		t.Fatalf("saved position %s, want 15", p)
	}
}

// TestRunnerHoldsBackKeysOfEarlierBatches shares one key between the first batch (held
// back) and the second: the second batch's other messages are produced at once, the
// shared key's message only after the first batch was acknowledged, so the key's
// changes reach Kafka in read order.
func TestRunnerHoldsBackKeysOfEarlierBatches(t *testing.T) {
	prefix := "hk"
	opts, prod, store := pipelineSetup(t, prefix, nil)
	release := make(chan struct{})
	tp := &testProducer{p: prod, hold: map[int64]chan struct{}{0: release}, acked: make(chan int64, 16)}
	src := uniqueKeys(newScripted(16, 8, prefix)) // batches 0-7, 8-15
	src.changes[9].Key = src.changes[1].Key
	src.changes[12].Key = src.changes[1].Key
	var saved savedLog
	r, err := NewRunner(RunnerOptions{Name: "src", TopicPrefix: prefix, Source: src, Producer: tp, Positions: store,
		BatchSize: 8, MaxInFlight: 4, OnBatch: saved.add})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	waitAcked(t, tp.acked, 8) // the second batch's free part: 8, 10, 11, 14 (13 a dead letter, 15 a heartbeat)
	for _, id := range []int64{9, 12} {
		if tp.wasAcked(id) {
			t.Fatalf("change %d shares its key with the unacknowledged first batch but was produced", id)
		}
	}
	close(release)
	deadline := time.After(30 * time.Second)
	for len(saved.get()) < 2 {
		select {
		case err := <-done:
			t.Fatalf("runner stopped early: %v", err)
		case <-deadline:
			t.Fatalf("saved only %v", saved.get())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := saved.get(); !slices.Equal(got, []string{"7", "15"}) {
		t.Fatalf("committed %v, want [7 15]", got)
	}
	var order []int64
	for _, m := range consumeAll(t, opts, schemas.RawTopic(prefix, "src", "t"), 12) {
		if string(m.Key) != string(src.changes[1].Key) {
			continue
		}
		e, err := schemas.UnmarshalEnvelope(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := e.Key["id"].(json.Number).Int64()
		order = append(order, id)
	}
	if !slices.Equal(order, []int64{1, 9, 12}) {
		t.Fatalf("changes of the shared key arrived as %v, want [1 9 12]", order)
	}
}

// TestRunnerReadFailureCommitsEarlierBatches fails the source's third read while the
// first two batches are still in flight: the runner waits for them, commits both and
// then returns the read error.
func TestRunnerReadFailureCommitsEarlierBatches(t *testing.T) {
	prefix := "rf"
	_, prod, store := pipelineSetup(t, prefix, nil)
	release := make(chan struct{})
	tp := &testProducer{p: prod, hold: map[int64]chan struct{}{0: release}, acked: make(chan int64, 16)}
	src := uniqueKeys(newScripted(24, 8, prefix))
	src.failAt = 16 // batches 0-7 and 8-15, then the read fails
	var saved savedLog
	r, err := NewRunner(RunnerOptions{Name: "src", TopicPrefix: prefix, Source: src, Producer: tp, Positions: store,
		BatchSize: 8, MaxInFlight: 4, OnBatch: saved.add})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	waitAcked(t, tp.acked, 8)
	close(release)
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "scripted read failure at change 16") {
		t.Fatalf("Run = %v, want the read error", err)
	}
	if got := saved.get(); !slices.Equal(got, []string{"7", "15"}) {
		t.Fatalf("committed %v, want [7 15] (both batches read before the failure)", got)
	}
}
