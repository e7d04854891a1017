package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shouwang/shouwang/deploy"
	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/consistency"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func init() {
	register("demo", "run the pipeline end to end on an embedded default (private servers, in-memory Kafka)", func(args []string) int {
		return runDemo(args, os.Stdout)
	})
}

// demo holds what the demo started, so every step can use it and cleanup stops it all.
type demo struct {
	dir         string
	households  int
	seed        uint64
	metricsAddr string
	log         *slog.Logger
	out         io.Writer

	maria   *testenv.MariaDBServer
	pg      *testenv.PostgresServer
	summary *gen.Summary

	w        *worker
	cfg      *config.Config
	stopCapt context.CancelFunc
	captDone chan struct{}
	mu       sync.Mutex
	tty      bool // stderr is a terminal: progress lines are rewritten in place
	// progress line state (status, endStatus)
	errw          io.Writer // progress lines (os.Stderr)
	statusMu      sync.Mutex
	lastStatus    string
	pendingStatus string
	lastStatusAt  time.Time
	produced      map[string]int // messages produced per connector
	transformers  []*transformer // the demo configuration's transform pipelines
	sinks         []sinkWorker   // the demo configuration's sinks
	platform      *demoPlatform  // the stand-in sharing platform
	lastAt        map[string]time.Time
	pushed        *gen.PushResult       // the weekly push's true changes (ground truth)
	totals        []*consistency.Report // the regional totals checks, in configuration order
}

var demoHelp = helpText{
	usage: []string{"shouwang demo [--once] [--households N] [--seed N] [--dir DIR [--keep]] [--metrics-addr ADDR] [-v]"},
	about: "Run the pipeline end to end on the embedded default configuration (deploy/config/demo.yaml): private " +
		"MariaDB and PostgreSQL servers started from this machine's binaries, an in-memory Kafka broker, a generated " +
		"province, every worker (capture, transform and monitor, sinks), a simulated weekly national push, the regional " +
		"totals check and the department feedback lists; it prints what each step did and a Chinese summary of the week " +
		"(本周摘要). Then the pipeline keeps running, metrics served, until Ctrl-C (SIGINT or SIGTERM), which stops every " +
		"server and worker it started and removes its temporary directory; with --once it exits after the summary, " +
		"status 0 when every totals check reconciles and 1 otherwise. Not for production: the broker keeps data in memory only.",
	examples: []string{"shouwang demo", "shouwang demo --once", "shouwang demo --households 20000 --dir /tmp/demo --keep"},
}

