package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/testenv"
)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// startupConfig writes a configuration with one mysqlbinlog source at dsn and a real
// Kafka cluster; extra is appended to the source.
func startupConfig(t *testing.T, brokers []string, dsn, flavor, table, extra string) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("kafka:\n  brokers:\n")
	for _, a := range brokers {
		fmt.Fprintf(&b, "    - %q\n", a)
	}
	b.WriteString("  topic_prefix: start\n  partitions: 1\n  replication_factor: 1\n  client_id: starttest\n")
	b.WriteString("metrics:\n  addr: 127.0.0.1:0\nregions:\n  province: \"51\"\nstate:\n  dir: state\n")
	fmt.Fprintf(&b, "sources:\n  - name: national\n    kind: mysqlbinlog\n    mysql:\n      dsn: %q\n      flavor: %s\n      server_id: 4242\n      tables:\n        - %s\n      heartbeat_interval: 1s\n", dsn, flavor, table)
	b.WriteString(extra)
	p := filepath.Join(dir, "shouwang.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// logLines parses the JSON log lines written so far.
func logLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func httpStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startWorker runs the capture role of cfgPath in the background, logging JSON into
// the returned buffer, and stops it at the end of the test.
func startWorker(t *testing.T, cfgPath string) (*worker, *testenv.SyncBuffer, <-chan error) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	w, err := newWorker(ctx, cfg, log, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns, err := w.connectors()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.runCapture(ctx, conns, nil) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("capture did not stop within a minute of cancellation")
		}
		w.Close()
	})
	return w, logs, done
}

