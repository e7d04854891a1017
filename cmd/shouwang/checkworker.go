package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/consistency"
	"github.com/shouwang/shouwang/internal/metrics"
)

// checkMetrics are the totals checks' gauges and counters.
type checkMetrics struct {
	mismatched *prometheus.GaugeVec
	keys       *prometheus.GaugeVec
	region     *prometheus.GaugeVec
	runs       *prometheus.CounterVec
	last       *prometheus.GaugeVec
	repaired   *prometheus.CounterVec
}

func newCheckMetrics(reg prometheus.Registerer) *checkMetrics {
	return &checkMetrics{
		mismatched: metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_check_mismatched_regions",
			Help: "Regions whose totals differ between the checker's source and sink in the last completed check (after re-verification), by checker and level."}, []string{"checker", "level"})),
		keys: metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_check_differing_keys",
			Help: "Keys that differ between source and sink in the last completed check, by checker and indicator."}, []string{"checker", "indicator"})),
		region: metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_check_region_differing_keys",
			Help: "Differing keys of each mismatching region in the last completed check (regions that match are absent), by checker, indicator and region."}, []string{"checker", "indicator", "region"})),
		runs: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_check_runs_total",
			Help: "Totals checks run, by checker and result: match, mismatch or error (a database could not be read)."}, []string{"checker", "result"})),
		last: metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_check_last_run_timestamp_seconds",
			Help: "When the checker's last check completed, by checker and result."}, []string{"checker", "result"})),
		repaired: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_check_repair_keys_total",
			Help: "Differing keys a checker asked its source to re-snapshot, by checker and outcome: repaired (matching on re-verification) or unrepaired."}, []string{"checker", "outcome"})),
	}
}

// publish sets the gauges from a report.
func (m *checkMetrics) publish(rep *consistency.Report) {
	m.mismatched.WithLabelValues(rep.Checker, rep.Level).Set(float64(rep.MismatchedRegions()))
	m.region.DeletePartialMatch(prometheus.Labels{"checker": rep.Checker})
	for _, ind := range rep.Indicators {
		n := 0
		for _, g := range ind.Regions {
			n += len(g.Diffs)
			if g.Mismatch {
				m.region.WithLabelValues(rep.Checker, ind.Name, g.Code).Set(float64(len(g.Diffs)))
			}
		}
		m.keys.WithLabelValues(rep.Checker, ind.Name).Set(float64(n))
	}
}

// checkerJob runs one configured checker on its schedule.
type checkerJob struct {
	w     *worker
	cfg   config.Checker
	sched cron.Schedule
	m     *checkMetrics
	// RepairWait bounds how long a repair waits for re-snapshotted keys to match
	// (default 2m); Settle is the check's settle interval (default 30s).
	repairWait, settle time.Duration
}

// checkJobs are the configured checkers, with their schedules parsed.
func (w *worker) checkJobs() ([]*checkerJob, error) {
	m := newCheckMetrics(w.reg)
	var out []*checkerJob
	for _, c := range w.cfg.Checkers {
		s, err := parseSchedule(c.Schedule)
		if err != nil {
			return nil, fmt.Errorf("checkers %s: schedule: %v", c.Name, err)
		}
		out = append(out, &checkerJob{w: w, cfg: c, sched: s, m: m, repairWait: 2 * time.Minute, settle: 30 * time.Second})
	}
	return out, nil
}

// parseSchedule reads a Go duration (every so long) or a 5-field cron expression.
func parseSchedule(s string) (cron.Schedule, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return cron.Every(d), nil
	}
	return cron.ParseStandard(s)
}

// runChecks runs every checker on its schedule until ctx ends.
func (w *worker) runChecks(ctx context.Context, jobs []*checkerJob) error {
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next := j.sched.Next(time.Now())
				w.log.Info("check: next totals check", "checker", j.cfg.Name, "at", next)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				j.once(ctx)
			}
		}()
	}
	wg.Wait()
	return nil
}

// once runs the check, publishes and saves its report, and repairs when configured.
// It returns the last report (nil on error).
func (j *checkerJob) once(ctx context.Context) *consistency.Report {
	log := j.w.log.With("checker", j.cfg.Name)
	rc, err := newCheckRun(j.w.cfg, j.cfg, "")
	if err != nil {
		j.failed(err)
		return nil
	}
	defer rc.close()
	rc.opts.Settle = j.settle
	rc.opts.Progress = func(format string, args ...any) { log.Info("check: " + fmt.Sprintf(format, args...)) }
	rep, err := rc.run(ctx)
	if err != nil {
		j.failed(err)
		return nil
	}
	if !rep.Match && j.cfg.OnMismatch == "resnapshot" {
		if fixed, err := j.repair(ctx, rc, rep); err != nil {
			log.Error("check: repair failed; the mismatch stands", "err", err)
		} else {
			rep = fixed
		}
	}
	result := "match"
	if !rep.Match {
		result = "mismatch"
	}
	j.m.runs.WithLabelValues(j.cfg.Name, result).Inc()
	j.m.last.WithLabelValues(j.cfg.Name, result).SetToCurrentTime()
	j.m.publish(rep)
	if err := j.save(rep); err != nil {
		log.Error("check: the report could not be saved", "err", err)
	}
	if rep.Match {
		log.Info("check: "+rep.String(), "result", result)
	} else {
		log.Warn("check: "+rep.String()+"; shouwang check totals --checker "+j.cfg.Name+" lists the keys", "result", result,
			"report", j.reportPath())
	}
	return rep
}

