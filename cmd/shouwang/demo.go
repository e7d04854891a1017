package main

import (
	"context"
	"errors"
	"flag"
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

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/capture/filedrop"
	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/internal/metrics"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func init() {
	register("demo", "run the pipeline end to end on an embedded default (private servers, in-memory Kafka)", runDemo)
}

// demo holds what the demo started, so every step can use it and cleanup stops it all.
type demo struct {
	dir        string
	prefix     string
	households int
	seed       uint64
	log        *slog.Logger
	out        io.Writer

	maria   *testenv.MariaDBServer
	pg      *testenv.PostgresServer
	kafka   *bus.Embedded
	busOpts bus.Options
	prod    *bus.Producer
	metrics *metrics.Server
	reg     interface {
		MustRegister(...any)
	}
	summary *gen.Summary
}

func runDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	households := fs.Int("households", 600, "households to generate (real Sichuan villages)")
	seed := fs.Uint64("seed", 20231, "generator seed")
	dir := fs.String("dir", "", "work directory (default: a new temporary directory, removed at the end unless --keep)")
	keep := fs.Bool("keep", false, "keep the work directory (servers' data, generated files, manifest)")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:0", "address of the demo's /metrics, /healthz and /readyz")
	verbose := fs.Bool("v", false, "show component logs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	d := &demo{prefix: "demo", households: *households, seed: *seed, out: os.Stdout,
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}
	slog.SetDefault(d.log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *dir == "" {
		tmp, err := os.MkdirTemp("", "shouwang-demo-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return 1
		}
		// The servers run as their own system users (mysql, postgres) and must reach
		// their directories below this one.
		if err := os.Chmod(tmp, 0o755); err != nil {
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
	defer d.close()

	d.printf("守望 Shouwang demo — work directory %s\n\n", d.dir)
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"start private MariaDB (国办前置库, binlog ROW/FULL, GTID) and PostgreSQL (wal_level=logical)", d.startServers},
		{"start the embedded in-memory Kafka broker and the metrics endpoint", func(ctx context.Context) error { return d.startBus(ctx, *metricsAddr) }},
		{"generate a synthetic province on real Sichuan village codes", d.generate},
		{"capture the department file deliveries (CSV UTF-8, CSV GB18030, XLSX) into Kafka", d.captureFiles},
		{"read the events back from the bus", d.showBus},
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
	d.printf("The demo reached the end of today's pipeline: sources → capture → Kafka.\n")
	if *keep {
		d.printf("Work directory kept: %s (manifest: %s)\n", d.dir, filepath.Join(d.dir, "gen", "manifest.jsonl"))
	}
	return 0
}

func (d *demo) printf(format string, a ...any) { fmt.Fprintf(d.out, format, a...) }

func (d *demo) close() {
	if d.prod != nil {
		d.prod.Close()
	}
	if d.metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d.metrics.Shutdown(ctx)
		cancel()
	}
	if d.kafka != nil {
		d.kafka.Close()
	}
	if d.maria != nil {
		d.maria.Stop()
	}
	if d.pg != nil {
		d.pg.Stop()
	}
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
	d.printf("      MariaDB %s (%s), PostgreSQL %s %s\n", d.maria.Addr(), d.maria.Flavor(), d.pg.Version(), d.pg.Addr())
	return nil
}

func (d *demo) startBus(ctx context.Context, addr string) error {
	k, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{Partitions: 3})
	if err != nil {
		return err
	}
	d.kafka = k
	reg := metrics.NewRegistry()
	d.busOpts = bus.Options{Brokers: k.Brokers(), ClientID: "shouwang-demo", Registerer: reg, Logger: d.log}
	if d.prod, err = bus.NewProducer(d.busOpts); err != nil {
		return err
	}
	d.metrics = metrics.NewServer(addr, reg)
	if err := d.metrics.Start(ctx); err != nil {
		return err
	}
	d.metrics.SetReady("demo", true, "")
	d.printf("      Kafka (in-memory, NOT for production) %s; metrics http://%s/metrics\n", strings.Join(k.Brokers(), ","), d.metrics.Addr())
	return nil
}

