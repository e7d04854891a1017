package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/segmentio/kafka-go"
)

// recordOverhead is a generous bound on Kafka's per-record framing, used to reject
// oversized messages before kafka-go rejects the whole call.
const recordOverhead = 128

// ErrClosed is returned by Produce after Close.
var ErrClosed = errors.New("bus: producer is closed")

// FailedMessage names one message a Produce call could not write. Keys are left out on
// purpose: they may be ID numbers, which must not reach logs.
type FailedMessage struct {
	// Index is the message's position in the Produce call.
	Index int
	Topic string
	Err   error
}

// ProduceError is returned when some messages of a Produce call were not acknowledged
// after all retries. The other messages were acknowledged. A caller that must not skip
// ahead (capture) treats the whole call as failed and re-produces from its last saved
// position; duplicates are harmless because consumers are idempotent.
type ProduceError struct {
	Total  int
	Failed []FailedMessage
}

// Error summarises per topic so the message stays short for large batches.
func (e *ProduceError) Error() string {
	perTopic := map[string]int{}
	for _, f := range e.Failed {
		perTopic[f.Topic]++
	}
	topics := make([]string, 0, len(perTopic))
	for t, n := range perTopic {
		topics = append(topics, fmt.Sprintf("%s (%d)", t, n))
	}
	sort.Strings(topics)
	first := e.Failed[0]
	return fmt.Sprintf("bus: produce: %d of %d messages not acknowledged, topics %s; first: message %d to %q: %v%s",
		len(e.Failed), e.Total, strings.Join(topics, ", "), first.Index, first.Topic, first.Err, hint(first.Err))
}

// Unwrap exposes the distinct causes so errors.Is(err, kafka.UnknownTopicOrPartition) works.
func (e *ProduceError) Unwrap() []error {
	seen := map[string]bool{}
	var out []error
	for _, f := range e.Failed {
		if k := f.Err.Error(); !seen[k] {
			seen[k] = true
			out = append(out, f.Err)
		}
	}
	return out
}

// hint tells the operator what to do about well-known causes.
func hint(err error) string {
	switch {
	case errors.Is(err, kafka.UnknownTopicOrPartition):
		return " (the topic does not exist: create it with EnsureTopics / the topics section of the config; auto-creation is off on purpose)"
	case errors.Is(err, kafka.NotEnoughReplicas), errors.Is(err, kafka.NotEnoughReplicasAfterAppend):
		return " (fewer in-sync replicas than min.insync.replicas: check the brokers)"
	case errors.Is(err, kafka.MessageSizeTooLarge):
		return " (message larger than batch_bytes or the broker's message.max.bytes)"
	}
	return ""
}

// Producer writes messages to any topic with acks=all and key-hash partitioning. It is
// safe for concurrent use.
type Producer struct {
	c         *conn
	transport *kafka.Transport
	w         *kafka.Writer
	m         *busMetrics

	mu       sync.RWMutex // held for reading by each Produce, for writing by Close
	closed   bool
	closeErr error
}

// NewProducer validates opts and builds a producer. It does no I/O: the first Produce
// connects.
func NewProducer(opts Options) (*Producer, error) {
	c, err := newConn(opts)
	if err != nil {
		return nil, err
	}
	comp, _ := compression(c.opts.Compression) // validated in newConn
	tr := c.transport()
	p := &Producer{
		c:         c,
		transport: tr,
		m:         newBusMetrics(c.opts.Registerer),
		w: &kafka.Writer{
			Addr:         kafka.TCP(c.opts.Brokers...),
			Balancer:     c.balancer(),
			MaxAttempts:  c.opts.MaxAttempts,
			BatchSize:    c.opts.BatchSize,
			BatchBytes:   c.opts.BatchBytes,
			BatchTimeout: c.opts.BatchTimeout,
			RequiredAcks: kafka.RequireAll,
			Compression:  comp,
			Transport:    tr,
			// Topics are created from config; a typo must fail, not create a topic.
			AllowAutoTopicCreation: false,
		},
	}
	return p, nil
}