func (j *checkerJob) failed(err error) {
	j.m.runs.WithLabelValues(j.cfg.Name, "error").Inc()
	j.m.last.WithLabelValues(j.cfg.Name, "error").SetToCurrentTime()
	j.w.log.Error("check: totals check failed; it runs again at its next time", "checker", j.cfg.Name, "err", err)
}

func (j *checkerJob) reportPath() string {
	return filepath.Join(j.w.cfg.ResolvePath(j.w.cfg.State.Dir), "check-"+j.cfg.Name+".json")
}

// save writes the report to <state.dir>/check-<name>.json (atomically).
func (j *checkerJob) save(rep *consistency.Report) error {
	p := j.reportPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".check-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}

// repair is the closed loop: it asks the checker's source to re-snapshot the
// differing keys (the capture worker's signal, as `shouwang snapshot` sends it), then
// checks those keys again until they match or repairWait passes. A key the source
// does not have at all (a household or person only the sink holds) cannot be re-read:
// it stays in the report.
func (j *checkerJob) repair(ctx context.Context, rc *checkRun, rep *consistency.Report) (*consistency.Report, error) {
	k := j.w.cfg.Kafka
	inds := map[string]consistency.Indicator{}
	for _, ind := range rc.opts.Indicators {
		inds[ind.Name] = ind
	}
	// every differing key, by the indicator naming its whole entity (households,
	// persons): the source table and key column the re-snapshot reads
	byEntity := map[string][]string{}
	for ind, diffs := range rep.DifferingKeys() {
		whole := "households"
		if inds[ind].Entity() == "person" {
			whole = "persons"
		}
		for _, d := range diffs {
			byEntity[whole] = append(byEntity[whole], d.Key)
		}
	}
	asked := 0
	var sigs []SnapshotSignal
	absent := map[string]bool{} // keys the source does not have
	for whole, keys := range byEntity {
		slices.Sort(keys)
		keys = slices.Compact(keys)
		have, err := rc.opts.Source.Members(ctx, whole, keys)
		if err != nil {
			return nil, err
		}
		var present []string
		for _, key := range keys {
			if _, ok := have[key]; ok {
				present = append(present, key)
			} else {
				absent[key] = true
			}
		}
		for lo := 0; lo < len(present); lo += 500 {
			chunk := present[lo:min(lo+500, len(present))]
			table, where, ok := rc.opts.Source.ResnapshotWhere(whole, chunk)
			if !ok {
				continue
			}
			sigs = append(sigs, SnapshotSignal{Type: signalSnapshot, Source: j.cfg.Source, Table: table, Where: where, By: "checker " + j.cfg.Name})
			asked += len(chunk)
		}
	}
	if len(sigs) > 0 {
		if err := sendSnapshotSignal(ctx, j.w.busOpts, k.TopicPrefix, k.ReplicationFactor, sigs...); err != nil {
			return nil, fmt.Errorf("ask source %s to re-snapshot the differing keys: %w", j.cfg.Source, err)
		}
	}
	before := rep.DiffCount()
	j.w.log.Info("check: re-snapshot requested for the differing keys", "checker", j.cfg.Name, "keys", asked, "not_in_source", len(absent), "differing", before)
	deadline := time.Now().Add(j.repairWait)
	cur := rep
	for asked > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
		next, err := consistency.Recheck(ctx, rc.opts, rep)
		if err != nil {
			return nil, err
		}
		cur = next
		waiting := 0
		for _, diffs := range cur.DifferingKeys() {
			for _, d := range diffs {
				if !absent[d.Key] {
					waiting++
				}
			}
		}
		if waiting == 0 || time.Now().After(deadline) {
			break
		}
	}
	after := cur.DiffCount()
	j.m.repaired.WithLabelValues(j.cfg.Name, "repaired").Add(float64(before - after))
	j.m.repaired.WithLabelValues(j.cfg.Name, "unrepaired").Add(float64(after))
	j.w.log.Info("check: repair re-verified", "checker", j.cfg.Name, "repaired", before-after, "still_differing", after)
	return cur, nil
}