func runDemo(args []string, stdout io.Writer) int {
	fs := newFlagSet("demo", os.Stderr)
	households := fs.Int("households", 0, "households to generate (default: gen.households of the demo config)")
	seed := fs.Uint64("seed", 0, "generator seed (default: gen.seed of the demo config)")
	dir := fs.String("dir", "", "work directory (default: a new temporary directory, removed at the end unless --keep)")
	keep := fs.Bool("keep", false, "keep the work directory (servers' data, generated files, manifest, state)")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:0", "address of the demo's /metrics, /healthz and /readyz")
	verbose := fs.Bool("v", false, "show component logs")
	once := fs.Bool("once", false, "exit after the summary (status 0 when every totals check reconciles, else 1) instead of running until Ctrl-C")
	if code, ok := parseFlags(fs, demoHelp, args, stdout, os.Stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		usageError(os.Stderr, "demo", demoHelp, fmt.Sprintf("shouwang demo: unexpected argument %q", fs.Arg(0)))
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	d := &demo{households: *households, seed: *seed, metricsAddr: *metricsAddr, out: stdout, errw: os.Stderr,
		log:      slog.New(pii.NewLogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))),
		produced: map[string]int{}, lastAt: map[string]time.Time{}}
	slog.SetDefault(d.log)
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		d.tty = true
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *dir == "" {
		tmp, err := os.MkdirTemp("", "shouwang-demo-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return 1
		}
		d.dir = tmp
		if !*keep {
			defer os.RemoveAll(tmp)
		}
	} else {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return 1
		}
		d.dir = *dir
	}
	// The servers run as their own system users (mysql, postgres) and must reach
	// their directories below this one.
	if err := os.Chmod(d.dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	defer d.close()

	d.printf("守望 Shouwang demo — work directory %s\n\n", d.dir)
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"start private MariaDB (国办前置库: binlog ROW/FULL, GTID) and PostgreSQL (wal_level=logical)", d.startServers},
		{"generate a synthetic province on real Sichuan village codes", d.generate},
		{"start the capture workers of " + deploy.DemoConfigName + " (in-memory Kafka)", d.startCapture},
		{"capture: snapshots of the national front-end and department databases, and the department file deliveries", d.waitInitial},
		{"read the events back from the bus", d.showBus},
		{"transform: raw changes → canonical entities (household, person, assistance_measure, department_fact) by the built-in mappings", d.waitTransforms},
		{"monitor: supervision rules (质量问题), department screening warnings (部门预警) and comparisons (行业数据比对) on the canonical stream", d.waitMonitor},
		{"the national system pushes week 1 (whole-table reload, about 1% real changes)", d.push},
		{"sink: every canonical topic, warning, issue and discrepancy into the provincial PostgreSQL database (schema fpjc), effectively once", d.waitSink},
		{"sink: base data (防返贫基础数据, ID numbers masked) pushed to the sharing platform: its exchange table, and its API over signed HTTP with receipts", d.waitSharing},
		{"check: regional totals (地区总数核查) by county — national front-end database ↔ provincial database ↔ sharing exchange table, drilled down to the key", d.checkTotals},
		{"feedback: open discrepancies per department and county as workbooks to send back (行业数据比对反馈, feedback/*.xlsx)", d.exportFeedback},
		{"summary of the week (本周摘要), counted in the provincial database", d.printSummary},
	}
	for i, s := range steps {
		d.printf("[%d/%d] %s …\n", i+1, len(steps), s.name)
		start := time.Now()
		if err := s.run(ctx); err != nil {
			var mb *testenv.MissingBinaryError
			if errors.As(err, &mb) {
				fmt.Fprintf(os.Stderr, "demo: %v\n  install it with: %s (or run `make demo` as root)\n", err, mb.InstallCommand())
				return 2
			}
			fmt.Fprintf(os.Stderr, "demo: step %d (%s): %v\n", i+1, s.name, err)
			return 1
		}
		d.printf("      done in %s\n\n", time.Since(start).Round(time.Millisecond))
	}
	d.printf("The demo reached the end of today's pipeline: sources → capture → Kafka → transform (canonical entities) → monitor (issues, warnings, discrepancies) → provincial database and sharing platform → regional totals check → department feedback lists.\n")
	if *keep {
		d.printf("Work directory kept: %s (manifest: %s)\n", d.dir, filepath.Join(d.dir, "gen", "manifest.jsonl"))
	}
	code := 0
	if !d.reconciled() {
		code = 1
	}
	if *once {
		return code
	}
	d.printf("\n流水线持续运行，指标见 http://%s/metrics，按 Ctrl-C 停止 / the pipeline keeps running (metrics at http://%s/metrics); press Ctrl-C to stop\n",
		d.w.server.Addr(), d.w.server.Addr())
	select {
	case <-ctx.Done():
		if *dir == "" && !*keep {
			d.printf("正在停止 / stopping every worker and server the demo started, then removing %s\n", d.dir)
		} else {
			d.printf("正在停止 / stopping every worker and server the demo started (work directory %s kept)\n", d.dir)
		}
	case <-d.captDone:
		fmt.Fprintln(os.Stderr, "demo: the pipeline stopped by itself (run with -v for the log)")
		return 1
	}
	return code
}

// reconciled tells whether every totals check ran and matched.
func (d *demo) reconciled() bool {
	if len(d.totals) != len(d.cfg.Checkers) {
		return false
	}
	for _, rep := range d.totals {
		if !rep.Match {
			return false
		}
	}
	return true
}

func (d *demo) printf(format string, a ...any) { fmt.Fprintf(d.out, format, a...) }

func (d *demo) close() {
	if d.stopCapt != nil {
		d.stopCapt()
		<-d.captDone
	}
	if d.w != nil {
		d.w.Close()
	}
	if d.maria != nil {
		d.maria.Stop()
	}
	if d.pg != nil {
		d.pg.Stop()
	}
	d.platform.close()
}

