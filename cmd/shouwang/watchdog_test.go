package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/testenv"
)

// The capture role's watchdogs against real sources: a weekly push and a monthly
// delivery whose saved last arrivals are two months old are overdue at start; a binlog
// change of the watched table and a committed file delivery clear them; the binlog
// source's heartbeats keep it from looking stalled until its server is killed.
func TestCaptureWatchdogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	old := watchdogTick
	watchdogTick = 200 * time.Millisecond
	defer func() { watchdogTick = old }()

	m := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	if err := m.CreateDatabase(ctx, "national"); err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(ctx, "national", "CREATE TABLE household (id VARCHAR(20) PRIMARY KEY, county VARCHAR(12))",
		"INSERT INTO household VALUES ('h1', '510104')"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	inbox := filepath.Join(dir, "inbox")
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(stateDir, "watchdog"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(inbox, 0o755); err != nil {
		t.Fatal(err)
	}
	longAgo := time.Now().Add(-60 * 24 * time.Hour)
	for _, name := range []string{"national_push", "disability_monthly"} {
		b, _ := json.Marshal(map[string]time.Time{"last_seen": longAgo, "since": longAgo.Add(-30 * 24 * time.Hour)})
		if err := os.WriteFile(filepath.Join(stateDir, "watchdog", name+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	yaml := fmt.Sprintf(`kafka:
  embedded: true
  topic_prefix: wd
  partitions: 1
state:
  dir: %q
sources:
  - name: national
    kind: mysqlbinlog
    mysql:
      dsn: %q
      flavor: %s
      server_id: %d
      gtid: true
      heartbeat_interval: 1s
      tables: [national.household]
  - name: files
    kind: filedrop
    filedrop:
      datasets:
        - name: disability
          department: 残联
          delivery: full
          inbox: %q
          settle: {require_done_marker: true}
          key: [id_number]
          columns: {身份证号: id_number, 残疾等级: level}
watchdogs:
  - name: national_push
    kind: push
    source: national
    tables: [household]
    due: 168h
    grace: 12h
  - name: disability_monthly
    kind: delivery
    source: files
    tables: [disability]
    due: "0 0 5 * *"
  - name: national_stalled
    kind: stalled
    source: national
    max_silence: 10s
`, stateDir, m.ReplDSN("national"), m.Flavor(), m.ServerID()+100, inbox)
	cfg, err := config.Parse("wd.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w, err := newWorker(ctx, cfg, log, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	conns, err := w.connectors()
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.runCapture(wctx, conns, nil) }()
	stopped := false
	stopWorker := func() {
		if !stopped {
			stopped = true
			stop()
			if err := <-done; err != nil {
				t.Errorf("runCapture: %v", err)
			}
		}
	}
	defer stopWorker()

	overdue := func(rule string) float64 {
		return testenv.MetricValue(t, w.reg, "shouwang_watchdog_overdue", "watchdog", rule)
	}
	waitFor := func(what, rule string, want float64, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for overdue(rule) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: shouwang_watchdog_overdue{watchdog=%q} = %v after %s, want %v", what, rule, overdue(rule), within, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("saved arrivals two months old", "national_push", 1, 20*time.Second)
	waitFor("saved arrivals two months old", "disability_monthly", 1, 20*time.Second)
	// The snapshot of household is our own reading, not a push: still overdue once it
	// is done and heartbeats flow.
	time.Sleep(3 * time.Second)
	if got := overdue("national_push"); got != 1 {
		t.Fatalf("the initial snapshot counted as the weekly push (overdue = %v)", got)
	}
	if got := overdue("national_stalled"); got != 0 {
		t.Fatalf("a connected binlog source with heartbeats looks stalled (overdue = %v)", got)
	}

	if err := m.Exec(ctx, "national", "INSERT INTO household VALUES ('h2', '510105')"); err != nil {
		t.Fatal(err)
	}
	waitFor("a binlog change of household", "national_push", 0, 30*time.Second)
	if err := os.WriteFile(filepath.Join(inbox, "disability_202612.csv"), []byte("身份证号,残疾等级\n510104199001011234,二级\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inbox, "disability_202612.csv.done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("a committed delivery", "disability_monthly", 0, 30*time.Second)

	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor("the binlog server killed", "national_stalled", 1, 40*time.Second)
	stopWorker()

	var st struct {
		LastSeen time.Time `json:"last_seen"`
	}
	b, err := os.ReadFile(filepath.Join(stateDir, "watchdog", "national_push.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if time.Since(st.LastSeen) > 2*time.Minute {
		t.Fatalf("the push's arrival was not saved at shutdown: last_seen %v", st.LastSeen)
	}
}
