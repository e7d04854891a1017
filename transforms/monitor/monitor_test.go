package monitor

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/gen/gentest"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/mapping"
	"github.com/shouwang/shouwang/transforms/rules"
	"github.com/shouwang/shouwang/transforms/warnings"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const prefix = "tm"

// change is one canonical change as the transform worker would produce it.
type change struct {
	entity string // household, person, assistance_measure, department_fact
	key    string
	env    schemas.Envelope
}

func (c change) message(t testing.TB) bus.Message {
	b, err := c.env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return bus.Message{Topic: schemas.CanonicalTopic(prefix, c.entity), Key: []byte(c.key), Value: b}
}

// dataset is a generated province mapped to canonical changes, with the typed
// entities the reference run uses.
type dataset struct {
	now        time.Time
	changes    []change
	households map[string]*schemas.Household
	persons    map[string][]schemas.Person
	measures   map[string][]schemas.AssistanceMeasure
	order      []string // household keys
	wInputs    []change // households, persons, facts (the warnings engine's inputs)
	// raw are the rows as capture publishes them (the transform worker's input).
	raw []bus.Message
}

var shared *dataset

// generated generates a few hundred households (with raised defect and signal rates)
// into private MariaDB and PostgreSQL, reads every row back and maps it with the
// embedded mappings, as capture and the transform worker would.
func generated(t *testing.T) *dataset {
	t.Helper()
	if shared != nil {
		return shared
	}
	cfg := gentest.RoundTripConfig()
	cfg.Households = 500
	for _, r := range gen.DefectRules {
		cfg.DefectRates[r] = 0.01
	}
	shared = generate(t, cfg)
	return shared
}