func (d *demo) startServers(ctx context.Context) error {
	var wg sync.WaitGroup
	var merr, perr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		d.maria, merr = testenv.StartMariaDB(ctx, testenv.MariaDBOptions{BaseDir: d.dir, Logger: d.log})
	}()
	go func() {
		defer wg.Done()
		d.pg, perr = testenv.StartPostgres(ctx, testenv.PostgresOptions{BaseDir: d.dir, Logger: d.log})
	}()
	wg.Wait()
	if err := errors.Join(merr, perr); err != nil {
		return err
	}
	if err := d.maria.CreateDatabase(ctx, "national"); err != nil {
		return err
	}
	if err := d.pg.CreateDatabase(ctx, "departments"); err != nil {
		return err
	}
	for _, db := range []string{"provincial", "sharing"} {
		if err := d.pg.CreateDatabase(ctx, db); err != nil {
			return err
		}
	}
	var err error
	if d.platform, err = startDemoPlatform(); err != nil {
		return err
	}
	d.printf("      MariaDB %s (%s), PostgreSQL %s %s, sharing platform stand-in %s\n", d.maria.Addr(), d.maria.Flavor(), d.pg.Version(), d.pg.Addr(), d.platform.url)

	// The demo configuration takes the private servers' addresses from the environment.
	env := map[string]string{
		"SHOUWANG_DEMO_MYSQL_DSN":     fmt.Sprintf("%s:%s@tcp(%s)/national", d.maria.ReplUser(), d.maria.ReplPassword(), d.maria.Addr()),
		"SHOUWANG_DEMO_PG_DSN":        d.pg.ConnString("departments"),
		"SHOUWANG_DEMO_PROVINCIAL":    d.pg.ConnString("provincial"),
		"SHOUWANG_DEMO_SHARING_URL":   d.platform.url,
		"SHOUWANG_DEMO_SHARING_DB":    d.pg.ConnString("sharing"),
		"SHOUWANG_DEMO_SHARING_TOKEN": demoToken,
		"SHOUWANG_DEMO_SHARING_KEY":   demoSigningKey,
		"SHOUWANG_DEMO_FILES":         filepath.Join(d.dir, "gen", "files"),
		"SHOUWANG_DEMO_STATE":         filepath.Join(d.dir, "state"),
		"SHOUWANG_DEMO_METRICS_ADDR":  d.metricsAddr,
	}
	lookup := func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}
	cfg, err := config.Parse(deploy.DemoConfigName, deploy.DemoConfig, lookup)
	if err != nil {
		return err
	}
	d.cfg = cfg
	return nil
}

func (d *demo) generate(ctx context.Context) error {
	cfg := gen.DefaultConfig()
	cfg.Seed, cfg.Households = uint64(d.cfg.Gen.Seed), d.cfg.Gen.Households
	if d.seed != 0 {
		cfg.Seed = d.seed
	}
	if d.households != 0 {
		cfg.Households = d.households
	}
	opts := gen.Options{
		MySQLDSN: d.maria.RootDSN("national"),
		PGDSN:    d.pg.ConnString("departments"),
		OutDir:   filepath.Join(d.dir, "gen"),
		Formats:  []string{"csv", "gb18030", "xlsx"},
		Progress: func(p gen.Progress) {
			d.status(fmt.Sprintf("%d/%d households, %d persons, %d rows, %s", p.Households, p.TotalHouseholds, p.Persons, p.Rows, p.Elapsed.Round(time.Millisecond)))
		},
	}
	sum, err := gen.Generate(ctx, cfg, opts)
	d.endStatus()
	if err != nil {
		return err
	}
	d.summary = sum
	d.printf("      %d households, %d persons (%d monitored households) in %d villages of %d counties\n",
		sum.Households, sum.Persons, sum.Monitored, sum.Villages, len(sum.Counties))
	var defects int64
	for _, n := range sum.Defects {
		defects += n
	}
	var signals int64
	for _, s := range sum.Signals {
		signals += s.Expected
	}
	d.printf("      ground truth: %d injected data-quality defects, %d department signals (manifest.jsonl)\n", defects, signals)
	return nil
}

