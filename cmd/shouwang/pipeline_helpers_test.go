package main

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/shouwang/shouwang/internal/config"
)

// startPipeline parses yaml and runs its capture, transform and sink workers in
// this process, as `shouwang run --role all` would (checkers not started); the
// workers stop and the worker closes at the end of tb.
func startPipeline(tb testing.TB, ctx context.Context, name, yaml string) (*worker, *config.Config) {
	tb.Helper()
	cfg, err := config.Parse(name, []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w, err := newWorker(ctx, cfg, log, "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	conns, err := w.connectors()
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := w.transformers()
	if err != nil {
		tb.Fatal(err)
	}
	sinks, err := w.sinkWorkers()
	if err != nil {
		tb.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{}, 3)
	go func() { w.runCapture(rctx, conns, nil); done <- struct{}{} }()
	go func() { w.runTransforms(rctx, ts); done <- struct{}{} }()
	go func() { w.runSinks(rctx, sinks); done <- struct{}{} }()
	tb.Cleanup(func() {
		stop()
		for range 3 {
			<-done
		}
		w.Close()
	})
	return w, cfg
}
