package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/metrics"
)

// WorkerOptions configures a Worker: the sink and where it reads and writes.
type WorkerOptions struct {
	Options
	// DSN is the provincial database (sinks[].dsn).
	DSN string
	// NoMigrate leaves the schema alone at start-up (default: migrate to the newest
	// version this build knows).
	NoMigrate bool
	// Registerer (nil: none).
	Registerer prometheus.Registerer
	// ProgressEvery is how often progress is logged while changes flow (default 10s).
	ProgressEvery time.Duration
	// SetReady, when set, is told every change of readiness with its reason (the
	// metrics server's /readyz).
	SetReady func(ready bool, reason string)
	// Lanes is how many batches are applied at once, each by its own connection over
	// its own partitions (default 4: one connection waits on its commit while another
	// works; BenchmarkUpsert measured 1.5× (2 lanes) to 1.8× (4 lanes) the throughput
	// of one).
	Lanes int
}

// Worker consumes the canonical topics and applies them with a Sink.
type Worker struct {
	o    WorkerOptions
	sink *Sink
	m    *sinkMetrics

	mu    sync.Mutex
	ready bool
	pool  *pgxpool.Pool
}

type sinkMetrics struct {
	rows       *prometheus.CounterVec
	dlq        *prometheus.CounterVec
	truncates  *prometheus.CounterVec
	batches    *prometheus.CounterVec
	batch      prometheus.Histogram
	up         prometheus.Gauge
	partitions prometheus.Gauge
}

func newSinkMetrics(reg prometheus.Registerer, name string) *sinkMetrics {
	labels := prometheus.Labels{"sink": name}
	return &sinkMetrics{
		rows: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_sink_rows_total",
			Help:        "Changes the sink handled, by entity and result: applied (inserted or updated), stale (not newer than the stored version), deleted, collapsed (superseded in its batch by a newer change of the key), dead (sent to the dead-letter topic).",
			ConstLabels: labels}, []string{"entity", "result"})),
		dlq: metrics.DLQCounter(reg),
		truncates: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_sink_truncates_total",
			Help: "Truncates seen on the sink's topics, by entity and action (applied, ignored).", ConstLabels: labels}, []string{"entity", "action"})),
		batches: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_sink_batches_total",
			Help: "Batch attempts, by result: committed, or failed (rolled back and retried with backoff).", ConstLabels: labels}, []string{"result"})),
		batch: metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shouwang_sink_batch_seconds",
			Help: "Time to apply and commit one batch (staging, merge, offsets, dead letters).", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)})),
		up: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "shouwang_sink_database_up",
			Help: "1 while the sink's last database operation succeeded, 0 while it is failing and being retried.", ConstLabels: labels})),
		partitions: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "shouwang_sink_partitions",
			Help: "Topic partitions this process consumes for the sink.", ConstLabels: labels})),
	}
}

// NewWorker validates the options; Run does the I/O.
func NewWorker(o WorkerOptions) (*Worker, error) {
	if o.DSN == "" {
		return nil, fmt.Errorf("sinks/postgres %s: no dsn (sinks[].dsn)", o.Name)
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 10 * time.Second
	}
	if o.Lanes <= 0 {
		o.Lanes = 4
	}
	s, err := New(o.Options)
	if err != nil {
		return nil, err
	}
	return &Worker{o: o, sink: s, m: newSinkMetrics(o.Registerer, o.Name)}, nil
}

// Sink is the worker's sink.
func (w *Worker) Sink() *Sink { return w.sink }

// Topics are the topics the worker consumes.
func (w *Worker) Topics() []string { return w.sink.Topics() }

// Group is the consumer group (<ClientID>-sink-<Name>).
func (w *Worker) Group() string { return w.o.ClientID + "-sink-" + w.o.Name }

// Ready reports whether the worker consumes and its database answers.
func (w *Worker) Ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ready
}

// Name is the sink's name.
func (w *Worker) Name() string { return w.o.Name }

func (w *Worker) setReady(v bool, reason string) {
	w.mu.Lock()
	changed := w.ready != v || !v // a new failure reason is news too
	w.ready = v
	w.mu.Unlock()
	if v {
		w.m.up.Set(1)
	} else {
		w.m.up.Set(0)
	}
	if changed && w.o.SetReady != nil {
		w.o.SetReady(v, reason)
	}
}

// retry runs op until it succeeds or ctx ends (bus.RetryBatch), with backoff,
// readiness false and a log line per failure. It returns ctx's error, or op's error
// when permanent says so.
func (w *Worker) retry(ctx context.Context, what string, op func() error, permanent func(error) bool) error {
	return bus.RetryBatch(ctx, w.sink.o.RetryInitial, w.sink.o.RetryMax, op, permanent, func(attempt int, wait time.Duration, err error) {
		w.setReady(false, what+": "+err.Error())
		w.sink.log.Error("sink: "+what+" failed; retrying (nothing is skipped)", "attempt", attempt, "retry_in", wait, "err", err)
	})
}

// errConfig marks start-up problems that retrying cannot fix.
var errConfig = errors.New("configuration")

