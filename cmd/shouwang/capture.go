package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/capture/filedrop"
	"github.com/shouwang/shouwang/capture/mysqlbinlog"
	"github.com/shouwang/shouwang/capture/pglogical"
	"github.com/shouwang/shouwang/capture/poll"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/schemas"
)

// Snapshotter is implemented by sources that can re-read a table, or the rows of it
// matching a condition, on demand (`shouwang snapshot`, the consistency checker).
type Snapshotter interface {
	RequestSnapshot(table, where string) error
}

// SnapshotSignal is the message `shouwang snapshot` and the consistency checker put on
// the signal topic (<prefix>.signal); capture workers act on the ones for their sources.
type SnapshotSignal struct {
	Type   string `json:"type"` // signalSnapshot or signalReleaseHeld
	Source string `json:"source"`
	Table  string `json:"table"`
	Where  string `json:"where,omitempty"`
	// By says who asked (operator, checker name), for the log.
	By string `json:"by,omitempty"`
	// Reason is the operator's note on a release (e.g. "confirmed with 医保").
	Reason string `json:"reason,omitempty"`
	TsMs   int64  `json:"ts_ms"`
}

// The signal types.
const (
	signalSnapshot    = "snapshot"
	signalReleaseHeld = "release_held"
)

// HeldReleaser is a source whose mass-delete breaker can hold deletes (the binlog
// reload collapse); `shouwang held release` reaches it through the signal topic.
type HeldReleaser interface {
	ReleaseHeldDeletes(table string) error
}

// connector is one capture loop: a factory for fresh Source instances (a failed
// source is rebuilt from scratch and resumes from the saved position).
type connector struct {
	name    string // runner name: position-store key and metric label
	source  string // configured source name (signals address it)
	dataset string // filedrop: the one dataset this connector reads
	build   func() (capture.Source, error)

	mu      sync.Mutex
	current capture.Source
}

