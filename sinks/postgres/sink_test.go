package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// The provincial tables are exactly the canonical entities' fields (plus deleted and
// applied_at), with the types the sink casts to; migrating again changes nothing.
func TestMigrationsMatchEntities(t *testing.T) {
	p, db := testenv.PostgresDatabase(t)
	s := newSink(t, Options{})
	pool := open(t, p, db, s)
	if again, err := Migrate(context.Background(), pool, nil); err != nil || len(again) != 0 {
		t.Fatalf("second migration: applied %v, err %v; want nothing", again, err)
	}
	udt := map[string]string{"text": "text", "numeric": "numeric", "integer": "int4", "bigint": "int8", "boolean": "bool", "text[]": "_text", "jsonb": "jsonb"}
	for name, tb := range entityTables() {
		rows, err := pool.Query(context.Background(), `SELECT column_name, udt_name FROM information_schema.columns WHERE table_schema = 'fpjc' AND table_name = $1 ORDER BY ordinal_position`, name)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		var order []string
		for rows.Next() {
			var c, u string
			if err := rows.Scan(&c, &u); err != nil {
				t.Fatal(err)
			}
			got[c] = u
			order = append(order, c)
		}
		rows.Close()
		want := map[string]string{"deleted": "bool", "applied_at": "timestamptz"}
		for _, c := range tb.cols {
			want[c.name] = udt[c.pgType]
		}
		for c, u := range want {
			if got[c] != u {
				t.Errorf("fpjc.%s.%s: type %q in the migrations, want %q (entity field changed? add a migration)", name, c, got[c], u)
			}
		}
		for c := range got {
			if _, ok := want[c]; !ok {
				t.Errorf("fpjc.%s.%s: column has no field in the %s entity", name, c, name)
			}
		}
		if len(order) == 0 {
			t.Errorf("fpjc.%s: no such table", name)
		}
	}
}

