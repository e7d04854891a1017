// Package watchdog notices what does not arrive: the weekly national push missing or
// late, a department's periodic delivery missing, and a source that has gone silent
// (no changes and no heartbeats).
//
// A Watchdog holds rules. The capture worker reports arrivals (a change of a table
// acknowledged by Kafka, a file delivery committed) and activity (any batch, heartbeats
// included) as they happen; Evaluate compares them with each rule's expectation and
// publishes shouwang_watchdog_overdue and shouwang_watchdog_last_seen_timestamp_seconds,
// which the alerts ShouwangNationalPushMissing, ShouwangDepartmentDeliveryMissing and
// ShouwangSourceStalled watch.
//
// Expectations:
//
//   - push and delivery rules have a due schedule. A duration ("168h") is the longest
//     gap between arrivals: overdue once now − last arrival > due + grace. A cron
//     expression ("0 12 * * 1": Mondays 12:00) is a deadline: at each deadline D (plus
//     grace) some arrival must have happened after the deadline before it; if the last
//     arrival is at or before that previous deadline, the rule is overdue until the
//     next arrival.
//   - stalled rules have max_silence: overdue once nothing at all (no change, no
//     heartbeat) came from the source for longer than that.
//
// The time of the last arrival survives restarts: it is kept per rule in a small JSON
// file in the state directory, written at most every PersistEvery and on Close. A rule
// that has never seen an arrival counts from the moment it was first started (kept in
// the same file), so a new deployment gets one period before it can report a delivery
// missing. Activity is not persisted: after a restart a source has max_silence to show
// life.
package watchdog

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/shouwang/shouwang/internal/metrics"
)

// Kinds of rules.
const (
	KindPush     = "push"     // the weekly national push
	KindDelivery = "delivery" // a department's periodic delivery (tables or files)
	KindStalled  = "stalled"  // a source with no changes and no heartbeats
)

// Rule is one expectation.
type Rule struct {
	// Name identifies the rule in metrics, logs and its state file; [a-z0-9_].
	Name string
	// Kind is KindPush, KindDelivery or KindStalled.
	Kind string
	// Source is the configured source name whose arrivals count.
	Source string
	// Tables (push, delivery) restrict arrivals to these tables or datasets; empty: any.
	Tables []string
	// Due (push, delivery) is a Go duration (longest gap) or a 5-field cron expression
	// (deadlines).
	Due string
	// Grace (push, delivery) is added to every deadline or gap.
	Grace time.Duration
	// MaxSilence (stalled) is the longest time without any batch from the source.
	MaxSilence time.Duration
}

// Options configures a Watchdog.
type Options struct {
	Rules []Rule
	// StateDir keeps one <rule>.json per rule ("" keeps nothing: tests, the demo).
	StateDir string
	// Registerer receives the gauges (nil: not exported).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// PersistEvery bounds how often a rule's state file is rewritten (default 1m).
	PersistEvery time.Duration
}

// Status is one rule's state at an evaluation.
type Status struct {
	Rule    Rule
	Overdue bool
	// LastSeen is the last arrival (push, delivery) or activity (stalled); zero: never.
	LastSeen time.Time
	// Deadline is when the rule becomes overdue if nothing arrives (zero when it
	// already is, or cannot be computed).
	Deadline time.Time
	// Reason says, when Overdue, what is missing, in one line.
	Reason string
}

type ruleState struct {
	rule     Rule
	every    time.Duration // Due as a duration (0: cron)
	sched    cron.Schedule // Due as a cron expression
	tables   map[string]bool
	last     time.Time // last arrival or activity
	since    time.Time // first start
	saved    time.Time // when the state file was last written
	dirty    bool
	overdue  bool
	reported bool // overdue already logged
}

type persisted struct {
	LastSeen time.Time `json:"last_seen"`
	Since    time.Time `json:"since"`
}

// Watchdog tracks the rules. It is safe for concurrent use.
type Watchdog struct {
	o        Options
	log      *slog.Logger
	mu       sync.Mutex
	rules    []*ruleState
	bySource map[string][]*ruleState
	standby  map[string]bool // sources another process captures (capture.standby)
	overdue  *prometheus.GaugeVec
	lastSeen *prometheus.GaugeVec
}

// ParseDue parses a due schedule: a duration of at least one minute, or a 5-field cron
// expression.
func ParseDue(s string) (time.Duration, cron.Schedule, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < time.Minute {
			return 0, nil, fmt.Errorf("due %s is shorter than 1m", s)
		}
		return d, nil, nil
	}
	sc, err := cron.ParseStandard(s)
	if err != nil {
		return 0, nil, fmt.Errorf("due %q is neither a duration (168h) nor a 5-field cron expression: %w", s, err)
	}
	return 0, sc, nil
}

