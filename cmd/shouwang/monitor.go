package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/internal/metrics"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/mapping"
	"github.com/shouwang/shouwang/transforms/monitor"
	"github.com/shouwang/shouwang/transforms/rules"
	"github.com/shouwang/shouwang/transforms/warnings"
)

// monitorWorker builds the monitor of the configuration (nil when monitor.enabled is
// false, or no pipelines are configured and it is not enabled explicitly). Rule file
// problems are reported with the file and line.
func (w *worker) monitorWorker() (*monitor.Worker, error) {
	if !w.cfg.MonitorEnabled() {
		return nil, nil
	}
	mc := w.cfg.Monitor
	w.monRulesFP = w.monitorRulesFingerprint()
	re, wr, err := w.monitorRules()
	if err != nil {
		return nil, err
	}
	state := mc.State
	if state == "" {
		state = filepath.Join(w.cfg.State.Dir, "monitor.db")
	} else {
		state = w.cfg.ResolvePath(state)
	}
	return monitor.New(monitor.Options{TopicPrefix: w.cfg.Kafka.TopicPrefix, ClientID: w.cfg.Kafka.ClientID, Bus: w.busOpts,
		Producer: w.producer, Rules: re, Warnings: wr, StatePath: state, Protect: w.pii, Settle: mc.Settle.D(), MaxDelay: mc.MaxDelay.D(),
		AsOf: w.cfg.MonitorAsOf(), NoDailyPass: mc.DailyPass != nil && !*mc.DailyPass, Registerer: w.reg, Logger: w.log})
}

// monitorRules loads the configured supervision rules (or the embedded set) and the
// department warning rules layered over the embedded ones.
func (w *worker) monitorRules() (*rules.Engine, *warnings.Rules, error) {
	mc := w.cfg.Monitor
	var re *rules.Engine
	var err error
	opts := rules.Options{Params: mc.Params}
	if len(mc.Rules) == 0 {
		re, err = rules.DefaultWith(opts)
	} else {
		fsys, names, real := w.overlay(nil, mc.Rules)
		re, err = rules.LoadOptions(fsys, opts, names...)
		err = realNames(err, real)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("monitor.rules: %w", err)
	}
	fsys, names, real := w.overlay(warnings.DefaultFS(), mc.Warnings)
	wr, err := warnings.Load(fsys, append([]string{warnings.DefaultFile}, names...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("monitor.warnings: %w", realNames(err, real))
	}
	return re, wr, nil
}

// monitorRuleFiles are the configured rule files' paths.
func (w *worker) monitorRuleFiles() []string {
	var paths []string
	for _, p := range append(append([]string{}, w.cfg.Monitor.Rules...), w.cfg.Monitor.Warnings...) {
		paths = append(paths, w.cfg.ResolvePath(p))
	}
	return paths
}

// monitorRulesFingerprint changes whenever a configured rule file does.
func (w *worker) monitorRulesFingerprint() string {
	var b strings.Builder
	for _, p := range w.monitorRuleFiles() {
		fp, err := mapping.Fingerprint(p)
		if err != nil {
			fp = err.Error()
		}
		b.WriteString(fp)
	}
	return b.String()
}

// watchMonitorRules polls the configured rule files and hot-reloads the monitor when
// they change. Files that do not load are logged with every problem and counted, and
// the running rule sets stay in force.
func (w *worker) watchMonitorRules(ctx context.Context, every time.Duration) {
	if len(w.monitorRuleFiles()) == 0 || w.mon == nil {
		return
	}
	reloads := metrics.Register(w.reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_monitor_rule_reloads_total",
		Help: "Hot reloads of the monitor's rule files, by result (applied, refused: the running rule sets stay in force)."}, []string{"result"}))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The fingerprint is taken before the files are read (at start-up too), so a
		// change while reading is seen at the next tick.
		fp := w.monitorRulesFingerprint()
		if fp == w.monRulesFP {
			continue
		}
		w.monRulesFP = fp
		re, wr, err := w.monitorRules()
		if err != nil {
			reloads.WithLabelValues("refused").Inc()
			w.log.Error("monitor rules reload refused; the running rule sets stay in force", "err", err)
			continue
		}
		reloads.WithLabelValues("applied").Inc()
		w.log.Info("monitor rules reloaded", "rules", re.Version(), "warnings", wr.Version())
		w.mon.Reload(re, wr)
	}
}

