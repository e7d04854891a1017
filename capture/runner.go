package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/metrics"
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
	// Registerer receives the runner's metrics (nil: not exported).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// OnBatch, when set, is called after each batch was acknowledged and its position
	// saved (progress display, tests); produced counts the messages written to Kafka
	// (position-only changes excluded).
	OnBatch func(produced int, saved Position)
}

// Runner drives one Source: read a batch → produce it with acks=all → save the highest
// position reached → Source.Ack. Reading the next batch overlaps producing the current
// one, but batches are produced strictly one after another, so per-key order and the
// "save only what Kafka acknowledged" rule hold without an out-of-order tracker. A
// produce failure (after the bus's own bounded retries) or a failed save/ack stops the
// runner with an error and nothing past the last saved position is ever treated as
// done; restarting replays from there (consumers drop the repeats by version).
type Runner struct {
	o   RunnerOptions
	log *slog.Logger

	events    *prometheus.CounterVec
	dlq       *prometheus.CounterVec
	behind    prometheus.Gauge
	lastEvent prometheus.Gauge
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
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry() // counted but not exported
	}
	r := &Runner{o: o, log: o.Logger.With("source", o.Name)}
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

// Run opens the source at the saved position and loops until ctx is done (returns nil)
// or something fails (returns the error; the source is closed either way).
func (r *Runner) Run(ctx context.Context) (err error) {
	last, found, err := r.o.Positions.Load(ctx, r.o.Name)
	if err != nil {
		return fmt.Errorf("capture %s: %w", r.o.Name, err)
	}
	if found {
		r.log.Info("resuming from saved position", "position", string(last))
	} else {
		r.log.Info("no saved position: starting according to the snapshot mode")
	}
	if err := r.o.Source.Open(ctx, last); err != nil {
		r.o.Source.Close()
		return fmt.Errorf("capture %s: open: %w", r.o.Name, err)
	}
	defer func() {
		if cerr := r.o.Source.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("capture %s: close: %w", r.o.Name, cerr)
		}
	}()

	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	batches := make(chan batchOrErr, 1) // one batch read ahead while the previous is produced
	go func() {
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

	for b := range batches {
		if b.err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("capture %s: read: %w", r.o.Name, b.err)
		}
		if err := r.process(ctx, b.changes); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return nil
}

// process produces one batch and commits its position.
func (r *Runner) process(ctx context.Context, cs []Change) error {
	msgs := make([]bus.Message, 0, len(cs))
	now := time.Now()
	for i := range cs {
		if cs[i].PositionOnly {
			continue
		}
		m, err := r.message(&cs[i], now)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		// Only position-carrying changes (heartbeats): nothing to acknowledge.
	} else if err := r.o.Producer.Produce(ctx, msgs...); err != nil {
		return fmt.Errorf("capture %s: produce %d changes (position not advanced; a restart replays them): %w", r.o.Name, len(msgs), err)
	}
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
		r.o.OnBatch(len(msgs), pos)
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
		b, err := json.Marshal(rec)
		if err != nil {
			return bus.Message{}, fmt.Errorf("capture %s: encode dead letter: %w", r.o.Name, err)
		}
		return bus.Message{Topic: schemas.DLQTopic(r.o.TopicPrefix, "capture"), Key: c.Key, Value: b,
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