// connectors turns the configured sources into capture loops.
func (w *worker) connectors() ([]*connector, error) {
	var out []*connector
	var errs []error
	var fdMetrics *filedrop.Metrics // one set for every filedrop dataset of the process
	for i := range w.cfg.Sources {
		s := &w.cfg.Sources[i]
		path := fmt.Sprintf("sources[%d]", i)
		switch s.Kind {
		case config.KindMySQLBinlog:
			opts, err := w.mysqlOptions(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.mysql: %w", path, err))
				continue
			}
			if _, err := mysqlbinlog.New(opts); err != nil { // validate now, not at first start
				errs = append(errs, fmt.Errorf("%s.mysql: %w", path, err))
				continue
			}
			out = append(out, &connector{name: s.Name, source: s.Name, build: func() (capture.Source, error) { return mysqlbinlog.New(opts) }})
		case config.KindPGLogical:
			opts := w.pgOptions(s)
			if _, err := pglogical.New(opts); err != nil {
				errs = append(errs, fmt.Errorf("%s.postgres: %w", path, err))
				continue
			}
			setup := s.Postgres.CreatePublication || s.Postgres.CreateSlot
			out = append(out, &connector{name: s.Name, source: s.Name, build: func() (capture.Source, error) {
				src, err := pglogical.New(opts)
				if err != nil || !setup {
					return src, err
				}
				// Creating the publication (and, outside initial snapshots, the slot)
				// is configured explicitly; it is an idempotent, logged operation.
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				did, err := src.Setup(ctx)
				for _, line := range did {
					w.log.Info("pglogical setup", "source", s.Name, "action", line)
				}
				return src, err
			}})
		case config.KindPoll:
			opts := w.pollOptions(s)
			if _, err := poll.New(opts); err != nil {
				errs = append(errs, fmt.Errorf("%s.poll: %w", path, err))
				continue
			}
			out = append(out, &connector{name: s.Name, source: s.Name, build: func() (capture.Source, error) { return poll.New(opts) }})
		case config.KindFileDrop:
			if fdMetrics == nil {
				var err error
				if fdMetrics, err = filedrop.NewMetrics(w.reg); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			for j, d := range s.FileDrop.Datasets {
				c := filedrop.Config{System: s.Name, TopicPrefix: w.cfg.Kafka.TopicPrefix, Dataset: w.datasetOptions(s.Name, d),
					Logger: w.log, Metrics: fdMetrics, Scrub: w.pii.ScrubText,
					ReleaseCommand: heldReleaseCommand(w.cfg.File(), s.Name, d.Name),
					OnCommitted: func(dataset, _ string) {
						if wd := w.watch; wd != nil {
							wd.Arrived(s.Name, dataset, time.Now())
						}
					}}
				if err := c.Dataset.Validate(); err != nil {
					errs = append(errs, fmt.Errorf("%s.filedrop.datasets[%d]: %w", path, j, err))
					continue
				}
				out = append(out, &connector{name: s.Name + "_" + d.Name, source: s.Name, dataset: d.Name,
					build: func() (capture.Source, error) { return filedrop.New(c) }})
			}
		default:
			errs = append(errs, fmt.Errorf("%s.kind: unknown source kind %q", path, s.Kind))
		}
	}
	return out, errors.Join(errs...)
}

func (w *worker) mysqlOptions(s *config.Source) (mysqlbinlog.Options, error) {
	m := s.MySQL
	dsn, err := mysql.ParseDSN(m.DSN)
	if err != nil {
		return mysqlbinlog.Options{}, fmt.Errorf("dsn (%s): %w", config.MaskDSN(m.DSN), err)
	}
	host, portStr, ok := cutLast(dsn.Addr, ":")
	port, perr := strconv.Atoi(portStr)
	if !ok || perr != nil {
		return mysqlbinlog.Options{}, fmt.Errorf("dsn (%s): address %q is not host:port", config.MaskDSN(m.DSN), dsn.Addr)
	}
	o := mysqlbinlog.Options{
		Name: s.Name, TopicPrefix: w.cfg.Kafka.TopicPrefix,
		Host: host, Port: port, User: dsn.User, Password: dsn.Passwd,
		Flavor: m.Flavor, ServerID: m.ServerID, UseGTID: m.GTID, Tables: m.Tables,
		SnapshotMode: mysqlbinlog.SnapshotMode(m.Snapshot.Mode), ChunkSize: m.Snapshot.ChunkSize, Parallel: m.Snapshot.Parallel,
		HeartbeatInterval: m.HeartbeatInterval.D(), MaxRowBytes: m.MaxRowBytes,
		StateDir: filepath.Join(w.cfg.State.Dir, "mysqlbinlog", s.Name),
		MassDelete: mysqlbinlog.MassDeleteOptions{MaxShare: m.Reload.MassDelete.MaxTableShare,
			MaxCountyShare: m.Reload.MassDelete.MaxCountyShare},
		Registerer: w.reg, Logger: w.log, OnConnection: w.connectionState(s.Name),
	}
	if m.Reload.Detect != "" {
		detect := m.Reload.Detect
		if detect == "quiet_period" {
			detect = mysqlbinlog.DetectQuiet
		}
		o.Reload = mysqlbinlog.ReloadOptions{Tables: m.Tables, Detect: detect,
			PushLogTable: m.Reload.PushLogTable, QuietPeriod: m.Reload.QuietPeriod.D(), MaxWindow: m.Reload.MaxWindow.D()}
	}
	return o, nil
}

func (w *worker) pgOptions(s *config.Source) pglogical.Options {
	p := s.Postgres
	return pglogical.Options{
		Name: s.Name, TopicPrefix: w.cfg.Kafka.TopicPrefix, ConnString: p.DSN,
		Slot: p.Slot, Publication: p.Publication, Tables: p.Tables,
		CreateSlot: p.CreateSlot, CreatePublication: p.CreatePublication,
		SnapshotMode: pglogical.SnapshotMode(p.Snapshot.Mode), ChunkSize: p.Snapshot.ChunkSize,
		HeartbeatInterval: p.HeartbeatInterval.D(), StatusInterval: p.StatusInterval.D(),
		MaxRowBytes: p.MaxRowBytes,
		Registerer:  w.reg, Logger: w.log, OnConnection: w.connectionState(s.Name),
	}
}

func (w *worker) pollOptions(s *config.Source) poll.Options {
	p := s.Poll
	o := poll.Options{Name: s.Name, TopicPrefix: w.cfg.Kafka.TopicPrefix, Driver: poll.Driver(p.Driver),
		DSN: p.DSN, StateDSN: p.StateDSN, MaxRowBytes: p.MaxRowBytes, Registerer: w.reg, Logger: w.log}
	for _, q := range p.Queries {
		qo := poll.QueryOptions{Name: q.Name, Relation: q.TableOrView, Key: q.Key, Mode: poll.Mode(q.Mode),
			Column: q.Column, Interval: q.Interval.D(), BatchSize: q.BatchSize,
			DeleteDetection: poll.DeleteDetection{Enabled: q.DeleteDetection.Enabled,
				Interval: q.DeleteDetection.Interval.D(), MaxDeleteShare: q.DeleteDetection.MaxDeleteShare}}
		if q.SafetyLag != nil {
			qo.SafetyLag = q.SafetyLag.D()
			if qo.SafetyLag == 0 {
				qo.SafetyLag = -1 // "0s" in the file means no lag; 0 in poll.Options means the default
			}
		}
		o.Queries = append(o.Queries, qo)
	}
	return o
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func (w *worker) datasetOptions(source string, d config.Dataset) filedrop.DatasetOptions {
	o := filedrop.DatasetOptions{
		Name: d.Name, Department: d.Department,
		Inbox: w.cfg.ResolvePath(d.Inbox), Archive: w.cfg.ResolvePath(d.Archive), Rejected: w.cfg.ResolvePath(d.Rejected),
		StateDir: filepath.Join(w.cfg.State.Dir, "filedrop", source, d.Name),
		Format:   filedrop.Format(d.Format), Encoding: filedrop.Encoding(d.Encoding),
		Delivery: filedrop.DeliveryKind(d.Delivery), Key: d.Key, Columns: d.Columns,
		SettleAge: d.Settle.MinAge.D(), RequireDoneMarker: d.Settle.RequireDoneMarker,
		MaxDeleteShare: d.MassDelete.MaxShare,
		Held:           w.cfg.ResolvePath(d.Held), Sheet: d.Sheet,
		Optional: d.Optional, Ignore: d.Ignore, OpColumn: d.OpColumn,
		MaxBadRowShare: d.MaxBadRowShare,
		MaxFieldBytes:  d.Limits.MaxFieldBytes, MaxRowBytes: d.Limits.MaxRowBytes,
		SummaryLabels: d.SummaryLabels,
	}
	if len(d.Types) > 0 {
		o.Types = make(map[string]filedrop.ColumnType, len(d.Types))
		for f, t := range d.Types {
			o.Types[f] = filedrop.ColumnType(t)
		}
	}
	if o.Encoding == "gbk" { // GB18030 is a superset of GBK
		o.Encoding = filedrop.EncodingGB18030
	}
	if o.Format == "auto" {
		o.Format = filedrop.FormatAuto
	}
	if o.Encoding == "auto" {
		o.Encoding = filedrop.EncodingAuto
	}
	if r := []rune(d.Delimiter); len(r) == 1 {
		o.Delimiter = r[0]
	} else if d.Delimiter == `\t` || d.Delimiter == "tab" {
		o.Delimiter = '\t'
	}
	return o
}

// connectionState is the OnConnection hook of a streaming source: while the source
// rides out an outage by reconnecting itself, its connector is not ready.
func (w *worker) connectionState(connector string) func(error) {
	return func(err error) {
		if err != nil {
			w.server.SetReady("capture/"+connector, false, "reconnecting: "+err.Error())
		} else {
			w.server.SetReady("capture/"+connector, true, "")
		}
	}
}

// runCapture runs every connector until ctx is done. A connector that fails is rebuilt
// and restarted with exponential backoff (it resumes from its saved position); the
// failure shows on /readyz and in the log. A source that has not connected once within
// its startup_grace turns /healthz unhealthy and, with exit_on_startup_failure, stops
// every connector and makes runCapture return a *startupError. onBatch, when set, sees
// every acknowledged batch (progress).
func (w *worker) runCapture(ctx context.Context, conns []*connector, onBatch func(conn string, n int)) error {
	if err := w.ensureCaptureTopics(ctx); err != nil {
		return err
	}
	if err := w.startWatchdogs(conns); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	if w.watch != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.runWatchdogs(ctx)
		}()
	}
	if w.cfg.Capture.Standby {
		w.captureActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_capture_active",
			Help: "1 while this process holds the source's capture lease and captures it, 0 while it stands by (capture.standby)."}, []string{"source"})
		if err := w.reg.Register(w.captureActive); err != nil {
			return err
		}
		bySource := map[string][]*connector{}
		var order []string
		for _, c := range conns {
			if bySource[c.source] == nil {
				order = append(order, c.source)
			}
			bySource[c.source] = append(bySource[c.source], c)
		}
		for _, source := range order {
			wg.Go(func() { w.leaseSource(ctx, source, bySource[source], onBatch, cancel) })
		}
	} else {
		for _, c := range conns {
			wg.Go(func() { w.supervise(ctx, c, onBatch, cancel) })
		}
		wg.Go(func() { w.consumeSignals(ctx, conns) })
	}
	wg.Wait()
	var se *startupError
	if errors.As(context.Cause(ctx), &se) {
		return se
	}
	return nil
}