// generate generates cfg's province into private servers and maps it (see generated).
func generate(t testing.TB, cfg gen.Config) *dataset {
	t.Helper()
	m, mdb := testenv.MariaDBDatabase(t)
	p, pdb := testenv.PostgresDatabase(t)
	ctx := context.Background()
	if _, err := gen.Generate(ctx, cfg, gen.Options{MySQLDSN: m.RootDSN(mdb), PGDSN: p.ConnString(pdb), OutDir: t.TempDir(), Workers: 2}); err != nil {
		t.Fatal(err)
	}
	set, err := mapping.Load(mapping.Embedded, &mapping.Env{})
	if err != nil {
		t.Fatal(err)
	}
	d := &dataset{now: cfg.UpdatedAt, households: map[string]*schemas.Household{}, persons: map[string][]schemas.Person{},
		measures: map[string][]schemas.AssistanceMeasure{}}
	add := func(source, table, keyCol string, row map[string]any, version int64) {
		mp, ok := set.For(source, table)
		if !ok {
			t.Fatalf("no mapping for %s.%s", source, table)
		}
		src := schemas.Source{System: source, Kind: "test", Table: table}
		rawEnv := &schemas.Envelope{V: 1, Op: schemas.OpRead, Source: src, Key: map[string]any{keyCol: row[keyCol]}, After: row}
		rb, err := rawEnv.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		d.raw = append(d.raw, bus.Message{Topic: schemas.RawTopic(prefix, source, table), Key: []byte(fmt.Sprint(row[keyCol])), Value: rb})
		o, err := mp.Apply(rawEnv, version, fmt.Sprintf("%s.%s#%d", source, table, version), cfg.UpdatedAt.UnixMilli())
		if err != nil {
			t.Fatalf("map %s.%s %v: %v", source, table, row[keyCol], err)
		}
		c := change{entity: mp.Entity.Name, key: o.Key, env: schemas.Envelope{V: schemas.EnvelopeVersion, Op: o.Op, Source: src,
			Key: map[string]any{"key": o.Key}, After: o.Doc, Schema: schemas.SchemaRef{Name: mp.Entity.Name, Version: mp.Entity.Version}, TsMs: 1}}
		d.changes = append(d.changes, c)
		raw, _ := json.Marshal(o.Doc)
		switch c.entity {
		case "household":
			h := new(schemas.Household)
			mustJSON(t, raw, h)
			d.households[h.Key] = h
			d.order = append(d.order, h.Key)
			d.wInputs = append(d.wInputs, c)
		case "person":
			var pp schemas.Person
			mustJSON(t, raw, &pp)
			d.persons[pp.HouseholdNo] = append(d.persons[pp.HouseholdNo], pp)
			d.wInputs = append(d.wInputs, c)
		case "assistance_measure":
			var ms schemas.AssistanceMeasure
			mustJSON(t, raw, &ms)
			d.measures[ms.HouseholdNo] = append(d.measures[ms.HouseholdNo], ms)
		case "department_fact":
			d.wInputs = append(d.wInputs, c)
		}
	}
	// Without parseTime: DATE and DATETIME come as "2006-01-02[ 15:04:05]", the forms
	// capture publishes (with it, database/sql would turn them into RFC 3339 strings).
	dc, err := mysql.ParseDSN(m.RootDSN(mdb))
	if err != nil {
		t.Fatal(err)
	}
	dc.ParseTime = false
	db, err := sql.Open("mysql", dc.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tb := range []struct{ name, key string }{{"household", "hh_no"}, {"person", "person_no"}, {"measure", "measure_id"}} {
		for i, r := range queryMySQL(t, db, "SELECT * FROM "+tb.name+" ORDER BY "+tb.key) {
			add("national", tb.name, tb.key, r, int64(i+1))
		}
	}
	conn, err := pgx.Connect(ctx, p.ConnString(pdb))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, ds := range gen.Datasets {
		cols := make([]string, len(ds.Columns))
		for i, c := range ds.Columns {
			cols[i] = c + "::text"
		}
		rs, err := conn.Query(ctx, fmt.Sprintf("SELECT %s FROM %s ORDER BY 1", strings.Join(cols, ","), ds.Table()))
		if err != nil {
			t.Fatal(err)
		}
		var rows []map[string]any
		for rs.Next() {
			vals, err := rs.Values()
			if err != nil {
				t.Fatal(err)
			}
			row := map[string]any{}
			for i, c := range ds.Columns {
				row[c] = vals[i]
			}
			rows = append(rows, row)
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		for i, r := range rows {
			add("departments", ds.Name, ds.Columns[0], r, int64(i+1))
		}
	}
	return d
}

func mustJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func queryMySQL(t testing.TB, db *sql.DB, q string) []map[string]any {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []map[string]any
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		r := make(map[string]any, len(cols))
		for i, c := range cols {
			if vals[i].Valid {
				r[c] = vals[i].String
			} else {
				r[c] = nil
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// outcome is the final state of every derived ID (the last event of each).
type outcome struct {
	issues        map[string]schemas.QualityIssue
	warnings      map[string]schemas.Warning
	discrepancies map[string]schemas.Discrepancy
	events        map[string]int // topic → events read
	opened        map[string]int // issue id → open events
}

// open returns the IDs of open issues, open warnings and pending discrepancies.
func (o outcome) open() (issues, warns, discs []string) {
	for id, q := range o.issues {
		if q.Status == schemas.IssueOpen {
			issues = append(issues, id)
		}
	}
	for id, w := range o.warnings {
		if w.Status == schemas.WarningOpen {
			warns = append(warns, id)
		}
	}
	for id, d := range o.discrepancies {
		if d.Status == schemas.DiscrepancyPending {
			discs = append(discs, id)
		}
	}
	sort.Strings(issues)
	sort.Strings(warns)
	sort.Strings(discs)
	return
}

// reference runs the rule and warning engines directly over the dataset's entities:
// what the monitor must end with.
func reference(t *testing.T, d *dataset, re *rules.Engine, wr *warnings.Rules, deleted map[string]bool) outcome {
	t.Helper()
	o := outcome{issues: map[string]schemas.QualityIssue{}, warnings: map[string]schemas.Warning{}, discrepancies: map[string]schemas.Discrepancy{}}
	tr := rules.NewTracker(rules.NewMemoryStore())
	tr.Now = func() time.Time { return d.now }
	for i, hh := range d.order {
		if deleted[hh] {
			continue
		}
		qs, err := tr.Apply(hh, int64(i+1), re.Evaluate(rules.NewHouseholdContext(d.households[hh], d.persons[hh], d.measures[hh]), d.now))
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			o.issues[q.ID] = q
		}
	}
	eng := warnings.New(wr, nil, func() time.Time { return d.now })
	for _, c := range d.wInputs {
		raw, _ := json.Marshal(c.env.After)
		var ev []warnings.Event
		var err error
		switch c.entity {
		case "household":
			h := new(schemas.Household)
			mustJSON(t, raw, h)
			ev, err = eng.ApplyHousehold(c.key, h.Version, h, false)
		case "person":
			p := new(schemas.Person)
			mustJSON(t, raw, p)
			ev, err = eng.ApplyPerson(c.key, p.Version, p, false)
		default:
			f := new(schemas.DepartmentFact)
			mustJSON(t, raw, f)
			ev, err = eng.ApplyFact(c.key, f.Version, f, false)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ev {
			if e.Warning != nil {
				o.warnings[e.Key] = *e.Warning
			} else {
				o.discrepancies[e.Key] = *e.Discrepancy
			}
		}
	}
	for hh := range deleted {
		ev, err := eng.ApplyHousehold(hh, 1<<40, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ev {
			if e.Warning != nil {
				o.warnings[e.Key] = *e.Warning
			} else {
				o.discrepancies[e.Key] = *e.Discrepancy
			}
		}
	}
	return o
}

// readOutcome reads the three derived topics from the start to their current ends.
func readOutcome(t *testing.T, k *testenv.KafkaCluster) outcome {
	t.Helper()
	o := outcome{issues: map[string]schemas.QualityIssue{}, warnings: map[string]schemas.Warning{}, discrepancies: map[string]schemas.Discrepancy{},
		events: map[string]int{}, opened: map[string]int{}}
	for _, topic := range []string{schemas.QualityIssueTopic(prefix), schemas.WarningTopic(prefix), schemas.DiscrepancyTopic(prefix)} {
		for _, m := range readTopic(t, k, topic) {
			o.events[topic]++
			env, err := schemas.UnmarshalEnvelope(m.Value)
			if err != nil {
				t.Fatalf("%s offset %d: %v", topic, m.Offset, err)
			}
			raw, _ := json.Marshal(env.After)
			switch topic {
			case schemas.QualityIssueTopic(prefix):
				var q schemas.QualityIssue
				mustJSON(t, raw, &q)
				if q.Version <= 0 {
					t.Errorf("issue %s: version %d", q.ID, q.Version)
				}
				o.issues[q.ID] = q
				if q.Status == schemas.IssueOpen {
					o.opened[q.ID]++
				}
			case schemas.WarningTopic(prefix):
				var w schemas.Warning
				mustJSON(t, raw, &w)
				o.warnings[w.ID] = w
			default:
				var d schemas.Discrepancy
				mustJSON(t, raw, &d)
				o.discrepancies[d.ID] = d
			}
			if string(m.Key) != env.Key["key"] {
				t.Errorf("%s: message key %q is not the event id %v", topic, m.Key, env.Key)
			}
		}
	}
	return o
}

func readTopic(t *testing.T, k *testenv.KafkaCluster, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(k.Brokers()...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	var reqs []kafka.OffsetRequest
	for _, tp := range md.Topics {
		for _, p := range tp.Partitions {
			reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	parts := offs.Topics[topic]
	sort.Slice(parts, func(i, j int) bool { return parts[i].Partition < parts[j].Partition })
	var out []kafka.Message
	for _, po := range parts {
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers(), Topic: topic, Partition: po.Partition, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(po.FirstOffset); err != nil {
			t.Fatal(err)
		}
		for off := po.FirstOffset; off < po.LastOffset; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read %s/%d at %d: %v", topic, po.Partition, off, err)
			}
			out = append(out, m)
			off = m.Offset + 1
		}
		r.Close()
	}
	return out
}

type harness struct {
	t     *testing.T
	k     *testenv.KafkaCluster
	prod  *bus.Producer
	d     *dataset
	rules *rules.Engine
	warn  *warnings.Rules
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	d := generated(t)
	k := testenv.Kafka(t)
	prod, err := bus.NewProducer(bus.Options{Brokers: k.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	re, err := rules.Default()
	if err != nil {
		t.Fatal(err)
	}
	wr, err := warnings.Default()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, k: k, prod: prod, d: d, rules: re, warn: wr}
	w := h.worker("probe", t.TempDir())
	ins, outs := w.Topics()
	var specs []bus.TopicSpec
	for _, tp := range append(ins, outs...) {
		specs = append(specs, bus.TopicSpec{Name: tp, Partitions: 3, ReplicationFactor: 1})
	}
	if err := bus.EnsureTopics(context.Background(), bus.Options{Brokers: k.Brokers()}, specs...); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) worker(group, dir string) *Worker { return h.workerBatch(group, dir, 0) }

func (h *harness) workerBatch(group, dir string, batch int) *Worker {
	h.t.Helper()
	w, err := New(Options{TopicPrefix: prefix, ClientID: group, Bus: bus.Options{Brokers: h.k.Brokers()}, Producer: h.prod,
		Rules: h.rules, Warnings: h.warn, StatePath: filepath.Join(dir, "monitor.db"), Settle: 300 * time.Millisecond,
		BatchSize: batch, Now: func() time.Time { return h.d.now }})
	if err != nil {
		h.t.Fatal(err)
	}
	return w
}

func (h *harness) produce(cs []change) {
	h.t.Helper()
	msgs := make([]bus.Message, len(cs))
	for i, c := range cs {
		msgs[i] = c.message(h.t)
	}
	if err := h.prod.Produce(context.Background(), msgs...); err != nil {
		h.t.Fatal(err)
	}
}

// runUntil runs w until it has committed want input changes and no household waits,
// then stops it.
func (h *harness) runUntil(w *Worker, want int64) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.After(3 * time.Minute)
	for {
		// Ready first: before it has loaded its state, a worker reports nothing waiting.
		n, waiting := w.Progress()
		if w.Ready() && n >= want && waiting == 0 {
			break
		}
		select {
		case err := <-done:
			cancel()
			h.t.Fatalf("monitor stopped after %d of %d changes: %v", n, want, err)
		case <-deadline:
			cancel()
			<-done
			h.t.Fatalf("monitor committed %d of %d changes, %d households waiting, in 3 minutes", n, want, waiting)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		h.t.Fatal(err)
	}
	if n, _ := w.Progress(); n != want {
		h.t.Fatalf("monitor committed %d changes, want exactly %d", n, want)
	}
}

// strip removes what legitimately differs between runs: production times and the
// per-run evaluation sequence of issues.
func strip(o outcome) outcome {
	s := outcome{issues: map[string]schemas.QualityIssue{}, warnings: map[string]schemas.Warning{}, discrepancies: map[string]schemas.Discrepancy{}}
	for id, q := range o.issues {
		q.Version, q.UpdatedMs, q.Source = 0, 0, schemas.SourceRef{}
		s.issues[id] = q
	}
	for id, w := range o.warnings {
		w.Version, w.UpdatedMs = 0, 0
		s.warnings[id] = w
	}
	for id, d := range o.discrepancies {
		d.Version, d.UpdatedMs = 0, 0
		s.discrepancies[id] = d
	}
	return s
}

func compareOpen(t *testing.T, what string, got, want outcome) {
	t.Helper()
	gi, gw, gd := got.open()
	wi, ww, wd := want.open()
	for _, c := range []struct {
		name      string
		got, want []string
	}{{"open issues", gi, wi}, {"open warnings", gw, ww}, {"pending discrepancies", gd, wd}} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %s differ: got %d, want %d (first extra %q, first missing %q)", what, c.name, len(c.got), len(c.want), firstNotIn(c.got, c.want), firstNotIn(c.want, c.got))
		}
	}
	sg, sw := strip(got), strip(want)
	for _, id := range wi {
		if !reflect.DeepEqual(sg.issues[id], sw.issues[id]) {
			t.Errorf("%s: issue %s: got %+v, want %+v", what, id, sg.issues[id], sw.issues[id])
			break
		}
	}
	for _, id := range ww {
		if !reflect.DeepEqual(sg.warnings[id], sw.warnings[id]) {
			t.Errorf("%s: warning %s: got %+v, want %+v", what, id, sg.warnings[id], sw.warnings[id])
			break
		}
	}
	for _, id := range wd {
		if !reflect.DeepEqual(sg.discrepancies[id], sw.discrepancies[id]) {
			t.Errorf("%s: discrepancy %s: got %+v, want %+v", what, id, sg.discrepancies[id], sw.discrepancies[id])
			break
		}
	}
}

func firstNotIn(a, b []string) string {
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	for _, s := range a {
		if !in[s] {
			return s
		}
	}
	return ""
}

// TestMonitorStream: the monitor fed the canonical topics ends with exactly the
// issues, warnings and discrepancies of the rule and warning engines run directly
// over the same entities, opens no issue twice, emits nothing on a restart, closes
// the issues of a deleted household, and a replay from zero and a run interrupted
// again and again both end identical.
func TestMonitorStream(t *testing.T) {
	h := newHarness(t)
	d := h.d
	h.produce(d.changes)
	n := int64(len(d.changes))

	want := reference(t, d, h.rules, h.warn, nil)
	wi, ww, wd := want.open()
	if len(wi) < 20 || len(ww) < 10 || len(wd) < 10 {
		t.Fatalf("reference has %d issues, %d warnings, %d discrepancies: too few for the test to mean anything", len(wi), len(ww), len(wd))
	}

	dirA := t.TempDir()
	h.runUntil(h.worker("a", dirA), n)
	got := readOutcome(t, h.k)
	compareOpen(t, "first run", got, want)
	for id, c := range got.opened {
		if c != 1 {
			t.Errorf("issue %s opened %d times", id, c)
		}
	}
	if got.events[schemas.QualityIssueTopic(prefix)] != len(wi) {
		t.Errorf("%d issue events for %d issues: transient issues were opened and closed", got.events[schemas.QualityIssueTopic(prefix)], len(wi))
	}
	t.Logf("%d changes → %d issues, %d warnings, %d discrepancies; events %v", n, len(wi), len(ww), len(wd), got.events)

	// A restart on the same state re-reads nothing and emits nothing.
	before := got.events
	h.runUntil(h.worker("a", dirA), 0)
	if again := readOutcome(t, h.k); !reflect.DeepEqual(again.events, before) {
		t.Fatalf("restart emitted events: %v, before %v", again.events, before)
	}

	// Delete the household with the most open issues: its issues close.
	count := map[string]int{}
	for _, id := range wi {
		if q := got.issues[id]; q.Source.Position != "" {
			count[strings.TrimPrefix(q.Source.Position, "household ")]++
		}
	}
	victim, most := "", 0
	for hh, c := range count {
		if c > most || (c == most && hh < victim) {
			victim, most = hh, c
		}
	}
	if most == 0 {
		t.Fatal("no household with open issues")
	}
	hdoc := map[string]any{}
	for k, v := range d.changes[indexOf(d, "household", victim)].env.After {
		hdoc[k] = v
	}
	hdoc["version"] = int64(1 << 40)
	del := change{entity: "household", key: victim, env: schemas.Envelope{V: 1, Op: schemas.OpDelete, Source: schemas.Source{System: "national", Kind: "test", Table: "household"},
		Key: map[string]any{"key": victim}, Before: hdoc, Schema: schemas.SchemaRef{Name: "household", Version: 1}, TsMs: 1}}
	h.produce([]change{del})
	h.runUntil(h.worker("a", dirA), 1)
	afterDel := readOutcome(t, h.k)
	wantDel := reference(t, d, h.rules, h.warn, map[string]bool{victim: true})
	compareOpen(t, "after a household delete", afterDel, wantDel)
	closed := afterDel.events[schemas.QualityIssueTopic(prefix)] - before[schemas.QualityIssueTopic(prefix)]
	if closed != most {
		t.Errorf("deleting household %s with %d open issues gave %d issue events", victim, most, closed)
	}

	// Replay from zero: a fresh state and group read everything again and end with the
	// same set; the issue events it adds repeat IDs already emitted.
	h.runUntil(h.worker("b", t.TempDir()), n+1)
	replay := readOutcome(t, h.k)
	compareOpen(t, "replay from zero", replay, wantDel)

	// Interrupted again and again (the on-disk state is the last committed one, as after
	// kill -9): ends with the same set.
	dirC := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	interruptions := 0
	for i := 0; i < 200; i++ {
		// Small batches, so that each run commits a little and is cut off mid-stream.
		w := h.workerBatch("c", dirC, 25)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		interruptions++
		st, err := openState(filepath.Join(dirC, "monitor.db"))
		if err != nil {
			t.Fatal(err)
		}
		var applied int64
		for _, off := range st.offsets {
			applied += off
		}
		st.close()
		if applied >= n+1 {
			break
		}
	}
	if interruptions < 3 {
		t.Fatalf("only %d interruptions: the run was not cut off mid-stream", interruptions)
	}
	h.runUntil(h.worker("c", dirC), 0)
	final := readOutcome(t, h.k)
	compareOpen(t, fmt.Sprintf("after %d interruptions", interruptions), final, wantDel)
	t.Logf("interrupted %d times; events now %v", interruptions, final.events)
}

func indexOf(d *dataset, entity, key string) int {
	for i, c := range d.changes {
		if c.entity == entity && c.key == key {
			return i
		}
	}
	panic("no " + entity + " " + key)
}

// TestMonitorCrashAroundCommit: a run that stops after making its first events and
// before committing them has sent none of them (a restarted state would know nothing
// of them and never withdraw them); one that stops after the commit and before
// sending finds them in the outbox at the restart and sends them; one that stops
// after sending them has emptied the outbox, so the restart does not send them again.
// Each way the restart ends with the reference's open set, each issue opened once.
func TestMonitorCrashAroundCommit(t *testing.T) {
	for _, stage := range []string{"before commit", "after commit", "after send"} {
		t.Run(strings.ReplaceAll(stage, " ", "_"), func(t *testing.T) {
			h := newHarness(t)
			d := h.d
			h.produce(d.changes)
			n := int64(len(d.changes))
			want := reference(t, d, h.rules, h.warn, nil)

			crashAt = func(s string) bool { return s == stage }
			defer func() { crashAt = nil }()
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := h.worker("x", dir).Run(ctx); err == nil || !strings.Contains(err.Error(), "crash "+stage) {
				t.Fatalf("run: %v, want the injected crash", err)
			}
			sent := readOutcome(t, h.k)
			if n := len(sent.issues) + len(sent.warnings) + len(sent.discrepancies); (stage == "after send") != (n > 0) {
				t.Fatalf("a run that crashed %s put out %v", stage, sent.events)
			}
			st, err := openState(filepath.Join(dir, "monitor.db"))
			if err != nil {
				t.Fatal(err)
			}
			outbox := len(st.outbox)
			var applied int64
			for _, off := range st.offsets {
				applied += off
			}
			st.close()
			if (stage == "after commit") != (outbox > 0) {
				t.Fatalf("crash %s left %d events in the outbox", stage, outbox)
			}

			crashAt = nil
			h.runUntil(h.worker("x", dir), n-applied)
			got := readOutcome(t, h.k)
			compareOpen(t, "after the crash", got, want)
			for id, c := range got.opened {
				if c != 1 {
					t.Errorf("issue %s opened %d times", id, c)
				}
			}
		})
	}
}

// A stop asked for between a commit and the sending of its events (SIGTERM) still
// sends them before Run returns, and the clean stop leaves the outbox empty: a
// stopped monitor owes nothing to the next start (before, the events stayed behind
// until a next start that a decommissioned worker never has).
func TestMonitorStopAfterCommitSends(t *testing.T) {
	h := newHarness(t)
	d := h.d
	h.produce(d.changes)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stopped := false
	crashAt = func(s string) bool {
		if s == "after commit" && !stopped {
			stopped = true
			cancel()
		}
		return false
	}
	defer func() { crashAt = nil }()
	dir := t.TempDir()
	if err := h.worker("x", dir).Run(ctx); err != nil {
		t.Fatalf("run stopped after a commit: %v, want nil", err)
	}
	if !stopped {
		t.Fatal("the run never committed events: the test proved nothing")
	}
	st, err := ReadState(filepath.Join(dir, "monitor.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.Outbox != 0 {
		t.Errorf("a clean stop left %d events in the outbox", st.Outbox)
	}
	sent := 0
	for _, n := range readOutcome(t, h.k).events {
		sent += n
	}
	if sent == 0 {
		t.Fatal("the events committed before the stop were not sent")
	}
}

// Two monitors of one group (two processes, each with its own state file) started
// together: one holds every partition and the other stands by with none — split
// partitions would each be joined against part of the households' records. When the
// active one stops, the standby takes every partition over from the beginning of its
// own (empty) state, not from the offsets the group committed for the other, and ends
// with the reference's open set.
func TestMonitorStandbyTakesOver(t *testing.T) {
	h := newHarness(t)
	d := h.d
	h.produce(d.changes)
	n := int64(len(d.changes))
	want := reference(t, d, h.rules, h.warn, nil)

	ws := []*Worker{h.worker("pair", t.TempDir()), h.worker("pair", t.TempDir())}
	ctxs := make([]context.Context, 2)
	stops := make([]context.CancelFunc, 2)
	dones := make([]chan error, 2)
	running := []bool{true, true}
	for i, w := range ws {
		ctxs[i], stops[i] = context.WithCancel(context.Background())
		defer stops[i]()
		dones[i] = make(chan error, 1)
		go func() { dones[i] <- w.Run(ctxs[i]) }()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
			for i := range dones {
				if !running[i] {
					continue
				}
				select {
				case err := <-dones[i]:
					t.Fatalf("waiting for %s: monitor %d stopped: %v", what, i, err)
				default:
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s in 3 minutes", what)
			}
		}
	}
	progress := func(i int) (int64, int) { return ws[i].Progress() }
	waitFor("every change applied", func() bool {
		c0, w0 := progress(0)
		c1, w1 := progress(1)
		return ws[0].Ready() && ws[1].Ready() && c0+c1 >= n && w0 == 0 && w1 == 0
	})
	c0, _ := progress(0)
	c1, _ := progress(1)
	active, standby := 0, 1
	if c1 > c0 {
		active, standby = 1, 0
	}
	if c, s := max(c0, c1), min(c0, c1); c != n || s != 0 {
		t.Fatalf("the two monitors of the group applied %d and %d of %d changes: one should hold every partition, the other stand by", c0, c1, n)
	}
	compareOpen(t, "the active monitor", readOutcome(t, h.k), want)
	ins, _ := ws[0].Topics()
	all := float64(3 * len(ins)) // the harness makes 3 partitions per topic
	if a, s := gaugeValue(t, ws[active].m.partitions), gaugeValue(t, ws[standby].m.partitions); a != all || s != 0 {
		t.Errorf("partitions gauge: active %v, standby %v; want %v and 0", a, s, all)
	}

	stops[active]()
	running[active] = false
	if err := <-dones[active]; err != nil {
		t.Fatal(err)
	}
	waitFor("the standby done", func() bool { c, w := progress(standby); return c >= n && w == 0 })
	if s := gaugeValue(t, ws[standby].m.partitions); s != all {
		t.Errorf("partitions gauge of the standby after taking over: %v, want %v", s, all)
	}
	stops[standby]()
	if err := <-dones[standby]; err != nil {
		t.Fatal(err)
	}
	compareOpen(t, "after the standby took over", readOutcome(t, h.k), want)
}

// gaugeValue reads a gauge.
func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
