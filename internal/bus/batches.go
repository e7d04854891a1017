package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// ErrRevokedInFlight is what Batches returns when a partition was revoked while its
// lane's batch kept failing for longer than RevokeGrace: the batch was abandoned (it
// never committed), and the caller restarts from its stored offsets.
var ErrRevokedInFlight = errors.New("a partition was revoked while its lane's batch kept failing: the batch was abandoned; restart from the stored offsets")

// Fetched is one consumed message, the partition it came from and what decode made of it.
type Fetched[T any] struct {
	P   *Partition
	Msg Message
	V   T

	pctx context.Context // the partition's assignment: done once it is revoked
}

// BatchOptions configures Batches.
type BatchOptions[T any] struct {
	// Size is the most messages per batch; Linger how long a batch waits to fill
	// after its first message.
	Size   int
	Linger time.Duration
	// Decode runs in the partition's goroutine (so decoding goes on beside the
	// previous batch's work); nil leaves V zero.
	Decode func(Message) T
	// OnPartition is told +1 when a partition is assigned and -1 when it is revoked
	// (nil: nothing).
	OnPartition func(delta int)
	// Lanes is how many batches are applied at once (default 1). Every partition
	// always goes to the same lane, so each lane's batches keep their partitions'
	// order and lanes never share a partition; apply must be safe to call from several
	// goroutines.
	Lanes int
	// RevokeGrace is how long a revoked partition waits for its lane's batch in
	// flight before that batch's context is cancelled if it is failing (apply called
	// BatchFailing), so that a batch retrying against a database that is down cannot
	// hold up the group's rebalance (default 10s); a slow batch that is not failing is
	// waited for. Batches then returns ErrRevokedInFlight.
	RevokeGrace time.Duration
}

// lane is one lane's state: applying is held while it applies a batch, cancel
// abandons that batch, and failing says that the batch's apply reported a failure it
// retries (BatchFailing).
type lane struct {
	applying sync.Mutex
	mu       sync.Mutex
	cancel   context.CancelCauseFunc
	failing  atomic.Bool
}

type failingKey struct{}

// BatchFailing tells Batches that the batch whose apply got ctx has failed and is
// being retried (the database is down, the platform answers 5xx): only such a batch is
// abandoned when one of its partitions is revoked (RevokeGrace); a batch that is merely
// slow is waited for. Outside a batch's context it does nothing.
func BatchFailing(ctx context.Context) {
	if f, ok := ctx.Value(failingKey{}).(*atomic.Bool); ok {
		f.Store(true)
	}
}