// overlay is a file system holding the configured files (by a name derived from their
// path) over base; names are those names in order and real maps them back to the
// paths for messages.
func (w *worker) overlay(base fs.FS, paths []string) (fs.FS, []string, map[string]string) {
	o := overlayFS{base: base, files: map[string]string{}}
	real := map[string]string{}
	var names []string
	for i, p := range paths {
		abs := w.cfg.ResolvePath(p)
		name := fmt.Sprintf("configured-%d-%s", i, strings.ReplaceAll(filepath.Base(abs), " ", "_"))
		o.files[name] = abs
		real[name] = abs
		names = append(names, name)
	}
	return o, names, real
}

// realNames puts the configured paths back into an error naming overlay files.
func realNames(err error, real map[string]string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for name, path := range real {
		msg = strings.ReplaceAll(msg, name, path)
	}
	return fmt.Errorf("%s", msg)
}

type overlayFS struct {
	base  fs.FS
	files map[string]string
}

func (o overlayFS) Open(name string) (fs.File, error) {
	if p, ok := o.files[name]; ok {
		return os.Open(p)
	}
	if o.base == nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return o.base.Open(name)
}

// monitorReadyTimeout bounds how long the demo waits for the monitor to settle.
const monitorReadyTimeout = 10 * time.Minute

