package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/capture/filedrop"
	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// heldConfig writes a configuration with one file-delivery source whose inbox and
// state live in a temporary folder given relative to the configuration file.
func heldConfig(t *testing.T) (path, inbox string) {
	t.Helper()
	dir := t.TempDir()
	inbox = filepath.Join(dir, "inbox", "disability")
	if err := os.MkdirAll(inbox, 0o755); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "shouwang.yaml")
	body := `kafka:
  brokers: ["127.0.0.1:9"]
  topic_prefix: sc
state:
  dir: state
sources:
  - name: files
    kind: filedrop
    filedrop:
      datasets:
        - name: disability
          department: 残联
          delivery: full
          inbox: inbox/disability
          key: [id_number]
          columns: {身份证号: id_number, 姓名: name, 残疾等级: level}
          types: {level: text}
          mass_delete: {max_share: 0.2}
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, inbox
}

// readChanges reads n changes from a filedrop source built from the configuration
// exactly as the worker builds it, acknowledging them, and fails after 20 s.
func readChanges(t *testing.T, src capture.Source, n int) []capture.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []capture.Change
	for len(out) < n {
		cs, err := src.ReadN(ctx, n-len(out))
		if err != nil {
			t.Fatalf("after %d of %d changes: %v", len(out), n, err)
		}
		for _, c := range cs {
			if c.Envelope.Op != "" {
				out = append(out, c)
			}
			if err := src.Ack(ctx, c.Position); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// idle reads with a short deadline until cond holds, failing after 20 s.
func idle(t *testing.T, src capture.Source, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		cs, err := src.ReadN(ctx, 10)
		cancel()
		if err == nil && len(cs) > 0 {
			t.Fatalf("unexpected changes: %d", len(cs))
		}
	}
}

// TestHeldListAndReleaseFileDelivery drives the whole operator path: a truncated full
// delivery is held by the breaker, its report names the real release command,
// `held list` shows it, `held release` puts it back with an audit line, and the source
// then applies its deletions.
func TestHeldListAndReleaseFileDelivery(t *testing.T) {
	cfgPath, inbox := heldConfig(t)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{cfg: cfg}
	ds := cfg.Sources[0].FileDrop.Datasets[0]
	start := time.Now()
	fast := func() time.Time { return start.Add(time.Since(start) * 2000) } // settle.min_age 1m = 30 ms
	src, err := filedrop.New(filedrop.Config{System: "files", TopicPrefix: "sc", Dataset: w.datasetOptions("files", ds),
		Now: fast, PollInterval: 10 * time.Millisecond, ReleaseCommand: heldReleaseCommand(cfg.File(), "files", ds.Name)})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	rows := []string{"身份证号,姓名,残疾等级"}
	for i := range 10 {
		rows = append(rows, fmt.Sprintf("5101011990010100%02d,p%d,一级", i, i))
	}
	write := func(name string, lines []string) {
		if err := os.WriteFile(filepath.Join(inbox, name), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("full.csv", rows)
	readChanges(t, src, 10)
	write("truncated.csv", rows[:4])
	report := filepath.Join(inbox, "held", "truncated.csv.report.txt")
	idle(t, src, func() bool { _, err := os.Stat(report); return err == nil })
	rep, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	wantCmd := fmt.Sprintf("shouwang held release -c %s --source files --dataset disability truncated.csv", cfgPath)
	if !strings.Contains(string(rep), wantCmd) {
		t.Fatalf("report lacks the real release command %q:\n%s", wantCmd, rep)
	}

	var stdout, stderr bytes.Buffer
	if code := runHeld([]string{"list", "-c", cfgPath}, &stdout, &stderr); code != 0 {
		t.Fatalf("held list exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"files/disability: file truncated.csv", "would delete 7", "release: " + wantCmd} {
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("held list lacks %q:\n%s", want, stdout.String())
		}
	}

	stdout.Reset()
	stderr.Reset()
	if code := runHeld([]string{"release", "-c", cfgPath, "--source", "files", "--dataset", "disability", "--reason", "confirmed with 残联", "truncated.csv"}, &stdout, &stderr); code != 0 {
		t.Fatalf("held release exit %d: %s", code, stderr.String())
	}
	for _, c := range readChanges(t, src, 6) {
		if c.Envelope.Op != schemas.OpDelete {
			t.Fatalf("released delivery gave %s %v, want only deletes", c.Envelope.Op, c.Envelope.Key)
		}
	}

	// The action is in the audit log, under the state directory relative to the file.
	b, err := os.ReadFile(filepath.Join(filepath.Dir(cfgPath), "state", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var e auditEntry
	if err := json.Unmarshal(bytes.TrimSpace(b), &e); err != nil {
		t.Fatalf("audit line %q: %v", b, err)
	}
	if e.Action != "held release" || e.Source != "files" || e.Target != "disability" || e.File != "truncated.csv" ||
		e.Reason != "confirmed with 残联" || e.Result != "ok" || e.User == "" || e.Time.IsZero() {
		t.Fatalf("audit entry = %+v", e)
	}

	stdout.Reset()
	if code := runHeld([]string{"list", "-c", cfgPath}, &stdout, &stderr); code != 0 || stdout.String() != "nothing is held\n" {
		t.Fatalf("held list after release: exit %d, %q", code, stdout.String())
	}
}

func TestHeldCommandErrors(t *testing.T) {
	cfgPath, _ := heldConfig(t)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: shouwang held list"},
		{[]string{"list"}, 2, "-c FILE is required"},
		{[]string{"list", "-c", cfgPath, "--source", "nope"}, 2, `--source "nope" is not configured`},
		{[]string{"release", "-c", cfgPath}, 2, "--source is required"},
		{[]string{"release", "-c", cfgPath, "--source", "files", "--dataset", "disability"}, 2, "one held file name"},
		{[]string{"release", "-c", cfgPath, "--source", "files", "--dataset", "nope", "x.csv"}, 2, `--dataset "nope" is not a dataset`},
		{[]string{"release", "-c", cfgPath, "--source", "files", "--dataset", "disability", "x.csv"}, 1, "list "},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		if code := runHeld(tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("held %v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}

// TestHeldBinlogDeletes lists held reload deletes from the saved state and refuses a
// release that could not reach the running worker or names a table holding nothing.
func TestHeldBinlogDeletes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, kafka string) string {
		p := filepath.Join(dir, name)
		body := kafka + "state:\n  dir: state\n" + "sources:\n  - name: national\n    kind: mysqlbinlog\n    mysql:\n" +
			"      dsn: \"repl:pw@tcp(127.0.0.1:3306)/\"\n      server_id: 7\n      tables:\n        - gbdb.person\n        - gbdb.household\n"
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	embedded := write("embedded.yaml", "kafka:\n  embedded: true\n  topic_prefix: sc\n")
	man := filepath.Join(dir, "state", "mysqlbinlog", "national", "reload", "gbdb.person")
	if err := os.MkdirAll(man, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(man, "manifest.json"), []byte(`{"table":"gbdb.person","generations":[{"epoch":3,"held":true,"held_rows":4200,"overlays":[],"rows":10,"created":"2026-12-04T08:00:00Z","at":"bin.000002:99"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := runHeld([]string{"list", "-c", embedded}, &stdout, &stderr); code != 0 {
		t.Fatalf("held list exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"national/gbdb.person: 4200 deletes held since", "release: shouwang held release -c " + embedded + " --source national --table gbdb.person"} {
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("held list lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"release", "-c", embedded, "--source", "national", "--table", "household"}, "holds no deletes of household (held: gbdb.person)"},
		{[]string{"release", "-c", embedded, "--source", "national", "--table", "person"}, "embedded in-memory broker"},
		{[]string{"release", "-c", embedded, "--source", "national", "x.csv"}, "give --table DB.TABLE"},
	} {
		stderr.Reset()
		if code := runHeld(tc.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("held %v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// TestHeldReleaseBinlogEndToEnd runs a capture worker in-process on a private MariaDB
// and a Kafka cluster: a weekly reload that lacks most rows is held by the breaker,
// `held list` shows it from the saved state, and `held release` reaches the running
// worker through the signal topic, which then emits exactly the held deletes.
func TestHeldReleaseBinlogEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped with -short")
	}
	m, db := testenv.NewMariaDBDatabase(t, testenv.MariaDBOptions{})
	ctx := context.Background()
	if err := m.Exec(ctx, db, `CREATE TABLE tbl (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL)`,
		`INSERT INTO tbl SELECT seq, CONCAT('row ', seq) FROM seq_1_to_30`); err != nil {
		t.Fatal(err)
	}
	k := testenv.Kafka(t)
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(kafkaBrokersYAML(k))
	b.WriteString("  topic_prefix: held\n  partitions: 1\n  replication_factor: 1\n  client_id: heldtest\n")
	b.WriteString("metrics:\n  addr: 127.0.0.1:0\nregions:\n  province: \"51\"\nstate:\n  dir: state\n")
	fmt.Fprintf(&b, "sources:\n  - name: national\n    kind: mysqlbinlog\n    mysql:\n      dsn: %q\n      flavor: %s\n      server_id: %d\n      gtid: true\n      tables:\n        - %s.tbl\n",
		m.ReplDSN(db), m.Flavor(), m.ServerID()+200, db)
	b.WriteString("      heartbeat_interval: 1s\n      reload:\n        detect: truncate\n        quiet_period: 1s\n        mass_delete: {max_table_share: 0.2, max_county_share: 1}\n")
	cfgPath := filepath.Join(dir, "shouwang.yaml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	wctx, stop := context.WithCancel(ctx)
	w, err := newWorker(wctx, cfg, log, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns, err := w.connectors()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.runCapture(wctx, conns, nil); err != nil {
			t.Errorf("runCapture: %v", err)
		}
	}()
	t.Cleanup(func() { stop(); <-done; w.Close() })

	topic := schemas.RawTopic("held", "national", "tbl")
	if err := bus.EnsureTopics(ctx, bus.Options{Brokers: k.Brokers()}, bus.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	tail := tailTopic(t, k.Brokers(), topic)
	count := func(envs []*schemas.Envelope, op schemas.Op) int {
		n := 0
		for _, e := range envs {
			if e.Op == op {
				n++
			}
		}
		return n
	}
	tail.waitFor(t, "the initial snapshot", func(envs []*schemas.Envelope) bool { return count(envs, schemas.OpRead) >= 30 })

	// The push brings back only 10 of 30 rows: 20 deletes, more than 20%: held.
	if err := m.Exec(ctx, db, `TRUNCATE TABLE tbl`, `INSERT INTO tbl SELECT seq, CONCAT('row ', seq) FROM seq_1_to_10`); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		out.Reset()
		if code := runHeld([]string{"list", "-c", cfgPath}, &out, &errb); code != 0 {
			t.Fatalf("held list exit %d: %s", code, errb.String())
		}
		if strings.Contains(out.String(), "national/"+db+".tbl: 20 deletes held") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reload was not held; held list says:\n%s", out.String())
		}
	}
	if n := count(tail.waitFor(t, "nothing", func([]*schemas.Envelope) bool { return true }), schemas.OpDelete); n != 0 {
		t.Fatalf("%d deletes emitted while held", n)
	}
	out.Reset()
	if code := runHeld([]string{"release", "-c", cfgPath, "--source", "national", "--table", "tbl", "--reason", "国办 confirmed"}, &out, &errb); code != 0 {
		t.Fatalf("held release exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "requested on held.signal") {
		t.Errorf("stdout %q does not confirm the request", out.String())
	}
	envs := tail.waitFor(t, "the 20 released deletes", func(envs []*schemas.Envelope) bool { return count(envs, schemas.OpDelete) >= 20 })
	for _, e := range envs {
		if e.Op == schemas.OpDelete {
			if id, _ := e.Key["id"].(json.Number).Int64(); id <= 10 {
				t.Errorf("row %d deleted, but the push kept it", id)
			}
		}
	}
	audit, err := os.ReadFile(filepath.Join(dir, "state", "audit.log"))
	if err != nil || !strings.Contains(string(audit), `"target":"`+db+`.tbl"`) || !strings.Contains(string(audit), "国办 confirmed") {
		t.Fatalf("audit log %q, %v", audit, err)
	}
}
