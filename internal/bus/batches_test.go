package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// ledger is what a test sink stores: the next offset of each partition (written with
// each applied batch, as the sinks store them with their rows) and how often each
// message was applied.
type ledger struct {
	mu          sync.Mutex
	stored      map[int]int64
	applied     map[string]int
	regressions int // stored offsets that went back
}

func newLedger() *ledger { return &ledger{stored: map[int]int64{}, applied: map[string]int{}} }

// consumer joins group g on topic, each partition starting at its stored offset.
func (l *ledger) consumer(brokers []string, topic string) (*PartitionConsumer, error) {
	o := testOpts(brokers)
	o.SessionTimeout = 6 * time.Second
	return NewPartitionConsumer(o, "g", []string{topic}, func(_ context.Context, _ string, partition int) (int64, bool, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if off, ok := l.stored[partition]; ok {
			return off, true, nil
		}
		return FirstOffset, true, nil
	})
}

// record applies a batch.
func (l *ledger) record(batch []Fetched[struct{}]) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range batch {
		l.applied[fmt.Sprintf("%d@%d", f.Msg.Partition, f.Msg.Offset)]++
		if f.Msg.Offset+1 < l.stored[f.Msg.Partition] {
			l.regressions++
		}
		l.stored[f.Msg.Partition] = max(l.stored[f.Msg.Partition], f.Msg.Offset+1)
	}
}

// count is how many distinct messages were applied.
func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.applied)
}

// waitAll waits up to a minute until n distinct messages were applied; stop, when it
// returns an error, ends the wait with it.
func (l *ledger) waitAll(t *testing.T, n int, stop func() error) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); l.count() < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d applied", l.count(), n)
		}
		if stop != nil {
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// twice lists the messages applied more than once.
func (l *ledger) twice() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k, c := range l.applied {
		if c > 1 {
			out = append(out, fmt.Sprintf("%s ×%d", k, c))
		}
	}
	return out
}

// A member joining and leaving while batches are applied: with offsets stored after
// each batch (as the sinks store them with their rows), no message is applied twice
// and no stored offset goes back.
func TestBatchesRebalanceAppliesOnce(t *testing.T) {
	const topic, parts, n = "batches", 4, 2000
	brokers, ctx := seedTopic(t, topic, parts, n)
	l := newLedger()
	member := func(ctx context.Context) error {
		pc, err := l.consumer(brokers, topic)
		if err != nil {
			return err
		}
		return Batches(ctx, pc, BatchOptions[struct{}]{Size: 10, Linger: 5 * time.Millisecond, Lanes: 2},
			func(ctx context.Context, batch []Fetched[struct{}]) error {
				time.Sleep(50 * time.Millisecond) // a database transaction
				l.record(batch)
				return nil
			})
	}
	actx, stopA := context.WithCancel(ctx)
	defer stopA()
	aDone := make(chan error, 1)
	go func() { aDone <- member(actx) }()
	for l.count() < 40 {
		time.Sleep(10 * time.Millisecond)
	}
	bctx, stopB := context.WithCancel(ctx)
	bDone := make(chan error, 1)
	go func() { bDone <- member(bctx) }()
	time.Sleep(3 * time.Second) // B joins: a rebalance while A applies
	stopB()                     // B leaves: another
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	l.waitAll(t, n, nil)
	stopA()
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	if twice := l.twice(); len(twice) > 0 || l.regressions > 0 {
		t.Errorf("%d messages applied more than once, %d stored offsets went back", len(twice), l.regressions)
	}
}

// A batch that keeps failing (its database is down) does not hold up a rebalance: a
// revoked partition waits RevokeGrace for it, then the batch is abandoned and Batches
// returns ErrRevokedInFlight; the member that joined takes over and applies every
// message once.
func TestBatchesRevokeAbandonsFailingBatch(t *testing.T) {
	const topic, parts, n = "stuck", 2, 200
	brokers, ctx := seedTopic(t, topic, parts, n)
	l := newLedger() // only B stores: every batch of A failed
	stuck := make(chan struct{}, 1)
	member := func(ctx context.Context, down bool) error {
		pc, err := l.consumer(brokers, topic)
		if err != nil {
			return err
		}
		return Batches(ctx, pc, BatchOptions[struct{}]{Size: 10, Linger: 5 * time.Millisecond, RevokeGrace: 500 * time.Millisecond},
			func(ctx context.Context, batch []Fetched[struct{}]) error {
				if down { // retry until the context ends, as the sinks do while the database is down
					BatchFailing(ctx)
					select {
					case stuck <- struct{}{}:
					default:
					}
					<-ctx.Done()
					return ctx.Err()
				}
				l.record(batch)
				return nil
			})
	}
	aDone := make(chan error, 1)
	go func() { aDone <- member(ctx, true) }()
	select {
	case <-stuck:
	case <-ctx.Done():
		t.Fatal("A never applied a batch")
	}
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	bDone := make(chan error, 1)
	go func() { bDone <- member(bctx, false) }()
	select {
	case err := <-aDone:
		if !errors.Is(err, ErrRevokedInFlight) {
			t.Fatalf("A returned %v, want ErrRevokedInFlight", err)
		}
	case <-ctx.Done():
		t.Fatal("A's failing batch held the rebalance: A never returned")
	}
	l.waitAll(t, n, nil)
	stopB()
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	for _, k := range l.twice() {
		t.Errorf("%s applied more than once", k)
	}
}

// seedTopic starts a cluster with topic of parts partitions holding n messages.
func seedTopic(t *testing.T, topic string, parts, n int) ([]string, context.Context) {
	brokers := newCluster(t)
	o := testOpts(brokers)
	ctx := ctxFor(t, 2*time.Minute)
	mustEnsure(t, ctx, o, TopicSpec{Name: topic, Partitions: parts, ReplicationFactor: 1})
	p, err := NewProducer(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []Message
	for i := 0; i < n; i++ {
		msgs = append(msgs, Message{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: []byte("v")})
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	return brokers, ctx
}

// A batch that is slow but not failing (no BatchFailing) is waited for at a revoke,
// however long past RevokeGrace: it commits, and nothing is abandoned or applied twice.
func TestBatchesRevokeWaitsForSlowBatch(t *testing.T) {
	const topic, parts, n = "slow", 2, 100
	brokers, ctx := seedTopic(t, topic, parts, n)
	l := newLedger()
	slow := make(chan struct{})
	var once sync.Once
	member := func(ctx context.Context, first bool) error {
		pc, err := l.consumer(brokers, topic)
		if err != nil {
			return err
		}
		return Batches(ctx, pc, BatchOptions[struct{}]{Size: 10, Linger: 5 * time.Millisecond, RevokeGrace: 200 * time.Millisecond},
			func(ctx context.Context, batch []Fetched[struct{}]) error {
				if first {
					once.Do(func() { close(slow); time.Sleep(3 * time.Second) }) // a long transaction, not a failure
				}
				l.record(batch)
				return nil
			})
	}
	actx, stopA := context.WithCancel(ctx)
	defer stopA()
	aDone := make(chan error, 1)
	go func() { aDone <- member(actx, true) }()
	<-slow
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	bDone := make(chan error, 1)
	go func() { bDone <- member(bctx, false) }()
	l.waitAll(t, n, func() error {
		select {
		case err := <-aDone:
			return fmt.Errorf("A returned %v while its slow batch was healthy", err)
		default:
			return nil
		}
	})
	stopB()
	stopA()
	if err := errors.Join(<-aDone, <-bDone); err != nil {
		t.Fatal(err)
	}
	for _, k := range l.twice() {
		t.Errorf("%s applied more than once", k)
	}
}