// startCapture runs the capture role of the demo configuration in the background,
// exactly as `shouwang run --role capture` would.
func (d *demo) startCapture(ctx context.Context) error {
	w, err := newWorker(ctx, d.cfg, d.log, "")
	if err != nil {
		return err
	}
	d.w = w
	conns, err := w.connectors()
	if err != nil {
		return err
	}
	ts, err := w.transformers()
	if err != nil {
		return err
	}
	d.transformers = ts
	sinks, err := w.sinkWorkers()
	if err != nil {
		return err
	}
	d.sinks = sinks
	cctx, cancel := context.WithCancel(ctx)
	d.stopCapt, d.captDone = cancel, make(chan struct{})
	var both sync.WaitGroup
	both.Add(3)
	go func() {
		defer both.Done()
		if err := w.runSinks(cctx, sinks); err != nil {
			d.log.Error("sinks stopped", "err", err)
		}
	}()
	go func() {
		defer both.Done()
		if err := w.runCapture(cctx, conns, d.onBatch); err != nil {
			d.log.Error("capture stopped", "err", err)
		}
	}()
	go func() {
		defer both.Done()
		if err := w.runTransforms(cctx, ts); err != nil {
			d.log.Error("transforms stopped", "err", err)
		}
	}()
	go func() {
		both.Wait()
		close(d.captDone)
	}()
	d.printf("      %d connectors, %d transform pipelines, %d sinks; Kafka (in-memory) %s; metrics http://%s/metrics\n",
		len(conns), len(ts), len(sinks), strings.Join(w.busOpts.Brokers, ","), w.server.Addr())
	return nil
}