// waitMonitor waits until the monitor has applied every canonical change on its input
// topics and evaluated every changed household, then summarises the issues, warnings
// and discrepancies it produced, next to the generator's ground truth.
func (d *demo) waitMonitor(ctx context.Context) error {
	mon := d.w.mon
	if mon == nil {
		return fmt.Errorf("the demo configuration does not run the monitor (monitor.enabled)")
	}
	ins, _ := mon.Topics()
	var werr error
	err := d.waitFor(ctx, "monitor", monitorReadyTimeout, func() (bool, string) {
		var total int64
		for _, t := range ins {
			n, err := bus.TopicSize(ctx, d.w.busOpts, t)
			if err != nil {
				werr = err
				return true, ""
			}
			total += n
		}
		done, waiting := mon.Progress()
		return done >= total && waiting == 0, fmt.Sprintf("monitor: %d/%d canonical changes applied, %d households waiting for evaluation", done, total, waiting)
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	prefix := d.cfg.Kafka.TopicPrefix
	type last = derived
	read := func(topic string, group func(doc map[string]any) string) (map[string]last, error) {
		out := map[string]last{}
		err := eachMessage(ctx, d.w.busOpts, topic, func(key, value []byte) error {
			e, err := schemas.UnmarshalEnvelope(value)
			if err != nil {
				return fmt.Errorf("%s: %w", topic, err)
			}
			st, _ := e.After["status"].(string)
			subj, _ := e.After["subject_key"].(string)
			out[string(key)] = last{status: st, group: group(e.After), subject: subj, sample: describeDerived(e.After)}
			return nil
		})
		return out, err
	}
	str := func(doc map[string]any, k string) string { s, _ := doc[k].(string); return s }
	show := func(title string, events map[string]last, openStatus string) {
		by := map[string]int{}
		open, sample := 0, ""
		for _, l := range events {
			if l.status != openStatus {
				continue
			}
			open++
			by[l.group]++
			if sample == "" || l.sample < sample {
				sample = l.sample
			}
		}
		groups := sortedKeys(by)
		sort.SliceStable(groups, func(i, j int) bool { return by[groups[i]] > by[groups[j]] })
		var parts []string
		for i, g := range groups {
			if i == 8 {
				parts = append(parts, fmt.Sprintf("… %d more", len(groups)-8))
				break
			}
			parts = append(parts, fmt.Sprintf("%s %d", g, by[g]))
		}
		d.printf("      %-34s %6d  (%d ids on the topic)  %s\n", title, open, len(events), strings.Join(parts, ", "))
		if sample != "" {
			d.printf("        e.g. %s\n", sample)
		}
	}
	issues, err := read(schemas.QualityIssueTopic(prefix), func(doc map[string]any) string { return str(doc, "rule_id") })
	if err != nil {
		return err
	}
	warns, err := read(schemas.WarningTopic(prefix), func(doc map[string]any) string { return str(doc, "rule_id") })
	if err != nil {
		return err
	}
	discs, err := read(schemas.DiscrepancyTopic(prefix), func(doc map[string]any) string {
		return str(doc, "department") + "." + str(doc, "field")
	})
	if err != nil {
		return err
	}
	show("open quality issues 质量问题 by rule", issues, schemas.IssueOpen)
	show("open warnings 部门预警 by rule", warns, schemas.WarningOpen)
	show("pending discrepancies 比对差异", discs, schemas.DiscrepancyPending)
	return d.groundTruth(issues2subjects(issues, schemas.IssueOpen), issues2subjects(warns, schemas.WarningOpen))
}

// subjects maps "rule|subject key" of the events in the given status to true.
type subjects map[string]bool

func issues2subjects[L interface{ open(string) (string, bool) }](m map[string]L, status string) subjects {
	out := subjects{}
	for _, l := range m {
		if k, ok := l.open(status); ok {
			out[k] = true
		}
	}
	return out
}

// groundTruth compares the open issues and warnings with the generator's manifest:
// every injected defect should be an open issue of its rule on its subject, and every
// signal meant to warn an open warning of its rule on its subject.
func (d *demo) groundTruth(issues, warns subjects) error {
	raw, err := os.ReadFile(filepath.Join(d.dir, "gen", "manifest.jsonl"))
	if err != nil {
		return fmt.Errorf("ground truth: %w", err)
	}
	var defects, found, signals, warned int
	seeded, injected := subjects{}, subjects{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var l gen.ManifestLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			return fmt.Errorf("ground truth: manifest.jsonl: %w", err)
		}
		switch {
		case l.Kind == "defect":
			defects++
			injected[l.Rule+"|"+l.Key] = true
			if issues[l.Rule+"|"+l.Key] {
				found++
			}
		case l.Kind == "signal" && l.Expected != nil && *l.Expected:
			subj := l.IDNo
			if l.Subject == "household" {
				subj = l.HHNo
			}
			k := l.Department + "." + l.Rule + "|" + subj
			seeded[k] = true
			signals++
			if warns[k] {
				warned++
			}
		}
	}
	d.printf("      ground truth (manifest.jsonl): %d/%d injected defects are open issues of their rule and subject; %d/%d seeded department signals are open warnings\n",
		found, defects, warned, signals)
	if s := beyond(issues, injected); s != "" {
		d.printf("        issues beyond the injected defects: %s (rules the generator does not seed, or knock-on effects of a defect)\n", s)
	}
	if s := beyond(warns, seeded); s != "" {
		d.printf("        warnings beyond the seeded signals: %s (rules the generator does not seed)\n", s)
	}
	return nil
}

// beyond counts, by rule, the "rule|subject" entries of got that want lacks.
func beyond(got, want subjects) string {
	other := map[string]int{}
	for k := range got {
		if !want[k] {
			rule, _, _ := strings.Cut(k, "|")
			other[rule]++
		}
	}
	var parts []string
	for _, r := range sortedKeys(other) {
		parts = append(parts, fmt.Sprintf("%s %d", r, other[r]))
	}
	return strings.Join(parts, ", ")
}

// eachMessage calls fn for every message of topic from the first to the current last
// offset of each partition.
func eachMessage(ctx context.Context, opts bus.Options, topic string, fn func(key, value []byte) error) error {
	client := &kafka.Client{Addr: kafka.TCP(opts.Brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return fmt.Errorf("read %s: list offsets: %w", topic, err)
	}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return fmt.Errorf("read %s partition %d: %w", topic, po.Partition, po.Error)
		}
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: opts.Brokers, Topic: topic, Partition: po.Partition,
			MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond, ReadBatchTimeout: time.Second})
		if err := r.SetOffset(po.FirstOffset); err != nil {
			r.Close()
			return err
		}
		for off := po.FirstOffset; off < po.LastOffset; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return fmt.Errorf("read %s partition %d at %d: %w", topic, po.Partition, off, err)
			}
			off = m.Offset + 1
			if err := fn(m.Key, m.Value); err != nil {
				r.Close()
				return err
			}
		}
		r.Close()
	}
	return nil
}

// derived is the last event of one issue, warning or discrepancy id.
type derived struct {
	status, group, subject, sample string
}

func (d derived) open(status string) (string, bool) {
	return d.group + "|" + d.subject, d.status == status
}

// describeDerived renders an issue, warning or discrepancy briefly, ID numbers masked.
func describeDerived(doc map[string]any) string {
	var parts []string
	for _, k := range []string{"rule_id", "department", "field", "subject_kind", "subject_key", "region_code", "period", "due_at", "detail", "registry_value", "department_value"} {
		v, ok := doc[k]
		if !ok || v == "" {
			continue
		}
		s := fmt.Sprint(v)
		if k == "subject_key" && doc["subject_kind"] == "person" {
			s = ident.MaskID(s)
		}
		if r := []rune(s); len(r) > 60 {
			s = string(r[:60]) + "…"
		}
		parts = append(parts, k+"="+s)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
