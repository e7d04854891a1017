package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// topicTail collects every envelope of one topic, read from the start by its own
// consumer group, so a test can wait for events and inspect them in topic order.
type topicTail struct {
	mu   sync.Mutex
	envs []*schemas.Envelope
	err  error
}

func tailTopic(t *testing.T, brokers []string, topic string) *topicTail {
	t.Helper()
	c, err := bus.NewGroupConsumer(bus.Options{Brokers: brokers}, fmt.Sprintf("tail-%d", time.Now().UnixNano()), []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	tt := &topicTail{}
	go func() {
		defer close(done)
		for {
			m, err := c.Fetch(ctx)
			if err != nil {
				if ctx.Err() == nil {
					tt.mu.Lock()
					tt.err = err
					tt.mu.Unlock()
				}
				return
			}
			env, err := schemas.UnmarshalEnvelope(m.Value)
			tt.mu.Lock()
			if err != nil {
				tt.err = fmt.Errorf("offset %d: %w", m.Offset, err)
			} else {
				tt.envs = append(tt.envs, env)
			}
			tt.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	return tt
}

// waitFor waits until cond holds on the envelopes read so far and returns them.
func (tt *topicTail) waitFor(t *testing.T, what string, cond func([]*schemas.Envelope) bool) []*schemas.Envelope {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		tt.mu.Lock()
		envs, err := slices.Clone(tt.envs), tt.err
		tt.mu.Unlock()
		if err != nil {
			t.Fatalf("reading the topic while waiting for %s: %v", what, err)
		}
		if cond(envs) {
			return envs
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s; %d events read", what, len(envs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func envID(e *schemas.Envelope) string { return fmt.Sprint(e.Key["id"]) }

func indexOf(envs []*schemas.Envelope, op schemas.Op, id string) int {
	return slices.IndexFunc(envs, func(e *schemas.Envelope) bool { return e.Op == op && envID(e) == id })
}

// TestSnapshotCommandEndToEnd runs a capture worker in-process (the same newWorker,
// connectors and runCapture as `shouwang run --role capture`) on a private MariaDB
// and a Kafka cluster reached through its brokers, then asks for a re-snapshot with
// `shouwang snapshot --where` and checks that exactly the matching rows come again as
// r events with their current values, while the stream goes on.
func TestSnapshotCommandEndToEnd(t *testing.T) {
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
	b.WriteString("  topic_prefix: snap\n  partitions: 1\n  replication_factor: 1\n  client_id: snaptest\n")
	b.WriteString("metrics:\n  addr: 127.0.0.1:0\n")
	fmt.Fprintf(&b, "regions:\n  province: \"51\"\nstate:\n  dir: %q\n  positions: file\n", filepath.Join(dir, "state"))
	sources := "sources:\n  - name: national\n    kind: mysqlbinlog\n    mysql:\n" +
		fmt.Sprintf("      dsn: %q\n      flavor: %s\n      server_id: %d\n      gtid: true\n      tables:\n        - %s.tbl\n",
			m.ReplDSN(db), m.Flavor(), m.ServerID()+100, db) +
		"      snapshot:\n        mode: initial\n        chunk_size: 7\n      heartbeat_interval: 1s\n"
	b.WriteString(sources)
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

	// The topic exists before the tail's consumer group joins (a group joined to a
	// missing topic may never get its partition).
	topic := schemas.RawTopic("snap", "national", "tbl")
	if err := bus.EnsureTopics(ctx, bus.Options{Brokers: k.Brokers()}, bus.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	tail := tailTopic(t, k.Brokers(), topic)
	countR := func(envs []*schemas.Envelope) int {
		n := 0
		for _, e := range envs {
			if e.Op == schemas.OpRead {
				n++
			}
		}
		return n
	}
	tail.waitFor(t, "the initial snapshot (30 rows)", func(envs []*schemas.Envelope) bool { return countR(envs) >= 30 })

	if err := m.Exec(ctx, db, `UPDATE tbl SET name = 'changed' WHERE id = 3`, `DELETE FROM tbl WHERE id = 15`); err != nil {
		t.Fatal(err)
	}
	tail.waitFor(t, "the streamed update and delete", func(envs []*schemas.Envelope) bool {
		return indexOf(envs, schemas.OpUpdate, "3") >= 0 && indexOf(envs, schemas.OpDelete, "15") >= 0
	})

	var out, errb bytes.Buffer
	table := db + ".tbl"
	// The bare table name is enough when it is unambiguous: the CLI sends db.tbl.
	if code := runSnapshot([]string{"-c", cfgPath, "--source", "national", "--table", "tbl", "--where", "id < 10"}, &out, &errb); code != 0 {
		t.Fatalf("shouwang snapshot exited %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "snapshot of national "+table+" requested on snap.signal") {
		t.Errorf("stdout %q does not confirm the request", out.String())
	}

	// Streaming goes on: a row inserted now arrives too. Wait for both, then look at
	// what came after the streamed delete.
	if err := m.Exec(ctx, db, `INSERT INTO tbl VALUES (100, 'after')`); err != nil {
		t.Fatal(err)
	}
	envs := tail.waitFor(t, "9 re-snapshot rows and the insert", func(envs []*schemas.Envelope) bool {
		i := indexOf(envs, schemas.OpDelete, "15")
		return countR(envs[i:]) >= 9 && indexOf(envs, schemas.OpCreate, "100") >= 0
	})
	// Give a wrongly wider re-snapshot the time to show itself: wait for one more
	// streamed change, which follows any further snapshot rows of the chunk windows.
	if err := m.Exec(ctx, db, `INSERT INTO tbl VALUES (101, 'marker')`); err != nil {
		t.Fatal(err)
	}
	envs = tail.waitFor(t, "the marker insert", func(envs []*schemas.Envelope) bool { return indexOf(envs, schemas.OpCreate, "101") >= 0 })
	var ids []string
	for _, e := range envs[indexOf(envs, schemas.OpDelete, "15"):] {
		if e.Op != schemas.OpRead {
			continue
		}
		ids = append(ids, envID(e))
		if !e.Source.Snapshot {
			t.Errorf("re-snapshot row %s without source.snapshot", envID(e))
		}
		want := fmt.Sprintf("row %s", envID(e))
		if envID(e) == "3" {
			want = "changed"
		}
		if e.After["name"] != want {
			t.Errorf("re-snapshot row %s has name %v, want the current %q", envID(e), e.After["name"], want)
		}
	}
	slices.Sort(ids)
	if want := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}; !slices.Equal(ids, want) {
		t.Fatalf("re-snapshot rows %v, want exactly %v", ids, want)
	}
}

// TestSnapshotCommandErrors checks the CLI's refusals: each exits 2 and names the
// problem, before anything is sent.
func TestSnapshotCommandErrors(t *testing.T) {
	dir := t.TempDir()
	src := "sources:\n  - name: national\n    kind: mysqlbinlog\n    mysql:\n" +
		"      dsn: \"repl:pw@tcp(127.0.0.1:3306)/\"\n      server_id: 7\n      tables:\n        - gbdb.person\n"
	write := func(name, kafka string) string {
		p := filepath.Join(dir, name)
		body := kafka + fmt.Sprintf("state:\n  dir: %q\n  positions: file\n", filepath.Join(dir, "state")) + src
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	real := write("real.yaml", "kafka:\n  brokers: [\"127.0.0.1:1\"]\n  topic_prefix: sc\n")
	embedded := write("embedded.yaml", "kafka:\n  embedded: true\n  topic_prefix: sc\n")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown source", []string{"-c", real, "--source", "nope", "--table", "gbdb.person"}, []string{`--source "nope" is not configured`, real}},
		{"unknown table", []string{"-c", real, "--source", "national", "--table", "gbdb.nope"}, []string{`--table: "gbdb.nope" is not captured by source "national"`, "gbdb.person"}},
		{"embedded broker", []string{"-c", embedded, "--source", "national", "--table", "gbdb.person"}, []string{"embedded in-memory broker", "kafka.brokers"}},
		{"missing flags", []string{"-c", real}, []string{"--source and --table are required"}},
		{"missing config", []string{"-c", filepath.Join(dir, "none.yaml"), "--source", "national", "--table", "gbdb.person"}, []string{"none.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runSnapshot(c.args, &out, &errb)
			if code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", code, errb.String())
			}
			for _, w := range c.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr %q does not mention %q", errb.String(), w)
				}
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
		})
	}
}
