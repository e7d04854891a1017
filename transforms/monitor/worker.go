// Package monitor runs the monitoring rules on the canonical stream: it consumes the
// canonical household, person, assistance-measure and department-fact topics, keeps
// each household's context, the department facts and the rule state, and produces
//
//   - quality issues (<p>.quality_issue) from the supervision rules (transforms/rules):
//     opened when a subject fails a rule, closed when a later change makes it pass;
//   - department screening warnings (<p>.warning) and department discrepancies
//     (<p>.discrepancy) from the department rules (transforms/warnings).
//
// State and input offsets are committed together in one local bbolt transaction (the
// state file), after Kafka acknowledged the events of the batch: a crash redoes the
// batch from the committed state, so events are produced at least once with
// deterministic IDs and versions that consumers use to drop repeats, and nothing is
// lost. Households whose context changed are evaluated once the input has been quiet
// for Settle (or after MaxDelay while it keeps flowing), so a snapshot that delivers a
// household before its members does not open transient issues.
//
// The monitor is one active process per deployment: its household context joins
// topics keyed by different keys, so it needs every partition of its inputs. A second
// instance with the same state file is refused (the file is locked).
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/metrics"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/rules"
	"github.com/shouwang/shouwang/transforms/warnings"
)

// Options configures a Worker.
type Options struct {
	// Name names the worker in its consumer group (<ClientID>-monitor-<Name>) and
	// metrics (default "monitor").
	Name string
	// TopicPrefix is kafka.topic_prefix; ClientID prefixes the consumer group.
	TopicPrefix string
	ClientID    string
	// Bus reaches Kafka; Producer writes the events (acks=all).
	Bus      bus.Options
	Producer *bus.Producer
	// Rules are the supervision rules; Warnings the department warning and comparison
	// rules. Both are required.
	Rules    *rules.Engine
	Warnings *warnings.Rules
	// StatePath is the bbolt state file (monitor.state in the configuration).
	StatePath string
	// Protect protects the ID numbers in the subject keys of person warnings,
	// discrepancies and issues per output topic (nil: as they are).
	Protect *pii.Protector
	// BatchSize is the most input changes per commit, and the most households per
	// evaluation chunk (default 8000: each commit rewrites every record the batch
	// touched, and smaller batches rewrite the same records more often — 2000 gave
	// about two thirds of the throughput in BenchmarkTransformStages); Linger is how
	// long a batch waits to fill (default 50ms), so a slow input is not held back.
	BatchSize int
	Linger    time.Duration
	// Settle is how long the input must be quiet before changed households are
	// evaluated (default 500ms); MaxDelay bounds the wait while input keeps flowing
	// (default 30s).
	Settle   time.Duration
	MaxDelay time.Duration
	// Registerer and Logger (nil: none, slog.Default()).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now stamps the events and is the rules' evaluation date (nil: time.Now).
	Now func() time.Time
	// AsOf, when not zero, is the evaluation date instead of Now: ages, windows and
	// "new" department records are judged at this date (replays of history, synthetic
	// data dated in the past). Events are still stamped with Now.
	AsOf time.Time
	// NoDailyPass turns off re-evaluating every household when the evaluation date
	// (today, without AsOf) changes — the pass that opens age- and date-based issues
	// of households whose data did not change.
	NoDailyPass bool
}

// ruleSets is a hot reload waiting for the loop.
type ruleSets struct {
	rules    *rules.Engine
	warnings *warnings.Rules
}

// Worker is the monitor.
type Worker struct {
	o   Options
	log *slog.Logger
	m   *workerMetrics
	// kinds maps an input topic to its entity name.
	kinds map[string]string

	mu      sync.Mutex
	applied map[string]int64 // next offset per input partition, including uncommitted work
	ready   bool
	// done counts input changes whose effects are committed; waiting is the number of
	// households waiting for evaluation at the last commit.
	done    int64
	waiting int
	reload  chan ruleSets // capacity 1: the newest reload waits
}

// Reload makes the running worker use new rule sets from its next batch on; a reload
// not yet applied is replaced by a newer one. Both must be complete, loaded sets (a
// set that failed to load is never passed in, so a reload never half-applies).
func (w *Worker) Reload(re *rules.Engine, wr *warnings.Rules) {
	rs := ruleSets{rules: re, warnings: wr}
	for {
		select {
		case w.reload <- rs:
			return
		default:
		}
		select {
		case <-w.reload:
		default:
		}
	}
}

// Progress reports the input changes applied and committed by this process and the
// households waiting for evaluation at the last commit.
func (w *Worker) Progress() (committed int64, waiting int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done, w.waiting
}

