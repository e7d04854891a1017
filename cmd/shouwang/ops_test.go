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

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// opsEnv is a real broker (kfake), a provincial PostgreSQL database and a
// configuration file with one postgres sink on the person topic.
type opsEnv struct {
	k       *testenv.KafkaCluster
	dsn     string
	cfgPath string
	pool    *pgxpool.Pool
	topic   string
	prod    *bus.Producer
}

func newOpsEnv(t *testing.T) *opsEnv {
	t.Helper()
	k := testenv.Kafka(t)
	pg, db := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{})
	e := &opsEnv{k: k, dsn: pg.ConnString(db), topic: schemas.CanonicalTopic("op", "person")}
	ctx := context.Background()
	opts := bus.Options{Brokers: k.Brokers()}
	if err := bus.EnsureTopics(ctx, opts, bus.TopicSpec{Name: e.topic, Partitions: 2, ReplicationFactor: 1},
		bus.TopicSpec{Name: schemas.DLQTopic("op", "sink"), Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	cfg.WriteString("kafka:\n  brokers:\n")
	for _, a := range k.Brokers() {
		fmt.Fprintf(&cfg, "    - %q\n", a)
	}
	fmt.Fprintf(&cfg, "  topic_prefix: op\n  session_timeout: 1s\n  partitions: 2\n  replication_factor: 1\nmetrics:\n  addr: 127.0.0.1:0\nregions:\n  province: \"11\"\nstate:\n  dir: ./state\n"+
		"sinks:\n  - name: provincial\n    kind: postgres\n    dsn: %q\n    topics: [person]\n    batch_size: 100\n    lanes: 1\n", e.dsn)
	e.cfgPath = filepath.Join(t.TempDir(), "shouwang.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.pool, err = pgxpool.New(ctx, e.dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pool.Close)
	if e.prod, err = bus.NewProducer(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.prod.Close() })
	return e
}

// personMsg is the canonical change of one person at version.
func (e *opsEnv) personMsg(t *testing.T, no, name string, version int64) bus.Message {
	t.Helper()
	p := schemas.Person{Meta: schemas.Meta{Key: no, Version: version, Source: schemas.SourceRef{System: "national", Table: "person"}, UpdatedMs: version},
		PersonNo: no, HouseholdNo: "H" + no, RegionCode: "110105001001", Name: name}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := schemas.DecodeObject(b)
	if err != nil {
		t.Fatal(err)
	}
	env := schemas.Envelope{V: 1, Op: schemas.OpUpdate, Source: schemas.Source{System: "transform", Kind: "transform", Table: "person"},
		Key: map[string]any{"key": no}, Schema: schemas.SchemaRef{Name: "person", Version: 1}, TsMs: 1, After: doc}
	v, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return bus.Message{Topic: e.topic, Key: []byte(no), Value: v, Headers: []bus.Header{{Key: "trace", Value: []byte("t-" + no)}}}
}

// produce writes persons (key, name, key, name, …) at version to the person topic.
func (e *opsEnv) produce(t *testing.T, version int64, persons ...string) {
	t.Helper()
	var msgs []bus.Message
	for i := 0; i+1 < len(persons); i += 2 {
		msgs = append(msgs, e.personMsg(t, persons[i], persons[i+1], version))
	}
	if err := e.prod.Produce(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// runSink runs the configuration's sinks in this process as `run --role sink` does,
// until the returned stop is called (which waits for them to leave the group).
func (e *opsEnv) runSink(t *testing.T) (stop func()) {
	t.Helper()
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w, err := newWorker(ctx, cfg, log, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sinks, err := w.sinkWorkers()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { w.runSinks(ctx, sinks); close(done) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			w.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond every 50 ms for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (e *opsEnv) count(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := e.pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		return -1
	}
	return n
}

func (e *opsEnv) exec(t *testing.T, q string) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// run runs an operator command in this process.
func run(t *testing.T, fn func([]string, *bytes.Buffer, *bytes.Buffer) int, args ...string) (int, string, string) {
	t.Helper()
	var o, e bytes.Buffer
	code := fn(args, &o, &e)
	return code, o.String(), e.String()
}

func dlqCmd(args []string, o, e *bytes.Buffer) int { return runDLQ(args, o, e) }

// dlqEntries is `dlq list --json` of the sink stage.
func (e *opsEnv) dlqEntries(t *testing.T) []dlqEntry {
	t.Helper()
	code, out, errOut := run(t, dlqCmd, "list", "-c", e.cfgPath, "--stage", "sink", "--json")
	if code != 0 {
		t.Fatalf("dlq list: exit %d: %s", code, errOut)
	}
	var es []dlqEntry
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		t.Fatalf("dlq list --json: %v\n%s", err, out)
	}
	return es
}

// TestDLQRedriveAfterFix: two persons the provincial database refuses (a check
// constraint) are dead-lettered by the sink; dlq list shows them with the reason; the
// constraint is replaced by one that still refuses one of them; redrive re-reads both
// originals from the person topic: one lands in PostgreSQL, the other is
// dead-lettered again with the new reason, and list shows all three records, the two
// old ones marked redriven and the new one linked to its redrive. Nothing is lost.
func TestDLQRedriveAfterFix(t *testing.T) {
	e := newOpsEnv(t)
	e.runSink(t)
	waitFor(t, "the sink's migration", func() bool {
		return e.count(t, "SELECT count(*) FROM fpjc.sink_offsets") >= 0 && e.count(t, "SELECT count(*) FROM fpjc.person") >= 0
	})
	e.exec(t, "ALTER TABLE fpjc.person ADD CONSTRAINT ops_no_bad CHECK (name NOT LIKE 'BAD%')")
	e.produce(t, 1, "P001", "good one", "P002", "BAD one", "P003", "good two", "P004", "BAD two")
	waitFor(t, "the two good rows", func() bool { return e.count(t, "SELECT count(*) FROM fpjc.person") == 2 })
	var es []dlqEntry
	waitFor(t, "two dead letters", func() bool { es = e.dlqEntries(t); return len(es) == 2 })
	for _, d := range es {
		if !strings.Contains(d.Record.Reason, "ops_no_bad") || d.Record.Source != e.topic || d.Redriven != nil {
			t.Fatalf("dead letter %+v: want the constraint in the reason, source %s, not redriven", d, e.topic)
		}
	}
	code, out, errOut := run(t, dlqCmd, "list", "-c", e.cfgPath)
	if code != 0 || !strings.Contains(out, "reason: sink provincial:") || !strings.Contains(out, "ops_no_bad") || !strings.Contains(out, e.topic+"/") {
		t.Fatalf("dlq list: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, dlqCmd, "show", "-c", e.cfgPath, "--stage", "sink", es[0].id())
	if code != 0 || !strings.Contains(out, "payload:\n  {\n") || !strings.Contains(out, "redriven: no") {
		t.Fatalf("dlq show: exit %d\n%s%s", code, out, errOut)
	}

	// The fix lets "BAD one" through but a new constraint refuses "BAD two".
	e.exec(t, "ALTER TABLE fpjc.person DROP CONSTRAINT ops_no_bad")
	e.exec(t, "ALTER TABLE fpjc.person ADD CONSTRAINT ops_no_bad_two CHECK (name <> 'BAD two')")
	code, out, errOut = run(t, dlqCmd, "redrive", "-c", e.cfgPath, "--stage", "sink", "--reason", "ops_no_bad", "--dry-run")
	if code != 0 || strings.Count(out, "would re-produce the original") != 2 {
		t.Fatalf("dlq redrive --dry-run: exit %d\n%s%s", code, out, errOut)
	}
	if n := len(e.dlqEntries(t)); n != 2 {
		t.Fatalf("a dry run changed the dead letters: %d", n)
	}
	code, out, errOut = run(t, dlqCmd, "redrive", "-c", e.cfgPath, "--stage", "sink", "--reason", "ops_no_bad")
	if code != 0 || !strings.Contains(out, "2 redriven") {
		t.Fatalf("dlq redrive: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "the redriven row", func() bool {
		return e.count(t, "SELECT count(*) FROM fpjc.person WHERE key = 'P002' AND name = 'BAD one'") == 1
	})
	waitFor(t, "the new dead letter", func() bool { es = e.dlqEntries(t); return len(es) == 3 })
	var again *dlqEntry
	for i, d := range es {
		if strings.Contains(d.Record.Reason, "ops_no_bad_two") {
			again = &es[i]
			continue
		}
		if d.Redriven == nil || d.Redriven.From != "source topic" || !strings.HasPrefix(d.Redriven.To, e.topic+"/") {
			t.Errorf("old dead letter %s not marked redriven from the source topic: %+v", d.id(), d.Redriven)
		}
	}
	if again == nil || again.RedriveOf == nil || again.Record.Key != "P004" || again.Redriven != nil {
		t.Fatalf("no new dead letter for P004 linked to its redrive: %+v", es)
	}
	// The redrive re-produced the original with its headers.
	if e.count(t, "SELECT count(*) FROM fpjc.person") != 3 {
		t.Fatalf("rows: %d, want 3", e.count(t, "SELECT count(*) FROM fpjc.person"))
	}
	code, out, _ = run(t, dlqCmd, "list", "-c", e.cfgPath, "--stage", "sink")
	if code != 0 || strings.Count(out, "redriven ") != 2 || !strings.Contains(out, "failed again after the redrive of sink") {
		t.Fatalf("dlq list after redrive: exit %d\n%s", code, out)
	}
	// A second redrive by the first reason skips what is already redriven.
	code, out, _ = run(t, dlqCmd, "redrive", "-c", e.cfgPath, "--stage", "sink", "--reason", "ops_no_bad\"")
	if code != 0 || !strings.Contains(out, "0 redriven, 2 skipped") {
		t.Fatalf("dlq redrive, nothing matching: exit %d\n%s", code, out)
	}
	first := es[0]
	if first.Redriven == nil {
		first = es[1]
	}
	code, out, _ = run(t, dlqCmd, "redrive", "-c", e.cfgPath, "--stage", "sink", first.id())
	if code != 0 || !strings.Contains(out, "already redriven") || !strings.Contains(out, "0 redriven, 1 skipped") {
		t.Fatalf("dlq redrive of a redriven record: exit %d\n%s", code, out)
	}
	// Every redrive is in the audit log.
	b, err := os.ReadFile(filepath.Join(filepath.Dir(e.cfgPath), "state", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"action":"dlq redrive"`); n != 2 {
		t.Fatalf("%d redrive audit lines, want 2:\n%s", n, b)
	}
}

// TestDLQRedriveRefusesCaptureRecords: a capture dead letter (a file row) has no Kafka
// original and is refused with what to do instead.
func TestDLQRedriveRefusesCaptureRecords(t *testing.T) {
	e := newOpsEnv(t)
	if err := bus.EnsureTopics(context.Background(), bus.Options{Brokers: e.k.Brokers()}, bus.TopicSpec{Name: schemas.DLQTopic("op", "capture"), Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	rec := schemas.DLQRecord{Stage: "capture", Reason: "file a.csv line 3: bad date", Source: "files/disability/a.csv", Position: "line 3", Key: "a.csv:3", TsMs: time.Now().UnixMilli()}
	b, _ := json.Marshal(rec)
	if err := e.prod.Produce(context.Background(), bus.Message{Topic: schemas.DLQTopic("op", "capture"), Key: []byte(rec.Key), Value: b}); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, dlqCmd, "redrive", "-c", e.cfgPath, "--stage", "capture", "--since", "1h")
	if code != 1 || !strings.Contains(errOut, "refused") || !strings.Contains(errOut, "re-deliver the file") || !strings.Contains(errOut, "shouwang snapshot") {
		t.Fatalf("dlq redrive of a capture record: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, dlqCmd, "redrive", "-c", e.cfgPath, "--stage", "sink")
	if code != 2 || !strings.Contains(errOut, "select the records") {
		t.Fatalf("dlq redrive without selector: exit %d, stderr %q", code, errOut)
	}
}

func offsetsCmd(args []string, o, e *bytes.Buffer) int { return runOffsets(args, o, e) }
func statusCmd(args []string, o, e *bytes.Buffer) int  { return runStatus(args, o, e) }

// storedOffsets reads fpjc.sink_offsets of the test sink ("topic/partition" → next).
func (e *opsEnv) storedOffsets(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	rows, err := e.pool.Query(context.Background(), "SELECT topic, partition, next_offset FROM fpjc.sink_offsets WHERE sink = 'provincial'")
	if err != nil {
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var tp string
		var p int32
		var n int64
		if err := rows.Scan(&tp, &p, &n); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("%s/%d", tp, p)] = n
	}
	return out
}

func sum(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

func persons(from, to int, name string) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("P%03d", i), fmt.Sprintf("%s %d", name, i))
	}
	return out
}

// TestOffsetsResetRewindsStoppedSink: reset is refused while the sink is a live
// member of its group; once it stopped, a dry run changes nothing, and reset
// --to-time rewinds both the group offsets and fpjc.sink_offsets to the first offsets
// at or after the time; the restarted sink applies those messages again (a deleted
// row comes back, the others are stale skips) and stores the end offsets again.
func TestOffsetsResetRewindsStoppedSink(t *testing.T) {
	e := newOpsEnv(t)
	group := "shouwang-sink-provincial"
	e.produce(t, 1, persons(1, 10, "early")...)
	time.Sleep(100 * time.Millisecond)
	at := time.Now()
	time.Sleep(100 * time.Millisecond)
	e.produce(t, 1, persons(11, 20, "late")...)
	stop := e.runSink(t)
	waitFor(t, "20 stored offsets", func() bool { return sum(e.storedOffsets(t)) == 20 })

	code, _, errOut := run(t, offsetsCmd, "reset", "-c", e.cfgPath, "--group", group, "--to-time", at.Format(time.RFC3339Nano), "--yes")
	if code != 1 || !strings.Contains(errOut, "live member") || !strings.Contains(errOut, "stop the workers") {
		t.Fatalf("reset of a live group: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut := run(t, offsetsCmd, "show", "-c", e.cfgPath)
	if code != 0 || !strings.Contains(out, "sink/postgres provincial  group "+group) || !strings.Contains(out, "fpjc.sink_offsets") || !strings.Contains(out, "STORED") {
		t.Fatalf("offsets show: exit %d\n%s%s", code, out, errOut)
	}
	stop()
	_, adm, err := opsAdmin(mustLoad(t, e.cfgPath))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	waitFor(t, "the group to empty", func() bool {
		d, err := adm.DescribeGroups(context.Background(), group)
		return err == nil && len(d[group].Members) == 0
	})
	before := e.storedOffsets(t)
	code, out, errOut = run(t, offsetsCmd, "reset", "-c", e.cfgPath, "--group", group, "--to-time", at.Format(time.RFC3339Nano))
	if code != 0 || !strings.Contains(out, "dry run: nothing changed") {
		t.Fatalf("reset dry run: exit %d\n%s%s", code, out, errOut)
	}
	if got := e.storedOffsets(t); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("a dry run changed the stored offsets: %v → %v", before, got)
	}
	code, out, errOut = run(t, offsetsCmd, "reset", "-c", e.cfgPath, "--group", group, "--to-time", at.Format(time.RFC3339Nano), "--yes")
	if code != 0 || !strings.Contains(out, "reset the group offsets and fpjc.sink_offsets") {
		t.Fatalf("reset: exit %d\n%s%s", code, out, errOut)
	}
	want, err := adm.ListOffsetsAfterMilli(context.Background(), at.UnixMilli(), e.topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	stored := e.storedOffsets(t)
	for p := int32(0); p < 2; p++ {
		w, _ := want.Lookup(e.topic, p)
		c, _ := committed.Lookup(e.topic, p)
		if s := stored[fmt.Sprintf("%s/%d", e.topic, p)]; s != w.Offset || c.At != w.Offset {
			t.Errorf("partition %d: stored %d, committed %d, want both %d", p, s, c.At, w.Offset)
		}
	}
	if n := sum(stored); n != 10 {
		t.Fatalf("stored offsets sum to %d after the reset, want 10 (the messages before the time): %v", n, stored)
	}
	// The restarted sink applies the later messages again: a row deleted meanwhile comes back.
	e.exec(t, "DELETE FROM fpjc.person WHERE key = 'P015'")
	e.runSink(t)
	waitFor(t, "the re-applied messages", func() bool {
		return sum(e.storedOffsets(t)) == 20 && e.count(t, "SELECT count(*) FROM fpjc.person WHERE key = 'P015'") == 1
	})
	if n := e.count(t, "SELECT count(*) FROM fpjc.person"); n != 20 {
		t.Fatalf("%d rows, want 20", n)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(e.cfgPath), "state", "audit.log"))
	if err != nil || strings.Count(string(b), `"action":"offsets reset"`) != 1 || !strings.Contains(string(b), `"target":"`+group+`"`) {
		t.Fatalf("audit log: %v\n%s", err, b)
	}
}

func mustLoad(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestStatusLagAndDeadLetters: after the sink dead-lettered two of four persons and
// stopped, three more are produced: status shows the sink's lag of three on the
// person topic and two records in the sink's dead-letter topic.
func TestStatusLagAndDeadLetters(t *testing.T) {
	e := newOpsEnv(t)
	stop := e.runSink(t)
	waitFor(t, "the sink's migration", func() bool { return e.count(t, "SELECT count(*) FROM fpjc.person") >= 0 })
	e.exec(t, "ALTER TABLE fpjc.person ADD CONSTRAINT ops_no_bad CHECK (name NOT LIKE 'BAD%')")
	e.produce(t, 1, "P001", "good", "P002", "BAD", "P003", "good", "P004", "BAD")
	waitFor(t, "four stored offsets", func() bool { return sum(e.storedOffsets(t)) == 4 })
	stop()
	e.produce(t, 1, persons(5, 7, "later")...)
	var st status
	waitFor(t, "the status", func() bool {
		code, out, _ := run(t, statusCmd, "-c", e.cfgPath, "--json")
		st = status{}
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil && len(st.Consumers) == 1 && st.Consumers[0].Members == 0
	})
	c := st.Consumers[0]
	if c.Kind != "sink/postgres" || c.Lag != 3 || len(c.Topics) != 1 || c.Topics[0].Topic != e.topic || c.Topics[0].Position != 4 || c.Topics[0].End != 7 || c.Topics[0].Lag != 3 {
		t.Fatalf("sink status %+v, want lag 3 at position 4 of 7 on %s", c, e.topic)
	}
	if st.DLQ["sink"] != 2 || st.DLQ["transform"] != 0 || st.DLQ["capture"] != 0 {
		t.Fatalf("dead letters %v, want sink 2", st.DLQ)
	}
	code, out, errOut := run(t, statusCmd, "-c", e.cfgPath)
	if code != 0 || !strings.Contains(out, "sink/postgres provincial") || !strings.Contains(out, "lag 3") || !strings.Contains(out, "dead letters") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("\n%s", out)
}

// TestDLQRedriveFallsBackToPayload: when the original is gone from its topic
// (retention: here DeleteRecords), redrive refuses a masked dead-letter payload
// unless --from-payload is given, then re-produces the payload, which the sink applies.
func TestDLQRedriveFallsBackToPayload(t *testing.T) {
	e := newOpsEnv(t)
	ctx := context.Background()
	cl, adm, err := opsAdmin(mustLoad(t, e.cfgPath), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	orig := e.personMsg(t, "P900", "original", 1)
	r := &kgo.Record{Topic: e.topic, Partition: 0, Key: orig.Key, Value: orig.Value}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	del := kadm.Offsets{}
	del.AddOffset(e.topic, 0, r.Offset+1, -1)
	if _, err := adm.DeleteRecords(ctx, del); err != nil {
		t.Fatal(err)
	}
	payload := e.personMsg(t, "P900", "from payload", 1).Value
	rec := schemas.DLQRecord{Stage: "sink", Reason: "sink provincial: test", Source: e.topic, Position: fmt.Sprintf("%s/0@%d", e.topic, r.Offset),
		Key: "P900", Payload: payload, Offset: r.Offset, TsMs: time.Now().UnixMilli()}
	b, _ := json.Marshal(rec)
	d := &kgo.Record{Topic: schemas.DLQTopic("op", "sink"), Partition: 0, Key: []byte("P900"), Value: b}
	if err := cl.ProduceSync(ctx, d).FirstErr(); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("0/%d", d.Offset)
	code, _, errOut := run(t, dlqCmd, "redrive", "-c", e.cfgPath, "--stage", "sink", id)
	if code != 1 || !strings.Contains(errOut, "the original is gone") || !strings.Contains(errOut, "--from-payload") {
		t.Fatalf("redrive of a masked payload: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut := run(t, dlqCmd, "redrive", "-c", e.cfgPath, "--stage", "sink", "--from-payload", id)
	if code != 0 || !strings.Contains(out, "redriven from the dead-letter payload (pii.dlq mask)") {
		t.Fatalf("redrive --from-payload: exit %d\n%s%s", code, out, errOut)
	}
	e.runSink(t)
	waitFor(t, "the row from the payload", func() bool {
		return e.count(t, "SELECT count(*) FROM fpjc.person WHERE key = 'P900' AND name = 'from payload'") == 1
	})
	if es := e.dlqEntries(t); len(es) != 1 || es[0].Redriven == nil || es[0].Redriven.From != "dlq payload" {
		t.Fatalf("dead letters after the redrive: %+v", es)
	}
}

// TestOffsetsEveryConsumerKind: the consumers of a configuration with a transform
// pipeline, the monitor and the three sink kinds carry the groups their workers join;
// offsets show reads them all; reset refuses the monitor and the sharing_http sink
// (state files) and rewrites a sharing_db sink's fpjc_push_offsets with its group.
func TestOffsetsEveryConsumerKind(t *testing.T) {
	k := testenv.Kafka(t)
	pg, db := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{})
	dsn := pg.ConnString(db)
	ctx := context.Background()
	var topics []bus.TopicSpec
	for _, tp := range []string{schemas.RawTopic("op", "national", "person"), schemas.CanonicalTopic("op", "person"), schemas.CanonicalTopic("op", "household")} {
		topics = append(topics, bus.TopicSpec{Name: tp, Partitions: 2, ReplicationFactor: 1})
	}
	if err := bus.EnsureTopics(ctx, bus.Options{Brokers: k.Brokers()}, topics...); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	cfg.WriteString("kafka:\n  brokers:\n")
	for _, a := range k.Brokers() {
		fmt.Fprintf(&cfg, "    - %q\n", a)
	}
	fmt.Fprintf(&cfg, `  topic_prefix: op
  partitions: 2
  replication_factor: 1
regions:
  province: "11"
state:
  dir: ./state
pipelines:
  - name: registry
    inputs: [op.raw.national.person]
    mapping: embedded
    outputs: [person]
monitor:
  enabled: true
sinks:
  - name: provincial
    kind: postgres
    dsn: %[1]q
    topics: [person]
  - name: exchange
    kind: sharing_db
    driver: postgres
    dsn: %[1]q
    topics: [household, person]
    protect: mask
  - name: base_data
    kind: sharing_http
    url: http://127.0.0.1:9/api
    topics: [household, person]
    protect: mask
    http:
      auth_token: t
      signing_key: demo-signing-key-0123456789
`, dsn)
	cfgPath := filepath.Join(t.TempDir(), "shouwang.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cs, err := consumers(mustLoad(t, cfgPath))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, fmt.Sprintf("%s %s %s %s %v", c.Kind, c.Name, c.Group, c.Store, c.Topics))
	}
	want := []string{
		"transform registry shouwang-transform-registry group [op.raw.national.person]",
		"monitor monitor shouwang-monitor-monitor monitor [",
		"sink/postgres provincial shouwang-sink-provincial postgres [op.canonical.person]",
		"sink/sharing_db exchange shouwang-sink-exchange exchange [op.canonical.household op.canonical.person]",
		"sink/sharing_http base_data shouwang-sink-base_data sharing [op.canonical.household op.canonical.person]",
	}
	if len(got) != len(want) {
		t.Fatalf("consumers:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("consumer %d = %q, want %q…", i, got[i], want[i])
		}
	}
	code, out, errOut := run(t, offsetsCmd, "show", "-c", cfgPath)
	t.Logf("\n%s", out)
	if code != 0 || strings.Count(out, " group shouwang-") != 5 {
		t.Fatalf("offsets show: exit %d\n%s%s", code, out, errOut)
	}
	for _, g := range []string{"shouwang-monitor-monitor", "shouwang-sink-base_data"} {
		code, _, errOut := run(t, offsetsCmd, "reset", "-c", cfgPath, "--group", g, "--to-earliest", "--yes")
		if code != 1 || !strings.Contains(errOut, "refused") || !strings.Contains(errOut, "state file") || !strings.Contains(errOut, "move ") {
			t.Errorf("reset of %s: exit %d, stderr %q", g, code, errOut)
		}
	}
	code, _, errOut = run(t, offsetsCmd, "reset", "-c", cfgPath, "--group", "nope", "--to-earliest")
	if code != 2 || !strings.Contains(errOut, "shouwang-sink-exchange") {
		t.Errorf("reset of an unknown group: exit %d, stderr %q", code, errOut)
	}

	// The exchange sink as it would have left its offsets table.
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE fpjc_push_offsets (sink varchar(64) NOT NULL, topic varchar(255) NOT NULL, part integer NOT NULL,
  next_offset bigint NOT NULL, PRIMARY KEY (sink, topic, part));
INSERT INTO fpjc_push_offsets VALUES ('exchange', 'op.canonical.person', 0, 7), ('other', 'op.canonical.person', 0, 9)`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run(t, offsetsCmd, "reset", "-c", cfgPath, "--group", "shouwang-sink-exchange", "--to-earliest", "--yes")
	if code != 0 || !strings.Contains(out, "fpjc_push_offsets") {
		t.Fatalf("reset of the exchange sink: exit %d\n%s%s", code, out, errOut)
	}
	var rows, zero, other int64
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE next_offset = 0),
  (SELECT next_offset FROM fpjc_push_offsets WHERE sink = 'other') FROM fpjc_push_offsets WHERE sink = 'exchange'`).Scan(&rows, &zero, &other); err != nil {
		t.Fatal(err)
	}
	if rows != 4 || zero != 4 || other != 9 {
		t.Fatalf("fpjc_push_offsets after the reset: %d rows of the sink, %d at 0, the other sink's %d; want 4, 4, 9", rows, zero, other)
	}
}

func TestRedrivable(t *testing.T) {
	cases := []struct {
		name string
		e    dlqEntry
		want string // "" redrivable at op.canonical.person/1@17; else a piece of the refusal
	}{
		{"sink", dlqEntry{Stage: "sink", Record: schemas.DLQRecord{Source: "op.canonical.person", Position: "op.canonical.person/1@17"}}, ""},
		{"transform", dlqEntry{Stage: "transform", Record: schemas.DLQRecord{Source: "op.canonical.person", Position: "op.canonical.person/1@17"}}, ""},
		{"capture file", dlqEntry{Stage: "capture", Record: schemas.DLQRecord{Source: "files/disability/a.csv", Position: "line 3"}}, "re-deliver the file"},
		{"capture binlog", dlqEntry{Stage: "capture", Record: schemas.DLQRecord{Source: "national", Position: "binlog.000003:4711"}}, "shouwang snapshot"},
		{"sharing refusal", dlqEntry{Stage: "sink", Record: schemas.DLQRecord{Source: "op.canonical.person", Position: "batch-42"}}, "sharing platform refused"},
		{"other topic", dlqEntry{Stage: "sink", Record: schemas.DLQRecord{Source: "op.canonical.person", Position: "op.canonical.household/0@1"}}, "not on its source topic"},
		{"undecodable", dlqEntry{Stage: "sink", Undecodable: "bad json"}, "not a dead-letter record"},
	}
	for _, tc := range cases {
		topic, p, o, why := redrivable("op", tc.e)
		switch {
		case tc.want == "" && (why != "" || topic != "op.canonical.person" || p != 1 || o != 17):
			t.Errorf("%s: %s/%d@%d, refused %q; want op.canonical.person/1@17", tc.name, topic, p, o, why)
		case tc.want != "" && !strings.Contains(why, tc.want):
			t.Errorf("%s: refusal %q lacks %q", tc.name, why, tc.want)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-12-07T08:00:00+08:00": time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC),
		"24h":                       now.Add(-24 * time.Hour),
		"7d":                        now.AddDate(0, 0, -7),
		"2026-12-01":                time.Date(2026, 12, 1, 0, 0, 0, 0, time.Local),
		"2026-12-01 08:30":          time.Date(2026, 12, 1, 8, 30, 0, 0, time.Local),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseSince("yesterday", now); err == nil {
		t.Error("parseSince(yesterday): no error")
	}
}

// TestDLQRedriveTransformStage: a pipeline dead-letters two raw persons without a
// household number; one of them was corrected by a later change that the pipeline
// applied. Redrive re-produces the other (it fails again: a new dead letter linked to
// the redrive) and refuses the corrected one, whose old change would otherwise get a
// newer canonical version (from its new raw offset) and overwrite the correction.
func TestDLQRedriveTransformStage(t *testing.T) {
	k := testenv.Kafka(t)
	pg, db := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{})
	raw := schemas.RawTopic("op", "national", "person")
	var cfg strings.Builder
	cfg.WriteString("kafka:\n  brokers:\n")
	for _, a := range k.Brokers() {
		fmt.Fprintf(&cfg, "    - %q\n", a)
	}
	fmt.Fprintf(&cfg, `  topic_prefix: op
  session_timeout: 1s
  partitions: 1
  replication_factor: 1
metrics:
  addr: 127.0.0.1:0
regions:
  province: "11"
state:
  dir: ./state
pipelines:
  - name: registry
    inputs: [%s]
    mapping: embedded
    outputs: [person]
monitor:
  enabled: false
sinks:
  - name: provincial
    kind: postgres
    dsn: %q
    topics: [person]
    lanes: 1
`, raw, pg.ConnString(db))
	cfgPath := filepath.Join(t.TempDir(), "shouwang.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := bus.EnsureTopics(ctx, bus.Options{Brokers: k.Brokers()}, bus.TopicSpec{Name: raw, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	startPipeline(t, ctx, cfgPath, cfg.String())
	p, err := bus.NewProducer(bus.Options{Brokers: k.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	change := func(no, name string, hh any) bus.Message {
		r := transformCrashPerson(no)
		r["name"], r["hh_no"] = name, hh
		e := schemas.Envelope{V: 1, Op: schemas.OpUpdate, Source: schemas.Source{System: "national", Kind: "mysqlbinlog", DB: "national", Table: "person"},
			Key: map[string]any{"person_no": no}, After: r, Schema: schemas.SchemaRef{Name: "national.person", Version: 1}, TsMs: 1}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return bus.Message{Topic: raw, Key: []byte(no), Value: b}
	}
	if err := p.Produce(ctx, change("00000001", "甲", "H001"), change("00000002", "乙", nil), change("00000003", "丙", nil), change("00000003", "丙改", "H003")); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rows := func() int64 {
		var n int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM fpjc.person").Scan(&n); err != nil {
			return -1
		}
		return n
	}
	waitFor(t, "two persons", func() bool { return rows() == 2 })
	list := func() []dlqEntry {
		code, out, errOut := run(t, dlqCmd, "list", "-c", cfgPath, "--stage", "transform", "--json")
		if code != 0 {
			t.Fatalf("dlq list: exit %d: %s", code, errOut)
		}
		var es []dlqEntry
		if err := json.Unmarshal([]byte(out), &es); err != nil {
			t.Fatal(err)
		}
		return es
	}
	var es []dlqEntry
	waitFor(t, "two dead letters", func() bool { es = list(); return len(es) == 2 })
	code, out, errOut := run(t, dlqCmd, "redrive", "-c", cfgPath, "--stage", "transform", "--since", "1h")
	if code != 1 || !strings.Contains(out, "1 redriven") || !strings.Contains(errOut, "a newer change of its key followed at "+raw+"/0@3") {
		t.Fatalf("redrive: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "the dead letter of the redrive", func() bool { es = list(); return len(es) == 3 })
	var linked, redriven int
	for _, e := range es {
		if e.RedriveOf != nil && e.Record.Key == "00000002" {
			linked++
		}
		if e.Redriven != nil {
			redriven++
		}
	}
	if linked != 1 || redriven != 1 {
		t.Fatalf("after the redrive: %d linked, %d marked redriven, want 1 and 1: %+v", linked, redriven, es)
	}
	var name string
	if err := pool.QueryRow(ctx, "SELECT name FROM fpjc.person WHERE key = '00000003'").Scan(&name); err != nil || name != "丙改" {
		t.Fatalf("the corrected person: %q, %v", name, err)
	}
}
