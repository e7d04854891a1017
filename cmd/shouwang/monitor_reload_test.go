package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/metrics"
	"github.com/shouwang/shouwang/internal/testenv"
)

// TestMonitorRuleFilesHotReload: a changed warnings file that does not load is refused
// (counted, logged with file and line) and a fixed one is applied.
func TestMonitorRuleFilesHotReload(t *testing.T) {
	k := testenv.Kafka(t)
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "warnings-2025.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(rulesFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		// A later modification time than the previous write, whatever the clock's grain.
		at := time.Now().Add(time.Duration(len(s)) * time.Second)
		if err := os.Chtimes(rulesFile, at, at); err != nil {
			t.Fatal(err)
		}
	}
	write("version: 1\ndue_days: 10\n")
	cfgPath := filepath.Join(dir, "shouwang.yaml")
	cfgText := "kafka:\n  brokers: [\"" + strings.Join(k.Brokers(), "\", \"") + "\"]\n  topic_prefix: hr\nmetrics:\n  addr: 127.0.0.1:0\n" +
		"regions:\n  province: \"51\"\nstate:\n  dir: ./state\nmonitor:\n  enabled: true\n  warnings: [warnings-2025.yaml]\n"
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	w := &worker{cfg: cfg, log: slog.New(slog.NewTextHandler(logs, nil)), reg: metrics.NewRegistry(),
		busOpts: bus.Options{Brokers: k.Brokers()}}
	if w.producer, err = bus.NewProducer(w.busOpts); err != nil {
		t.Fatal(err)
	}
	defer w.producer.Close()
	if w.mon, err = w.monitorWorker(); err != nil || w.mon == nil {
		t.Fatalf("monitor: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.watchMonitorRules(ctx, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	count := func(result string) float64 {
		c, err := w.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range c {
			if mf.GetName() != "shouwang_monitor_rule_reloads_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen; log:\n%s", what, logs.String())
			}
		}
	}
	write("version: 1\ndue_days: ten\n")
	waitFor("a refused reload", func() bool { return count("refused") == 1 })
	if !strings.Contains(logs.String(), "warnings-2025.yaml:2") || count("applied") != 0 {
		t.Errorf("refusal does not name the file and line, or something was applied:\n%s", logs.String())
	}
	write("version: 1\ndue_days: 12\n")
	waitFor("an applied reload", func() bool { return count("applied") == 1 })
}