// New validates the rules and loads their state files.
func New(o Options) (*Watchdog, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PersistEvery <= 0 {
		o.PersistEvery = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watchdog{o: o, log: o.Logger, bySource: map[string][]*ruleState{}, standby: map[string]bool{}}
	now := o.Now()
	var errs []error
	seen := map[string]bool{}
	for _, r := range o.Rules {
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("watchdog %s: defined twice", r.Name))
			continue
		}
		seen[r.Name] = true
		rs := &ruleState{rule: r, since: now}
		switch r.Kind {
		case KindPush, KindDelivery:
			var err error
			if rs.every, rs.sched, err = ParseDue(r.Due); err != nil {
				errs = append(errs, fmt.Errorf("watchdog %s: %w", r.Name, err))
				continue
			}
			if len(r.Tables) > 0 {
				rs.tables = map[string]bool{}
				for _, t := range r.Tables {
					rs.tables[t] = true
				}
			}
		case KindStalled:
			if r.MaxSilence <= 0 {
				errs = append(errs, fmt.Errorf("watchdog %s: max_silence is required for kind stalled", r.Name))
				continue
			}
			rs.last = now // a source gets max_silence after start to show life
		default:
			errs = append(errs, fmt.Errorf("watchdog %s: kind %q is not push, delivery or stalled", r.Name, r.Kind))
			continue
		}
		if r.Kind != KindStalled {
			if err := w.load(rs); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		w.rules = append(w.rules, rs)
		w.bySource[r.Source] = append(w.bySource[r.Source], rs)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	labels := []string{"watchdog", "kind", "source"}
	w.overdue = metrics.Register(o.Registerer, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_watchdog_overdue",
		Help: "1 while a watchdog's expected arrival is missing or late (push: the weekly national push; delivery: a department's periodic delivery; stalled: no changes and no heartbeats from the source)."}, labels))
	w.lastSeen = metrics.Register(o.Registerer, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_watchdog_last_seen_timestamp_seconds",
		Help: "When a watchdog last saw what it watches (an arrival, or for stalled any batch from the source); 0: never."}, labels))
	w.Evaluate()
	return w, nil
}

func (w *Watchdog) path(r Rule) string {
	if w.o.StateDir == "" {
		return ""
	}
	return filepath.Join(w.o.StateDir, r.Name+".json")
}

func (w *Watchdog) load(rs *ruleState) error {
	p := w.path(rs.rule)
	if p == "" {
		return nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		rs.dirty = true // record since now
		return nil
	}
	if err != nil {
		return fmt.Errorf("watchdog %s: read state %s: %w", rs.rule.Name, p, err)
	}
	var st persisted
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("watchdog %s: state file %s is not valid JSON (%v): remove it to start the rule afresh", rs.rule.Name, p, err)
	}
	rs.last, rs.since = st.LastSeen, st.Since
	if rs.since.IsZero() {
		rs.since = w.o.Now()
		rs.dirty = true
	}
	rs.saved = w.o.Now()
	return nil
}

// save writes a rule's state file atomically. Called with w.mu held.
func (w *Watchdog) save(rs *ruleState, now time.Time) error {
	p := w.path(rs.rule)
	if p == "" || rs.rule.Kind == KindStalled {
		rs.dirty = false
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("watchdog %s: %w", rs.rule.Name, err)
	}
	b, _ := json.Marshal(persisted{LastSeen: rs.last, Since: rs.since})
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("watchdog %s: write state: %w", rs.rule.Name, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("watchdog %s: install state: %w", rs.rule.Name, err)
	}
	rs.saved, rs.dirty = now, false
	return nil
}

// Arrived records that table (a table or dataset name) of source received data at t:
// a change acknowledged by Kafka, or a file delivery committed. It also counts as
// activity.
func (w *Watchdog) Arrived(source, table string, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, rs := range w.bySource[source] {
		if rs.rule.Kind != KindStalled && rs.tables != nil && !rs.tables[table] {
			continue
		}
		if t.After(rs.last) {
			rs.last, rs.dirty = t, true
		}
	}
	w.refresh(source, t)
}

// Active records that source delivered a batch at t (changes or heartbeats only).
func (w *Watchdog) Active(source string, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, rs := range w.bySource[source] {
		if rs.rule.Kind == KindStalled && t.After(rs.last) {
			rs.last = t
		}
	}
	w.refresh(source, t)
}

// refresh re-evaluates the source's overdue rules at once (so that a recovery shows
// without waiting for the next tick) and writes due state files. Called with w.mu held.
func (w *Watchdog) refresh(source string, now time.Time) {
	for _, rs := range w.bySource[source] {
		if rs.overdue {
			w.evaluate(rs, now)
		}
		w.saveDue(rs, now)
	}
}

// Standby marks source as captured by another process (capture.standby) or, with
// false, by this one again. A standby source's rules publish not overdue and write no
// state: the active process keeps them. When the source turns active here, its rules
// re-read their state files (the other process wrote them to the shared state.dir)
// and its stalled rules count from now.
func (w *Watchdog) Standby(source string, standby bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.standby[source] == standby {
		return
	}
	w.standby[source] = standby
	if standby {
		return
	}
	now := w.o.Now()
	for _, rs := range w.bySource[source] {
		if rs.rule.Kind == KindStalled {
			rs.last = now
			continue
		}
		last := rs.last
		if err := w.load(rs); err != nil {
			w.log.Warn("watchdog: state not re-read on taking over (the rule keeps what it had)", "error", err)
		}
		if last.After(rs.last) {
			rs.last, rs.dirty = last, true
		}
	}
}

