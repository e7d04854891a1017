package pglogical

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// TestLargeStreamedTransactionAndAbort: with a tiny logical_decoding_work_mem the
// server streams big transactions before they commit; a committed one must arrive
// whole with the position only on its last change, an aborted one not at all.
func TestLargeStreamedTransactionAndAbort(t *testing.T) {
	e := newPG(t)
	e.exec(t, `CREATE TABLE big (id int PRIMARY KEY, v text)`)
	o := e.options("public.big")
	o.SnapshotMode = SnapshotNever
	o.ConnString += "&logical_decoding_work_mem=64kB"
	src := openSource(t, o, nil)
	defer src.Close()
	// Write while the stream is live (drain starts it), so that the server streams
	// the big transactions in progress rather than after their end is in the WAL.
	go func() {
		time.Sleep(time.Second)
		e.exec(t, `BEGIN; INSERT INTO big SELECT g, 'aborted' FROM generate_series(1, 20000) g; SELECT pg_sleep(1); ROLLBACK`)
		e.exec(t, `BEGIN; INSERT INTO big SELECT g, 'sub-aborted' FROM generate_series(200001, 201000) g; SAVEPOINT s1; INSERT INTO big SELECT g, 'savepoint' FROM generate_series(300001, 310000) g; SELECT pg_sleep(1); ROLLBACK TO s1; INSERT INTO big VALUES (0, 'after'); COMMIT`)
		e.exec(t, `INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 120000) g`)
	}()
	const want = 1000 + 1 + 120000
	all := drain(t, src, 120*time.Second, func(all []capture.Change) bool { return len(all) >= want })
	time.Sleep(500 * time.Millisecond)
	if len(all) != want {
		t.Fatalf("got %d changes, want %d", len(all), want)
	}
	var positions int
	for i, c := range all {
		if v, _ := c.Envelope.After["v"].(string); v == "aborted" || v == "savepoint" {
			t.Fatalf("change %d from an aborted (sub)transaction: %v", i, c.Envelope.After)
		}
		if c.Position != nil {
			positions++
			if i != 1000 && i != len(all)-1 {
				t.Errorf("position on change %d (not the last of a transaction)", i)
			}
		}
	}
	if positions != 2 {
		t.Errorf("%d positions, want 2 (one per committed transaction)", positions)
	}
	// The slot confirmed the last transaction once acked.
	last, _, _ := DecodePosition(all[len(all)-1].Position)
	deadline := time.Now().Add(20 * time.Second)
	for lsnOf(t, e.scalar(t, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, o.Slot)) < last.lsn {
		if time.Now().After(deadline) {
			t.Fatalf("slot never confirmed %s", last.lsn)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTruncateSchemaChangeAndIdentity covers TRUNCATE, ADD COLUMN mid-stream, before
// images under REPLICA IDENTITY DEFAULT and FULL, and unchanged TOAST values.
func TestTruncateSchemaChangeAndIdentity(t *testing.T) {
	e := newPG(t)
	e.exec(t, `CREATE TABLE d (id int PRIMARY KEY, a text, b int, doc text)`,
		`CREATE TABLE f (id int PRIMARY KEY, a text, b int, doc text)`,
		`ALTER TABLE f REPLICA IDENTITY FULL`,
		`ALTER TABLE d ALTER doc SET STORAGE EXTERNAL`, `ALTER TABLE f ALTER doc SET STORAGE EXTERNAL`)
	o := e.options("public.d", "public.f")
	o.SnapshotMode = SnapshotNever
	src := openSource(t, o, nil)
	defer src.Close()
	big := strings.Repeat("toast-", 2000)
	for _, tb := range []string{"d", "f"} {
		e.exec(t, `INSERT INTO `+tb+` VALUES (1, 'x', 1, '`+big+`')`,
			`UPDATE `+tb+` SET b = 2 WHERE id = 1`,
			`DELETE FROM `+tb+` WHERE id = 1`)
	}
	e.exec(t, `INSERT INTO d VALUES (2, 'y', 3, 'small')`, `TRUNCATE d`,
		`ALTER TABLE d ADD COLUMN extra text DEFAULT 'z'`, `INSERT INTO d VALUES (3, 'w', 4, 'small', 'new')`)
	all := drain(t, src, 60*time.Second, func(all []capture.Change) bool {
		return len(all) > 0 && all[len(all)-1].Envelope.After["extra"] == "new"
	})
	byTable := map[string][]schemas.Envelope{}
	for _, c := range all {
		byTable[c.Envelope.Source.Table] = append(byTable[c.Envelope.Source.Table], c.Envelope)
	}
	d, f := byTable["public.d"], byTable["public.f"]
	if len(d) != 7 || len(f) != 3 {
		t.Fatalf("got %d changes of d, %d of f; want 7 and 3: %+v", len(d), len(f), all)
	}
	// DEFAULT: the update has no before image, the unchanged TOASTed doc is absent
	// from after, the delete's before holds the key only.
	if d[1].Op != schemas.OpUpdate || d[1].Before != nil {
		t.Errorf("d update: %+v", d[1])
	}
	if _, ok := d[1].After["doc"]; ok {
		t.Errorf("d update: unchanged TOAST should be absent from after, got %d bytes", len(d[1].After["doc"].(string)))
	}
	if d[2].Op != schemas.OpDelete || len(d[2].Before) != 1 || d[2].Before["id"] != int64(1) {
		t.Errorf("d delete before = %v, want the key only", d[2].Before)
	}
	// FULL: complete before images; the unchanged TOAST value is taken from the old row.
	if f[1].Before["a"] != "x" || f[1].Before["b"] != int64(1) || f[1].After["doc"] != big {
		t.Errorf("f update: before %v, after doc present %v", f[1].Before, f[1].After["doc"] == big)
	}
	if f[2].Op != schemas.OpDelete || f[2].Before["a"] != "x" || f[2].Key["id"] != int64(1) {
		t.Errorf("f delete: %+v", f[2])
	}
	if d[4].Op != schemas.OpTruncate {
		t.Errorf("d[4] = %s, want t", d[4].Op)
	}
	if d[5].Op != schemas.OpSchema || d[5].Schema.Version != 2 || !strings.Contains(d[5].DDL, "extra") {
		t.Errorf("d[5] = %+v, want a schema change to version 2 naming column extra", d[5])
	}
	if d[6].Op != schemas.OpCreate || d[6].After["extra"] != "new" || d[6].Schema.Version != 2 {
		t.Errorf("d[6] = %+v", d[6])
	}
	// Every envelope validates and encodes.
	for _, c := range all {
		env := c.Envelope
		env.V = schemas.EnvelopeVersion
		if err := env.Validate(); err != nil {
			t.Errorf("%+v: %v", env, err)
		}
		if _, err := json.Marshal(env); err != nil {
			t.Error(err)
		}
	}
}

// TestReplicaIdentityChecks: NOTHING and DEFAULT without a key refuse to open.
func TestReplicaIdentityChecks(t *testing.T) {
	e := newPG(t)
	e.exec(t, `CREATE TABLE nokey (a int)`, `CREATE TABLE nothing (id int PRIMARY KEY)`, `ALTER TABLE nothing REPLICA IDENTITY NOTHING`)
	for table, want := range map[string]string{"public.nokey": "no primary key", "public.nothing": "REPLICA IDENTITY NOTHING", "public.missing": "does not exist"} {
		o := e.options(table)
		src, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		err = src.Open(context.Background(), nil)
		src.Close()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", table, err, want)
		}
	}
	// Nothing was created for tables that failed the check.
	if got := e.scalar(t, `SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = $1`, e.name); got != "0" {
		t.Errorf("slots %s", got)
	}
}

// TestSetupOpenTeardown: Open without creation rights names what is missing; Setup
// creates; Close keeps the slot and publication; Teardown drops them.
func TestSetupOpenTeardown(t *testing.T) {
	e := newPG(t)
	e.exec(t, `CREATE TABLE s (id int PRIMARY KEY)`)
	o := e.options("public.s")
	o.CreateSlot, o.CreatePublication, o.SnapshotMode = false, false, SnapshotNever
	src, _ := New(o)
	err := src.Open(context.Background(), nil)
	src.Close()
	if err == nil || !strings.Contains(err.Error(), o.Publication) {
		t.Fatalf("open without publication: %v", err)
	}
	o.CreatePublication = true
	src, _ = New(o)
	err = src.Open(context.Background(), nil)
	src.Close()
	if err == nil || !strings.Contains(err.Error(), o.Slot) {
		t.Fatalf("open without slot: %v", err)
	}
	o.CreateSlot = true
	src, _ = New(o)
	did, err := src.Setup(context.Background())
	if err != nil || len(did) != 1 || !strings.Contains(did[0], "created slot") {
		t.Fatalf("setup: %v %v", did, err)
	}
	src = openSource(t, o, nil)
	e.exec(t, `INSERT INTO s VALUES (1)`)
	drain(t, src, 30*time.Second, func(all []capture.Change) bool { return len(all) == 1 })
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if got := e.scalar(t, `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1) + (SELECT count(*) FROM pg_publication WHERE pubname = $2)`, o.Slot, o.Publication); got != "2" {
		t.Fatalf("after Close: %s of slot+publication left, want 2", got)
	}
	if err := src.Teardown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.scalar(t, `SELECT ((SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1) + (SELECT count(*) FROM pg_publication WHERE pubname = $2))::text`, o.Slot, o.Publication); got != "0" {
		t.Fatalf("after Teardown: %s left", got)
	}
	// A saved position without its slot is an error, not a silent re-snapshot.
	src, _ = New(o)
	err = src.Open(context.Background(), capture.Position(`{"v":1,"lsn":"0/1000"}`))
	src.Close()
	if err == nil || !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("open with position but no slot: %v", err)
	}
}

// TestIdleSlotAdvances: writes to an unpublished table move the slot's confirmed
// position once nothing captured is pending.
func TestIdleSlotAdvances(t *testing.T) {
	e := newPG(t)
	e.exec(t, `CREATE TABLE cap (id int PRIMARY KEY)`, `CREATE TABLE other (id int PRIMARY KEY)`)
	o := e.options("public.cap")
	o.SnapshotMode = SnapshotNever
	src := openSource(t, o, nil)
	defer src.Close()
	e.exec(t, `INSERT INTO cap VALUES (1)`)
	drain(t, src, 30*time.Second, func(all []capture.Change) bool { return len(all) == 1 })
	e.exec(t, `INSERT INTO other SELECT generate_series(1, 5000)`)
	target := lsnOf(t, e.scalar(t, `SELECT pg_current_wal_lsn()::text`))
	// ReadN keeps the stream goroutine running; nothing arrives for it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, _ = src.ReadN(ctx, 10) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := lsnOf(t, e.scalar(t, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, o.Slot))
		if got >= target {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("confirmed_flush_lsn %s never reached %s on an idle stream", got, target)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUndecodableValueGoesToDeadLetter: invalid UTF-8 in a SQL_ASCII database becomes
// a dead letter and the stream continues.
func TestUndecodableValueGoesToDeadLetter(t *testing.T) {
	e := newPG(t)
	db := e.db + "_ascii"
	if err := e.srv.Exec(context.Background(), "", `CREATE DATABASE `+db+` ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.DropDatabase(context.Background(), db) })
	e2 := &pgEnv{srv: e.srv, db: db, name: e.name + "_a"}
	e2.exec(t, `CREATE TABLE txt (id int PRIMARY KEY, v text)`)
	o := e2.options("public.txt")
	o.SnapshotMode = SnapshotNever
	src := openSource(t, o, nil)
	defer src.Close()
	e2.exec(t, `INSERT INTO txt VALUES (1, E'bad \xff byte')`, `INSERT INTO txt VALUES (2, 'good')`)
	all := drain(t, src, 30*time.Second, func(all []capture.Change) bool { return len(all) == 2 })
	if all[0].DeadLetter == nil || all[0].DeadLetterReason != "invalid_text" || all[0].Position == nil {
		t.Errorf("first change %q: dead letter %+v reason %q position %s", all[0].Envelope.After, all[0].DeadLetter, all[0].DeadLetterReason, all[0].Position)
	}
	if all[1].DeadLetter != nil || all[1].Envelope.After["v"] != "good" {
		t.Errorf("second change: %+v", all[1])
	}
	t.Cleanup(func() { _ = src.Teardown(context.Background()) })
}

// TestOversizedRowGoesToDeadLetter: a row over max_row_bytes, streamed or read by the
// snapshot, goes to the DLQ as oversized with its key and length but not the row; the
// rows around it flow.
func TestOversizedRowGoesToDeadLetter(t *testing.T) {
	e := newPG(t)
	e.exec(t, `CREATE TABLE big (id int PRIMARY KEY, v text)`, `INSERT INTO big VALUES (1, repeat('x', 5000)), (2, 'small')`)
	o := e.options("public.big")
	o.MaxRowBytes = 4096
	src := openSource(t, o, nil)
	defer src.Close()
	t.Cleanup(func() { _ = src.Teardown(context.Background()) })
	e.exec(t, `INSERT INTO big VALUES (3, repeat('y', 5000))`, `INSERT INTO big VALUES (4, 'small too')`)
	var rows []capture.Change
	drain(t, src, 30*time.Second, func(all []capture.Change) bool {
		rows = rows[:0]
		for _, c := range all {
			if c.DeadLetter != nil || c.Envelope.After != nil {
				rows = append(rows, c)
			}
		}
		return len(rows) >= 4
	})
	for _, c := range rows {
		id := fmt.Sprint(c.Envelope.Key["id"])
		big := id == "1" || id == "3"
		if big != (c.DeadLetter != nil) {
			t.Fatalf("row %s: dead letter %v, want oversized rows (1, 3) only", id, c.DeadLetter)
		}
		if big && (c.DeadLetterReason != "oversized" || !strings.Contains(c.DeadLetter.Reason, "exceeds max_row_bytes 4096") ||
			len(c.DeadLetter.Payload) > 100) {
			t.Errorf("row %s: reason %q %q, payload %d bytes", id, c.DeadLetterReason, c.DeadLetter.Reason, len(c.DeadLetter.Payload))
		}
	}
}

// TestReconnectAfterWalsenderKilled: the server ends the replication connection;
// the source reconnects from the last acknowledged LSN, re-delivers nothing already
// queued, and loses nothing.
func TestReconnectAfterWalsenderKilled(t *testing.T) {
	e := newPG(t)
	e.exec(t, `CREATE TABLE r (id int PRIMARY KEY)`)
	o := e.options("public.r")
	o.SnapshotMode = SnapshotNever
	src := openSource(t, o, nil)
	defer src.Close()
	e.exec(t, `INSERT INTO r SELECT generate_series(1, 100)`)
	drain(t, src, 30*time.Second, func(all []capture.Change) bool { return len(all) == 100 })
	e.exec(t, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '`+o.Slot+`'`)
	e.exec(t, `INSERT INTO r SELECT generate_series(101, 150)`)
	all := drain(t, src, 60*time.Second, func(all []capture.Change) bool { return len(all) >= 50 })
	time.Sleep(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	extra, _ := src.ReadN(ctx, 1000)
	all = append(all, extra...)
	if len(all) != 50 || all[0].Envelope.Key["id"] != int64(101) {
		t.Fatalf("after reconnect got %d changes (first key %v), want exactly ids 101..150", len(all), all[0].Envelope.Key)
	}
}
