package bus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/segmentio/kafka-go"
)

// OffsetFunc tells where to start reading a newly assigned partition: the next offset
// to read (last applied + 1) as stored by the sink, ok=false when nothing is stored
// (then the group's committed offset, or the earliest message, is used). An error ends
// PartitionConsumer.Run: starting at a guessed offset could skip or re-apply data.
type OffsetFunc func(ctx context.Context, topic string, partition int) (offset int64, ok bool, err error)

// FirstOffset, returned by an OffsetFunc with ok, starts a partition at its earliest
// message whatever the group has committed.
const FirstOffset = kafka.FirstOffset

// PartitionFunc consumes one assigned partition until ctx is done (the generation ended
// by a rebalance, or Run is stopping) and then returns promptly. Functions for different
// partitions run concurrently. A non-nil error other than ctx's ends Run with it.
type PartitionFunc func(ctx context.Context, p *Partition) error

// Partition is one assigned partition, already positioned at its start offset.
type Partition struct {
	Topic       string
	ID          int
	StartOffset int64

	r   *kafka.Reader
	gen *kafka.Generation
	m   *busMetrics
}

// Fetch returns the next message of this partition.
func (p *Partition) Fetch(ctx context.Context) (Message, error) {
	km, err := p.r.FetchMessage(ctx)
	if err != nil {
		return Message{}, fmt.Errorf("bus: fetch %s/%d: %w", p.Topic, p.ID, err)
	}
	p.m.consumed.WithLabelValues(km.Topic).Inc()
	return fromKafka(km), nil
}

// Commit records m as done in the Kafka consumer group (offset m.Offset+1). For sinks
// the authoritative offset is the one stored with the data; this commit only keeps
// group lag visible to monitoring, so call it after the database commit.
func (p *Partition) Commit(m Message) error {
	if err := p.gen.CommitOffsets(map[string]map[int]int64{p.Topic: {p.ID: m.Offset + 1}}); err != nil {
		return fmt.Errorf("bus: commit %s/%d@%d to group: %w", p.Topic, p.ID, m.Offset+1, err)
	}
	p.m.committed.WithLabelValues(p.Topic).Inc()
	return nil
}

// PartitionConsumer joins a consumer group for partition assignment only, and reads each
// assigned partition from an offset supplied by the application (a kafka-go Reader with
// GroupID cannot SetOffset; this is the documented alternative).
type PartitionConsumer struct {
	c      *conn
	group  string
	topics []string
	offset OffsetFunc
	m      *busMetrics
	// balancer, when set (Exclusive), replaces kafka-go's range and round-robin.
	balancer kafka.GroupBalancer
	// onStandby, when set (OnStandby), is called for every generation that gives this
	// exclusive member no partition.
	onStandby func()
}

// OnStandby sets f to be called whenever a generation of an Exclusive group gives
// this member no partition (another member holds them all). Call before Run.
func (pc *PartitionConsumer) OnStandby(f func()) { pc.onStandby = f }

// Exclusive makes the group give every partition to one member, the one with the
// highest priority when the group forms (ties: the lowest member ID); the others stand
// by with no partitions and take over when it leaves or its session expires. It is for
// a worker whose state must see every partition, such as the monitor, whose household
// joins would otherwise be evaluated against part of its input on each member.
// priority is read at every join (the monitor gives how much input its state has
// applied, so that a standby with an empty state does not take over from a running
// member at a rebalance). Every member of the group must be exclusive: the brokers
// refuse a member whose protocol no other member speaks. Call before Run.
func (pc *PartitionConsumer) Exclusive(priority func() int64) {
	pc.balancer = exclusiveBalancer{priority: priority}
}

// exclusiveBalancer assigns every partition to the member of highest priority.
type exclusiveBalancer struct{ priority func() int64 }

func (exclusiveBalancer) ProtocolName() string { return "shouwang-exclusive" }

func (b exclusiveBalancer) UserData() ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(b.priority())), nil
}

func (exclusiveBalancer) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	best, bestPriority := -1, int64(math.MinInt64)
	for i, m := range members {
		out[m.ID] = map[string][]int{}
		p := int64(math.MinInt64) // a member without priority loses
		if len(m.UserData) == 8 {
			p = int64(binary.BigEndian.Uint64(m.UserData))
		}
		if best < 0 || p > bestPriority || p == bestPriority && m.ID < members[best].ID {
			best, bestPriority = i, p
		}
	}
	if best < 0 {
		return out
	}
	a := out[members[best].ID]
	for _, p := range partitions {
		a[p.Topic] = append(a[p.Topic], p.ID)
	}
	return out
}

