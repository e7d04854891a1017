package mysqlbinlog

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

var reloadTables = []string{"household", "person", "measure"}

// pushFixture is a small generated national database with a reload-collapsing source.
type pushFixture struct {
	srv  *testenv.MariaDBServer
	db   string
	cfg  gen.Config
	opts Options
	dir  string
	// state holds what downstream has after applying every change, per table.
	state map[string]map[string]map[string]any
}

func newPushFixture(t *testing.T, detect string) *pushFixture {
	t.Helper()
	srv, db := testenv.MariaDBDatabase(t)
	cfg := gen.DefaultConfig()
	cfg.Households = 300
	cfg.Push.ChangeRate = 0.05
	cfg.Push.NewHouseholdRate = 0.02
	cfg.Push.ChunkRows = 250
	cfg.Push.SpreadDuration = 0
	if _, err := gen.Generate(context.Background(), cfg, gen.Options{MySQLDSN: srv.RootDSN(db)}); err != nil {
		t.Fatalf("generate national database: %v", err)
	}
	opts := testOptions(t, srv, db)
	opts.ChunkSize = 400
	opts.Reload = ReloadOptions{Detect: detect, QuietPeriod: time.Second}
	for _, tb := range reloadTables {
		opts.Reload.Tables = append(opts.Reload.Tables, db+"."+tb)
	}
	// A few hundred households spread over the province: one removed member can be a
	// large share of a county. The breaker has its own test.
	opts.MassDelete = MassDeleteOptions{MaxShare: 0.5, MaxCountyShare: 1}
	return &pushFixture{srv: srv, db: db, cfg: cfg, opts: opts, dir: t.TempDir(),
		state: map[string]map[string]map[string]any{"household": {}, "person": {}, "measure": {}}}
}

// applyByTable folds changes into f.state and returns the (table/key → op) of the
// reload tables' changes, failing on a key changed twice.
func (f *pushFixture) applyByTable(t *testing.T, chs []capture.Change) map[string]string {
	t.Helper()
	ops := map[string]string{}
	for _, c := range chs {
		if c.PositionOnly || c.DeadLetter != nil {
			continue
		}
		st, ok := f.state[c.Envelope.Source.Table]
		if !ok {
			continue
		}
		apply(t, st, []capture.Change{c})
		var key string
		for _, v := range c.Envelope.Key {
			key = fmt.Sprint(v)
		}
		k := c.Envelope.Source.Table + "/" + key
		if prev, dup := ops[k]; dup {
			t.Errorf("%s emitted twice (%s, then %s)", k, prev, c.Envelope.Op)
		}
		ops[k] = string(c.Envelope.Op)
	}
	return ops
}

func (f *pushFixture) push(t *testing.T, week int, mode string) map[string]string {
	t.Helper()
	if _, err := gen.Push(context.Background(), f.cfg, gen.PushOptions{Week: week, MySQLDSN: f.srv.RootDSN(f.db), OutDir: f.dir, Mode: mode}); err != nil {
		t.Fatalf("push week %d (%s): %v", week, mode, err)
	}
	raw, err := os.ReadFile(filepath.Join(f.dir, fmt.Sprintf("push-week-%d.manifest.jsonl", week)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var l gen.ManifestLine
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatal(err)
		}
		if _, dup := want[l.Table+"/"+l.Key]; !dup {
			want[l.Table+"/"+l.Key] = l.Op
		}
	}
	if len(want) < 10 {
		t.Fatalf("push week %d: only %d true changes in the manifest", week, len(want))
	}
	return want
}

func (f *pushFixture) checkState(t *testing.T, s *Source, label string) {
	t.Helper()
	for _, tb := range reloadTables {
		want := tableState(t, s.db, f.db, tb)
		got := f.state[tb]
		if len(want) != len(got) {
			t.Errorf("%s: %s has %d rows, downstream %d", label, tb, len(want), len(got))
		}
		bad := 0
		for k, w := range want {
			if !jsonEqual(t, w, got[k]) {
				if bad++; bad <= 3 {
					g, _ := json.Marshal(got[k])
					ws, _ := json.Marshal(w)
					t.Errorf("%s: %s %s: source %s, downstream %s", label, tb, k, ws, g)
				}
			}
		}
	}
}