// Produce writes msgs (to one or several topics) and returns only when every message
// was acknowledged by all in-sync replicas, or with an error. Retryable failures are
// retried with exponential backoff up to Options.RetryMaxElapsed, re-sending only the
// messages not yet acknowledged. A permanent failure returns *ProduceError naming the
// messages that failed; a cancelled ctx returns the context error and the state of
// unacknowledged messages is unknown (treat them as not written).
//
// Per-key order holds within one call and across calls. The exception is a partial
// failure that is retried: the re-sent messages land after ones of the same partition
// that succeeded; canonical versions let consumers drop the stale one.
func (p *Producer) Produce(ctx context.Context, msgs ...Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	for i, m := range msgs {
		if m.Topic == "" {
			return fmt.Errorf("bus: produce: message %d has no topic", i)
		}
	}
	all := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		all[i] = m.toKafka()
	}
	// kafka-go refuses a whole call when one message exceeds BatchBytes; fail just those
	// messages up front and send the rest.
	lastErr := make(map[int]error)
	pending := make([]int, 0, len(msgs))
	for i, m := range msgs {
		if int64(m.size()+recordOverhead) > p.c.opts.BatchBytes {
			lastErr[i] = fmt.Errorf("message of %d bytes exceeds batch_bytes %d: %w", m.size(), p.c.opts.BatchBytes, kafka.MessageSizeTooLarge)
			continue
		}
		pending = append(pending, i)
	}

	op := func() error {
		if len(pending) == 0 {
			return nil
		}
		batch := make([]kafka.Message, len(pending))
		for j, i := range pending {
			batch[j] = all[i]
		}
		err := p.w.WriteMessages(ctx, batch...)
		if err == nil {
			p.count(msgs, pending)
			pending = nil
			return nil
		}
		var werr kafka.WriteErrors
		retry := false
		switch {
		case errors.As(err, &werr) && len(werr) == len(pending):
			var still, done []int
			for j, e := range werr {
				i := pending[j]
				if e == nil {
					done = append(done, i)
					delete(lastErr, i)
					continue
				}
				still = append(still, i)
				lastErr[i] = e
				retry = retry || retryable(e)
			}
			p.count(msgs, done)
			pending = still
		default:
			// Nothing was written (metadata lookup, connection, closed writer) or the
			// outcome is unknown (ctx cancelled).
			for _, i := range pending {
				lastErr[i] = err
			}
			retry = retryable(err)
		}
		if retry && ctx.Err() == nil {
			p.m.retries.Inc()
			p.c.opts.Logger.Warn("bus: produce failed, retrying", "pending", len(pending), "total", len(msgs), "err", err)
			return err
		}
		return backoff.Permanent(err)
	}

	err := backoff.Retry(op, p.backoff(ctx))
	if err == nil && len(pending) == 0 && len(lastErr) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("bus: produce %d messages: %d not acknowledged: %w", len(msgs), len(pending), ctx.Err())
	}
	perr := &ProduceError{Total: len(msgs)}
	for i, e := range lastErr {
		perr.Failed = append(perr.Failed, FailedMessage{Index: i, Topic: msgs[i].Topic, Err: e})
	}
	if len(perr.Failed) == 0 { // defensive: an error without per-message detail
		for _, i := range pending {
			perr.Failed = append(perr.Failed, FailedMessage{Index: i, Topic: msgs[i].Topic, Err: err})
		}
	}
	sort.Slice(perr.Failed, func(a, b int) bool { return perr.Failed[a].Index < perr.Failed[b].Index })
	for _, f := range perr.Failed {
		p.m.produceErrors.WithLabelValues(f.Topic).Inc()
	}
	return perr
}

func (p *Producer) count(msgs []Message, idx []int) {
	for _, i := range idx {
		p.m.produced.WithLabelValues(msgs[i].Topic).Inc()
		p.m.producedBytes.WithLabelValues(msgs[i].Topic).Add(float64(msgs[i].size()))
	}
}

func (p *Producer) backoff(ctx context.Context) backoff.BackOff {
	if p.c.opts.RetryMaxElapsed < 0 {
		return backoff.WithContext(&backoff.StopBackOff{}, ctx)
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = p.c.opts.RetryMaxElapsed
	return backoff.WithContext(b, ctx)
}

// Close waits for in-flight Produce calls, flushes and closes connections. Produce
// after Close returns ErrClosed. Close is idempotent.
func (p *Producer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.closeErr
	}
	p.closed = true
	if err := p.w.Close(); err != nil {
		p.closeErr = fmt.Errorf("bus: close producer: %w", err)
	}
	p.transport.CloseIdleConnections()
	return p.closeErr
}

// retryable classifies an error once, at the boundary: broker-side temporary errors and
// network failures are retried; everything else (authorisation, invalid config, too
// large, cancelled) is permanent.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return false
}