type workerMetrics struct {
	in, stale, dlq *prometheus.CounterVec
	out            *prometheus.CounterVec
	evaluated      prometheus.Counter
	ruleErrors     *prometheus.CounterVec
	waiting        prometheus.Gauge
	records        *prometheus.GaugeVec
	commit         prometheus.Histogram
	partitions     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, name string) *workerMetrics {
	labels := prometheus.Labels{"worker": name}
	return &workerMetrics{
		in: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_monitor_records_in_total",
			Help: "Canonical changes consumed by the monitor, by input topic.", ConstLabels: labels}, []string{"topic"})),
		stale: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_monitor_redelivered_total",
			Help: "Input changes skipped because their offset was already applied (redelivery after a rebalance).", ConstLabels: labels}, []string{"topic"})),
		dlq: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_monitor_dead_letters_total",
			Help: "Canonical changes the monitor could not read, sent to <prefix>.dlq.transform, by input topic.", ConstLabels: labels}, []string{"topic"})),
		out: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_monitor_events_total",
			Help: "Events produced: quality issues, warnings and discrepancies, by topic and status.", ConstLabels: labels}, []string{"topic", "status"})),
		evaluated: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "shouwang_monitor_households_evaluated_total",
			Help: "Household evaluations of the supervision rules.", ConstLabels: labels})),
		ruleErrors: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_monitor_rule_errors_total",
			Help: "Rule evaluations that failed at run time (the subject keeps its previous state for the rule), by rule.", ConstLabels: labels}, []string{"rule"})),
		waiting: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "shouwang_monitor_households_waiting",
			Help: "Households changed since their last evaluation.", ConstLabels: labels})),
		records: metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_monitor_state_records",
			Help: "Records held in the monitor state, by kind.", ConstLabels: labels}, []string{"kind"})),
		commit: metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shouwang_monitor_commit_seconds",
			Help: "Time to commit the state and offsets of one batch.", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})),
		partitions: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "shouwang_monitor_partitions",
			Help: "Input partitions this process consumes: all of them on the active monitor of a group, 0 on a standby.", ConstLabels: labels})),
	}
}

// Entities the monitor consumes.
var inputEntities = []string{"household", "person", "assistance_measure", "department_fact"}

// New checks the options.
func New(o Options) (*Worker, error) {
	if o.Producer == nil || o.Rules == nil || o.Warnings == nil || o.StatePath == "" {
		return nil, errors.New("monitor: Producer, Rules, Warnings and StatePath are required")
	}
	if o.Name == "" {
		o.Name = "monitor"
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 8000
	}
	if o.Linger <= 0 {
		o.Linger = 50 * time.Millisecond
	}
	if o.Settle <= 0 {
		o.Settle = 500 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Worker{o: o, log: o.Logger.With("worker", "monitor/"+o.Name), m: newMetrics(o.Registerer, o.Name), kinds: map[string]string{},
		reload: make(chan ruleSets, 1)}
	for _, e := range inputEntities {
		w.kinds[schemas.CanonicalTopic(o.TopicPrefix, e)] = e
	}
	return w, nil
}

// Topics lists the input and output topics (for topic creation).
func (w *Worker) Topics() (inputs, outputs []string) {
	for t := range w.kinds {
		inputs = append(inputs, t)
	}
	sort.Strings(inputs)
	p := w.o.TopicPrefix
	return inputs, []string{schemas.QualityIssueTopic(p), schemas.WarningTopic(p), schemas.DiscrepancyTopic(p), schemas.DLQTopic(p, "transform")}
}

// Group is the worker's consumer group.
func (w *Worker) Group() string { return w.o.ClientID + "-monitor-" + w.o.Name }

// Ready reports whether the worker has loaded its state and joined its group.
func (w *Worker) Ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ready
}

type item struct {
	p *bus.Partition
	m bus.Message
}

// run is one Run's working set.
type run struct {
	w       *Worker
	st      *state
	tracker *rules.Tracker
	eng     *warnings.Engine
	oldest  time.Time // when the oldest waiting household changed (zero: none waits)
	// queue holds the waiting households in the order they changed (from head on;
	// entries evaluated since are skipped), so evaluation goes oldest first in
	// chunks of BatchSize without sorting the whole waiting set each time.
	queue      []string
	head       int
	evaluating bool
	// rules and warnRules are the rule sets in force (Reload swaps them).
	rules     *rules.Engine
	warnRules *warnings.Rules
	meta      *metaRecord
	out       []bus.Message
	// pos is the input position: the sum of the next offsets of every input partition.
	// It versions the issue events of an evaluation: it grows with every applied
	// change, so it grows along each issue's events, and a replay that has read the
	// same input ends with the same versions.
	pos int64
}