// RetryBatch runs op until it succeeds, ctx ends (ctx's error), or permanent (when
// set) says retrying cannot help (op's error), waiting with exponential backoff from
// initial up to max between attempts, with no overall limit: a sink waits for its
// database, it never skips. Each failure marks the batch of ctx as failing
// (BatchFailing) and is told to failed (readiness, a log line) with the wait before
// the next attempt.
func RetryBatch(ctx context.Context, initial, max time.Duration, op func() error, permanent func(error) bool, failed func(attempt int, wait time.Duration, err error)) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = initial, max, 0
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if permanent != nil && permanent(err) {
			return err
		}
		BatchFailing(ctx) // a rebalance may abandon this batch rather than wait
		wait := bo.NextBackOff()
		failed(attempt, wait, err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// waitRevoked waits for the lane's batch in flight; once grace has passed, a batch
// that reported a failure (BatchFailing) is cancelled, one that is merely slow is
// waited for.
func (l *lane) waitRevoked(grace time.Duration) {
	done := make(chan struct{})
	go func() {
		l.applying.Lock()
		l.applying.Unlock() //nolint:staticcheck // waits for the lane's batch in flight
		close(done)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if l.failing.Load() {
			break
		}
		t.Reset(grace / 4)
	}
	l.mu.Lock()
	if l.cancel != nil {
		l.cancel(ErrRevokedInFlight)
	}
	l.mu.Unlock()
	<-done
}

// Batches runs pc and calls apply with batches of fetched messages in consumption
// order (per partition, by offset), one batch per lane at a time. It returns nil when ctx ends
// (a batch apply was working on is abandoned: it is redelivered from the stored
// offsets), the consumer's error, or apply's first error.
func Batches[T any](ctx context.Context, pc *PartitionConsumer, o BatchOptions[T], apply func(ctx context.Context, batch []Fetched[T]) error) error {
	if o.Lanes < 1 {
		o.Lanes = 1
	}
	if o.RevokeGrace <= 0 {
		o.RevokeGrace = 10 * time.Second
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lanes := make([]chan Fetched[T], o.Lanes)
	// A lane's applying is held while it applies a batch. A revoked partition's
	// function waits for it before it returns, so the next owner (kafka-go starts the
	// next generation only after every function returned) reads offsets stored after
	// everything this member applied; messages of a revoked partition still queued are
	// dropped, not applied (the next owner reads them again). A batch still failing
	// after RevokeGrace is abandoned (ErrRevokedInFlight).
	states := make([]lane, o.Lanes)
	for i := range lanes {
		lanes[i] = make(chan Fetched[T], 2*o.Size)
	}
	errc := make(chan error, 1+o.Lanes)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- pc.Run(rctx, func(pctx context.Context, p *Partition) error {
			if o.OnPartition != nil {
				o.OnPartition(1)
				defer o.OnPartition(-1)
			}
			lane := laneOf(p.Topic, p.ID, o.Lanes)
			in := lanes[lane]
			defer states[lane].waitRevoked(o.RevokeGrace)
			for {
				m, err := p.Fetch(pctx)
				if err != nil {
					if pctx.Err() != nil {
						return nil
					}
					return err
				}
				f := Fetched[T]{P: p, Msg: m, pctx: pctx}
				if o.Decode != nil {
					f.V = o.Decode(m)
				}
				select {
				case in <- f:
				case <-pctx.Done():
					return nil
				}
			}
		})
	}()
	for i, in := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := batchLoop(rctx, in, &states[i], o, apply); err != nil {
				errc <- err
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// laneOf spreads partitions over lanes, the same partition always to the same lane.
func laneOf(topic string, partition, lanes int) int {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(topic); i++ {
		h = (h ^ uint32(topic[i])) * 16777619
	}
	return int((h + uint32(partition)) % uint32(lanes))
}

// batchLoop fills batches from one lane and applies them until ctx ends (nil) or
// apply fails.
func batchLoop[T any](ctx context.Context, in <-chan Fetched[T], l *lane, o BatchOptions[T], apply func(ctx context.Context, batch []Fetched[T]) error) error {
	var batch []Fetched[T]
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case f := <-in:
			batch = append(batch, f)
		}
		linger := time.NewTimer(o.Linger)
	fill:
		for len(batch) < o.Size {
			select {
			case f := <-in:
				batch = append(batch, f)
			case <-linger.C:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		linger.Stop()
		l.applying.Lock()
		live := batch[:0]
		for _, f := range batch {
			if f.pctx == nil || f.pctx.Err() == nil {
				live = append(live, f)
			}
		}
		var err error
		if len(live) > 0 {
			actx, cancel := context.WithCancelCause(ctx)
			l.failing.Store(false)
			actx = context.WithValue(actx, failingKey{}, &l.failing)
			l.mu.Lock()
			l.cancel = cancel
			l.mu.Unlock()
			err = apply(actx, live)
			l.mu.Lock()
			l.cancel = nil
			l.mu.Unlock()
			if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), ErrRevokedInFlight) {
				err = fmt.Errorf("%w (%d changes; the last failure: %v)", ErrRevokedInFlight, len(live), err)
			}
			cancel(nil)
		}
		l.applying.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// CommitLast commits the last message of each partition of a batch to the consumer
// group (for lag monitoring, where the application stores its own offsets) and returns
// the first error.
func CommitLast[T any](batch []Fetched[T]) error {
	last := map[*Partition]Message{}
	for _, f := range batch {
		last[f.P] = f.Msg
	}
	var first error
	for p, m := range last {
		if err := p.Commit(m); err != nil && first == nil {
			first = err
		}
	}
	return first
}