// Run consumes until ctx is done (nil) or the configuration is wrong (the error).
// Database failures never end it: batches are retried until they commit.
func (w *Worker) Run(ctx context.Context) error {
	cfg, err := pgxpool.ParseConfig(w.o.DSN)
	if err != nil {
		return fmt.Errorf("sinks/postgres %s: dsn: %w", w.o.Name, err)
	}
	cfg.AfterConnect = w.sink.AfterConnect
	cfg.MaxConns = int32(w.o.Lanes + 2) // a connection per lane, and the offset lookups
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("sinks/postgres %s: %w", w.o.Name, err)
	}
	defer pool.Close()
	w.mu.Lock()
	w.pool = pool
	w.mu.Unlock()
	err = w.retry(ctx, "preparing the provincial schema", func() error {
		if !w.o.NoMigrate {
			if _, err := Migrate(ctx, pool, w.sink.log); err != nil {
				return err
			}
		}
		if err := w.sink.Check(ctx, pool); err != nil {
			return fmt.Errorf("%w: %w", errConfig, err)
		}
		return nil
	}, func(err error) bool { return errors.Is(err, errConfig) })
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	pc, err := bus.NewPartitionConsumer(w.o.Bus, w.Group(), w.sink.Topics(), func(pctx context.Context, topic string, partition int) (int64, bool, error) {
		var off int64
		var ok bool
		err := w.retry(pctx, "reading the stored offset of "+topic, func() error {
			var err error
			off, ok, err = w.sink.StoredOffset(pctx, pool, topic, partition)
			return err
		}, nil)
		if ok {
			return off, true, err
		}
		return bus.FirstOffset, true, err // nothing stored: from the start, not the group's offset
	})
	if err != nil {
		return fmt.Errorf("sinks/postgres %s: %w", w.o.Name, err)
	}
	w.setReady(true, "")
	defer w.setReady(false, "stopped")
	w.sink.log.Info("sink started", "topics", len(w.sink.Topics()), "group", w.Group(), "delete", w.sink.o.Delete, "truncate", w.sink.o.Truncate)
	var (
		mu       sync.Mutex // the lanes share the progress counts
		total    Result
		lastLog  = time.Now()
		lastDone int
	)
	err = bus.Batches(ctx, pc, bus.BatchOptions[Record]{Size: w.sink.o.BatchSize, Linger: w.sink.o.Linger, Decode: w.sink.Decode,
		OnPartition: func(d int) { w.m.partitions.Add(float64(d)) }, Lanes: w.o.Lanes},
		func(ctx context.Context, batch []bus.Fetched[Record]) error {
			res, err := w.apply(ctx, pool, batch)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			total.Counts.add(res.Counts)
			total.Dead = append(total.Dead, res.Dead...)
			if done := total.Applied + total.Stale + total.Deleted + total.Collapsed + len(total.Dead); time.Since(lastLog) >= w.o.ProgressEvery && done > lastDone {
				secs := time.Since(lastLog).Seconds()
				w.sink.log.Info("sink progress", "changes", done, "applied", total.Applied, "stale", total.Stale, "deleted", total.Deleted,
					"dead", len(total.Dead), "per_second", int(float64(done-lastDone)/secs))
				lastLog, lastDone = time.Now(), done
				total.Dead = total.Dead[:0:0]
			}
			return nil
		})
	if err != nil {
		return fmt.Errorf("sinks/postgres %s: %w", w.o.Name, err)
	}
	return nil
}

// apply commits one batch, retrying the whole batch while the database fails, then
// commits the consumer group's offsets (for lag monitoring; the stored offsets are the
// ones that count).
func (w *Worker) apply(ctx context.Context, pool *pgxpool.Pool, batch []bus.Fetched[Record]) (Result, error) {
	recs := make([]Record, len(batch))
	for i, f := range batch {
		recs[i] = f.V
	}
	var res Result
	err := w.retry(ctx, fmt.Sprintf("applying a batch of %d changes", len(recs)), func() error {
		start := time.Now()
		var err error
		res, err = w.sink.Apply(ctx, pool, recs)
		if err != nil {
			w.m.batches.WithLabelValues("failed").Inc()
			return err
		}
		w.m.batch.Observe(time.Since(start).Seconds())
		w.m.batches.WithLabelValues("committed").Inc()
		return nil
	}, nil)
	if err != nil {
		return res, err
	}
	w.setReady(true, "")
	w.count(recs, res)
	if err := bus.CommitLast(batch); err != nil && ctx.Err() == nil {
		w.sink.log.Debug("sink: group offset commit failed (the stored offset counts)", "err", err)
	}
	return res, nil
}

// count updates the row metrics of a committed batch. Per-entity results are
// recomputed from the records: Result holds totals only.
func (w *Worker) count(recs []Record, res Result) {
	entity := func(r Record) string {
		if r.tgt == nil {
			return "unknown"
		}
		return r.tgt.entity
	}
	for _, r := range res.Dead {
		w.m.rows.WithLabelValues(entity(r), "dead").Inc()
		reason := "contract"
		if !errors.Is(r.Err, errContract) {
			reason = "constraint"
		}
		w.m.dlq.WithLabelValues("sink", reason).Inc()
	}
	for _, r := range recs {
		if r.Err == nil && r.op == opTruncate {
			action := "ignored"
			if w.sink.o.Truncate == TruncateApply {
				action = "applied"
			}
			w.m.truncates.WithLabelValues(entity(r), action).Inc()
		}
	}
	for e, c := range res.PerEntity {
		w.m.rows.WithLabelValues(e, "applied").Add(float64(c.Applied))
		w.m.rows.WithLabelValues(e, "stale").Add(float64(c.Stale))
		w.m.rows.WithLabelValues(e, "deleted").Add(float64(c.Deleted))
		w.m.rows.WithLabelValues(e, "collapsed").Add(float64(c.Collapsed))
	}
}
