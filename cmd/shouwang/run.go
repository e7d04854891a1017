package main

import (
	"context"
	"flag"
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
	register("run", "run workers: run --role capture|all -c FILE", func(args []string) int {
		return runRun(args, os.Stderr)
	})
}

// roles lists what `run --role` accepts today. transform, sink and check arrive with
// their issues; asking for them is a usage error rather than a silent no-op.
var roles = map[string]bool{"capture": true, "all": true}

func runRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration file (default $SHOUWANG_CONFIG)")
	role := fs.String("role", "all", "which workers to run: capture or all (transform, sink and check are not built yet)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !roles[*role] {
		fmt.Fprintf(stderr, "shouwang run: --role %q is not available in this build (available: capture, all)\n", *role)
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "shouwang run: give the configuration file with -c FILE (or set SHOUWANG_CONFIG)")
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
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w, err := newWorker(ctx, cfg, log, "")
	if err != nil {
		fmt.Fprintf(stderr, "shouwang run: %v\n", err)
		return 2
	}
	defer w.Close()
	conns, err := w.connectors()
	if err != nil {
		fmt.Fprintf(stderr, "shouwang run: %s:\n%v\n", cfg.File(), err)
		return 2
	}
	log.Info("capture starting", "connectors", len(conns), "metrics", w.server.Addr())
	if err := w.runCapture(ctx, conns, nil); err != nil {
		fmt.Fprintf(stderr, "shouwang run: %v\n", err)
		return 1
	}
	return 0
}
