package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/metrics"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/schemas"
)

// Producer is what the runner needs from the bus: Produce returns only after every
// message was acknowledged by all in-sync replicas (bus.Producer does this).
type Producer interface {
	Produce(ctx context.Context, msgs ...bus.Message) error
}

// RunnerOptions configures one capture loop.
type RunnerOptions struct {
	// Name is the configured source name: the position store key and metric label.
	Name string
	// TopicPrefix is used for the capture DLQ topic.
	TopicPrefix string
	Source      Source
	Producer    Producer
	Positions   PositionStore
	// BatchSize is the most changes read and produced at once (default 2000).
	BatchSize int
	// MaxInFlight is how many batches may be waiting for Kafka's acknowledgement at
	// once (default DefaultMaxInFlight; 1 produces strictly one batch after another).
	// Positions are still saved and acknowledged strictly in order, and per-key order
	// is kept; what more than one gives up is described on Runner.
	MaxInFlight int
	// Registerer receives the runner's metrics (nil: not exported).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// OnBatch, when set, is called after each batch was acknowledged and its position
	// saved (progress display, tests); produced counts the messages written to Kafka
	// (position-only changes excluded).
	OnBatch func(produced int, saved Position)
	// OnCommit, when set, is called with every committed batch's changes (heartbeats
	// and dead letters included) after OnBatch; the slice must not be kept (watchdogs).
	OnCommit func(cs []Change)
	// OnOpen, when set, is called once Source.Open has succeeded, before the first
	// read: the source is connected (readiness, start-up supervision).
	OnOpen func()
	// Scrub protects ID numbers and phones in dead-letter records (reason, key, payload
	// and the message key) before they are kept at rest in the DLQ topic, per the
	// deployment's PII settings (pii.Protector.ScrubText). nil masks them (pii.MaskText).
	Scrub func(string) string
}

// DefaultMaxInFlight is RunnerOptions.MaxInFlight's default: one batch at a time. More
// gives up the prefix property (see Runner), which existing consumers and tests rely
// on, and measured little on a 2-core machine once encoding got cheap (issue #3/#4
// notes); deployments that need it against a remote cluster can raise it.
const DefaultMaxInFlight = 1

// Runner drives one Source: read a batch → produce it with acks=all → save the highest
// position reached → Source.Ack. Reading runs ahead of producing, and up to MaxInFlight
// Produce calls run at once, but a batch's position is saved and acknowledged only after
// that batch and every earlier one were acknowledged by Kafka (an in-order queue of
// in-flight batches: completions are taken from its head only). A produce failure
// (after the bus's own bounded retries), a failed encode, read, save or ack stops the
// runner with an error: earlier batches still in flight are awaited and committed if
// they succeed, later ones are cancelled and never committed, so nothing past the
// failed batch is ever treated as done; restarting replays from the last saved
// position (consumers drop the repeats by version).
//
// Per-key order in Kafka. Concurrent Produce calls reach kafka-go's per-partition
// writers in whatever order the scheduler runs them, so the runner itself keeps a key's
// changes in read order: a message whose topic+key occurs in a batch still in flight is
// held back until every earlier batch was acknowledged; the batch's other messages go
// at once. Hence no two Produce calls in flight share a key, and kafka-go's retries
// (Options.MaxAttempts, order-preserving per partition) and bus.Producer's re-sending of
// unacknowledged messages can reorder a key only within one batch, as with MaxInFlight
// 1 (see bus.Producer.Produce). After a failure of batch k, later batches may already be
// in Kafka; the restart replays k, k+1, ... after them, so a key can show an older
// version after a newer one (also true with MaxInFlight 1 after a crash between ack and
// save); consumers drop those by version (DESIGN: idempotent by version).
//
// The prefix property. With MaxInFlight 1, once any change of batch k is in Kafka,
// every change read before batch k is too. With more, changes of different keys can
// become visible out of read order (also within one partition), so a consumer that
// sees a marker row must not conclude that everything written before it on the source
// has arrived, and a single-partition topic is no longer in read order across keys.
type Runner struct {
	o   RunnerOptions
	log *slog.Logger

	events    *prometheus.CounterVec
	dlq       *prometheus.CounterVec
	behind    prometheus.Gauge
	lastEvent prometheus.Gauge

	// keysInFlight counts, per hash of topic+key, the messages of batches not yet
	// retired (owned by Run's goroutine).
	keysInFlight map[uint64]int
	seed         maphash.Seed
}