// newRun sets up a run over a loaded state.
func (w *Worker) newRun(st *state) *run {
	r := &run{w: w, st: st, eng: warnings.New(w.o.Warnings, warningsStore{st}, w.o.Now), rules: w.o.Rules, warnRules: w.o.Warnings}
	r.eng.SetAsOf(w.o.AsOf)
	r.tracker = rules.NewTracker(issuesStore{st})
	r.tracker.Now = w.o.Now
	r.tracker.RuleSet = w.o.Rules.Version()
	r.loadQueue()
	r.checkPass()
	w.mu.Lock()
	w.applied = map[string]int64{}
	for k, v := range st.offsets {
		w.applied[k] = v
	}
	w.waiting = st.len(bucketDirty) // Progress from the loaded state, before the first flush
	w.mu.Unlock()
	r.gauges()
	return r
}

// crash ends the run as a kill at stage would (see crashAt).
func crash(stage string) error { return errors.New("monitor: test: crash " + stage) }

// Run consumes until ctx is done (nil) or producing or committing fails (the error;
// the state on disk is the last committed one, so calling Run again resumes there).
func (w *Worker) Run(ctx context.Context) error {
	st, err := openState(w.o.StatePath)
	if err != nil {
		return err
	}
	defer st.close()
	r := w.newRun(st)
	if len(st.outbox) > 0 {
		// The last commit's events may not all have been sent before the process ended.
		if err := w.o.Producer.Produce(ctx, st.outbox...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("monitor: send the %d events of the last commit again: %w", len(st.outbox), err)
		}
		w.log.Info("monitor: sent the last commit's events again", "events", len(st.outbox))
		st.outbox = nil
		r.emptyOutbox()
	}

	inputs, _ := w.Topics()
	pc, err := bus.NewPartitionConsumer(w.o.Bus, w.Group(), inputs, w.offsetOf)
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	// One member holds every input partition: the joins of a household's records
	// (persons, measures, department facts by ID number) need all of them. Other
	// processes of the group stand by; the member whose state has applied the most
	// input wins a rebalance, so a fresh standby never takes over from a running one.
	pc.Exclusive(w.appliedTotal)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan item, 2*w.o.BatchSize)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- pc.Run(rctx, func(pctx context.Context, p *bus.Partition) error {
			w.m.partitions.Inc()
			defer w.m.partitions.Dec()
			for {
				m, err := p.Fetch(pctx)
				if err != nil {
					if pctx.Err() != nil {
						return nil
					}
					return err
				}
				select {
				case in <- item{p: p, m: m}:
				case <-pctx.Done():
					return nil
				}
			}
		})
	}()
	defer wg.Wait()
	defer cancel()
	w.setReady(true)
	defer w.setReady(false)
	w.log.Info("monitor started", "inputs", len(inputs), "group", w.Group(), "state", w.o.StatePath,
		"households", st.len("w."+warnings.KindHousehold), "persons", st.len("w."+warnings.KindPerson), "facts", st.len("w."+warnings.KindFact),
		"rules", w.o.Rules.Version())

	batch := make([]item, 0, w.o.BatchSize)
	for {
		batch = batch[:0]
		r.checkPass()
		var wait <-chan time.Time
		switch {
		case r.evaluating:
			wait = time.After(0) // a chunked evaluation goes on while input is quiet
		case !r.oldest.IsZero():
			wait = time.After(w.o.Settle)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("monitor: %w", err)
		case rs := <-w.reload:
			if err := r.reloadRules(rs); err != nil {
				return err
			}
			if err := r.flush(ctx, nil, false); err != nil {
				if ctx.Err() != nil {
					return nil // stopped mid-flush: nothing after the last commit counts
				}
				return err
			}
			continue
		case it := <-in:
			batch = append(batch, it)
		case <-wait:
			// Quiet input: evaluate every waiting household.
			if err := r.flush(ctx, nil, true); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			continue
		}
		linger := time.NewTimer(w.o.Linger)
	fill:
		for len(batch) < w.o.BatchSize {
			select {
			case it := <-in:
				batch = append(batch, it)
			case <-linger.C:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		linger.Stop()
		if err := r.flush(ctx, batch, !r.oldest.IsZero() && time.Since(r.oldest) >= w.o.MaxDelay); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (w *Worker) setReady(v bool) {
	w.mu.Lock()
	w.ready = v
	w.mu.Unlock()
}

// offsetOf starts a newly assigned partition after the last change applied in memory
// (which the next commit makes durable), so a rebalance neither re-applies nor skips;
// a partition the state has never applied starts at its earliest change, never at the
// group's committed offset (another state file's progress: a standby taking over, or
// a state file deleted to replay).
func (w *Worker) offsetOf(_ context.Context, topic string, partition int) (int64, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	off, ok := w.applied[offsetKey(topic, partition)]
	if !ok {
		return bus.FirstOffset, true, nil
	}
	return off, true, nil
}

// appliedTotal is how many input changes the state has applied, over every partition:
// the member's priority in the exclusive group.
func (w *Worker) appliedTotal() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	for _, off := range w.applied {
		n += off
	}
	return n
}

// stopSendTimeout bounds sending a committed batch's events after a stop was asked for.
const stopSendTimeout = 30 * time.Second

// crashAt, set by tests, makes flush stop as a crash would at a stage ("before
// commit": events made, nothing committed; "after commit": committed, nothing sent;
// "after send": sent and the outbox emptied) when it returns true.
var crashAt func(stage string) bool

// flush applies a batch, evaluates the waiting households when evaluate is set,
// produces the events, and commits state and offsets.
func (r *run) flush(ctx context.Context, batch []item, evaluate bool) error {
	w := r.w
	last := map[*bus.Partition]bus.Message{}
	applied := 0
	w.mu.Lock()
	for _, it := range batch {
		k := offsetKey(it.m.Topic, it.m.Partition)
		if next, ok := w.applied[k]; ok && it.m.Offset < next {
			w.m.stale.WithLabelValues(it.m.Topic).Inc()
			continue
		}
		w.applied[k] = it.m.Offset + 1
		last[it.p] = it.m
		applied++
		w.mu.Unlock()
		err := r.apply(it.m)
		w.mu.Lock()
		if err != nil {
			w.mu.Unlock()
			return err
		}
	}
	offsets := r.position()
	w.mu.Unlock()
	if evaluate {
		if err := r.evaluateWaiting(); err != nil {
			return err
		}
	}
	// The events are committed with the state that made them and sent after the
	// commit: a run cut off before the commit sends nothing (a restart redoes the
	// batch and decides afresh), one cut off after it finds them in the outbox and
	// sends them again (same IDs and versions: consumers drop the copies). Sending
	// first would let a cut-off run publish an event, such as an issue opened on a
	// household whose persons had not arrived yet, that the restarted state knows
	// nothing of and so never withdraws.
	if crashAt != nil && len(r.out) > 0 && crashAt("before commit") {
		return crash("before commit")
	}
	start := time.Now()
	r.st.offsets = offsets
	if err := r.st.commit(r.out); err != nil {
		return err
	}
	w.m.commit.Observe(time.Since(start).Seconds())
	if crashAt != nil && len(r.out) > 0 && crashAt("after commit") {
		return crash("after commit")
	}
	if len(r.out) > 0 {
		err := w.o.Producer.Produce(ctx, r.out...)
		if err != nil && ctx.Err() != nil {
			// Stopping: what is committed is sent before the worker exits (a kill
			// leaves it to the next start). Events sent before the stop go again,
			// with the same IDs and versions.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopSendTimeout)
			err = w.o.Producer.Produce(sctx, r.out...)
			cancel()
			if err != nil {
				// Run reports a stop, not this error: say what is left behind.
				w.log.Warn("monitor: stopping with committed events not all sent; the next start sends them", "events", len(r.out), "err", err)
			}
		}
		if err != nil {
			return fmt.Errorf("monitor: produce %d events (committed with the state; a restart sends them again): %w", len(r.out), err)
		}
		r.out = r.out[:0]
		// Sent: empty the outbox now, so that a kill before the next commit does not
		// make the next start send the whole batch once more (one small transaction
		// per batch; if it fails, the next commit replaces the outbox anyway, and a
		// stop before that leaves copies, only copies, to the next start).
		r.emptyOutbox()
		if crashAt != nil && crashAt("after send") {
			return crash("after send")
		}
	}
	r.gauges()
	w.mu.Lock()
	w.done += int64(applied)
	w.waiting = r.st.len(bucketDirty)
	w.mu.Unlock()
	// The group commit only keeps lag visible; the state file is authoritative.
	for p, m := range last {
		if err := p.Commit(m); err != nil {
			w.log.Debug("monitor: group commit failed (state file is authoritative)", "topic", m.Topic, "partition", m.Partition, "err", err)
		}
	}
	return nil
}

// position sets r.pos from the applied offsets and returns a copy of them, for the
// commit; the caller holds w.mu.
func (r *run) position() map[string]int64 {
	offsets := make(map[string]int64, len(r.w.applied))
	r.pos = 0
	for k, v := range r.w.applied {
		offsets[k] = v
		r.pos += v
	}
	return offsets
}

// emptyOutbox deletes the outbox on disk once its events are sent.
func (r *run) emptyOutbox() {
	if err := r.st.clearOutbox(); err != nil {
		r.w.log.Warn("monitor: could not empty the sent outbox (the next start sends its events again)", "err", err)
	}
}

func (r *run) gauges() {
	m := r.w.m
	m.waiting.Set(float64(r.st.len(bucketDirty)))
	for _, k := range warnings.Kinds {
		m.records.WithLabelValues(k).Set(float64(r.st.len("w." + k)))
	}
	m.records.WithLabelValues("measure").Set(float64(r.st.len(bucketMeasure)))
	m.records.WithLabelValues("issue_household").Set(float64(r.st.len(bucketIssues)))
}

// waitFor marks a household for evaluation.
func (r *run) waitFor(hh string) {
	if hh == "" {
		return
	}
	if _, ok := r.st.get(bucketDirty, hh); ok {
		return
	}
	now := time.Now()
	ms := now.UnixMilli()
	r.st.put(bucketDirty, hh, &ms)
	r.queue = append(r.queue, hh)
	if r.oldest.IsZero() {
		r.oldest = now
	}
}

// version is the version of the issue events evaluated now: the input position plus
// the full passes made (see metaRecord).
func (r *run) version() int64 {
	if r.meta == nil {
		return r.pos
	}
	return r.pos + r.meta.Passes
}

// evalDate is the date rules are evaluated at.
func (r *run) evalDate() time.Time {
	if !r.w.o.AsOf.IsZero() {
		return r.w.o.AsOf
	}
	return r.w.o.Now()
}

// rulesID identifies the rule sets in force.
func (r *run) rulesID() string {
	return r.rules.Version() + "|" + r.warnRules.Version()
}

// checkPass starts a full re-evaluation when the rule sets or the evaluation day are
// not those of the state: every household waits for evaluation again (in chunks, see
// evaluateWaiting). A new state only records them.
func (r *run) checkPass() {
	day := r.evalDate().Format("2006-01-02")
	if r.meta == nil {
		if v, ok := r.st.get(bucketMeta, "meta"); ok {
			r.meta = v.(*metaRecord)
		} else {
			r.meta = &metaRecord{}
		}
	}
	id := r.rulesID()
	m := r.meta
	newDay := m.Day != day && !r.w.o.NoDailyPass
	if m.Rules == id && (m.Day == day || !newDay) {
		return
	}
	if m.Rules == "" && m.Day == "" {
		r.meta = &metaRecord{Rules: id, Day: day}
		r.st.put(bucketMeta, "meta", r.meta)
		return
	}
	why := "rules changed"
	if m.Rules == id {
		why = "new evaluation day"
	}
	households := r.households()
	r.meta = &metaRecord{Passes: m.Passes + 1, Rules: id, Day: day}
	r.st.put(bucketMeta, "meta", r.meta)
	for _, hh := range households {
		r.waitFor(hh)
	}
	r.w.log.Info("monitor: re-evaluating every household", "why", why, "households", len(households), "day", day, "rules", id)
}

// households lists every household the state knows: registry households, households
// with open issues, and households named by registry persons.
func (r *run) households() []string {
	seen := map[string]bool{}
	for k := range r.st.buckets["w."+warnings.KindHousehold] {
		seen[k] = true
	}
	for k := range r.st.buckets[bucketIssues] {
		seen[k] = true
	}
	for _, v := range r.st.buckets["w."+warnings.KindPerson] {
		if pr := v.(*warnings.PersonRecord); pr.Person != nil && pr.Person.HouseholdNo != "" {
			seen[pr.Person.HouseholdNo] = true
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// reloadRules swaps in new rule sets. Department warnings are evaluated again at once
// for every person with department facts and every household; the supervision rules
// through a full pass (checkPass).
func (r *run) reloadRules(rs ruleSets) error {
	r.rules, r.warnRules = rs.rules, rs.warnings
	r.tracker.RuleSet = rs.rules.Version()
	r.eng.SetRules(rs.warnings)
	var ids []string
	for k := range r.st.buckets["w."+warnings.KindFactsByID] {
		ids = append(ids, k)
	}
	sort.Strings(ids)
	events, err := r.eng.Reevaluate(ids, r.households())
	if err != nil {
		return fmt.Errorf("monitor: re-evaluate department warnings after a reload: %w", err)
	}
	r.queueEvents(events)
	r.w.log.Info("monitor: rule sets reloaded", "rules", rs.rules.Version(), "warnings", rs.warnings.Version(), "warning_changes", len(events))
	r.checkPass()
	return nil
}

// loadQueue orders the waiting households of a loaded state by when they changed.
func (r *run) loadQueue() {
	dirty := r.st.buckets[bucketDirty]
	r.queue, r.head = make([]string, 0, len(dirty)), 0
	for k := range dirty {
		r.queue = append(r.queue, k)
	}
	at := func(k string) int64 { return *dirty[k].(*int64) }
	sort.Slice(r.queue, func(i, j int) bool {
		a, b := at(r.queue[i]), at(r.queue[j])
		return a < b || a == b && r.queue[i] < r.queue[j]
	})
	r.oldest = time.Time{}
	if len(r.queue) > 0 {
		r.oldest = time.UnixMilli(at(r.queue[0]))
	}
}

// apply applies one canonical change to the state; warnings and discrepancies it
// raises are queued for producing.
func (r *run) apply(m bus.Message) error {
	w := r.w
	w.m.in.WithLabelValues(m.Topic).Inc()
	kind := w.kinds[m.Topic]
	var events []warnings.Event
	var err error
	switch kind {
	case "household":
		key, version, ent, deleted, derr := decode[schemas.Household](m)
		if derr != nil {
			return r.dead(m, derr)
		}
		events, err = r.eng.ApplyHousehold(key, version, ent, deleted)
		r.waitFor(key)
	case "person":
		key, version, ent, deleted, derr := decode[schemas.Person](m)
		if derr != nil {
			return r.dead(m, derr)
		}
		if v, ok := r.st.get("w."+warnings.KindPerson, key); ok {
			if old := v.(*warnings.PersonRecord); old.Person != nil {
				r.waitFor(old.Person.HouseholdNo)
			}
		}
		events, err = r.eng.ApplyPerson(key, version, ent, deleted)
		if ent != nil {
			r.waitFor(ent.HouseholdNo)
		}
	case "assistance_measure":
		key, version, ent, deleted, derr := decode[schemas.AssistanceMeasure](m)
		if derr != nil {
			return r.dead(m, derr)
		}
		r.applyMeasure(key, version, ent, deleted)
	case "department_fact":
		key, version, ent, deleted, derr := decode[schemas.DepartmentFact](m)
		if derr != nil {
			return r.dead(m, derr)
		}
		events, err = r.eng.ApplyFact(key, version, ent, deleted)
	default:
		return r.dead(m, fmt.Errorf("topic %s is not a monitor input", m.Topic))
	}
	if err != nil {
		return fmt.Errorf("monitor: apply %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
	}
	r.queueEvents(events)
	return nil
}

// queueEvents queues the warnings engine's events for producing.
func (r *run) queueEvents(events []warnings.Event) {
	w := r.w
	for _, e := range events {
		// Copies: the events may share memory with the engine's records, and emit
		// protects the subject key in place.
		if e.Warning != nil {
			c := *e.Warning
			r.emit(schemas.WarningTopic(w.o.TopicPrefix), "warning", e.Key, c.Status, c.SubjectKind, &c.SubjectKey, &c)
		} else {
			c := *e.Discrepancy
			r.emit(schemas.DiscrepancyTopic(w.o.TopicPrefix), "discrepancy", e.Key, c.Status, c.SubjectKind, &c.SubjectKey, &c)
		}
	}
}

// applyMeasure keeps the measures by household, dropping stale versions.
func (r *run) applyMeasure(key string, version int64, ms *schemas.AssistanceMeasure, deleted bool) {
	var oldHH string
	if v, ok := r.st.get(bucketMeasure, key); ok {
		old := v.(*measureRecord)
		if old.Version >= version {
			return
		}
		if old.Measure != nil {
			oldHH = old.Measure.HouseholdNo
		}
	}
	rec := &measureRecord{Version: version, Deleted: deleted || ms == nil}
	newHH := ""
	if !rec.Deleted {
		c := *ms
		c.Key = key
		rec.Measure = &c
		newHH = c.HouseholdNo
	}
	r.st.put(bucketMeasure, key, rec)
	if oldHH != newHH {
		r.index(bucketMeasures, oldHH, key, false)
	}
	r.index(bucketMeasures, newHH, key, true)
	r.waitFor(oldHH)
	r.waitFor(newHH)
}

func (r *run) index(bucket, owner, key string, add bool) {
	if owner == "" {
		return
	}
	var list warnings.KeyList
	if v, ok := r.st.get(bucket, owner); ok {
		list = *v.(*warnings.KeyList)
	}
	i := sort.SearchStrings(list, key)
	has := i < len(list) && list[i] == key
	switch {
	case add && !has:
		n := make(warnings.KeyList, 0, len(list)+1)
		n = append(append(append(n, list[:i]...), key), list[i:]...)
		r.st.put(bucket, owner, &n)
	case !add && has:
		n := append(append(warnings.KeyList{}, list[:i]...), list[i+1:]...)
		if len(n) == 0 {
			r.st.del(bucket, owner)
		} else {
			r.st.put(bucket, owner, &n)
		}
	}
}

// evaluateWaiting runs the supervision rules over the households that have waited
// longest, at most BatchSize of them (in key order within the chunk), and queues the
// issue events. Bounded chunks keep every produce and state commit small when a
// snapshot marks millions of households; evaluating is set while some still wait.
func (r *run) evaluateWaiting() error {
	dirty := r.st.buckets[bucketDirty]
	chunk := make([]string, 0, min(len(dirty), r.w.o.BatchSize))
	for r.head < len(r.queue) && len(chunk) < r.w.o.BatchSize {
		hh := r.queue[r.head]
		r.head++
		if _, ok := dirty[hh]; ok {
			chunk = append(chunk, hh)
		}
	}
	sort.Strings(chunk)
	asOf := r.w.o.Now()
	if !r.w.o.AsOf.IsZero() {
		asOf = r.w.o.AsOf
	}
	for _, hh := range chunk {
		if err := r.evaluate(hh, asOf); err != nil {
			return err
		}
		r.st.del(bucketDirty, hh)
	}
	// Skip what was evaluated, drop the consumed front now and then, and find the
	// change time of the oldest household still waiting.
	for r.head < len(r.queue) {
		if _, ok := dirty[r.queue[r.head]]; ok {
			break
		}
		r.head++
	}
	if r.head > 4096 && r.head > len(r.queue)/2 {
		r.queue = append(r.queue[:0], r.queue[r.head:]...)
		r.head = 0
	}
	r.oldest, r.evaluating = time.Time{}, false
	if r.head < len(r.queue) {
		r.oldest = time.UnixMilli(*dirty[r.queue[r.head]].(*int64))
		r.evaluating = true
	}
	return nil
}

func (r *run) evaluate(hh string, asOf time.Time) error {
	w := r.w
	var h *schemas.Household
	if v, ok := r.st.get("w."+warnings.KindHousehold, hh); ok {
		if rec := v.(*warnings.HouseholdRecord); !rec.Deleted {
			h = rec.Household
		}
	}
	var issues []schemas.QualityIssue
	var err error
	if h == nil {
		// Gone (or not yet seen): close whatever is open; keep nothing else.
		issues, err = r.tracker.Delete(hh, r.version())
		if err == nil {
			r.st.del(bucketIssues, hh)
		}
	} else {
		var persons []schemas.Person
		if v, ok := r.st.get("w."+warnings.KindMembers, hh); ok {
			for _, pk := range *v.(*warnings.KeyList) {
				if pv, ok := r.st.get("w."+warnings.KindPerson, pk); ok {
					if pr := pv.(*warnings.PersonRecord); !pr.Deleted && pr.Person != nil {
						persons = append(persons, *pr.Person)
					}
				}
			}
		}
		var measures []schemas.AssistanceMeasure
		if v, ok := r.st.get(bucketMeasures, hh); ok {
			for _, mk := range *v.(*warnings.KeyList) {
				if mv, ok := r.st.get(bucketMeasure, mk); ok {
					if mr := mv.(*measureRecord); !mr.Deleted && mr.Measure != nil {
						measures = append(measures, *mr.Measure)
					}
				}
			}
		}
		hc := rules.NewHouseholdContext(h, persons, measures)
		findings := r.rules.Evaluate(hc, asOf)
		for i := range findings {
			if findings[i].Err != "" {
				w.m.ruleErrors.WithLabelValues(findings[i].RuleID).Inc()
			}
		}
		w.m.evaluated.Inc()
		issues, err = r.tracker.Apply(hh, r.version(), findings)
	}
	if err != nil {
		return fmt.Errorf("monitor: evaluate household %s: %w", hh, err)
	}
	for i := range issues {
		q := &issues[i]
		r.emit(schemas.QualityIssueTopic(w.o.TopicPrefix), "quality_issue", q.ID, q.Status, q.SubjectKind, &q.SubjectKey, q)
	}
	return nil
}

// emit queues one derived event as a canonical envelope (op u: every event carries the
// whole current state of its ID, and its version orders them).
func (r *run) emit(topic, entity, key, status, subjectKind string, subjectKey *string, v any) {
	w := r.w
	// A person subject of a warning or discrepancy is an ID number (issues name persons
	// by 人编号).
	if w.o.Protect != nil && subjectKind == "person" && entity != "quality_issue" && *subjectKey != "" {
		if p, err := w.o.Protect.Protect(topic, pii.KindIDNumber, *subjectKey); err == nil {
			*subjectKey = p
		} else {
			w.log.Error("monitor: protecting a subject key failed; the event carries it masked", "topic", topic, "err", err)
			*subjectKey = w.o.Protect.ScrubText(*subjectKey)
		}
	}
	raw, err := json.Marshal(v)
	var doc map[string]any
	if err == nil {
		err = json.Unmarshal(raw, &doc)
	}
	var b []byte
	if err == nil {
		env := schemas.Envelope{V: schemas.EnvelopeVersion, Op: schemas.OpUpdate,
			Source: schemas.Source{System: "monitor", Kind: "monitor", DB: w.o.Name, Table: entity},
			Key:    map[string]any{"key": key}, After: doc, Schema: schemas.SchemaRef{Name: entity, Version: 1}, TsMs: w.o.Now().UnixMilli()}
		b, err = env.Marshal()
	}
	if err != nil {
		// The event types are plain structs of strings and numbers; failing to encode
		// one is a programming error worth stopping for, not a record to skip.
		panic(fmt.Sprintf("monitor: encode %s %s: %v", entity, key, err))
	}
	w.m.out.WithLabelValues(topic, status).Inc()
	r.out = append(r.out, bus.Message{Topic: topic, Key: []byte(key), Value: b})
}

// decode reads a canonical change: the entity key, its version, the entity (nil for a
// delete) and whether it is a delete.
func decode[T schemas.CanonicalEntity](m bus.Message) (key string, version int64, ent *T, deleted bool, err error) {
	env, err := schemas.UnmarshalEntityEnvelope[T](m.Value)
	if err != nil {
		return "", 0, nil, false, err
	}
	switch env.Op {
	case schemas.OpDelete:
		deleted = true
		if env.Before != nil {
			meta := any(env.Before).(schemas.Entity).Common()
			key, version = meta.Key, meta.Version
		}
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
		ent = env.After
		meta := any(env.After).(schemas.Entity).Common()
		key, version = meta.Key, meta.Version
	default:
		return "", 0, nil, false, fmt.Errorf("op %q has no meaning on a canonical topic", env.Op)
	}
	if key == "" {
		if k, ok := env.Key["key"].(string); ok {
			key = k
		}
	}
	if key == "" {
		return "", 0, nil, false, errors.New("no entity key (field key of the document or of the envelope key)")
	}
	if version <= 0 {
		return "", 0, nil, false, fmt.Errorf("entity %s has no version (field version must be > 0)", key)
	}
	return key, version, ent, deleted, nil
}

// dead sends a change the monitor cannot read to <prefix>.dlq.transform and goes on.
func (r *run) dead(m bus.Message, why error) error {
	w := r.w
	w.m.dlq.WithLabelValues(m.Topic).Inc()
	reason := "monitor: " + why.Error()
	payload := m.Value
	key := string(m.Key)
	if w.o.Protect != nil {
		reason = w.o.Protect.ScrubText(reason)
		payload = []byte(w.o.Protect.ScrubText(string(m.Value)))
		key = w.o.Protect.ScrubText(key)
	}
	rec := schemas.DLQRecord{Stage: "transform", Reason: reason, Source: m.Topic, Position: fmt.Sprintf("%s/%d@%d", m.Topic, m.Partition, m.Offset),
		Key: key, Payload: payload, Partition: m.Partition, Offset: m.Offset, TsMs: w.o.Now().UnixMilli()}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("monitor: encode dead letter: %w", err)
	}
	w.log.Warn("canonical change sent to the dead-letter queue", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "reason", reason)
	r.out = append(r.out, bus.Message{Topic: schemas.DLQTopic(w.o.TopicPrefix, "transform"), Key: []byte(key), Value: b})
	return nil
}