func compareOps(t *testing.T, label string, want, got map[string]string) {
	t.Helper()
	var diff []string
	for k, op := range want {
		if got[k] != op {
			diff = append(diff, fmt.Sprintf("%s: manifest %s, emitted %q", k, op, got[k]))
		}
	}
	for k, op := range got {
		if _, ok := want[k]; !ok {
			diff = append(diff, fmt.Sprintf("%s: emitted %s, no true change", k, op))
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		if len(diff) > 10 {
			diff = append(diff[:10], fmt.Sprintf("… %d more", len(diff)-10))
		}
		t.Errorf("%s: emitted changes differ from the push manifest (%d true changes):\n%s", label, len(want), strings.Join(diff, "\n"))
	}
}

// TestReloadCollapse runs two weekly pushes in each mode, each with a different window
// detection, and checks that exactly the true changes come out and that downstream
// ends up equal to the tables.
func TestReloadCollapse(t *testing.T) {
	for _, tc := range []struct{ mode, detect string }{
		{gen.PushTruncate, DetectTruncate},
		{gen.PushDelete, DetectQuiet},
		{gen.PushSpread, DetectPushLog},
	} {
		t.Run(tc.mode+"_"+tc.detect, func(t *testing.T) {
			f := newPushFixture(t, tc.detect)
			s := openSource(t, f.opts, nil)
			d := mustDB(t, f.srv, f.db)
			chs, _ := readUntilCaughtUp(t, s, headPos(t, d))
			f.applyByTable(t, chs)
			f.checkState(t, s, "after snapshot")
			for week := 1; week <= 2; week++ {
				want := f.push(t, week, tc.mode)
				chs, last := readUntilCaughtUp(t, s, headPos(t, d))
				got := f.applyByTable(t, chs)
				compareOps(t, fmt.Sprintf("week %d", week), want, got)
				f.checkState(t, s, fmt.Sprintf("week %d", week))
				if len(last.Reload) != 3 || last.Reload[f.db+".household"] != uint64(week) {
					t.Errorf("week %d: position reload epochs %v, want %d per table", week, last.Reload, week)
				}
				if err := s.Ack(context.Background(), last.Encode()); err != nil {
					t.Fatal(err)
				}
			}
			if r := metricValue(t, s.m.reloadWindows.WithLabelValues(f.db+".person", "closed")); r != 2 {
				t.Errorf("person reload windows closed = %v, want 2", r)
			}
			if r := metricValue(t, s.m.collapseRatio.WithLabelValues(f.db+".household")); r <= 0 || r > 0.2 {
				t.Errorf("household collapse ratio = %v, want a small share of real changes", r)
			}
		})
	}
}

// TestReloadRestartMidWindow stops the source after part of a collapse was handed out
// but before any position after the reload was saved: the restarted source must roll
// its state back and emit exactly the push's true changes again.
func TestReloadRestartMidWindow(t *testing.T) {
	f := newPushFixture(t, DetectPushLog)
	s := openSource(t, f.opts, nil)
	d := mustDB(t, f.srv, f.db)
	chs, saved := readUntilCaughtUp(t, s, headPos(t, d))
	f.applyByTable(t, chs)
	want := f.push(t, 1, gen.PushSpread)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var acked []capture.Change // handed out up to the last position: "in Kafka"
	var pending []capture.Change
	collapsed := 0
	for collapsed == 0 {
		batch, err := s.ReadN(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range batch {
			pending = append(pending, c)
			if c.Position != nil {
				acked = append(acked, pending...)
				pending = nil
				saved, _, _ = DecodePosition(c.Position)
			}
			if tb := c.Envelope.Source.Table; tb == "household" || tb == "person" {
				collapsed++
			}
		}
	}
	s.Close() // crash: pending changes were never acknowledged
	o := f.opts
	o.ServerID = serverIDs.Add(1)
	s2 := openSource(t, o, saved.Encode())
	rest, _ := readUntilCaughtUp(t, s2, headPos(t, d))
	got := f.applyByTable(t, append(acked, rest...))
	compareOps(t, "after restart", want, got)
	f.checkState(t, s2, "after restart")

	// The next week collapses against the rolled-back-and-redone state.
	want = f.push(t, 2, gen.PushSpread)
	chs, _ = readUntilCaughtUp(t, s2, headPos(t, d))
	compareOps(t, "week 2 after restart", want, f.applyByTable(t, chs))
	f.checkState(t, s2, "week 2 after restart")
}

func TestMassDeleteHeldAndReleased(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	exec(t, d, "CREATE TABLE hh (id INT PRIMARY KEY, village_code CHAR(12), v INT)")
	insert := func(from, to int, v string) {
		var vals []string
		for i := from; i <= to; i++ {
			vc := "510104001001"
			if i > 20 {
				vc = "510105001001"
			}
			vals = append(vals, fmt.Sprintf("(%d, '%s', %s)", i, vc, strings.ReplaceAll(v, "ID", fmt.Sprint(i))))
		}
		exec(t, d, "INSERT INTO hh VALUES "+strings.Join(vals, ","))
	}
	insert(1, 40, "ID")
	opts := testOptions(t, srv, db)
	opts.Reload = ReloadOptions{Tables: []string{db + ".hh"}, Detect: DetectTruncate, QuietPeriod: time.Second}
	opts.MassDelete = MassDeleteOptions{MaxShare: 0.6, MaxCountyShare: 0.5}
	s := openSource(t, opts, nil)
	table := db + ".hh"
	ops := func(chs []capture.Change) string {
		var out []string
		for _, c := range chs {
			if c.Envelope.Source.Table == "hh" {
				out = append(out, fmt.Sprintf("%s%v", c.Envelope.Op, c.Envelope.Key["id"]))
			}
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	readUntilCaughtUp(t, s, headPos(t, d))

	// 11 of county 510105's 20 rows vanish (55% > 50%), row 1 changes.
	exec(t, d, "TRUNCATE TABLE hh")
	insert(1, 29, "ID")
	exec(t, d, "UPDATE hh SET v = 100 WHERE id = 1")
	chs, _ := readUntilCaughtUp(t, s, headPos(t, d))
	if got := ops(chs); got != "u1" {
		t.Errorf("held reload emitted %q, want only u1", got)
	}
	if g := metricValue(t, s.m.held.WithLabelValues(table)); g != 1 {
		t.Errorf("mass_delete_held = %v, want 1", g)
	}
	if err := s.ReleaseHeldDeletes(db + ".nope"); err == nil {
		t.Error("ReleaseHeldDeletes accepted a table without reload collapse")
	}
	if err := s.ReleaseHeldDeletes(table); err != nil {
		t.Fatal(err)
	}
	exec(t, d, "INSERT INTO hh VALUES (99, '510104001001', 0)") // something to read after the release
	chs, _ = readUntilCaughtUp(t, s, headPos(t, d))
	var want []string
	for i := 30; i <= 40; i++ {
		want = append(want, fmt.Sprintf("d%d", i))
	}
	want = append(want, "c99")
	sort.Strings(want)
	if got := ops(chs); got != strings.Join(want, " ") {
		t.Errorf("release emitted %q, want %q", got, strings.Join(want, " "))
	}
	for _, c := range chs {
		if c.Envelope.Op == schemas.OpDelete && c.Envelope.Before["village_code"] != "510105001001" {
			t.Errorf("released delete %v has before %v, want the stored image", c.Envelope.Key, c.Envelope.Before)
		}
	}
	if g := metricValue(t, s.m.held.WithLabelValues(table)); g != 0 {
		t.Errorf("mass_delete_held after release = %v, want 0", g)
	}

	// Held again, then a later reload brings the rows back: nothing is emitted.
	exec(t, d, "TRUNCATE TABLE hh")
	insert(1, 5, "ID")
	exec(t, d, "UPDATE hh SET v = 100 WHERE id = 1")
	chs, _ = readUntilCaughtUp(t, s, headPos(t, d))
	if got := ops(chs); got != "" {
		t.Errorf("held reload emitted %q, want nothing", got)
	}
	exec(t, d, "TRUNCATE TABLE hh")
	insert(1, 29, "ID")
	exec(t, d, "UPDATE hh SET v = 100 WHERE id = 1", "INSERT INTO hh VALUES (99, '510104001001', 0)")
	chs, _ = readUntilCaughtUp(t, s, headPos(t, d))
	if got := ops(chs); got != "" {
		t.Errorf("reload restoring the held rows emitted %q, want nothing", got)
	}
	if g := metricValue(t, s.m.held.WithLabelValues(table)); g != 0 {
		t.Errorf("mass_delete_held after the rows came back = %v, want 0", g)
	}
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	case out.Counter != nil:
		return out.Counter.GetValue()
	}
	t.Fatalf("metric %s is neither gauge nor counter", m.Desc())
	return 0
}

// A reload whose rows stop coming in key order part-way (a jump ahead, then the rows
// skipped; a delete and a key change of rows the window already inserted) is compared
// at the close from sorted rows; a TRUNCATE inside a window starts it again. Both give
// exactly the real changes.
func TestReloadWindowOutOfOrderAndRestarted(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	exec(t, d, "CREATE TABLE kv (id VARCHAR(8) PRIMARY KEY, village_code CHAR(12), v INT)")
	insert := func(from, to int, changed ...int) {
		t.Helper()
		var vals []string
		for i := from; i <= to; i++ {
			v := i
			if slices.Contains(changed, i) {
				v += 1000
			}
			vals = append(vals, fmt.Sprintf("('k%03d', '510104001001', %d)", i, v))
		}
		exec(t, d, "INSERT INTO kv VALUES "+strings.Join(vals, ","))
	}
	insert(1, 50)
	opts := testOptions(t, srv, db)
	opts.Reload = ReloadOptions{Tables: []string{db + ".kv"}, Detect: DetectTruncate, QuietPeriod: time.Second}
	opts.MassDelete = MassDeleteOptions{MaxShare: 0.5, MaxCountyShare: 1}
	s := openSource(t, opts, nil)
	readUntilCaughtUp(t, s, headPos(t, d))
	ops := func(chs []capture.Change) string {
		var out []string
		for _, c := range chs {
			if c.Envelope.Source.Table == "kv" {
				out = append(out, fmt.Sprintf("%s:%v", c.Envelope.Op, c.Envelope.Key["id"]))
			}
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}

	exec(t, d, "TRUNCATE TABLE kv")
	insert(1, 30, 5)
	insert(45, 45) // ahead of the rest: from here on the window sorts
	insert(31, 40)
	exec(t, d, "DELETE FROM kv WHERE id = 'k002'", "UPDATE kv SET id = 'k060' WHERE id = 'k003'")
	chs, _ := readUntilCaughtUp(t, s, headPos(t, d))
	want := "c:k060 d:k002 d:k003 d:k041 d:k042 d:k043 d:k044 d:k046 d:k047 d:k048 d:k049 d:k050 u:k005"
	if got := ops(chs); got != want {
		t.Errorf("out-of-order reload emitted\n%s\nwant\n%s", got, want)
	}
	for _, c := range chs {
		if c.Envelope.Op == schemas.OpUpdate && (fmt.Sprint(c.Envelope.Before["v"]) != "5" || fmt.Sprint(c.Envelope.After["v"]) != "1005") {
			t.Errorf("update %v: before %v after %v, want v 5 → 1005", c.Envelope.Key, c.Envelope.Before, c.Envelope.After)
		}
	}

	// A TRUNCATE in the middle of a reload starts the window again: the rows loaded
	// before it (k001 changed) count for nothing. The rows come in key order, so this
	// window is compared as they come; k060 (k003's row moved) gets its own v back.
	exec(t, d, "TRUNCATE TABLE kv")
	insert(1, 10, 1)
	exec(t, d, "TRUNCATE TABLE kv")
	insert(1, 40, 5, 7)
	insert(45, 45)
	insert(60, 60)
	chs, _ = readUntilCaughtUp(t, s, headPos(t, d))
	want = "c:k002 c:k003 u:k007 u:k060"
	if got := ops(chs); got != want {
		t.Errorf("restarted reload emitted %q, want %q", got, want)
	}
	for _, c := range chs {
		if c.Envelope.Op == schemas.OpUpdate && c.Envelope.Key["id"] == "k060" && (fmt.Sprint(c.Envelope.Before["v"]) != "3" || fmt.Sprint(c.Envelope.After["v"]) != "60") {
			t.Errorf("k060: before %v after %v, want v 3 → 60", c.Envelope.Before, c.Envelope.After)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(opts.StateDir, "reload", db+".kv", "*.tmp")); len(tmp) > 0 {
		t.Errorf("temporary files left in the reload state directory: %v", tmp)
	}
}

// A crash in the middle of appending to the overlay log leaves a torn record at its
// end: the restart cuts it off before appending, so later changes stay readable and
// the next reload compares against the right image.
func TestReloadOverlayTornTail(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	exec(t, d, "CREATE TABLE kv (id VARCHAR(8) PRIMARY KEY, v INT)", "INSERT INTO kv VALUES ('a', 1), ('b', 2), ('c', 3)")
	opts := testOptions(t, srv, db)
	opts.Reload = ReloadOptions{Tables: []string{db + ".kv"}, Detect: DetectTruncate, QuietPeriod: time.Second}
	opts.MassDelete = MassDeleteOptions{MaxShare: 1, MaxCountyShare: 1}
	s := openSource(t, opts, nil)
	_, saved := readUntilCaughtUp(t, s, headPos(t, d))
	s.Close()
	overlay := filepath.Join(opts.StateDir, "reload", db+".kv", "overlay-0.log")
	f, err := os.OpenFile(overlay, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := f.Stat()
	if _, err := f.Write([]byte{40, '{', '"', 'i'}); err != nil { // a key of 40 bytes, cut after 3
		t.Fatal(err)
	}
	f.Close()

	o := opts
	o.ServerID = serverIDs.Add(1)
	s2 := openSource(t, o, saved.Encode())
	if after, err := os.Stat(overlay); err != nil || after.Size() != before.Size() {
		t.Fatalf("overlay after reopen: %v, %v; want the torn record cut off (%d bytes)", after, err, before.Size())
	}
	exec(t, d, "INSERT INTO kv VALUES ('d', 4)")
	readUntilCaughtUp(t, s2, headPos(t, d))
	exec(t, d, "TRUNCATE TABLE kv", "INSERT INTO kv VALUES ('a', 1), ('b', 20), ('c', 3), ('d', 4)")
	chs, _ := readUntilCaughtUp(t, s2, headPos(t, d))
	var got []string
	for _, c := range chs {
		if c.Envelope.Source.Table == "kv" {
			got = append(got, fmt.Sprintf("%s:%v", c.Envelope.Op, c.Envelope.Key["id"]))
		}
	}
	if strings.Join(got, " ") != "u:b" {
		t.Errorf("reload after the cut emitted %v, want only u:b", got)
	}
}

// A row a reload inserts whose value does not convert goes to the DLQ with its reason,
// also when the window compares the rows as they come, and keeps its key's stored row:
// no d, no u (issue #12: a bad row never deletes). The same holds when the rows come
// out of key order (the sorted path), and a later push with the row fixed changes
// nothing either.
func TestReloadWindowBadRowToDLQ(t *testing.T) {
	for _, order := range []string{"in key order", "out of key order"} {
		t.Run(order, func(t *testing.T) {
			srv, db := testenv.MariaDBDatabase(t)
			d := mustDB(t, srv, db)
			d.SetMaxOpenConns(1) // the lax sql_mode below is per session
			exec(t, d, "SET SESSION sql_mode = ''", "CREATE TABLE kv (id VARCHAR(8) PRIMARY KEY, born DATE)",
				"INSERT INTO kv VALUES ('k1', '2001-01-01'), ('k2', '2002-02-02'), ('k3', '2003-03-03'), ('k4', '2004-04-04')")
			opts := testOptions(t, srv, db)
			opts.Reload = ReloadOptions{Tables: []string{db + ".kv"}, Detect: DetectTruncate, QuietPeriod: time.Second}
			opts.MassDelete = MassDeleteOptions{MaxShare: 1, MaxCountyShare: 1}
			s := openSource(t, opts, nil)
			readUntilCaughtUp(t, s, headPos(t, d))
			rows := "('k1', '2001-01-01'), ('k2', '0000-00-00'), ('k3', '2003-03-31'), ('k4', '2004-04-04')"
			if order != "in key order" {
				rows = "('k4', '2004-04-04'), ('k2', '0000-00-00'), ('k3', '2003-03-31'), ('k1', '2001-01-01')"
			}
			exec(t, d, "TRUNCATE TABLE kv", "INSERT INTO kv VALUES "+rows)
			got := reloadChanges(t, s, d, db)
			if want := "dlq:k2:zero_date u:k3"; got != want {
				t.Errorf("reload with a bad row emitted %q, want %q", got, want)
			}
			if n := metricValue(t, s.m.deadLetters.WithLabelValues(db+".kv")); n != 1 {
				t.Errorf("dead letters counted %v, want 1", n)
			}
			if n := metricValue(t, s.m.reloadRows.WithLabelValues(db+".kv", "kept")); n != 1 {
				t.Errorf("kept rows counted %v, want 1", n)
			}
			// Next week the row is fixed as it was: nothing changed downstream.
			exec(t, d, "TRUNCATE TABLE kv", "INSERT INTO kv VALUES ('k1', '2001-01-01'), ('k2', '2002-02-02'), ('k3', '2003-03-31'), ('k4', '2004-04-04')")
			if got := reloadChanges(t, s, d, db); got != "" {
				t.Errorf("the next push emitted %q, want nothing (k2's stored row was kept)", got)
			}
		})
	}
}

// A pushed row whose primary key does not convert might be any of the rows that look
// vanished: the window's deletes are held (listed by HeldDeletes), not emitted.
func TestReloadWindowUnkeyedBadRowHoldsDeletes(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	d.SetMaxOpenConns(1)
	exec(t, d, "SET SESSION sql_mode = ''", "CREATE TABLE kv (id DATE PRIMARY KEY, v INT)",
		"INSERT INTO kv VALUES ('2001-01-01', 1), ('2002-02-02', 2), ('2003-03-03', 3), ('2004-04-04', 4)")
	opts := testOptions(t, srv, db)
	opts.Reload = ReloadOptions{Tables: []string{db + ".kv"}, Detect: DetectTruncate, QuietPeriod: time.Second}
	opts.MassDelete = MassDeleteOptions{MaxShare: 1, MaxCountyShare: 1}
	s := openSource(t, opts, nil)
	readUntilCaughtUp(t, s, headPos(t, d))
	exec(t, d, "TRUNCATE TABLE kv", "INSERT INTO kv VALUES ('2001-01-01', 1), ('0000-00-00', 2), ('2003-03-03', 30), ('2004-04-04', 4)")
	got := reloadChanges(t, s, d, db)
	if want := "dlq:0x303030302d30302d3030:zero_date u:2003-03-03"; got != want { // the key as it came (hex)
		t.Errorf("reload emitted %q, want %q (no delete of 2002-02-02)", got, want)
	}
	held, err := HeldDeletes(opts.StateDir)
	if err != nil || len(held) != 1 || held[0].Table != db+".kv" || held[0].Rows != 1 {
		t.Fatalf("HeldDeletes = %+v, %v; want the one vanished row of %s held", held, err, db+".kv")
	}
}

// reloadChanges reads until caught up and renders the kv table's changes sorted.
func reloadChanges(t *testing.T, s *Source, d *sql.DB, db string) string {
	t.Helper()
	chs, _ := readUntilCaughtUp(t, s, headPos(t, d))
	var got []string
	for _, c := range chs {
		if c.Envelope.Source.Table != "kv" {
			continue
		}
		if c.DeadLetter != nil {
			got = append(got, fmt.Sprintf("dlq:%v:%s", c.Envelope.Key["id"], c.DeadLetterReason))
			if !strings.Contains(c.DeadLetter.Reason, "zero date") || !strings.Contains(c.DeadLetter.Reason, db+".kv") || c.Envelope.Source.BinlogFile == "" {
				t.Errorf("dead letter %+v: want the zero date, the table and where it was read", c.DeadLetter)
			}
			continue
		}
		got = append(got, fmt.Sprintf("%s:%v", c.Envelope.Op, c.Envelope.Key["id"]))
	}
	sort.Strings(got)
	return strings.Join(got, " ")
}

// A push_log window whose push never logs its end is closed after MaxWindow as it
// stands (with a warning and a metric), so that positions advance again.
func TestReloadWindowMaxOpen(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	exec(t, d, "CREATE TABLE kv (id VARCHAR(8) PRIMARY KEY, v INT)",
		"CREATE TABLE push_log (id INT AUTO_INCREMENT PRIMARY KEY, table_name VARCHAR(64), started_at DATETIME, finished_at DATETIME NULL)",
		"INSERT INTO kv VALUES ('a', 1), ('b', 2), ('c', 3)")
	opts := testOptions(t, srv, db)
	opts.Reload = ReloadOptions{Tables: []string{db + ".kv"}, Detect: DetectPushLog, PushLogTable: db + ".push_log",
		QuietPeriod: time.Second, MaxWindow: 3 * time.Second}
	opts.MassDelete = MassDeleteOptions{MaxShare: 0.9, MaxCountyShare: 1}
	s := openSource(t, opts, nil)
	readUntilCaughtUp(t, s, headPos(t, d))

	// The push starts, reloads, and dies before setting finished_at.
	exec(t, d, "INSERT INTO push_log (table_name, started_at) VALUES ('kv', NOW())",
		"TRUNCATE TABLE kv", "INSERT INTO kv VALUES ('a', 1), ('b', 20)")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	var positionAfter bool
	for !positionAfter {
		chs, err := s.ReadN(ctx, 100)
		if err != nil {
			t.Fatalf("reading (got %v so far): %v", got, err)
		}
		for _, c := range chs {
			if c.Envelope.Source.Table == "kv" && !c.PositionOnly {
				got = append(got, fmt.Sprintf("%s:%v", c.Envelope.Op, c.Envelope.Key["id"]))
			}
			if c.Position != nil && len(got) > 0 {
				positionAfter = true
			}
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != "d:c u:b" {
		t.Errorf("timed-out window emitted %v, want d:c u:b", got)
	}
	if n := metricValue(t, s.m.reloadWindows.WithLabelValues(db+".kv", "timed_out")); n != 1 {
		t.Errorf("reload windows timed out = %v, want 1", n)
	}
}