// waitTransforms waits until every raw change has come out of the transform pipelines
// (as a canonical change or a dead letter), then shows the canonical topics.
func (d *demo) waitTransforms(ctx context.Context) error {
	prefix := d.cfg.Kafka.TopicPrefix
	var ins, outs []string
	for _, t := range d.transformers {
		i, o := t.worker.Topics()
		ins, outs = append(ins, i...), append(outs, o...)
	}
	outs = uniq(outs)
	count := func(topics []string) (int64, error) {
		var n int64
		for _, t := range topics {
			c, err := bus.TopicSize(ctx, d.w.busOpts, t)
			if err != nil {
				return 0, err
			}
			n += c
		}
		return n, nil
	}
	var werr error
	err := d.waitFor(ctx, "transforms", 5*time.Minute, func() (bool, string) {
		in, err1 := count(ins)
		out, err2 := count(outs)
		if werr = errors.Join(err1, err2); werr != nil {
			return true, ""
		}
		return out >= in, fmt.Sprintf("transforms: %d/%d raw changes mapped", out, in)
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	for _, t := range outs {
		counts, sample, err := readTopic(ctx, d.w.busOpts, t)
		if err != nil {
			return err
		}
		var parts []string
		total := 0
		for _, op := range sortedKeys(counts) {
			parts = append(parts, fmt.Sprintf("%s=%d", op, counts[op]))
			total += counts[op]
		}
		d.printf("      %-38s %6d events  %s\n", t, total, strings.Join(parts, " "))
		if sample != "" && t != schemas.DLQTopic(prefix, "transform") {
			d.printf("        e.g. %s\n", sample)
		}
	}
	return nil
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

func (d *demo) onBatch(conn string, n int) {
	if n == 0 {
		return
	}
	d.mu.Lock()
	d.produced[conn] += n
	d.lastAt[conn] = time.Now()
	d.mu.Unlock()
}

// produce returns the messages produced so far by a connector and when the last were.
func (d *demo) progress(conn string) (int, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.produced[conn], d.lastAt[conn]
}

// waitFor polls cond until it holds, showing progress, or fails after limit.
func (d *demo) waitFor(ctx context.Context, what string, limit time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(limit)
	last := ""
	for {
		ok, status := cond()
		if status != last {
			d.status(status)
			last = status
		}
		if ok {
			d.endStatus()
			return nil
		}
		if time.Now().After(deadline) {
			d.endStatus()
			return fmt.Errorf("%s: not done after %s (%s)", what, limit, status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.captDone:
			return fmt.Errorf("%s: capture stopped (run with -v for the log)", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// status shows a progress line: rewritten in place on a terminal; otherwise (logs,
// CI) a line is printed only when it differs from the last one printed and at most
// every statusEvery, the latest skipped one being printed by endStatus, so that a
// long step leaves a short readable trace instead of hundreds of lines.
func (d *demo) status(line string) {
	d.statusMu.Lock()
	defer d.statusMu.Unlock()
	if line == d.lastStatus {
		return
	}
	d.lastStatus = line
	if d.tty {
		fmt.Fprintf(d.errw, "\r      %-100s", line)
		return
	}
	if time.Since(d.lastStatusAt) < statusEvery {
		d.pendingStatus = line
		return
	}
	fmt.Fprintf(d.errw, "      %s\n", line)
	d.lastStatusAt, d.pendingStatus = time.Now(), ""
}

// statusEvery is the least time between two progress lines when stderr is not a terminal.
const statusEvery = 2 * time.Second

func (d *demo) endStatus() {
	d.statusMu.Lock()
	defer d.statusMu.Unlock()
	if d.tty {
		if d.lastStatus != "" {
			fmt.Fprintln(d.errw)
		}
	} else if d.pendingStatus != "" {
		fmt.Fprintf(d.errw, "      %s\n", d.pendingStatus)
	}
	d.lastStatus, d.pendingStatus, d.lastStatusAt = "", "", time.Time{}
}

func (d *demo) inboxes() []string {
	var out []string
	for _, s := range d.cfg.Sources {
		if s.FileDrop != nil {
			for _, ds := range s.FileDrop.Datasets {
				out = append(out, d.cfg.ResolvePath(ds.Inbox))
			}
		}
	}
	return out
}

func (d *demo) waitInitial(ctx context.Context) error {
	rows := int(d.summary.Households + d.summary.Persons + d.summary.Measures)
	var deptRows int
	for _, n := range d.summary.DeptRows {
		deptRows += int(n)
	}
	inboxes := d.inboxes()
	err := d.waitFor(ctx, "initial capture", 5*time.Minute, func() (bool, string) {
		n, _ := d.progress("national")
		dn, _ := d.progress("departments")
		left := pendingFiles(inboxes)
		return n >= rows && dn >= deptRows && left == 0,
			fmt.Sprintf("national: %d/%d rows in Kafka; departments (PostgreSQL): %d/%d; department files waiting: %d", n, rows, dn, deptRows, left)
	})
	if err != nil {
		return err
	}
	for _, in := range inboxes {
		d.printf("      %-40s archived %d, rejected %d, held %d\n", strings.TrimPrefix(in, d.dir+"/"),
			countFiles(filepath.Join(in, "archive")), countFiles(filepath.Join(in, "rejected")), countFiles(filepath.Join(in, "held")))
	}
	d.printf("      (each department dataset was delivered three times — UTF-8 CSV, GB18030 CSV, XLSX — with the same rows:\n")
	d.printf("       the second and third deliveries are diffed against the first and emit nothing)\n")
	return nil
}

// push simulates the weekly national push and shows what capture made of it.
func (d *demo) push(ctx context.Context) error {
	before, _ := d.progress("national")
	cfg := gen.DefaultConfig()
	cfg.Seed = d.summary.Seed
	res, err := gen.Push(ctx, cfg, gen.PushOptions{Week: 1, MySQLDSN: d.maria.RootDSN("national"),
		OutDir: filepath.Join(d.dir, "gen"), Mode: gen.PushTruncate, Progress: func(table string, rows int64) {
			d.status(fmt.Sprintf("reloading %s: %d rows", table, rows))
		}})
	d.endStatus()
	if err != nil {
		return err
	}
	var quietSince time.Time
	err = d.waitFor(ctx, "push capture", 3*time.Minute, func() (bool, string) {
		n, last := d.progress("national")
		if quietSince.IsZero() || last.After(quietSince) {
			quietSince = time.Now()
		}
		emitted := n - before
		return emitted > 0 && time.Since(quietSince) > 3*time.Second, fmt.Sprintf("national: %d events since the push", emitted)
	})
	if err != nil {
		return err
	}
	n, _ := d.progress("national")
	var rows, changes int64
	for _, v := range res.Rows {
		rows += v
	}
	var parts []string
	for _, k := range sortedKeys(res.Changes) {
		changes += res.Changes[k]
		parts = append(parts, fmt.Sprintf("%s=%d", k, res.Changes[k]))
	}
	d.pushed = res
	d.printf("      the push rewrote %d rows; %d really changed (%s; ground truth in push-week-1.manifest.jsonl)\n", rows, changes, strings.Join(parts, " "))
	d.printf("      capture emitted %d events for it (%.2f per true change)\n", n-before, float64(n-before)/float64(max(changes, 1)))
	return nil
}

func collect(ch <-chan error) []error {
	var out []error
	for e := range ch {
		out = append(out, e)
	}
	return out
}

// pendingFiles counts regular files still waiting in the inboxes.
func pendingFiles(inboxes []string) int {
	n := 0
	for _, dir := range inboxes {
		n += countFiles(dir)
	}
	return n
}

func countFiles(dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".report.txt") {
			n++
		}
	}
	return n
}

// showBus reads every raw and DLQ topic from the start and prints counts per op and
// one sample event per topic (ID numbers and phones masked).
func (d *demo) showBus(ctx context.Context) error {
	prefix := d.cfg.Kafka.TopicPrefix
	topics := []string{schemas.DLQTopic(prefix, "capture")}
	for _, src := range d.cfg.Sources {
		for _, t := range src.Tables() {
			topics = append(topics, schemas.RawTopic(prefix, src.Name, t))
		}
	}
	for _, t := range topics {
		counts, sample, err := readTopic(ctx, d.w.busOpts, t)
		if err != nil {
			return err
		}
		var parts []string
		total := 0
		for _, op := range sortedKeys(counts) {
			parts = append(parts, fmt.Sprintf("%s=%d", op, counts[op]))
			total += counts[op]
		}
		d.printf("      %-38s %6d events  %s\n", t, total, strings.Join(parts, " "))
		if sample != "" {
			d.printf("        e.g. %s\n", sample)
		}
	}
	return nil
}

// readTopic reads a topic from the first to the last offset of every partition (the
// end offsets are taken first, so it returns as soon as it has read them).
func readTopic(ctx context.Context, opts bus.Options, topic string) (map[string]int, string, error) {
	client := &kafka.Client{Addr: kafka.TCP(opts.Brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, "", fmt.Errorf("read %s: list offsets: %w", topic, err)
	}
	counts := map[string]int{}
	sample := ""
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return nil, "", fmt.Errorf("read %s partition %d: %w", topic, po.Partition, po.Error)
		}
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: opts.Brokers, Topic: topic, Partition: po.Partition,
			MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond, ReadBatchTimeout: time.Second})
		if err := r.SetOffset(po.FirstOffset); err != nil {
			r.Close()
			return nil, "", err
		}
		for off := po.FirstOffset; off < po.LastOffset; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return nil, "", fmt.Errorf("read %s partition %d at %d: %w", topic, po.Partition, off, err)
			}
			off = m.Offset
			if strings.Contains(topic, ".dlq.") {
				counts["dead-letter"]++
				continue
			}
			e, err := schemas.UnmarshalEnvelope(m.Value)
			if err != nil {
				counts["undecodable"]++
				continue
			}
			counts[string(e.Op)]++
			if sample == "" && e.After != nil {
				sample = describe(e)
			}
		}
		r.Close()
	}
	return counts, sample, nil
}

// describe renders an envelope briefly with personal identifiers masked.
func describe(e *schemas.Envelope) string {
	var parts []string
	for _, k := range sortedKeys(e.After) {
		v := fmt.Sprint(e.After[k])
		switch {
		case strings.Contains(k, "id_no") || strings.Contains(k, "cert_no"):
			v = ident.MaskID(v)
		case strings.Contains(k, "phone"):
			v = ident.MaskPhone(v)
		case strings.Contains(k, "name"):
			if r := []rune(v); len(r) > 1 {
				v = string(r[0]) + strings.Repeat("*", len(r)-1)
			}
		}
		parts = append(parts, k+"="+v)
		if len(parts) == 6 {
			break
		}
	}
	where := fmt.Sprintf("%s:%d", filepath.Base(e.Source.File), e.Source.Line)
	switch {
	case e.Source.BinlogFile != "":
		where = fmt.Sprintf("%s:%d", e.Source.BinlogFile, e.Source.BinlogPos)
	case e.Source.LSN != "":
		where = "lsn " + e.Source.LSN
	}
	return fmt.Sprintf("op=%s %s {%s …}", e.Op, where, strings.Join(parts, ", "))
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
