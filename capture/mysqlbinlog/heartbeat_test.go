package mysqlbinlog

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/testenv"
)

// readPositionOnly reads until a position-only change at or after head arrives and
// fails if anything else is read.
func readPositionOnly(t *testing.T, s *Source, head binlogPos) Position {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		chs, err := s.ReadN(ctx, 10)
		if err != nil {
			t.Fatalf("ReadN waiting for a heartbeat at %v: %v", head, err)
		}
		for _, c := range chs {
			if !c.PositionOnly {
				t.Fatalf("unexpected change %s of %s (only other tables were written)", c.Envelope.Op, c.Envelope.Source.Table)
			}
			p, ok, err := DecodePosition(c.Position)
			if err != nil || !ok {
				t.Fatalf("heartbeat position %q: %v", c.Position, err)
			}
			if (binlogPos{p.File, p.Pos}).compare(head) >= 0 {
				return p
			}
		}
	}
}

func TestPositionAdvancesOnFilteredAndQuietSource(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	exec(t, d, "CREATE TABLE watched (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)")
	opts := testOptions(t, srv, db)
	opts.Databases, opts.Tables = nil, []string{db + ".watched"}
	opts.SnapshotMode = SnapshotNever
	s := openSource(t, opts, nil)

	// Writes to a table that is not captured: the position follows them.
	for i := 1; i <= 20; i++ {
		exec(t, d, fmt.Sprintf("INSERT INTO other VALUES (%d)", i))
	}
	p := readPositionOnly(t, s, headPos(t, d))
	if p.GTID == "" {
		t.Errorf("heartbeat position %v has no GTID set", p)
	}

	// A rotation writes no row at all: the heartbeat on the quiet stream carries the
	// new file.
	exec(t, d, "FLUSH BINARY LOGS")
	head := headPos(t, d)
	p = readPositionOnly(t, s, head)
	if p.File != head.File {
		t.Errorf("heartbeat after rotation at %s, want file %s", p, head.File)
	}
}

func TestDeadLetters(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	d.SetMaxOpenConns(1) // the lax sql_mode below is per session
	exec(t, d, "SET SESSION sql_mode = ''", "CREATE TABLE t (id INT PRIMARY KEY, born DATE)",
		"INSERT INTO t VALUES (1, '0000-00-00'), (2, '2020-01-02')")
	s := openSource(t, testOptions(t, srv, db), nil)
	chs, _ := readUntilCaughtUp(t, s, headPos(t, d))
	exec(t, d, "INSERT INTO t VALUES (3, '2021-00-05')")
	more, _ := readUntilCaughtUp(t, s, headPos(t, d))
	var dead []capture.Change
	good := 0
	for _, c := range append(chs, more...) {
		if c.DeadLetter != nil {
			dead = append(dead, c)
		} else {
			good++
		}
	}
	if len(dead) != 2 || good != 1 {
		t.Fatalf("%d dead letters and %d good changes, want 2 (zero dates, snapshot and binlog) and 1", len(dead), good)
	}
	for i, c := range dead {
		r := c.DeadLetter
		if c.DeadLetterReason != "zero_date" || !strings.Contains(r.Reason, "zero date") || !strings.Contains(r.Reason, db+".t") {
			t.Errorf("dead letter %d: code %q reason %q, want zero_date naming the table", i, c.DeadLetterReason, r.Reason)
		}
		if want := []string{`{"id":1}`, `{"id":3}`}[i]; r.Key != want || string(c.Key) != want {
			t.Errorf("dead letter %d: key %q / %q, want %s", i, r.Key, c.Key, want)
		}
		if r.Position == "" || r.Source != "national" || !strings.Contains(string(r.Payload), `"born"`) {
			t.Errorf("dead letter %d: position %q source %q payload %s", i, r.Position, r.Source, r.Payload)
		}
	}
	if !dead[0].Envelope.Source.Snapshot || dead[1].Envelope.Source.Snapshot {
		t.Error("want the first dead letter from the snapshot, the second from the binlog")
	}
}

func TestNoGoroutineLeakAfterClose(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	exec(t, d, "CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1),(2),(3)")
	opts := testOptions(t, srv, db)
	opts.Reload = ReloadOptions{Tables: []string{db + ".t"}}
	before := runtime.NumGoroutine()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	exec(t, d, "INSERT INTO t VALUES (4)")
	readUntilCaughtUp(t, s, headPos(t, d))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Connections wind down asynchronously: wait for the count to come back.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before Open:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