func (d *demo) generate(ctx context.Context) error {
	cfg := gen.DefaultConfig()
	cfg.Seed = d.seed
	cfg.Households = d.households
	opts := gen.Options{
		MySQLDSN: d.maria.RootDSN("national"),
		PGDSN:    d.pg.ConnString("departments"),
		OutDir:   filepath.Join(d.dir, "gen"),
		Formats:  []string{"csv", "gb18030", "xlsx"},
		Progress: func(p gen.Progress) {
			fmt.Fprintf(os.Stderr, "\r      %d/%d households, %d persons, %d rows, %s   ", p.Households, p.TotalHouseholds, p.Persons, p.Rows, p.Elapsed.Round(time.Millisecond))
		},
	}
	sum, err := gen.Generate(ctx, cfg, opts)
	fmt.Fprintln(os.Stderr)
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

// captureFiles runs one filedrop source per generated department dataset through the
// capture runner until every delivery file was processed.
func (d *demo) captureFiles(ctx context.Context) error {
	var specs []bus.TopicSpec
	specs = append(specs, bus.TopicSpec{Name: schemas.DLQTopic(d.prefix, "capture"), Partitions: 1, ReplicationFactor: 1})
	for _, ds := range gen.Datasets {
		specs = append(specs, bus.TopicSpec{Name: schemas.RawTopic(d.prefix, ds.Department, ds.Name), Partitions: 3, ReplicationFactor: 1})
	}
	if err := bus.EnsureTopics(ctx, d.busOpts, specs...); err != nil {
		return err
	}
	store, err := capture.NewFileStore(filepath.Join(d.dir, "positions"))
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(gen.Datasets))
	var inboxes []string
	for _, ds := range gen.Datasets {
		cols := map[string]string{}
		for i, h := range ds.Headers {
			cols[h] = ds.Columns[i]
		}
		inbox := filepath.Join(d.dir, "gen", "files", ds.Department, ds.Name)
		inboxes = append(inboxes, inbox)
		src, err := filedrop.New(filedrop.Config{
			System:      ds.Department,
			TopicPrefix: d.prefix,
			Dataset: filedrop.DatasetOptions{
				Name: ds.Name, Department: ds.Department, Inbox: inbox,
				StateDir: filepath.Join(d.dir, "filedrop-state", ds.Department, ds.Name),
				Delivery: filedrop.DeliveryFull, Key: []string{ds.Columns[0]}, Columns: cols,
			},
			PollInterval: 100 * time.Millisecond,
			Logger:       d.log,
		})
		if err != nil {
			return err
		}
		r, err := capture.NewRunner(capture.RunnerOptions{Name: ds.Department + "_" + ds.Name, TopicPrefix: d.prefix,
			Source: src, Producer: d.prod, Positions: store, Logger: d.log})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(runCtx); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	// Every delivery file leaves the inbox (archive/, rejected/ or held/) once its
	// changes were acknowledged by Kafka.
	deadline := time.Now().Add(5 * time.Minute)
	for pendingFiles(inboxes) > 0 && time.Now().Before(deadline) && runCtx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	close(errs)
	if err := errors.Join(collect(errs)...); err != nil {
		return err
	}
	if n := pendingFiles(inboxes); n > 0 {
		return fmt.Errorf("%d delivery files were not processed within 5 minutes", n)
	}
	for _, ds := range gen.Datasets {
		dir := filepath.Join(d.dir, "gen", "files", ds.Department, ds.Name)
		d.printf("      %-10s %-22s archived %d, rejected %d, held %d\n", ds.Department, ds.Name,
			countFiles(filepath.Join(dir, "archive")), countFiles(filepath.Join(dir, "rejected")), countFiles(filepath.Join(dir, "held")))
	}
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
	topics := []string{schemas.DLQTopic(d.prefix, "capture")}
	for _, ds := range gen.Datasets {
		topics = append(topics, schemas.RawTopic(d.prefix, ds.Department, ds.Name))
	}
	for _, t := range topics {
		counts, sample, err := readTopic(ctx, d.busOpts, t)
		if err != nil {
			return err
		}
		var parts []string
		total := 0
		for _, op := range sortedKeys(counts) {
			parts = append(parts, fmt.Sprintf("%s=%d", op, counts[op]))
			total += counts[op]
		}
		d.printf("      %-34s %6d events  %s\n", t, total, strings.Join(parts, " "))
		if sample != "" {
			d.printf("        e.g. %s\n", sample)
		}
	}
	return nil
}

// readTopic consumes a topic from the beginning until it is idle for a second.
func readTopic(ctx context.Context, opts bus.Options, topic string) (map[string]int, string, error) {
	c, err := bus.NewGroupConsumer(opts, "demo-show-"+topic, []string{topic})
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	counts := map[string]int{}
	sample := ""
	for {
		fctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		m, err := c.Fetch(fctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			return counts, sample, nil // idle: the topic is read
		}
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
	return fmt.Sprintf("op=%s %s:%d {%s …}", e.Op, filepath.Base(e.Source.File), e.Source.Line, strings.Join(parts, ", "))
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