// NewPartitionConsumer validates its arguments; Run does the I/O.
func NewPartitionConsumer(opts Options, group string, topics []string, offsets OffsetFunc) (*PartitionConsumer, error) {
	if group == "" {
		return nil, errors.New("bus: partition consumer: group id is empty; set the worker's consumer group in the config")
	}
	if len(topics) == 0 {
		return nil, fmt.Errorf("bus: partition consumer group %q: no topics to consume", group)
	}
	if offsets == nil {
		return nil, fmt.Errorf("bus: partition consumer group %q: no OffsetFunc", group)
	}
	c, err := newConn(opts)
	if err != nil {
		return nil, err
	}
	return &PartitionConsumer{c: c, group: group, topics: topics, offset: offsets, m: newBusMetrics(c.opts.Registerer)}, nil
}

// Run joins the group and, for every generation, calls fn once per assigned partition.
// It retries joining on "[27] Rebalance In Progress" and other retryable errors, and
// returns nil when ctx is cancelled (after leaving the group), or the first error of an
// OffsetFunc or PartitionFunc.
func (pc *PartitionConsumer) Run(ctx context.Context, fn PartitionFunc) error {
	log := pc.c.opts.Logger.With("group", pc.group)
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                pc.group,
		Brokers:           pc.c.opts.Brokers,
		Dialer:            pc.c.dialer,
		Topics:            pc.topics,
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: pc.c.opts.heartbeatInterval(),
		SessionTimeout:    pc.c.opts.SessionTimeout,
		RebalanceTimeout:  pc.c.opts.rebalanceTimeout(),
		JoinGroupBackoff:  500 * time.Millisecond,
		ErrorLogger:       pc.c.opts.groupErrorLogger(pc.group),
		GroupBalancers:    pc.balancers(),
	})
	if err != nil {
		return fmt.Errorf("bus: partition consumer group %q: %w", pc.group, err)
	}
	defer cg.Close() // leaves the group and waits for the current generation's functions

	var (
		mu       sync.Mutex
		firstErr error
	)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		stop()
	}

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.MaxElapsedTime = 0 // group membership is retried for as long as the worker runs
	for {
		gen, err := cg.Next(runCtx)
		if runCtx.Err() != nil {
			mu.Lock()
			defer mu.Unlock()
			return firstErr
		}
		if err != nil {
			if errors.Is(err, kafka.RebalanceInProgress) || retryable(err) {
				log.Info("bus: group not ready, retrying", "err", err)
			} else {
				log.Warn("bus: joining group failed, retrying", "err", err)
			}
			select {
			case <-runCtx.Done():
			case <-time.After(bo.NextBackOff()):
			}
			continue
		}
		bo.Reset()
		var assigned []string
		for topic, parts := range gen.Assignments {
			for _, pa := range parts {
				assigned = append(assigned, fmt.Sprintf("%s/%d", topic, pa.ID))
				pc.start(runCtx, gen, topic, pa, fn, fail)
			}
		}
		if len(assigned) == 0 && pc.balancer != nil {
			log.Info("bus: joined generation as standby (another member consumes every partition)", "generation", gen.ID, "member", gen.MemberID)
			if pc.onStandby != nil {
				pc.onStandby()
			}
			continue
		}
		log.Info("bus: joined generation", "generation", gen.ID, "member", gen.MemberID, "partitions", assigned)
	}
}

// balancers is the group's assignment protocol: kafka-go's default unless Exclusive.
func (pc *PartitionConsumer) balancers() []kafka.GroupBalancer {
	if pc.balancer == nil {
		return nil
	}
	return []kafka.GroupBalancer{pc.balancer}
}

// start launches fn for one partition inside gen. The partition context ends with the
// generation or with Run.
func (pc *PartitionConsumer) start(runCtx context.Context, gen *kafka.Generation, topic string, pa kafka.PartitionAssignment, fn PartitionFunc, fail func(error)) {
	gen.Start(func(genCtx context.Context) {
		ctx, cancel := context.WithCancel(genCtx)
		defer cancel()
		stopAfter := context.AfterFunc(runCtx, cancel)
		defer stopAfter()

		offset, ok, err := pc.offset(ctx, topic, pa.ID)
		if err != nil {
			if ctx.Err() == nil {
				fail(fmt.Errorf("bus: group %q: stored offset of %s/%d: %w", pc.group, topic, pa.ID, err))
			}
			return
		}
		if !ok {
			offset = pa.Offset // group-committed offset, or FirstOffset
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:   pc.c.opts.Brokers,
			Topic:     topic,
			Partition: pa.ID,
			Dialer:    pc.c.dialer,
			MinBytes:  1,
			MaxBytes:  10 << 20,
			MaxWait:   500 * time.Millisecond,
		})
		defer r.Close()
		if err := r.SetOffset(offset); err != nil {
			fail(fmt.Errorf("bus: group %q: seek %s/%d to %d: %w", pc.group, topic, pa.ID, offset, err))
			return
		}
		p := &Partition{Topic: topic, ID: pa.ID, StartOffset: offset, r: r, gen: gen, m: pc.m}
		if err := fn(ctx, p); err != nil && ctx.Err() == nil {
			fail(fmt.Errorf("bus: group %q: partition %s/%d: %w", pc.group, topic, pa.ID, err))
		}
	})
}
