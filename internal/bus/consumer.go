package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Consumer reads topics as a member of a consumer group and commits only what the
// caller says is done: there is no auto-commit, so a crash redelivers everything after
// the last Commit (at-least-once).
type Consumer struct {
	group  string
	r      *kafka.Reader
	m      *busMetrics
	once   sync.Once
	closeE error
}

// NewGroupConsumer joins group on topics. A group with no committed offsets starts at
// the earliest message. No I/O happens until the first Fetch.
func NewGroupConsumer(opts Options, group string, topics []string) (*Consumer, error) {
	if group == "" {
		return nil, errors.New("bus: consumer: group id is empty; set the worker's consumer group in the config")
	}
	if len(topics) == 0 {
		return nil, fmt.Errorf("bus: consumer group %q: no topics to consume", group)
	}
	c, err := newConn(opts)
	if err != nil {
		return nil, err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     c.opts.Brokers,
		GroupID:     group,
		GroupTopics: topics,
		Dialer:      c.dialer,
		MinBytes:    1,
		MaxBytes:    10 << 20,
		MaxWait:     500 * time.Millisecond,
		// CommitInterval 0 makes CommitMessages synchronous; FetchMessage never commits.
		CommitInterval:    0,
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: c.opts.heartbeatInterval(),
		SessionTimeout:    c.opts.SessionTimeout,
		RebalanceTimeout:  c.opts.rebalanceTimeout(),
		JoinGroupBackoff:  500 * time.Millisecond,
		ErrorLogger:       c.opts.groupErrorLogger(group),
	})
	return &Consumer{group: group, r: r, m: newBusMetrics(c.opts.Registerer)}, nil
}

// Fetch blocks for the next message of any assigned partition. It does not commit.
// Messages of one partition arrive in offset order.
func (c *Consumer) Fetch(ctx context.Context) (Message, error) {
	km, err := c.r.FetchMessage(ctx)
	if err != nil {
		return Message{}, fmt.Errorf("bus: consumer group %q: fetch: %w", c.group, err)
	}
	c.m.consumed.WithLabelValues(km.Topic).Inc()
	return fromKafka(km), nil
}

// Commit marks msgs as done: for each partition the highest given offset+1 is committed
// synchronously. Commit only after the messages' effects are durable.
func (c *Consumer) Commit(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	kms := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		kms[i] = kafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	}
	if err := c.r.CommitMessages(ctx, kms...); err != nil {
		return fmt.Errorf("bus: consumer group %q: commit %d messages (first %s/%d@%d): %w",
			c.group, len(msgs), msgs[0].Topic, msgs[0].Partition, msgs[0].Offset, err)
	}
	for _, m := range msgs {
		c.m.committed.WithLabelValues(m.Topic).Inc()
	}
	return nil
}

// Close leaves the group (so partitions move to other members at once instead of after
// the session timeout) and releases connections. Uncommitted messages are redelivered
// to whoever gets the partition next.
func (c *Consumer) Close() error {
	c.once.Do(func() {
		if err := c.r.Close(); err != nil {
			c.closeE = fmt.Errorf("bus: consumer group %q: close: %w", c.group, err)
		}
	})
	return c.closeE
}