// saveDue writes rs's state file when it changed and was last written at least
// PersistEvery ago. Called with w.mu held.
func (w *Watchdog) saveDue(rs *ruleState, now time.Time) {
	if w.standby[rs.rule.Source] {
		return
	}
	if rs.dirty && now.Sub(rs.saved) >= w.o.PersistEvery {
		if err := w.save(rs, now); err != nil {
			w.log.Warn("watchdog: state not saved (retried later)", "error", err)
		}
	}
}

// Evaluate checks every rule now, publishes the gauges and returns the statuses sorted
// by rule name.
func (w *Watchdog) Evaluate() []Status {
	now := w.o.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Status, 0, len(w.rules))
	for _, rs := range w.rules {
		out = append(out, w.evaluate(rs, now))
		w.saveDue(rs, now)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rule.Name < out[j].Rule.Name })
	return out
}

// evaluate computes one rule's status and publishes it. Called with w.mu held.
func (w *Watchdog) evaluate(rs *ruleState, now time.Time) Status {
	r := rs.rule
	st := Status{Rule: r, LastSeen: rs.last}
	switch {
	case w.standby[r.Source]:
		// another process captures the source and evaluates the rule
	case r.Kind == KindStalled:
		st.Deadline = rs.last.Add(r.MaxSilence)
		if now.After(st.Deadline) {
			st.Overdue = true
			st.Reason = fmt.Sprintf("source %s sent no changes and no heartbeats since %s (max_silence %s)", r.Source, rs.last.Format(time.RFC3339), r.MaxSilence)
		}
	case rs.every > 0:
		ref := rs.last
		if ref.Before(rs.since) {
			ref = rs.since
		}
		st.Deadline = ref.Add(rs.every + r.Grace)
		if now.After(st.Deadline) {
			st.Overdue = true
			st.Reason = fmt.Sprintf("%s of source %s: nothing arrived since %s, due every %s (grace %s)", r.Kind, r.Source, seen(rs.last), rs.every, r.Grace)
		}
	default:
		d, p, ok := lastTwo(rs.sched, now.Add(-r.Grace))
		if ok && !rs.last.After(p) && !rs.since.After(p) {
			st.Overdue = true
			st.Reason = fmt.Sprintf("%s of source %s: nothing arrived between %s and the deadline %s (due %q, grace %s); last arrival %s",
				r.Kind, r.Source, p.Format(time.RFC3339), d.Format(time.RFC3339), r.Due, r.Grace, seen(rs.last))
		} else {
			// The next deadline that can make the rule overdue is the next one after
			// the last arrival's following deadline.
			from := rs.last
			if from.Before(rs.since) {
				from = rs.since
			}
			st.Deadline = rs.sched.Next(rs.sched.Next(from)).Add(r.Grace)
		}
	}
	if st.Overdue {
		st.Deadline = time.Time{}
	}
	labels := []string{r.Name, r.Kind, r.Source}
	w.overdue.WithLabelValues(labels...).Set(b2f(st.Overdue))
	if rs.last.IsZero() {
		w.lastSeen.WithLabelValues(labels...).Set(0)
	} else {
		w.lastSeen.WithLabelValues(labels...).Set(float64(rs.last.UnixMilli()) / 1000)
	}
	switch {
	case st.Overdue && !rs.reported:
		w.log.Warn("watchdog: overdue", "watchdog", r.Name, "kind", r.Kind, "source", r.Source, "reason", st.Reason)
		rs.reported = true
	case !st.Overdue && rs.reported:
		w.log.Info("watchdog: arrived again", "watchdog", r.Name, "kind", r.Kind, "source", r.Source, "last_seen", rs.last)
		rs.reported = false
	}
	rs.overdue = st.Overdue
	return st
}

// lastTwo returns the latest time d ≤ ref the schedule fires and the firing p before
// it; ok is false when none is found within a year before ref.
func lastTwo(s cron.Schedule, ref time.Time) (d, p time.Time, ok bool) {
	for _, back := range []time.Duration{time.Hour, 25 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		var prev, last time.Time
		n := 0
		for t := s.Next(ref.Add(-back)); !t.IsZero() && !t.After(ref); t = s.Next(t) {
			prev, last = last, t
			n++
		}
		if n >= 2 {
			return last, prev, true
		}
	}
	return time.Time{}, time.Time{}, false
}

func seen(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format(time.RFC3339)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Close writes every rule's state that changed since it was last written.
func (w *Watchdog) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	now := w.o.Now()
	for _, rs := range w.rules {
		if rs.dirty {
			errs = append(errs, w.save(rs, now))
		}
	}
	return errors.Join(errs...)
}
