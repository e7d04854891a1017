package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// A member joining and leaving while batches are applied: with offsets stored after
// each batch (as the sinks store them with their rows), no message is applied twice
// and no stored offset goes back.
func TestBatchesRebalanceAppliesOnce(t *testing.T) {
	const topic, parts, n = "batches", 4, 2000
	brokers, ctx := seedTopic(t, topic, parts, n)

	var mu sync.Mutex
	stored := map[int]int64{}
	applied := map[string]int{}
	regressions := 0
	member := func(ctx context.Context) error {
		o := testOpts(brokers)
		o.SessionTimeout = 6 * time.Second
		pc, err := NewPartitionConsumer(o, "g", []string{topic}, func(_ context.Context, _ string, partition int) (int64, bool, error) {
			mu.Lock()
			defer mu.Unlock()
			if off, ok := stored[partition]; ok {
				return off, true, nil
			}
			return FirstOffset, true, nil
		})
		if err != nil {
			return err
		}
		return Batches(ctx, pc, BatchOptions[struct{}]{Size: 10, Linger: 5 * time.Millisecond, Lanes: 2},
			func(ctx context.Context, batch []Fetched[struct{}]) error {
				time.Sleep(50 * time.Millisecond) // a database transaction
				mu.Lock()
				defer mu.Unlock()
				for _, f := range batch {
					applied[fmt.Sprintf("%d@%d", f.Msg.Partition, f.Msg.Offset)]++
					if f.Msg.Offset+1 < stored[f.Msg.Partition] {
						regressions++
					}
					stored[f.Msg.Partition] = max(stored[f.Msg.Partition], f.Msg.Offset+1)
				}
				return nil
			})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(applied)
	}
	actx, stopA := context.WithCancel(ctx)
	defer stopA()
	aDone := make(chan error, 1)
	go func() { aDone <- member(actx) }()
	for count() < 40 {
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
	for deadline := time.Now().Add(time.Minute); count() < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d applied", count(), n)
		}
	}
	stopA()
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	twice := 0
	for _, c := range applied {
		if c > 1 {
			twice++
		}
	}
	if twice > 0 || regressions > 0 {
		t.Errorf("%d messages applied more than once, %d stored offsets went back", twice, regressions)
	}
}

// A batch that keeps failing (its database is down) does not hold up a rebalance: a
// revoked partition waits RevokeGrace for it, then the batch is abandoned and Batches
// returns ErrRevokedInFlight; the member that joined takes over and applies every
// message once.
func TestBatchesRevokeAbandonsFailingBatch(t *testing.T) {
	const topic, parts, n = "stuck", 2, 200
	brokers, ctx := seedTopic(t, topic, parts, n)
	var mu sync.Mutex
	applied := map[string]int{}
	stored := map[int]int64{}
	stuck := make(chan struct{}, 1)
	member := func(ctx context.Context, down bool) error {
		o := testOpts(brokers)
		o.SessionTimeout = 6 * time.Second
		pc, err := NewPartitionConsumer(o, "g", []string{topic}, func(_ context.Context, _ string, partition int) (int64, bool, error) {
			mu.Lock()
			defer mu.Unlock()
			if off, ok := stored[partition]; ok { // only B stores: every batch of A failed
				return off, true, nil
			}
			return FirstOffset, true, nil
		})
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
				mu.Lock()
				defer mu.Unlock()
				for _, f := range batch {
					applied[fmt.Sprintf("%d@%d", f.Msg.Partition, f.Msg.Offset)]++
					stored[f.Msg.Partition] = max(stored[f.Msg.Partition], f.Msg.Offset+1)
				}
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
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(applied)
	}
	for deadline := time.Now().Add(time.Minute); count() < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("B applied %d of %d", count(), n)
		}
	}
	stopB()
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for k, c := range applied {
		if c != 1 {
			t.Errorf("%s applied %d times", k, c)
		}
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
	var mu sync.Mutex
	applied := map[string]int{}
	stored := map[int]int64{}
	slow := make(chan struct{})
	var once sync.Once
	member := func(ctx context.Context, first bool) error {
		o := testOpts(brokers)
		o.SessionTimeout = 6 * time.Second
		pc, err := NewPartitionConsumer(o, "g", []string{topic}, func(_ context.Context, _ string, partition int) (int64, bool, error) {
			mu.Lock()
			defer mu.Unlock()
			if off, ok := stored[partition]; ok {
				return off, true, nil
			}
			return FirstOffset, true, nil
		})
		if err != nil {
			return err
		}
		return Batches(ctx, pc, BatchOptions[struct{}]{Size: 10, Linger: 5 * time.Millisecond, RevokeGrace: 200 * time.Millisecond},
			func(ctx context.Context, batch []Fetched[struct{}]) error {
				if first {
					once.Do(func() { close(slow); time.Sleep(3 * time.Second) }) // a long transaction, not a failure
				}
				mu.Lock()
				defer mu.Unlock()
				for _, f := range batch {
					applied[fmt.Sprintf("%d@%d", f.Msg.Partition, f.Msg.Offset)]++
					stored[f.Msg.Partition] = max(stored[f.Msg.Partition], f.Msg.Offset+1)
				}
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
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		got := len(applied)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d applied", got, n)
		}
		select {
		case err := <-aDone:
			t.Fatalf("A returned %v while its slow batch was healthy", err)
		default:
		}
	}
	stopB()
	stopA()
	if err := errors.Join(<-aDone, <-bDone); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for k, c := range applied {
		if c != 1 {
			t.Errorf("%s applied %d times", k, c)
		}
	}
}
