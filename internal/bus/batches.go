package bus

import (
	"context"
	"sync"
	"time"
)

// Fetched is one consumed message, the partition it came from and what decode made of it.
type Fetched[T any] struct {
	P   *Partition
	Msg Message
	V   T
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
}

// Batches runs pc and calls apply with batches of fetched messages in consumption
// order (per partition, by offset), one batch at a time. It returns nil when ctx ends
// (a batch apply was working on is abandoned: it is redelivered from the stored
// offsets), the consumer's error, or apply's first error.
func Batches[T any](ctx context.Context, pc *PartitionConsumer, o BatchOptions[T], apply func(ctx context.Context, batch []Fetched[T]) error) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan Fetched[T], 2*o.Size)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- pc.Run(rctx, func(pctx context.Context, p *Partition) error {
			if o.OnPartition != nil {
				o.OnPartition(1)
				defer o.OnPartition(-1)
			}
			for {
				m, err := p.Fetch(pctx)
				if err != nil {
					if pctx.Err() != nil {
						return nil
					}
					return err
				}
				f := Fetched[T]{P: p, Msg: m}
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
	defer wg.Wait()
	defer cancel()
	var batch []Fetched[T]
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return err
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
		if err := apply(ctx, batch); err != nil {
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