// NewRunner validates opts.
func NewRunner(o RunnerOptions) (*Runner, error) {
	var errs []error
	if !sourceNameRe.MatchString(o.Name) {
		errs = append(errs, fmt.Errorf("capture runner: name %q must match [a-z0-9_]+", o.Name))
	}
	if o.Source == nil || o.Producer == nil || o.Positions == nil {
		errs = append(errs, errors.New("capture runner: source, producer and position store are required"))
	}
	if o.TopicPrefix == "" {
		errs = append(errs, errors.New("capture runner: topic prefix is required (kafka.topic_prefix)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 2000
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry() // counted but not exported
	}
	r := &Runner{o: o, log: o.Logger.With("source", o.Name), keysInFlight: map[uint64]int{}, seed: maphash.MakeSeed()}
	r.events = metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shouwang_capture_events_total",
		Help: "Change events acknowledged by Kafka, by source, table and op.",
	}, []string{"source", "table", "op"}))
	r.dlq = metrics.DLQCounter(reg)
	behind := metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shouwang_capture_seconds_behind_source",
		Help: "Now minus the source commit time of the last acknowledged change (heartbeats keep it current on a quiet source).",
	}, []string{"source"}))
	r.behind = behind.WithLabelValues(o.Name)
	last := metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shouwang_capture_last_ack_timestamp_seconds",
		Help: "When the last batch of the source was acknowledged by Kafka and its position saved.",
	}, []string{"source"}))
	r.lastEvent = last.WithLabelValues(o.Name)
	return r, nil
}

type batchOrErr struct {
	changes []Change
	err     error
}

// inFlight is one batch handed to the producer; done is closed when its Produce calls
// returned.
type inFlight struct {
	changes []Change
	msgs    int
	keys    []uint64 // hashes of the batch's topic+key pairs, counted in Runner.keysInFlight
	done    chan struct{}
	err     error // set before done is closed
}

