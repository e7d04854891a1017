package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/pii"
)

func init() {
	register("run", "run the workers of a configuration until stopped (run -c FILE [--role capture|transform|sink|check|all])", func(args []string) int {
		return runRun(args, os.Stdout, os.Stderr)
	})
}

var runHelp = helpText{
	usage: []string{"shouwang run -c FILE [--role capture|transform|sink|check|all] [--metrics-addr ADDR] [--log-level LEVEL] [--exit-on-startup-failure]"},
	about: "Run the workers of a configuration until SIGINT or SIGTERM: the capture connectors of every configured " +
		"source with their signal consumers (snapshot and release requests), the transform pipelines (raw topics to " +
		"canonical entities by their mapping files, reloaded when the files change) with the monitor (quality issues, warnings, discrepancies), " +
		"the sinks (postgres: canonical topics into the provincial database, schema migrated at start-up; sharing_http: base data pushed to the sharing platform), the regional totals checkers on their schedules (reports in <state.dir>/check-<name>.json, gauges shouwang_check_*, re-snapshot of the differing keys when on_mismatch is resnapshot), and /metrics, /healthz and /readyz on metrics.addr (or --metrics-addr, default $SHOUWANG_METRICS_ADDR, so that several roles run on one host). " +
		"Logs are JSON lines on stderr.\n\n" +
		"A source that has never connected is retried with backoff, one log line per attempt; after its " +
		"sources[].startup_grace (default 2m) /healthz answers 503 naming it, and with --exit-on-startup-failure (or " +
		"sources[].exit_on_startup_failure) the worker exits with status 3 instead, for systemd or Kubernetes to restart. " +
		"A source that was connected and lost its server keeps retrying with /readyz false. Exit status: 0 stopped by a " +
		"signal, 1 failure, 2 configuration or usage error, 3 a source did not connect within its start-up grace.",
	examples: []string{"shouwang run -c /etc/shouwang/shouwang.yaml --role capture",
		"SHOUWANG_CONFIG=/etc/shouwang/shouwang.yaml shouwang run --exit-on-startup-failure"},
}

// roles lists what `run --role` accepts.
var roles = map[string]bool{"capture": true, "transform": true, "sink": true, "check": true, "all": true}

func runRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", stderr)
	cfgPath := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration `file` (default $SHOUWANG_CONFIG)")
	role := fs.String("role", "all", "which workers to run: capture, transform, sink, check or all")
	metricsAddr := fs.String("metrics-addr", os.Getenv("SHOUWANG_METRICS_ADDR"), "serve /metrics, /healthz and /readyz on this `address` instead of metrics.addr (default $SHOUWANG_METRICS_ADDR): one per role when several run on one host")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	exitOnStartup := fs.Bool("exit-on-startup-failure", false, "exit with status 3 when a source has not connected within its startup_grace, for every source")
	if code, ok := parseFlags(fs, runHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		usageError(stderr, "run", runHelp, fmt.Sprintf("shouwang run: unexpected argument %q", fs.Arg(0)))
		return 2
	}
	if !roles[*role] {
		fmt.Fprintf(stderr, "shouwang run: --role %q is not available in this build (available: capture, transform, sink, check, all)\n", *role)
		return 2
	}
	if *cfgPath == "" {
		usageError(stderr, "run", runHelp, "shouwang run: give the configuration file with -c FILE (or set SHOUWANG_CONFIG)")
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "shouwang run: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(pii.NewLogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl})))
	slog.SetDefault(log) // libraries that log through the default logger write JSON too
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printProblems(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w, err := newWorker(ctx, cfg, log, *metricsAddr)
	if err != nil {
		fmt.Fprintf(stderr, "shouwang run: %v\n", err)
		return 2
	}
	defer w.Close()
	w.exitOnStartupFailure = *exitOnStartup
	var conns []*connector
	var ts []*transformer
	if *role == "capture" || *role == "all" {
		if conns, err = w.connectors(); err != nil {
			fmt.Fprintf(stderr, "shouwang run: %s:\n%v\n", cfg.File(), err)
			return 2
		}
	}
	if *role == "transform" || *role == "all" {
		if ts, err = w.transformers(); err != nil {
			fmt.Fprintf(stderr, "shouwang run: %s:\n%v\n", cfg.File(), err)
			return 2
		}
		if *role == "transform" && len(ts) == 0 && w.mon == nil {
			fmt.Fprintf(stderr, "shouwang run: %s configures no pipelines: add pipelines: for --role transform\n", cfg.File())
			return 2
		}
	}
	var sinks []sinkWorker
	if *role == "sink" || *role == "all" {
		if sinks, err = w.sinkWorkers(); err != nil {
			fmt.Fprintf(stderr, "shouwang run: %s:\n%v\n", cfg.File(), err)
			return 2
		}
		if *role == "sink" && len(sinks) == 0 {
			fmt.Fprintf(stderr, "shouwang run: %s configures no sink this build runs: add one under sinks: (kind: postgres or sharing_http) for --role sink\n", cfg.File())
			return 2
		}
	}
	var checks []*checkerJob
	if *role == "check" || *role == "all" {
		if checks, err = w.checkJobs(); err != nil {
			fmt.Fprintf(stderr, "shouwang run: %s:\n%v\n", cfg.File(), err)
			return 2
		}
		if *role == "check" && len(checks) == 0 {
			fmt.Fprintf(stderr, "shouwang run: %s configures no checkers: add checkers: for --role check\n", cfg.File())
			return 2
		}
	}
	log.Info("workers starting", "role", *role, "connectors", len(conns), "pipelines", len(ts), "monitor", w.mon != nil, "sinks", len(sinks), "checkers", len(checks), "metrics", w.server.Addr())
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	n := 0
	if len(conns) > 0 {
		n++
		go func() { errc <- w.runCapture(rctx, conns, nil) }()
	}
	if len(ts) > 0 || w.mon != nil {
		n++
		go func() { errc <- w.runTransforms(rctx, ts) }()
	}
	if len(sinks) > 0 {
		n++
		go func() { errc <- w.runSinks(rctx, sinks) }()
	}
	if len(checks) > 0 {
		n++
		go func() { errc <- w.runChecks(rctx, checks) }()
	}
	code := 0
	for ; n > 0; n-- {
		if err := <-errc; err != nil {
			cancel() // one role failing stops the process: its supervisor restarts it whole
			fmt.Fprintf(stderr, "shouwang run: %v\n", err)
			var se *startupError
			if errors.As(err, &se) {
				code = 3
			} else if code == 0 {
				code = 1
			}
		}
	}
	return code
}