func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool, logs ...*testenv.SyncBuffer) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			for _, l := range logs {
				t.Logf("log:\n%s", l.String())
			}
			t.Fatalf("gave up waiting for %s after %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNeverConnectedSourceTurnsUnhealthy: a source whose server was never reachable
// logs one honest line per attempt (human-readable retry_in, no doubled prefix, no
// "saved position"), is not ready, and after its startup_grace turns /healthz 503
// naming it.
func TestNeverConnectedSourceTurnsUnhealthy(t *testing.T) {
	k := testenv.Kafka(t)
	dsn := fmt.Sprintf("repl:pw@tcp(127.0.0.1:%d)/", closedPort(t))
	cfgPath := startupConfig(t, k.Brokers(), dsn, "mariadb", "gbdb.person", "    startup_grace: 2s\n")
	w, logs, done := startWorker(t, cfgPath)
	base := "http://" + w.server.Addr()

	// Within the grace: alive but not ready.
	if code, body := httpStatus(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz during the grace: %d %s", code, body)
	}
	waitUntil(t, "/healthz to turn 503 after the grace", time.Minute, func() bool {
		code, _ := httpStatus(t, base+"/healthz")
		return code == http.StatusServiceUnavailable
	})
	_, body := httpStatus(t, base+"/healthz")
	if !strings.Contains(body, "capture/national: has not connected since the worker started 2s ago") {
		t.Errorf("/healthz body does not name the source and why: %q", body)
	}
	if code, body := httpStatus(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not connected yet") {
		t.Errorf("/readyz: %d %q; want 503 saying the source is not connected yet", code, body)
	}
	// A second attempt after the first backoff, to see one line per attempt.
	waitUntil(t, "two attempts in the log", time.Minute, func() bool {
		return strings.Count(logs.String(), "has not connected yet") >= 2
	})
	select {
	case err := <-done:
		t.Fatalf("capture stopped without exit_on_startup_failure: %v", err)
	default:
	}

	attempt := 0
	for _, l := range logLines(t, logs.String()) {
		msg, _ := l["msg"].(string)
		if l["level"] != "ERROR" {
			continue
		}
		switch msg {
		case "capture source has not connected yet; retrying":
			attempt++
			if n, _ := l["attempt"].(float64); int(n) != attempt {
				t.Errorf("attempt %v logged as number %v: one line per attempt expected", attempt, l["attempt"])
			}
			retry, ok := l["retry_in"].(string)
			if d, err := time.ParseDuration(retry); !ok || err != nil || d < 100*time.Millisecond || d > 2*time.Minute {
				t.Errorf("retry_in = %#v: want a human-readable duration such as \"1.1s\"", l["retry_in"])
			}
			e, _ := l["err"].(string)
			if !strings.HasPrefix(e, "capture national: open: ") || strings.Count(e, "capture national:") != 1 {
				t.Errorf("err = %q: want one \"capture national: open: \" prefix", e)
			}
		case "capture source did not connect within its startup_grace; /healthz now reports the worker unhealthy, retrying":
		default:
			t.Errorf("unexpected error line while never connected: %v", l)
		}
	}
	if attempt < 2 {
		t.Errorf("%d attempt lines; want at least 2", attempt)
	}
	if s := logs.String(); strings.Contains(s, "saved position") || strings.Contains(s, "restarting") {
		t.Errorf("the log speaks of a restart or a saved position although the source never connected:\n%s", s)
	}
}

// TestNeverConnectedSourceExits: with --exit-on-startup-failure, `shouwang run`
// exits with status 3 once the grace has passed without a connection.
func TestNeverConnectedSourceExits(t *testing.T) {
	k := testenv.Kafka(t)
	dsn := fmt.Sprintf("repl:pw@tcp(127.0.0.1:%d)/", closedPort(t))
	cfgPath := startupConfig(t, k.Brokers(), dsn, "mariadb", "gbdb.person", "    startup_grace: 1s\n")
	var stdout bytes.Buffer
	stderr := &testenv.SyncBuffer{}
	codec := make(chan int, 1)
	go func() {
		codec <- runRun([]string{"-c", cfgPath, "--role", "capture", "--exit-on-startup-failure"}, &stdout, stderr)
	}()
	select {
	case code := <-codec:
		if code != 3 {
			t.Fatalf("exit status %d, want 3; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("run did not exit; stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "capture national did not connect within its startup_grace of 1s") {
		t.Errorf("stderr does not say why it exits:\n%s", stderr.String())
	}

	// The same from the configuration file: sources[].exit_on_startup_failure; and
	// --metrics-addr serves /healthz where it says instead of metrics.addr.
	cfgPath = startupConfig(t, k.Brokers(), dsn, "mariadb", "gbdb.person", "    startup_grace: 2s\n    exit_on_startup_failure: true\n")
	stderr = &testenv.SyncBuffer{}
	addr := fmt.Sprintf("127.0.0.1:%d", closedPort(t))
	go func() { codec <- runRun([]string{"-c", cfgPath, "--metrics-addr", addr}, &stdout, stderr) }()
	waitUntil(t, "/healthz on --metrics-addr", time.Minute, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case code := <-codec:
		if code != 3 {
			t.Fatalf("exit status %d with exit_on_startup_failure in the file, want 3; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("run did not exit with exit_on_startup_failure in the file; stderr:\n%s", stderr.String())
	}
}

// TestConnectedSourceLosingItsServerStaysHealthy: a source that connected and then
// lost its server keeps retrying with readiness false, /healthz stays 200 however long
// the outage, and the log says where the restart resumes.
func TestConnectedSourceLosingItsServerStaysHealthy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private MariaDB; skipped with -short")
	}
	m, db := testenv.NewMariaDBDatabase(t, testenv.MariaDBOptions{})
	ctx := context.Background()
	if err := m.Exec(ctx, db, `CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL)`,
		`INSERT INTO person VALUES (1, 'a'), (2, 'b')`); err != nil {
		t.Fatal(err)
	}
	k := testenv.Kafka(t)
	cfgPath := startupConfig(t, k.Brokers(), m.ReplDSN(db), m.Flavor(), db+".person", "    startup_grace: 1s\n    exit_on_startup_failure: true\n")
	w, logs, done := startWorker(t, cfgPath)
	base := "http://" + w.server.Addr()
	waitUntil(t, "the source to be ready", time.Minute, func() bool {
		code, _ := httpStatus(t, base+"/readyz")
		return code == http.StatusOK
	})
	// The snapshot is done and its position saved once the source streams.
	waitUntil(t, "a saved position", time.Minute, func() bool {
		_, found, err := w.positions.Load(ctx, "national")
		return err == nil && found
	})
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() { // the database cleanup registered earlier needs the server
		if !restarted {
			if err := m.Start(context.Background()); err != nil {
				t.Errorf("restart MariaDB for cleanup: %v", err)
			}
		}
	})
	waitUntil(t, "/readyz to turn 503 naming the reconnect", time.Minute, func() bool {
		code, body := httpStatus(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "reconnecting")
	}, logs)
	time.Sleep(3 * time.Second) // well past the 1s grace
	if code, body := httpStatus(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after losing a server that was connected: %d %q; want 200 (readiness covers outages)", code, body)
	}
	select {
	case err := <-done:
		t.Fatalf("capture stopped although the source had connected (exit_on_startup_failure is about start-up only): %v", err)
	default:
	}
	if strings.Contains(logs.String(), "has not connected yet") {
		t.Errorf("a source that connected is logged as never connected:\n%s", logs.String())
	}
	// The server comes back: the source resumes and is ready again.
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitUntil(t, "/readyz to be 200 again after the server returned", 2*time.Minute, func() bool {
		code, _ := httpStatus(t, base+"/readyz")
		return code == http.StatusOK
	}, logs)
	if strings.Contains(logs.String(), `"source":"national","source":"national"`) {
		t.Errorf("log lines carry the source attribute twice:\n%s", logs.String())
	}
}