// The same batch twice changes nothing the second time; every change of it is stale.
func TestSameBatchTwice(t *testing.T) {
	p, db := testenv.PostgresDatabase(t)
	s := newSink(t, Options{})
	pool := open(t, p, db, s)
	f := newFeed(t, s)
	var recs []Record
	for i := 0; i < 50; i++ {
		recs = append(recs, f.ent("person", schemas.OpCreate, person(fmt.Sprintf("P%03d", i), 1, "张三")))
	}
	w := &schemas.Warning{Meta: schemas.Meta{Key: "w1", Version: 1, UpdatedMs: 5}, ID: "w1", RuleID: "yibao.oop_12m", Department: "yibao",
		SubjectKind: "person", SubjectKey: "P001", Period: "2024", RaisedAt: "2024-06-01", DueDays: 15, DueAt: "2024-06-16", Status: schemas.WarningOpen,
		Evidence: map[string]string{"oop_12m": "61234.00"}, FactKeys: []string{"f1", "f\"2"}}
	recs = append(recs, f.ent("warning", schemas.OpCreate, w))
	ctx := context.Background()
	res, err := s.Apply(ctx, pool, recs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 51 || res.Stale != 0 || len(res.Dead) != 0 {
		t.Fatalf("first apply: %+v, want 51 applied", res.Counts)
	}
	persons, warnings := dump(t, pool, "person"), dump(t, pool, "warning")
	res, err = s.Apply(ctx, pool, recs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 0 || res.Stale != 51 {
		t.Fatalf("second apply: %+v, want 51 stale and nothing applied", res.Counts)
	}
	if got := dump(t, pool, "person"); strings.Join(got, "\n") != strings.Join(persons, "\n") {
		t.Errorf("persons changed by the same batch again")
	}
	if got := dump(t, pool, "warning"); strings.Join(got, "\n") != strings.Join(warnings, "\n") {
		t.Errorf("warnings changed by the same batch again")
	}
	if n := scalar[int](t, pool, "SELECT count(*) FROM fpjc.warning_history"); n != 1 {
		t.Errorf("warning history has %d rows, want 1", n)
	}
	// The stored row is the entity: values typed, lists and maps intact.
	var fk []string
	var ev map[string]string
	var due int
	if err := pool.QueryRow(ctx, "SELECT fact_keys, evidence, due_days FROM fpjc.warning WHERE key = 'w1'").Scan(&fk, &ev, &due); err != nil {
		t.Fatal(err)
	}
	if strings.Join(fk, "|") != `f1|f"2` || ev["oop_12m"] != "61234.00" || due != 15 {
		t.Errorf("warning stored as %q %v %d", fk, ev, due)
	}
	if got := scalar[string](t, pool, "SELECT work_monthly_income::text || '/' || work_months || '/' || deceased || '/' || source_position FROM fpjc.person WHERE key = 'P001'"); got != "1234.50/7/false/binlog.000001:4" {
		t.Errorf("person P001 stored as %s", got)
	}
	if got := scalar[int64](t, pool, "SELECT next_offset FROM fpjc.sink_offsets WHERE sink = 'provincial' AND topic = $1 AND partition = 0", topicOf("person")); got != 50 {
		t.Errorf("stored offset %d, want 50", got)
	}
}

// An older version never overwrites a newer one: neither in a later batch nor
// inside one batch, whatever the order of arrival.
func TestOlderNeverOverwritesNewer(t *testing.T) {
	p, db := testenv.PostgresDatabase(t)
	s := newSink(t, Options{})
	pool := open(t, p, db, s)
	f := newFeed(t, s)
	ctx := context.Background()
	// In one batch: v3, v1, v2 of A — v3 stands, two collapsed.
	res, err := s.Apply(ctx, pool, []Record{
		f.ent("person", schemas.OpUpdate, person("A", 3, "三")),
		f.ent("person", schemas.OpUpdate, person("A", 1, "一")),
		f.ent("person", schemas.OpUpdate, person("A", 2, "二")),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 1 || res.Collapsed != 2 {
		t.Errorf("one batch: %+v, want 1 applied, 2 collapsed", res.Counts)
	}
	// In later batches: v2 then v3 again, then v4.
	for _, v := range []int64{2, 3} {
		res, err := s.Apply(ctx, pool, []Record{f.ent("person", schemas.OpUpdate, person("A", v, fmt.Sprint("old", v)))})
		if err != nil {
			t.Fatal(err)
		}
		if res.Stale != 1 || res.Applied != 0 {
			t.Errorf("v%d after v3: %+v, want stale", v, res.Counts)
		}
	}
	if got := scalar[string](t, pool, "SELECT name || '/' || version FROM fpjc.person WHERE key = 'A'"); got != "三/3" {
		t.Errorf("A is %s, want 三/3", got)
	}
	if _, err := s.Apply(ctx, pool, []Record{f.ent("person", schemas.OpUpdate, person("A", 4, "四"))}); err != nil {
		t.Fatal(err)
	}
	if got := scalar[string](t, pool, "SELECT name || '/' || version FROM fpjc.person WHERE key = 'A'"); got != "四/4" {
		t.Errorf("A is %s, want 四/4", got)
	}
}

func TestDeletes(t *testing.T) {
	for _, mode := range []string{DeleteSoft, DeleteHard} {
		t.Run(mode, func(t *testing.T) {
			p, db := testenv.PostgresDatabase(t)
			s := newSink(t, Options{Delete: mode})
			pool := open(t, p, db, s)
			f := newFeed(t, s)
			ctx := context.Background()
			apply := func(recs ...Record) Result {
				t.Helper()
				res, err := s.Apply(ctx, pool, recs)
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			apply(f.ent("person", schemas.OpCreate, person("A", 1, "甲")), f.ent("person", schemas.OpCreate, person("B", 1, "乙")))
			if res := apply(f.ent("person", schemas.OpDelete, person("A", 3, "甲"))); res.Deleted != 1 {
				t.Fatalf("delete: %+v", res.Counts)
			}
			// An older change redelivered after the delete does not bring A back.
			if res := apply(f.ent("person", schemas.OpUpdate, person("A", 2, "旧"))); res.Stale != 1 || res.Applied != 0 {
				t.Errorf("older update after delete: %+v, want stale", res.Counts)
			}
			live := "SELECT count(*) FROM fpjc.person WHERE key = 'A' AND NOT deleted"
			if n := scalar[int](t, pool, live); n != 0 {
				t.Errorf("A is live again after an older update")
			}
			switch mode {
			case DeleteSoft:
				if got := scalar[string](t, pool, "SELECT name || '/' || version || '/' || deleted FROM fpjc.person WHERE key = 'A'"); got != "甲/3/true" {
					t.Errorf("soft-deleted A is %s, want its last values, version 3, deleted", got)
				}
			case DeleteHard:
				if n := scalar[int](t, pool, "SELECT count(*) FROM fpjc.person WHERE key = 'A'"); n != 0 {
					t.Errorf("hard-deleted A still has a row")
				}
				if v := scalar[int64](t, pool, "SELECT version FROM fpjc.sink_tombstones WHERE entity_table = 'fpjc.person' AND key = 'A'"); v != 3 {
					t.Errorf("tombstone version %d, want 3", v)
				}
			}
			// A newer change after the delete re-creates A.
			if res := apply(f.ent("person", schemas.OpCreate, person("A", 4, "新"))); res.Applied != 1 {
				t.Errorf("newer create after delete: %+v", res.Counts)
			}
			if got := scalar[string](t, pool, "SELECT name || '/' || deleted FROM fpjc.person WHERE key = 'A'"); got != "新/false" {
				t.Errorf("A is %s after re-create", got)
			}
			if n := scalar[int](t, pool, "SELECT count(*) FROM fpjc.person WHERE key = 'B' AND NOT deleted"); n != 1 {
				t.Errorf("B was touched")
			}
		})
	}
}

// One bad record of each kind goes to the dead-letter topic with its reason; the rest
// of the batch lands and the stored offsets pass every record.
func TestBadRecordsToDLQRestLands(t *testing.T) {
	s, pool, k := sinkWithDLQ(t, Options{})
	f := newFeed(t, s)
	var recs []Record
	for i := 0; i < 40; i++ {
		recs = append(recs, f.ent("person", schemas.OpCreate, person(fmt.Sprintf("P%02d", i), 1, "好")))
	}
	badDecimal := person("BAD1", 1, "坏")
	badDecimal.WorkMonthlyIncome = "1,234.50" // PostgreSQL refuses it as numeric
	badStatus := &schemas.QualityIssue{Meta: schemas.Meta{Key: "q1", Version: 1}, ID: "q1", RuleID: "Q-001", SubjectKind: "person", SubjectKey: "P01",
		RegionCode: "513423101001", Severity: "error", Status: "half-open", FirstSeen: "2024-01-01", LastSeen: "2024-01-01"} // violates the status CHECK
	goodIssue := *badStatus
	goodIssue.Key, goodIssue.ID, goodIssue.Status = "q2", "q2", schemas.IssueOpen
	unknownField := strings.Replace(string(envelope(t, "person", schemas.OpCreate, person("BAD3", 1, "x"))), `"name":`, `"nickname":"x","name":`, 1)
	newVersion := strings.Replace(string(envelope(t, "person", schemas.OpCreate, person("BAD4", 1, "x"))), `"version":1}`, `"version":2}`, 1)
	bad := []Record{
		f.ent("person", schemas.OpCreate, person("BAD5", 1, "a\x00b")), // PostgreSQL text cannot hold NUL
		f.ent("person", schemas.OpCreate, badDecimal),
		f.ent("quality_issue", schemas.OpCreate, badStatus),
		f.rec("person", []byte(`{"v":1,"op":"c",`)),
		f.rec("person", []byte(unknownField)),
		f.rec("person", []byte(newVersion)),
	}
	recs = append(recs[:20], append(bad, recs[20:]...)...)
	recs = append(recs, f.ent("quality_issue", schemas.OpCreate, &goodIssue))
	res, err := s.Apply(context.Background(), pool, recs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 41 || len(res.Dead) != 6 {
		t.Fatalf("%+v with %d dead, want 41 applied and 6 dead", res.Counts, len(res.Dead))
	}
	if n := scalar[int](t, pool, "SELECT count(*) FROM fpjc.person"); n != 40 {
		t.Errorf("%d persons landed, want 40", n)
	}
	if n := scalar[int](t, pool, "SELECT count(*) FROM fpjc.quality_issue"); n != 1 {
		t.Errorf("%d issues landed, want 1", n)
	}
	if got := scalar[int64](t, pool, "SELECT next_offset FROM fpjc.sink_offsets WHERE topic = $1", topicOf("person")); got != 45 {
		t.Errorf("stored person offset %d, want 45 (past the dead records)", got)
	}
	dead := readDLQ(t, k, 6)
	for _, want := range []string{"NUL character", "numeric", "quality_issue_status_check", "malformed payload", "field nickname is not in schema person v1", "unknown schema version person v2"} {
		if !contains(dead, want) {
			t.Errorf("no dead letter says %q; got %q", want, dead)
		}
	}
	if contains(dead, "513423198503120027") {
		t.Errorf("a dead letter carries a full ID number")
	}
}

// readDLQ reads n dead letters of the sink stage and returns their reasons.
func readDLQ(t testing.TB, k *testenv.KafkaCluster, n int) []string {
	t.Helper()
	c, err := bus.NewGroupConsumer(bus.Options{Brokers: k.Brokers()}, "dlq-reader", []string{schemas.DLQTopic(prefix, "sink")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*1e9)
	defer cancel()
	var out []string
	for len(out) < n {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("after %d dead letters: %v", len(out), err)
		}
		var rec schemas.DLQRecord
		if err := json.Unmarshal(m.Value, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Stage != "sink" || rec.Source == "" || rec.Position == "" {
			t.Errorf("dead letter without stage or position: %+v", rec)
		}
		out = append(out, rec.Reason)
	}
	return out
}

func TestTruncate(t *testing.T) {
	truncate := func(t *testing.T, f *feed) Record {
		e := schemas.Envelope{V: 1, Op: schemas.OpTruncate, Source: schemas.Source{System: "test", Kind: "transform", Table: "person"}, Schema: schemas.SchemaRef{Name: "person", Version: 1}, TsMs: 1}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return f.rec("person", b)
	}
	for _, mode := range []string{TruncateIgnore, TruncateApply} {
		t.Run(mode, func(t *testing.T) {
			p, db := testenv.PostgresDatabase(t)
			s := newSink(t, Options{Truncate: mode})
			pool := open(t, p, db, s)
			f := newFeed(t, s)
			// A before the truncate, B after it, in one batch.
			res, err := s.Apply(context.Background(), pool, []Record{f.ent("person", schemas.OpCreate, person("A", 1, "甲")), truncate(t, f), f.ent("person", schemas.OpCreate, person("B", 1, "乙"))})
			if err != nil {
				t.Fatal(err)
			}
			live := scalar[string](t, pool, "SELECT coalesce(string_agg(key, ',' ORDER BY key), '') FROM fpjc.person WHERE NOT deleted")
			switch mode {
			case TruncateIgnore:
				if res.TruncatesIgnored != 1 || live != "A,B" {
					t.Errorf("ignore: %+v, live %s; want A,B", res, live)
				}
			case TruncateApply:
				if res.Truncated != 1 || live != "B" {
					t.Errorf("apply: %+v, live %s; want B", res, live)
				}
			}
		})
	}
}

func issue(key string, version int64, status string) *schemas.QualityIssue {
	return &schemas.QualityIssue{Meta: schemas.Meta{Key: key, Version: version, UpdatedMs: 100 * version}, ID: key, RuleID: "Q-001", SubjectKind: "person",
		SubjectKey: "P01", RegionCode: "513423101001", Severity: "error", Status: status, FirstSeen: "2024-01-01", LastSeen: "2024-01-01"}
}

// A lifecycle's history keeps every status of a batch, also those a newer change of
// the same key superseded in it (an issue opened, closed and reopened between two
// batches is three history rows, not one).
func TestHistoryKeepsSupersededStatuses(t *testing.T) {
	p, db := testenv.PostgresDatabase(t)
	s := newSink(t, Options{})
	pool := open(t, p, db, s)
	f := newFeed(t, s)
	res, err := s.Apply(context.Background(), pool, []Record{
		f.ent("quality_issue", schemas.OpCreate, issue("q1", 1, schemas.IssueOpen)),
		f.ent("quality_issue", schemas.OpUpdate, issue("q1", 2, schemas.IssueClosed)),
		f.ent("quality_issue", schemas.OpUpdate, issue("q2", 1, schemas.IssueOpen)),
		f.ent("quality_issue", schemas.OpUpdate, issue("q1", 3, schemas.IssueOpen)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 2 || res.Collapsed != 2 {
		t.Errorf("%+v, want 2 applied and 2 collapsed", res.Counts)
	}
	got := scalar[string](t, pool, "SELECT string_agg(concat_ws('|', key, version, status, changed_ms), ' ' ORDER BY key, version) FROM fpjc.quality_issue_history")
	if want := "q1|1|open|100 q1|2|closed|200 q1|3|open|300 q2|1|open|100"; got != want {
		t.Errorf("history %s, want %s", got, want)
	}
	if got := scalar[string](t, pool, "SELECT status || '/' || version FROM fpjc.quality_issue WHERE key = 'q1'"); got != "open/3" {
		t.Errorf("q1 is %s, want open/3", got)
	}
}

// When the database refuses the newest change of a key in a batch, the key's next
// older change of the batch lands instead, as it would have if the changes had come
// one per batch; the refused change alone goes to the dead letters.
func TestRefusedNewestFallsBackToOlder(t *testing.T) {
	s, pool, k := sinkWithDLQ(t, Options{})
	f := newFeed(t, s)
	bad := func(key string, v int64) *schemas.Person {
		x := person(key, v, fmt.Sprint("坏", v))
		x.WorkMonthlyIncome = "1,234.50" // PostgreSQL refuses it as numeric
		return x
	}
	res, err := s.Apply(context.Background(), pool, []Record{
		f.ent("person", schemas.OpCreate, person("A", 1, "一")),
		f.ent("person", schemas.OpUpdate, person("A", 2, "二")),
		f.ent("person", schemas.OpUpdate, bad("A", 3)),
		f.ent("person", schemas.OpUpdate, person("B", 1, "一")),
		f.ent("person", schemas.OpUpdate, bad("B", 3)),
		f.ent("person", schemas.OpUpdate, bad("B", 2)),
		f.ent("person", schemas.OpCreate, bad("C", 1)),
		f.ent("quality_issue", schemas.OpCreate, issue("q1", 1, schemas.IssueOpen)),
		f.ent("quality_issue", schemas.OpUpdate, issue("q1", 2, "half-open")), // violates the status CHECK
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 3 || len(res.Dead) != 5 || res.Collapsed != 1 {
		t.Errorf("%+v with %d dead, want 3 applied, 5 dead (A v3, B v3 and v2, C v1, q1 v2), 1 collapsed (A v1)", res.Counts, len(res.Dead))
	}
	for q, want := range map[string]string{
		"SELECT string_agg(key || '/' || version || '/' || name, ' ' ORDER BY key) FROM fpjc.person":          "A/2/二 B/1/一",
		"SELECT string_agg(key || '/' || version || '/' || status, ' ' ORDER BY key) FROM fpjc.quality_issue": "q1/1/open",
		"SELECT string_agg(key || '/' || version, ' ' ORDER BY key, version) FROM fpjc.quality_issue_history": "q1/1",
	} {
		if got := scalar[string](t, pool, q); got != want {
			t.Errorf("%s: %s, want %s", q, got, want)
		}
	}
	dead := readDLQ(t, k, 5)
	if n := len(dead); n != 5 || !contains(dead, "numeric") || !contains(dead, "quality_issue_status_check") {
		t.Errorf("dead letters %q", dead)
	}
}

// A table that refuses every change for the same reason — a constraint the canonical
// entity does not have — is the table's fault: after StopAfterRefusals changes in a
// row the sink stops dead-lettering and fails the batch (the worker retries it with
// backoff) until the table is fixed. A change that lands resets the count.
func TestSystemicRefusalsStopTheSink(t *testing.T) {
	s, pool, k := sinkWithDLQ(t, Options{StopAfterRefusals: 10})
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "ALTER TABLE fpjc.person ADD CONSTRAINT person_phone_required CHECK (phone IS NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	f := newFeed(t, s)
	n := 0
	batch := func(size int, phone string) []Record {
		var out []Record
		for range size {
			x := person(fmt.Sprintf("P%03d", n), 1, "张")
			x.Phone = phone
			out = append(out, f.ent("person", schemas.OpCreate, x))
			n++
		}
		return out
	}
	offset := func() int64 {
		return scalar[int64](t, pool, "SELECT coalesce(max(next_offset), 0) FROM fpjc.sink_offsets")
	}
	// 30 refused at once: the batch fails, nothing is committed or dead-lettered.
	big := batch(30, "")
	if _, err := s.Apply(ctx, pool, big); err == nil || !strings.Contains(err.Error(), "30 person changes in a row refused") || !strings.Contains(err.Error(), "person_phone_required") {
		t.Fatalf("30 refused changes: %v, want the sink to stop naming the constraint", err)
	}
	if got := offset(); got != 0 {
		t.Errorf("stored offset %d after a stopped batch, want 0", got)
	}
	// Small batches: 4 and 4 dead-lettered, a change that lands resets, then 4, 4 and
	// the third 4 reaches 12 ≥ 10.
	for i, step := range []struct {
		size  int
		phone string
		stop  bool
	}{{4, "", false}, {4, "", false}, {1, "13812345678", false}, {4, "", false}, {4, "", false}, {4, "", true}} {
		res, err := s.Apply(ctx, pool, batch(step.size, step.phone))
		if (err != nil) != step.stop {
			t.Fatalf("batch %d: %v (dead %d), want stop %v", i, err, len(res.Dead), step.stop)
		}
	}
	if got := offset(); got != int64(n-4) {
		t.Errorf("stored offset %d, want %d (the stopped batch not committed)", got, n-4)
	}
	if dead := readDLQ(t, k, 16); len(dead) != 16 {
		t.Errorf("%d dead letters, want 16", len(dead))
	}
	// Fixed: the big batch lands.
	if _, err := pool.Exec(ctx, "ALTER TABLE fpjc.person DROP CONSTRAINT person_phone_required"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Apply(ctx, pool, big)
	if err != nil || res.Applied != 30 {
		t.Fatalf("after the fix: %+v, %v; want 30 applied", res.Counts, err)
	}
}

// sinkWithDLQ is a sink over a fresh database whose dead letters go to a Kafka
// cluster of its own.
func sinkWithDLQ(t *testing.T, o Options) (*Sink, *pgxpool.Pool, *testenv.KafkaCluster) {
	t.Helper()
	p, db := testenv.PostgresDatabase(t)
	k := testenv.Kafka(t, testenv.WithTopics(1, schemas.DLQTopic(prefix, "sink")))
	prod, err := bus.NewProducer(bus.Options{Brokers: k.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	o.Producer = prod
	s := newSink(t, o)
	return s, open(t, p, db, s), k
}