// closedDone stands for a batch with nothing to produce (heartbeats only).
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Run opens the source at the saved position and loops until ctx is done (returns nil)
// or something fails (returns the error; the source is closed either way). It returns
// only after every Produce call it started has returned. A Runner runs one Run at a
// time.
func (r *Runner) Run(ctx context.Context) (err error) {
	last, found, err := r.o.Positions.Load(ctx, r.o.Name)
	if err != nil {
		return r.wrap(err, "load position")
	}
	if err := r.o.Source.Open(ctx, last); err != nil {
		r.o.Source.Close()
		return r.wrap(err, "open")
	}
	// Logged only once the source is open, so that a source that cannot connect logs
	// one line per attempt (its supervisor's) rather than two.
	if found {
		r.log.Info("source open: resuming from saved position", "position", string(last))
	} else {
		r.log.Info("source open: no saved position, starting according to the snapshot mode")
	}
	if r.o.OnOpen != nil {
		r.o.OnOpen()
	}
	readCtx, stopReading := context.WithCancel(ctx)
	readerExited := make(chan struct{})
	defer func() {
		// Close only after the reading goroutine has left ReadN: a source is not
		// required to support Close concurrently with ReadN.
		stopReading()
		<-readerExited
		if cerr := r.o.Source.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("capture %s: close: %w", r.o.Name, cerr)
		}
	}()
	batches := make(chan batchOrErr, 1) // one batch read ahead while others are produced
	go func() {
		defer close(readerExited)
		defer close(batches)
		for {
			cs, err := r.o.Source.ReadN(readCtx, r.o.BatchSize)
			select {
			case batches <- batchOrErr{cs, err}:
			case <-readCtx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	// Produce calls are cancelled when the runner stops; a batch after a failed one
	// must not keep retrying for nothing.
	produceCtx, stopProducing := context.WithCancel(ctx)
	var producers sync.WaitGroup
	defer func() {
		stopProducing()
		producers.Wait()
	}()

	var (
		queue      []*inFlight // in read order; only the head is ever committed
		stopErr    error       // the first failure; no new batches are started after it
		failed     bool        // a batch failed or a commit failed: commit nothing more
		readerDone bool
	)
	stop := func(err error, poisoned bool) {
		if stopErr == nil {
			stopErr = err
		} else if ctx.Err() == nil {
			r.log.Warn("capture: another failure while stopping", "err", err)
		}
		stopReading()
		if poisoned {
			failed = true
			stopProducing()
		}
	}
	for len(queue) > 0 || (stopErr == nil && !readerDone) {
		var head <-chan struct{}
		if len(queue) > 0 {
			head = queue[0].done
		}
		var next <-chan batchOrErr
		if stopErr == nil && !readerDone && len(queue) < r.o.MaxInFlight {
			next = batches
		}
		select {
		case <-head:
			f := queue[0]
			queue[0] = nil
			queue = queue[1:]
			r.retire(f)
			if failed {
				continue // after a failed batch, later ones are never committed
			}
			if f.err != nil {
				stop(fmt.Errorf("capture %s: produce %d changes (position not advanced; a restart replays them): %w", r.o.Name, f.msgs, f.err), true)
				continue
			}
			if err := r.commit(ctx, f); err != nil {
				stop(err, true)
			}
		case b, ok := <-next:
			if !ok {
				readerDone = true
				continue
			}
			if b.err != nil {
				stop(r.wrap(b.err, "read"), false)
				continue
			}
			f, err := r.start(produceCtx, &producers, b.changes, queue)
			if err != nil {
				stop(err, false)
				continue
			}
			queue = append(queue, f)
		}
	}
	clear(r.keysInFlight)
	if stopErr != nil && ctx.Err() != nil {
		return nil // cancelled: whatever failed failed because of it
	}
	return stopErr
}

// wrapped is an error with the runner's context in front of its cause's message.
type wrapped struct {
	msg string
	err error
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.err }

// wrap prefixes err with "capture <name>: <what>: ", dropping the same "capture
// <name>: " prefix from err's own message: sources name themselves that way too, and
// the doubled prefix only made the log harder to read.
func (r *Runner) wrap(err error, what string) error {
	prefix := "capture " + r.o.Name + ": "
	return &wrapped{msg: prefix + what + ": " + strings.TrimPrefix(err.Error(), prefix), err: err}
}

// start encodes one batch and hands it to the producer in its own goroutine. Messages
// whose topic+key also occurs in a batch still in flight (earlier ones) are held back
// and produced only after every earlier batch was acknowledged; the rest go at once.
// The order in which concurrent Produce calls reach kafka-go's partition writers is up
// to the scheduler, so this is what keeps the changes of one key in read order across
// batches. Hashes stand for the pairs: a collision only holds a message back needlessly.
func (r *Runner) start(ctx context.Context, wg *sync.WaitGroup, cs []Change, earlier []*inFlight) (*inFlight, error) {
	msgs := make([]bus.Message, 0, len(cs))
	now := time.Now()
	for i := range cs {
		if cs[i].PositionOnly {
			continue
		}
		m, err := r.message(&cs[i], now)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	f := &inFlight{changes: cs, msgs: len(msgs)}
	if len(msgs) == 0 {
		// Only position-carrying changes (heartbeats): nothing to acknowledge, but the
		// position still waits for every earlier batch.
		f.done = closedDone
		return f, nil
	}
	var held []bus.Message
	free := msgs
	if len(earlier) > 0 {
		// Keys seen in flight are held back together with every later message of the
		// same key in this batch (a key is either all held or all free).
		heldKeys := map[uint64]bool{}
		free = make([]bus.Message, 0, len(msgs))
		for _, m := range msgs {
			if len(m.Key) == 0 {
				free = append(free, m) // keyless: no order to keep
				continue
			}
			h := r.keyHash(&m)
			if heldKeys[h] || r.keysInFlight[h] > 0 {
				heldKeys[h] = true
				held = append(held, m)
				continue
			}
			free = append(free, m)
		}
	}
	f.keys = make([]uint64, 0, len(msgs))
	for i := range msgs {
		if len(msgs[i].Key) > 0 {
			h := r.keyHash(&msgs[i])
			f.keys = append(f.keys, h)
			r.keysInFlight[h]++
		}
	}
	waitFor := make([]*inFlight, len(earlier))
	copy(waitFor, earlier)
	f.done = make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(f.done)
		var freeErr error
		var sent sync.WaitGroup
		if len(free) > 0 {
			sent.Add(1)
			go func() {
				defer sent.Done()
				freeErr = r.o.Producer.Produce(ctx, free...)
			}()
		}
		var heldErr error
		if len(held) > 0 {
			for _, e := range waitFor {
				<-e.done
				if e.err != nil {
					heldErr = fmt.Errorf("%d messages held back behind an earlier batch that failed", len(held))
					break
				}
			}
			if heldErr == nil {
				heldErr = r.o.Producer.Produce(ctx, held...)
			}
		}
		sent.Wait()
		f.err = errors.Join(freeErr, heldErr)
	}()
	return f, nil
}

// keyHash identifies a message's topic and key for the in-flight key count.
func (r *Runner) keyHash(m *bus.Message) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(m.Topic)
	h.WriteByte(0)
	h.Write(m.Key)
	return h.Sum64()
}

// retire removes a finished batch's keys from the in-flight count.
func (r *Runner) retire(f *inFlight) {
	for _, h := range f.keys {
		if n := r.keysInFlight[h]; n > 1 {
			r.keysInFlight[h] = n - 1
		} else {
			delete(r.keysInFlight, h)
		}
	}
}

// commit records one acknowledged batch whose predecessors are all committed: metrics,
// position save, Source.Ack, OnBatch.
func (r *Runner) commit(ctx context.Context, f *inFlight) error {
	cs := f.changes
	var pos Position
	var commitMs int64
	for i := range cs {
		c := &cs[i]
		if c.Position != nil {
			pos = c.Position
		}
		if c.Envelope.Source.CommitMs > commitMs {
			commitMs = c.Envelope.Source.CommitMs
		}
		if c.PositionOnly {
			continue
		}
		if c.DeadLetter != nil {
			r.dlq.WithLabelValues("capture", c.DeadLetterReason).Inc()
			continue
		}
		r.events.WithLabelValues(r.o.Name, c.Envelope.Source.Table, string(c.Envelope.Op)).Inc()
	}
	if commitMs > 0 {
		r.behind.Set(max(0, time.Since(time.UnixMilli(commitMs)).Seconds()))
	}
	if pos != nil {
		if err := r.o.Positions.Save(ctx, r.o.Name, pos); err != nil {
			return fmt.Errorf("capture %s: save position after Kafka ack: %w", r.o.Name, err)
		}
		if err := r.o.Source.Ack(ctx, pos); err != nil {
			return fmt.Errorf("capture %s: ack position: %w", r.o.Name, err)
		}
	}
	r.lastEvent.SetToCurrentTime()
	if r.o.OnBatch != nil {
		r.o.OnBatch(f.msgs, pos)
	}
	if r.o.OnCommit != nil {
		r.o.OnCommit(cs)
	}
	return nil
}

// message encodes one change for the bus.
func (r *Runner) message(c *Change, now time.Time) (bus.Message, error) {
	if c.DeadLetter != nil {
		rec := *c.DeadLetter
		rec.Stage = "capture"
		if rec.Source == "" {
			rec.Source = r.o.Name
		}
		if rec.TsMs == 0 {
			rec.TsMs = now.UnixMilli()
		}
		if c.DeadLetterReason == "" {
			c.DeadLetterReason = "unspecified"
		}
		scrub := r.o.Scrub
		if scrub == nil {
			scrub = pii.MaskText
		}
		rec.Reason, rec.Key = scrub(rec.Reason), scrub(rec.Key)
		if len(rec.Payload) > 0 {
			rec.Payload = []byte(scrub(string(rec.Payload)))
		}
		key := c.Key // a row keyed by an ID number must not carry it in the message key
		if len(key) > 0 {
			key = []byte(scrub(string(key)))
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return bus.Message{}, fmt.Errorf("capture %s: encode dead letter: %w", r.o.Name, err)
		}
		return bus.Message{Topic: schemas.DLQTopic(r.o.TopicPrefix, "capture"), Key: key, Value: b,
			Headers: []bus.Header{{Key: "reason", Value: []byte(c.DeadLetterReason)}}}, nil
	}
	if c.Envelope.V == 0 {
		c.Envelope.V = schemas.EnvelopeVersion
	}
	if c.Envelope.TsMs == 0 {
		c.Envelope.TsMs = now.UnixMilli()
	}
	b, err := c.Envelope.Marshal()
	if err != nil {
		return bus.Message{}, fmt.Errorf("capture %s: encode change of %s: %w", r.o.Name, c.Envelope.Source.Table, err)
	}
	if c.Topic == "" {
		return bus.Message{}, fmt.Errorf("capture %s: change of table %s has no topic (connector bug)", r.o.Name, c.Envelope.Source.Table)
	}
	return bus.Message{Topic: c.Topic, Key: c.Key, Value: b}, nil
}