// leaseSource runs a source's connectors, and consumes its signals, only while this
// process holds the source's capture lease (capture.standby): an exclusive consumer
// group <client_id>-capture-<source> on the one-partition lease topic. The member
// holding the lease keeps it at a rebalance (it joins with a higher priority), so a
// standby that starts never takes over from a running capture; when the active
// process stops or dies, the group gives the lease to a standby within
// kafka.session_timeout, and it resumes from the shared saved positions. A process
// that loses the lease stops its connectors; until it notices, both may produce, which
// only repeats changes (consumers drop them by version).
func (w *worker) leaseSource(ctx context.Context, source string, conns []*connector, onBatch func(string, int), fail context.CancelCauseFunc) {
	group := w.cfg.Kafka.ClientID + "-capture-" + source
	log := w.log.With("source", source, "group", group)
	standby := func() {
		w.captureActive.WithLabelValues(source).Set(0)
		if w.watch != nil {
			w.watch.Standby(source, true)
		}
		for _, c := range conns {
			w.server.SetHealthy("capture/"+c.name, true, "")
			w.server.SetReady("capture/"+c.name, true, "standby: another process holds the capture lease")
		}
	}
	standby()
	// held is true from the lease's first generation here until a generation gives it
	// to another member: it stays true across the rebalance in between (kafka-go joins
	// the next generation only after the partition function returned), so that this
	// member joins with the higher priority and keeps the lease.
	var held atomic.Bool
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = time.Second, time.Minute, 0
	for ctx.Err() == nil {
		pc, err := bus.NewPartitionConsumer(w.busOpts, group, []string{schemas.CaptureLeaseTopic(w.cfg.Kafka.TopicPrefix)},
			func(context.Context, string, int) (int64, bool, error) { return bus.FirstOffset, true, nil })
		if err == nil {
			pc.Exclusive(func() int64 {
				if held.Load() {
					return 1
				}
				return 0
			})
			pc.OnStandby(func() {
				if held.Swap(false) {
					log.Warn("capture lease lost: another process captures the source; this one stands by")
				}
			})
			log.Info("capture standing by for the lease")
			err = pc.Run(ctx, func(pctx context.Context, _ *bus.Partition) error {
				held.Store(true)
				w.captureActive.WithLabelValues(source).Set(1)
				if w.watch != nil {
					w.watch.Standby(source, false)
				}
				log.Warn("capture lease acquired: this process now captures the source")
				var wg sync.WaitGroup
				for _, c := range conns {
					wg.Go(func() { w.supervise(pctx, c, onBatch, fail) })
				}
				wg.Go(func() { w.consumeSourceSignals(pctx, source, conns) })
				stopped := make(chan struct{})
				go func() {
					<-pctx.Done()
					select {
					case <-stopped:
					case <-time.After(10 * time.Second):
						log.Warn("capture still stopping 10s after the lease was revoked: another process may capture the source meanwhile (changes may repeat, none are lost)")
					}
				}()
				wg.Wait()
				close(stopped)
				standby()
				if ctx.Err() == nil {
					log.Info("capture stopped for a rebalance of the lease group (it resumes from its saved position if this process keeps the lease)")
				}
				return nil
			})
			held.Store(false) // out of the group: a new membership starts as a standby
		}
		if ctx.Err() != nil {
			return
		}
		wait := bo.NextBackOff()
		log.Error("capture lease: group failed; joining again", "retry_in", wait.String(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// startupError is a source that did not connect within its start-up grace while
// exit_on_startup_failure was set; `shouwang run` exits with status 3 on it.
type startupError struct {
	connector string
	grace     time.Duration
	attempts  int
	last      error
}

func (e *startupError) Error() string {
	return fmt.Sprintf("capture %s did not connect within its startup_grace of %s (%d attempts); last error: %v",
		e.connector, e.grace, e.attempts, e.last)
}

// supervise keeps one connector running. Until the source has connected once, each
// failed attempt logs one line saying so; once it has, a failure logs one line saying
// where the restart resumes. fail stops the whole capture (exit_on_startup_failure).
func (w *worker) supervise(ctx context.Context, c *connector, onBatch func(string, int), fail context.CancelCauseFunc) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = time.Second, time.Minute, 0
	log := w.log.With("connector", c.name)
	component := "capture/" + c.name
	grace, exitOnFailure := config.DefaultStartupGrace, w.exitOnStartupFailure
	if s, ok := w.cfg.SourceByName(c.source); ok {
		grace, exitOnFailure = s.StartupGrace.D(), exitOnFailure || s.ExitOnStartupFailure
	}
	w.server.SetReady(component, false, "connecting")

	var (
		mu       sync.Mutex
		opened   bool // Source.Open succeeded at least once since the worker started
		attempts int
		lastErr  error
	)
	started := time.Now()
	graceTimer := time.AfterFunc(grace, func() {
		mu.Lock()
		defer mu.Unlock()
		if opened {
			return
		}
		why := fmt.Sprintf("has not connected since the worker started %s ago (%d attempts); last error: %v", grace, attempts, lastErr)
		w.server.SetHealthy(component, false, why)
		if exitOnFailure {
			log.Error("capture source did not connect within its startup_grace; stopping the worker (exit_on_startup_failure)",
				"startup_grace", grace.String(), "attempts", attempts, "err", lastErr)
			fail(&startupError{connector: c.name, grace: grace, attempts: attempts, last: lastErr})
			return
		}
		log.Error("capture source did not connect within its startup_grace; /healthz now reports the worker unhealthy, retrying",
			"startup_grace", grace.String(), "attempts", attempts, "err", lastErr)
	})
	defer graceTimer.Stop()

	for ctx.Err() == nil {
		src, err := c.build()
		if err == nil {
			c.mu.Lock()
			c.current = src
			c.mu.Unlock()
			var r *capture.Runner
			r, err = capture.NewRunner(capture.RunnerOptions{Name: c.name, TopicPrefix: w.cfg.Kafka.TopicPrefix,
				Source: src, Producer: w.producer, Positions: w.positions, Registerer: w.reg, Logger: log,
				Scrub: w.pii.ScrubText,
				OnOpen: func() {
					mu.Lock()
					opened = true
					mu.Unlock()
					graceTimer.Stop()
					w.server.SetHealthy(component, true, "")
					w.server.SetReady(component, true, "")
				},
				OnBatch: func(n int, _ capture.Position) {
					bo.Reset()
					if onBatch != nil {
						onBatch(c.name, n)
					}
				},
				OnCommit: func(cs []capture.Change) { w.observe(c.source, cs) }})
			if err == nil {
				err = r.Run(ctx)
			}
			c.mu.Lock()
			c.current = nil
			c.mu.Unlock()
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("runner stopped without an error")
		}
		wait := bo.NextBackOff()
		retryIn := wait.Round(100 * time.Millisecond).String()
		mu.Lock()
		attempts++
		lastErr = err
		wasOpened, n := opened, attempts
		mu.Unlock()
		if !wasOpened {
			log.Error("capture source has not connected yet; retrying", "attempt", n,
				"since_start", time.Since(started).Round(time.Second).String(), "startup_grace", grace.String(),
				"retry_in", retryIn, "err", err)
			w.server.SetReady(component, false, "not connected yet: "+err.Error())
		} else {
			resume := "from the start, according to the snapshot mode (no saved position yet)"
			if _, found, perr := w.positions.Load(ctx, c.name); perr == nil && found {
				resume = "from its saved position"
			}
			log.Error("capture source failed; restarting "+resume, "retry_in", retryIn, "err", err)
			w.server.SetReady(component, false, err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// consumeSignals acts on snapshot requests addressed to this worker's sources: one
// consumer group per source (<client_id>-signals-<source>), so a worker sees every
// signal of its sources, replicas of it share them, and adding a source to a worker
// never replays other sources' old signals. A signal is committed once handed to the
// source (or found not to be for it).
func (w *worker) consumeSignals(ctx context.Context, conns []*connector) {
	bySource := map[string][]*connector{}
	for _, c := range conns {
		bySource[c.source] = append(bySource[c.source], c)
	}
	var wg sync.WaitGroup
	for source, cs := range bySource {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.consumeSourceSignals(ctx, source, cs)
		}()
	}
	wg.Wait()
}

func (w *worker) consumeSourceSignals(ctx context.Context, source string, conns []*connector) {
	topic := schemas.SignalTopic(w.cfg.Kafka.TopicPrefix)
	cons, err := bus.NewGroupConsumer(w.busOpts, w.cfg.Kafka.ClientID+"-signals-"+source, []string{topic})
	if err != nil {
		w.log.Error("signal consumer", "source", source, "err", err)
		return
	}
	defer cons.Close()
	for {
		m, err := cons.Fetch(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("signal consumer: fetch", "source", source, "err", err)
			}
			return
		}
		var sig SnapshotSignal
		if err := json.Unmarshal(m.Value, &sig); err != nil || (sig.Type != signalSnapshot && sig.Type != signalReleaseHeld) {
			w.log.Error("signal consumer: ignoring a message that is not a snapshot or release signal", "offset", m.Offset, "type", sig.Type, "err", err)
		} else if sig.Source == source {
			// A source between two runs (a restart, a rebalance of the capture lease)
			// gets the signal once it runs again, not a warning and the signal gone.
			if !w.waitRunning(ctx, sig, conns) {
				return // stopped: uncommitted, the signal is handled by the next run
			}
			if sig.Type == signalReleaseHeld {
				w.applyRelease(sig, conns)
			} else {
				w.applySignal(sig, conns)
			}
		}
		if err := cons.Commit(ctx, m); err != nil && ctx.Err() == nil {
			w.log.Error("signal consumer: commit", "err", err)
		}
	}
}

// signalWait is how long a signal waits for its source to run again before it is
// handled anyway (and logged as for a source this worker does not run).
var signalWait = 2 * time.Minute

// waitRunning waits until a connector of the signal's source (and dataset, for a
// snapshot of a filedrop source) runs; false when ctx ended first.
func (w *worker) waitRunning(ctx context.Context, sig SnapshotSignal, conns []*connector) bool {
	running := func() bool {
		for _, c := range conns {
			if c.source != sig.Source || (sig.Type == signalSnapshot && c.dataset != "" && c.dataset != sig.Table) {
				continue
			}
			c.mu.Lock()
			cur := c.current
			c.mu.Unlock()
			if cur != nil {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(signalWait)
	for !running() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
	return ctx.Err() == nil
}

// applyRelease hands a `shouwang held release` request to the source holding the
// deletes of the table.
func (w *worker) applyRelease(sig SnapshotSignal, conns []*connector) {
	for _, c := range conns {
		if c.source != sig.Source {
			continue
		}
		c.mu.Lock()
		src := c.current
		c.mu.Unlock()
		hr, ok := src.(HeldReleaser)
		if !ok {
			continue
		}
		if err := hr.ReleaseHeldDeletes(sig.Table); err != nil {
			w.log.Error("release of held deletes refused", "source", sig.Source, "table", sig.Table, "by", sig.By, "err", err)
		} else {
			w.log.Warn("release of held deletes accepted", "source", sig.Source, "table", sig.Table, "by", sig.By, "reason", sig.Reason)
		}
		return
	}
	w.log.Warn("release signal for a source this worker does not run (or that holds no deletes)", "source", sig.Source, "table", sig.Table)
}

func (w *worker) applySignal(sig SnapshotSignal, conns []*connector) {
	handled := false
	for _, c := range conns {
		if c.source != sig.Source || (c.dataset != "" && c.dataset != sig.Table) {
			continue // another source, or another dataset of a filedrop source
		}
		c.mu.Lock()
		src := c.current
		c.mu.Unlock()
		sn, ok := src.(Snapshotter)
		if !ok {
			continue
		}
		if err := sn.RequestSnapshot(sig.Table, sig.Where); err != nil {
			w.log.Error("snapshot signal refused", "source", sig.Source, "table", sig.Table, "err", err)
		} else {
			w.log.Info("snapshot signal accepted", "source", sig.Source, "table", sig.Table, "where", sig.Where, "by", sig.By)
		}
		handled = true
	}
	if !handled {
		w.log.Warn("snapshot signal for a source this worker does not run (or that cannot snapshot on demand)", "source", sig.Source, "table", sig.Table)
	}
}
