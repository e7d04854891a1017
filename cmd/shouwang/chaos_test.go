package main

// Chaos test of the whole pipeline (issue #11 item 3, at a size CI can run): the
// national front-end database (private MariaDB, binlog) → capture → a 3-broker kfake
// cluster → transform (registry mapping and monitor) → sink → the provincial database
// (private PostgreSQL), every role a separate process of the built binary, all from one
// configuration file. While a stream of household and person changes flows, a random
// worker is SIGKILLed and restarted every 2–4 s and the brokers answer some requests
// with errors or latency for a few seconds at a time. At the end the provincial tables
// must equal the source key by key, the regional totals check must match, no quality
// issue, warning or discrepancy may exist twice, the open quality issues must be those
// of an uninterrupted monitor over the same canonical records, and nothing may be
// dead-lettered by the sink.
//
// SHOUWANG_CHAOS_CHANGES sets the number of changes (default 20,000; the issue's full
// size, 1,000,000, is for runs by hand), SHOUWANG_CHAOS_SECONDS the time the changes
// are spread over (default 40), SHOUWANG_CHAOS_SEED replays a run.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/consistency"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

const chaosPrefix = "chaos"

// chaosSinkEntities are the canonical entities the provincial sink applies.
var chaosSinkEntities = []string{"household", "person", "warning", "quality_issue", "discrepancy"}

func TestChaosWholePipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test of the whole pipeline skipped with -short")
	}
	changes := chaosEnvInt(t, "SHOUWANG_CHAOS_CHANGES", 20000)
	seconds := chaosEnvInt(t, "SHOUWANG_CHAOS_SECONDS", 40)
	seed := envSeed(t, "SHOUWANG_CHAOS_SEED")
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	// The writer may fall behind its pace under the chaos: leave it three times the
	// planned time, and the set-up and convergence their own 10 minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute+3*time.Duration(seconds)*time.Second)
	defer cancel()
	began := time.Now()

	env := newRegistryEnv(t, ctx, seed%1000+1, 1500, chaosPrefix, 500, `checkers:
  - name: nat_prov
    source: national
    sink: provincial
    level: county
    schedule: 24h
`)
	k := testenv.Kafka(t, testenv.WithBrokers(3))
	var topics []string
	for _, e := range schemas.Entities() {
		topics = append(topics, e.Topic(chaosPrefix))
	}
	topics = append(topics, schemas.RawTopic(chaosPrefix, "national", "household"), schemas.RawTopic(chaosPrefix, "national", "person"),
		schemas.DLQTopic(chaosPrefix, "capture"), schemas.DLQTopic(chaosPrefix, "transform"), schemas.DLQTopic(chaosPrefix, "sink"))
	if err := k.CreateTopics(ctx, 3, topics...); err != nil {
		t.Fatal(err)
	}
	yaml := env.yaml
	var brokers strings.Builder
	brokers.WriteString("  brokers:\n")
	for _, a := range k.Brokers() {
		fmt.Fprintf(&brokers, "    - %q\n", a)
	}
	brokers.WriteString("  client_id: chaos\n  session_timeout: 1s\n  replication_factor: 1\n")
	for _, r := range [][2]string{
		{"  embedded: true\n", brokers.String()},
		{"  partitions: 2\n", "  partitions: 3\n"},
		{"monitor:\n  enabled: false\n", "monitor:\n  enabled: ${SHOUWANG_CHAOS_MONITOR:-true}\n  settle: 100ms\n  max_delay: 1s\n  as_of: \"2024-07-01\"\n"},
		{"    topics: [household, person]\n", "    topics: [" + strings.Join(chaosSinkEntities, ", ") + "]\n    batch_size: 500\n"},
	} {
		if strings.Count(yaml, r[0]) != 1 {
			t.Fatalf("the registry configuration no longer has exactly one %q:\n%s", r[0], yaml)
		}
		yaml = strings.Replace(yaml, r[0], r[1], 1)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "chaos.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := crashBinary(t, dir)
	src, err := env.m.Open("national")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })

	// One capture (a binlog reader is one replica by design); two transform processes
	// of one consumer group share the raw partitions of the registry mapping, but only
	// the first runs the monitor (it needs every record of a household and keeps its
	// rule state and input positions in one state file, so it does not scale out by
	// partition): the second has SHOUWANG_CHAOS_MONITOR=false; two sinks of one
	// consumer group share the canonical partitions (scale-out, issue #11 item 2).
	workers := []*chaosWorker{{name: "capture", role: "capture"}, {name: "transform-1", role: "transform"},
		{name: "transform-2", role: "transform", env: []string{"SHOUWANG_CHAOS_MONITOR=false"}},
		{name: "sink-1", role: "sink"}, {name: "sink-2", role: "sink"}}
	for _, w := range workers {
		w.logPath, w.log, _ = crashWorkerLog(t, t.TempDir(), "chaos-"+w.name)
		w.start(t, bin, cfgPath)
	}
	cc := &chaosCheck{t: t, src: src, pool: env.pool, opts: bus.Options{Brokers: k.Brokers()}, workers: workers}

	// The initial snapshot first, without chaos: its versions are the baseline the
	// stream's updates must exceed.
	cc.converge(ctx, 4*time.Minute, "initial snapshot")
	baseline, err := cc.householdVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	loaded := time.Since(began)
	// Both scaled-out stages share their partitions between their two processes.
	for _, group := range []string{"chaos-transform-registry", "chaos-sink-provincial"} {
		wctx, stop := context.WithTimeout(ctx, 30*time.Second)
		g, err := k.Cluster().WaitGroupStable(wctx, group, 2)
		stop()
		if err != nil {
			t.Fatalf("group %s not stable with 2 members: %v (%+v)", group, err, g)
		}
		var assigned []int
		for i := range g.Members {
			assigned = append(assigned, g.Members[i].NumAssigned())
			if g.Members[i].NumAssigned() == 0 {
				t.Errorf("group %s: member %s has no partition: no scale-out", group, g.Members[i].MemberID)
			}
		}
		t.Logf("group %s: 2 members with %v partitions", group, assigned)
	}

	wr, err := newChaosWriter(ctx, src, rand.New(rand.NewPCG(seed, 0x3717e)))
	if err != nil {
		t.Fatal(err)
	}
	writerDone := make(chan error, 1)
	go func() { writerDone <- wr.run(ctx, changes, time.Duration(seconds)*time.Second) }()

	kills := map[string]int{}
	faults := map[string]int{}
	chaosStart := time.Now()
	nextKill := chaosStart.Add(chaosBetween(rng, 2*time.Second, 4*time.Second))
	nextFault := chaosStart.Add(chaosBetween(rng, time.Second, 3*time.Second))
	var fault *chaosFault
	var faultEnd time.Time
	var round []*chaosWorker
	for writing := true; writing; {
		select {
		case err := <-writerDone:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			writing = false
		case <-time.After(100 * time.Millisecond):
		}
		now := time.Now()
		for _, w := range workers {
			if err := w.proc.exitedEarly(); err != nil {
				t.Fatalf("%s: %v\n--- last lines of %s ---\n%s", w.name, err, w.logPath, logTailOf(w.logPath, 40))
			}
		}
		if now.After(nextKill) {
			// Every worker once per round, in a random order.
			if len(round) == 0 {
				round = append(round, workers...)
				rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
			}
			w := round[0]
			round = round[1:]
			if err := w.proc.kill(); err != nil {
				t.Fatalf("%s: %v\n%s", w.name, err, logTailOf(w.logPath, 40))
			}
			kills[w.name]++
			w.start(t, bin, cfgPath)
			nextKill = now.Add(chaosBetween(rng, 2*time.Second, 4*time.Second))
		}
		if fault != nil && now.After(faultEnd) {
			fault.remove()
			fault = nil
			nextFault = now.Add(chaosBetween(rng, time.Second, 3*time.Second))
		}
		if fault == nil && now.After(nextFault) && writing {
			fault = injectChaosFault(k.Cluster(), rng)
			faults[fault.name]++
			faultEnd = now.Add(chaosBetween(rng, 2*time.Second, 4*time.Second))
		}
	}
	if fault != nil {
		fault.remove()
	}
	chaosTime := time.Since(chaosStart)
	for _, w := range workers {
		if kills[w.name] == 0 {
			t.Errorf("%s was never killed: the chaos lasted too short a time (%s) to prove much", w.name, chaosTime)
		}
	}

	convergeStart := time.Now()
	cc.converge(ctx, 4*time.Minute, "after the chaos")
	converged := time.Since(convergeStart)

	// (1) was checked by converge: live provincial rows equal the source key by key
	// with the mapped fields. The stream's updates carry newer versions than the
	// snapshot's.
	final, err := cc.householdVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stale := 0
	for key := range wr.updated {
		if v, ok := final[key]; ok && v <= baseline[key] {
			if stale++; stale <= 5 {
				t.Errorf("household %s was updated during the stream but keeps version %d (snapshot version %d)", key, v, baseline[key])
			}
		}
	}
	if stale > 0 {
		t.Errorf("%d updated households kept their snapshot version", stale)
	}

	// (2) the regional totals check matches, with no differing key.
	jsonPath := filepath.Join(dir, "check.json")
	var out, errb bytes.Buffer
	if code := runCheck([]string{"totals", "-c", cfgPath, "--settle", "0", "--json", jsonPath}, &out, &errb); code != 0 {
		t.Errorf("shouwang check totals: exit %d, want 0\n%s\n%s", code, out.String(), errb.String())
	}
	if b, err := os.ReadFile(jsonPath); err != nil {
		t.Error(err)
	} else {
		var rep consistency.Report
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range rep.DifferingKeys() {
			n += len(d)
		}
		if !rep.Match || n != 0 || len(rep.Indicators) == 0 || rep.Indicators[0].Sink == 0 {
			t.Errorf("check report: match %v, %d differing keys, %d indicators\n%s", rep.Match, n, len(rep.Indicators), out.String())
		}
	}

	// (3) no issue, warning or discrepancy twice.
	counts := map[string]string{}
	for _, d := range []struct{ table, subject string }{
		{"quality_issue", "rule_id, subject_kind, subject_key"},
		{"warning", "rule_id, subject_kind, subject_key, period"},
		{"discrepancy", "department, subject_kind, subject_key, field, fact_key"},
	} {
		var rows, distinct, openTwice int
		q := fmt.Sprintf("SELECT count(*), count(DISTINCT (%s)) FROM fpjc.%s", d.subject, d.table)
		if err := env.pool.QueryRow(ctx, q).Scan(&rows, &distinct); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		q = fmt.Sprintf("SELECT count(*) FROM (SELECT 1 FROM fpjc.%s WHERE NOT deleted AND status IN ('open', 'pending', 'verifying') GROUP BY %s HAVING count(*) > 1) d", d.table, d.subject)
		if err := env.pool.QueryRow(ctx, q).Scan(&openTwice); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if rows != distinct || openTwice != 0 {
			t.Errorf("fpjc.%s: %d rows for %d distinct (%s), %d open more than once", d.table, rows, distinct, d.subject, openTwice)
		}
		var open int
		_ = env.pool.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM fpjc.%s WHERE status IN ('open', 'pending', 'verifying')", d.table)).Scan(&open)
		counts[d.table] = fmt.Sprintf("%d (%d open)", rows, open)
	}
	if strings.HasPrefix(counts["quality_issue"], "0 ") {
		t.Error("no quality issue at all: the monitor's part of the comparison means nothing")
	}
	// The open issues are those of one uninterrupted monitor over the same canonical
	// records, with the same facts (an issue that opened and closed while a household's
	// records were arriving may exist in one run only, but then closed). Not the
	// detail: an open issue keeps the detail of its first finding (rules.Tracker emits
	// no event while it stays open), and the reference, reading everything at once,
	// first finds most issues on later versions of the household than the live run.
	ref := monitorReference(t, ctx, cc.opts, chaosPrefix, chaosPrefix+"ref", filepath.Join(dir, "ref.db"))
	got, err := cc.provincialIssues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wrongIssues := 0
	for id, w := range ref {
		w.Detail = ""
		if g, ok := got[id]; w.Status == schemas.IssueOpen && g != w {
			if wrongIssues++; wrongIssues <= 5 {
				t.Errorf("issue %s (%s on %s %s): provincial %+v (found %v), uninterrupted monitor %+v", id, w.RuleID, w.SubjectKind, w.SubjectKey, g, ok, w)
			}
		}
	}
	for id, g := range got {
		if w, ok := ref[id]; g.Status == schemas.IssueOpen && (!ok || w.Status != schemas.IssueOpen) {
			if wrongIssues++; wrongIssues <= 10 {
				t.Errorf("issue %s (%s on %s %s) is open in the provincial database only", id, g.RuleID, g.SubjectKind, g.SubjectKey)
			}
		}
	}
	if wrongIssues > 0 {
		t.Errorf("%d quality issues differ from an uninterrupted monitor's (%d issues there)", wrongIssues, len(ref))
	}

	// (4) nothing dead-lettered by the sink.
	dlq, err := readCrashTopic(ctx, k.Brokers(), schemas.DLQTopic(chaosPrefix, "sink"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dlq) > 0 {
		t.Errorf("%d dead letters from the sink for clean data; the first: %s %v", len(dlq), dlq[0].env.Op, dlq[0].env.Key)
	}
	transformDLQ, _ := bus.TopicSize(ctx, cc.opts, schemas.DLQTopic(chaosPrefix, "transform"))

	t.Logf("chaos report (seed %d): %d changes (%s) over %s of chaos; kills %v; broker faults %v; "+
		"snapshot of %d households loaded in %s, converged %s after the chaos; provincial: %d households, %d persons; "+
		"quality issues %s (the open ones equal to an uninterrupted monitor's), warnings %s, discrepancies %s; %d transform dead letters; total %s",
		seed, wr.changes, wr.summary(), chaosTime.Round(time.Millisecond), kills, faults, len(baseline), loaded.Round(time.Second),
		converged.Round(time.Millisecond), len(final), cc.lastPersons, counts["quality_issue"], counts["warning"], counts["discrepancy"],
		transformDLQ, time.Since(began).Round(time.Second))
}

func chaosEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return v
}

func chaosBetween(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// chaosWorker is one worker slot: a role and its log, restarted after every kill.
type chaosWorker struct {
	name, role string
	env        []string // added to the environment
	logPath    string
	log        *os.File
	proc       *crashProc
}

func (w *chaosWorker) start(t *testing.T, bin, cfgPath string) {
	t.Helper()
	fmt.Fprintf(w.log, "\n===== start %s %s %v =====\n", w.role, time.Now().Format(time.RFC3339Nano), w.env)
	w.proc = startCrashProcEnv(t, bin, w.log, w.env, "run", "--role", w.role, "-c", cfgPath)
}

// chaosFault is one broker fault in force.
type chaosFault struct {
	name   string
	remove func()
}

// injectChaosFault installs a random broker fault: retriable errors on produce or on
// one broker's fetches, produce requests applied but answered REQUEST_TIMED_OUT (the
// client resends: duplicates), failed offset commits, forced rebalances, or latency.
func injectChaosFault(c *kfake.Cluster, rng *rand.Rand) *chaosFault {
	handle := func(name string, f kfake.Fault) *chaosFault {
		h := c.Fault(f)
		return &chaosFault{name: name, remove: h.Remove}
	}
	node := int32(rng.IntN(3))
	switch rng.IntN(6) {
	case 0:
		return handle("produce NOT_LEADER_FOR_PARTITION", kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: -1})
	case 1:
		return handle(fmt.Sprintf("fetch NOT_LEADER_FOR_PARTITION on broker %d", node),
			kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Nodes: []int32{node}, Err: kerr.NotLeaderForPartition, Count: -1})
	case 2:
		return handle("produce applied, answered REQUEST_TIMED_OUT", kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: 20})
	case 3:
		return handle("offset commit COORDINATOR_NOT_AVAILABLE", kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.CoordinatorNotAvailable, Count: -1, TopLevel: true})
	case 4:
		return handle("heartbeat REBALANCE_IN_PROGRESS", kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Err: kerr.RebalanceInProgress, Count: 3, TopLevel: true})
	default:
		// 150 ms on every produce and fetch: the control sleeps without holding up the
		// cluster and lets the request through.
		var on atomic.Bool
		on.Store(true)
		slow := func(kmsg.Request) (kmsg.Response, error, bool) {
			if !on.Load() {
				c.DropControl()
				return nil, nil, false
			}
			c.KeepControl()
			c.SleepControl(func() { time.Sleep(150 * time.Millisecond) })
			return nil, nil, false
		}
		c.ControlKey(int16(kmsg.Produce), slow)
		c.ControlKey(int16(kmsg.Fetch), slow)
		return &chaosFault{name: "150 ms latency on produce and fetch", remove: func() { on.Store(false) }}
	}
}

// chaosCheck compares the provincial database with the source and the sink's stored
// offsets with the topic ends.
type chaosCheck struct {
	t           *testing.T
	src         *sql.DB
	pool        *pgxpool.Pool
	opts        bus.Options
	workers     []*chaosWorker
	lastPersons int
}

// converge waits until the live provincial households and persons equal the source
// key by key (with their mapped fields), the sink's stored offsets reach the end of
// every topic it applies, and those ends stayed the same for three polls a second
// apart (the monitor has nothing left to say); it fails with the differences after
// within.
func (c *chaosCheck) converge(ctx context.Context, within time.Duration, what string) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(within)
	var lastEnds string
	stable := 0
	for {
		for _, w := range c.workers {
			if err := w.proc.exitedEarly(); err != nil {
				t.Fatalf("%s: %s: %v\n--- last lines of %s ---\n%s", what, w.name, err, w.logPath, logTailOf(w.logPath, 40))
			}
		}
		diffs, err := c.diff(ctx)
		if err != nil {
			diffs = []string{err.Error()}
		}
		ends, lag, err := c.sinkLag(ctx)
		if err != nil {
			diffs = append(diffs, err.Error())
		} else if lag != "" {
			diffs = append(diffs, lag)
		}
		if len(diffs) == 0 && ends == lastEnds {
			if stable++; stable >= 3 {
				return
			}
		} else {
			stable = 0
		}
		lastEnds = ends
		if time.Now().After(deadline) {
			var tails strings.Builder
			for _, w := range c.workers {
				fmt.Fprintf(&tails, "--- last lines of %s ---\n%s\n", w.logPath, logTailOf(w.logPath, 15))
			}
			t.Fatalf("%s: not converged after %s:\n%s\n%s", what, within, strings.Join(diffs, "\n"), tails.String())
		}
		time.Sleep(time.Second)
	}
}

// sinkLag returns the topic ends (as text, to see them change) and what the sink's
// stored offsets lack, "" when nothing.
func (c *chaosCheck) sinkLag(ctx context.Context) (string, string, error) {
	stored := map[string]int64{}
	rows, err := c.pool.Query(ctx, "SELECT topic, sum(next_offset)::bigint FROM fpjc.sink_offsets WHERE sink = 'provincial' GROUP BY topic")
	if err != nil {
		return "", "", fmt.Errorf("stored offsets: %w", err) // before the first migration
	}
	for rows.Next() {
		var topic string
		var n int64
		if err := rows.Scan(&topic, &n); err != nil {
			rows.Close()
			return "", "", err
		}
		stored[topic] = n
	}
	rows.Close()
	var ends, lag []string
	for _, e := range chaosSinkEntities {
		topic := ""
		for _, info := range schemas.Entities() {
			if info.Name == e {
				topic = info.Topic(chaosPrefix)
			}
		}
		n, err := bus.TopicSize(ctx, c.opts, topic)
		if err != nil {
			return "", "", err
		}
		ends = append(ends, fmt.Sprintf("%s=%d", topic, n))
		if stored[topic] != n {
			lag = append(lag, fmt.Sprintf("%s: %d of %d stored", topic, stored[topic], n))
		}
	}
	if len(lag) > 0 {
		return strings.Join(ends, " "), "sink offsets: " + strings.Join(lag, ", "), nil
	}
	return strings.Join(ends, " "), "", nil
}

// chaosRows reads query's rows as key → the other columns joined by "|".
func chaosRows(next func() bool, scan func(...any) error, errf func() error, cols int) (map[string]string, error) {
	out := map[string]string{}
	for next() {
		vals := make([]sql.NullString, cols)
		ptrs := make([]any, cols)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := scan(ptrs...); err != nil {
			return nil, err
		}
		var parts []string
		for _, v := range vals[1:] {
			if v.Valid {
				parts = append(parts, v.String)
			} else {
				parts = append(parts, "NULL")
			}
		}
		out[vals[0].String] = strings.Join(parts, "|")
	}
	return out, errf()
}

func (c *chaosCheck) source(ctx context.Context, q string, cols int) (map[string]string, error) {
	rows, err := c.src.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	return chaosRows(rows.Next, rows.Scan, rows.Err, cols)
}

func (c *chaosCheck) provincial(ctx context.Context, q string, cols int) (map[string]string, error) {
	rows, err := c.pool.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	return chaosRows(rows.Next, rows.Scan, rows.Err, cols)
}

// diff lists how the live provincial households and persons differ from the source:
// missing and extra keys, and keys whose region, head, size, household or name differ.
func (c *chaosCheck) diff(ctx context.Context) ([]string, error) {
	var out []string
	for _, q := range []struct{ entity, src, prov string }{
		{"household", "SELECT hh_no, village_code, head_name, CAST(size AS CHAR) FROM household",
			"SELECT key, region_code, head_name, member_count::text FROM fpjc.household WHERE NOT deleted"},
		{"person", "SELECT person_no, hh_no, name FROM person",
			"SELECT key, household_no, name FROM fpjc.person WHERE NOT deleted"},
	} {
		cols := strings.Count(q.src, ",") + 1
		want, err := c.source(ctx, q.src, cols)
		if err != nil {
			return nil, err
		}
		got, err := c.provincial(ctx, q.prov, cols)
		if err != nil {
			return nil, err
		}
		if q.entity == "person" {
			c.lastPersons = len(got)
		}
		var missing, extra, differ []string
		for k, w := range want {
			if g, ok := got[k]; !ok {
				missing = append(missing, k)
			} else if g != w {
				differ = append(differ, fmt.Sprintf("%s: provincial %q, source %q", k, g, w))
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				extra = append(extra, k)
			}
		}
		sort.Strings(missing)
		sort.Strings(extra)
		sort.Strings(differ)
		if n := len(missing) + len(extra) + len(differ); n > 0 {
			out = append(out, fmt.Sprintf("%s: %d in the source, %d live in the provincial database; %d missing %v, %d extra %v, %d differ %v",
				q.entity, len(want), len(got), len(missing), chaosFirst(missing), len(extra), chaosFirst(extra), len(differ), chaosFirst(differ)))
		}
	}
	return out, nil
}

func chaosFirst(s []string) []string { return s[:min(len(s), 5)] }

// provincialIssues reads fpjc.quality_issue as issue id → facts (no detail).
func (c *chaosCheck) provincialIssues(ctx context.Context) (map[string]issueFacts, error) {
	rows, err := c.pool.Query(ctx, `SELECT id, coalesce(rule_id, ''), coalesce(subject_kind, ''), coalesce(subject_key, ''), coalesce(region_code, ''),
		coalesce(severity, ''), coalesce(status, ''), coalesce(detail, '') FROM fpjc.quality_issue WHERE NOT deleted`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]issueFacts{}
	for rows.Next() {
		var id, detail string
		var f issueFacts // without the detail
		if err := rows.Scan(&id, &f.RuleID, &f.SubjectKind, &f.SubjectKey, &f.RegionCode, &f.Severity, &f.Status, &detail); err != nil {
			return nil, err
		}
		out[id] = f
	}
	return out, rows.Err()
}

// householdVersions is the version of every live provincial household.
func (c *chaosCheck) householdVersions(ctx context.Context) (map[string]int64, error) {
	rows, err := c.pool.Query(ctx, "SELECT key, version FROM fpjc.household WHERE NOT deleted")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

// chaosWriter changes the national household and person tables: inserts (copies of
// existing households with new keys, persons added to households), updates and
// deletes, in small transactions.
type chaosWriter struct {
	db            *sql.DB
	rng           *rand.Rand
	hhCols, pCols []string
	categories    []sql.NullString
	households    []*chaosHousehold
	index         map[string]int
	nextHH        int
	changes       int
	ops           map[string]int
	updated       map[string]bool // households updated (not inserted) during the stream
}

type chaosHousehold struct {
	no, village string
	persons     []string // the first is the head
	nextSeq     int
}

func newChaosWriter(ctx context.Context, db *sql.DB, rng *rand.Rand) (*chaosWriter, error) {
	w := &chaosWriter{db: db, rng: rng, index: map[string]int{}, ops: map[string]int{}, updated: map[string]bool{}}
	cols := func(table string) ([]string, error) {
		rows, err := db.QueryContext(ctx, "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position", table)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, rows.Err()
	}
	var err error
	if w.hhCols, err = cols("household"); err != nil {
		return nil, err
	}
	if w.pCols, err = cols("person"); err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, "SELECT DISTINCT category FROM household")
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var c sql.NullString
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return nil, err
		}
		w.categories = append(w.categories, c)
	}
	rows.Close()
	rows, err = db.QueryContext(ctx, "SELECT h.hh_no, h.village_code, p.person_no FROM household h JOIN person p ON p.hh_no = h.hh_no ORDER BY h.hh_no, p.person_no")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var hh, village, p string
		if err := rows.Scan(&hh, &village, &p); err != nil {
			return nil, err
		}
		i, ok := w.index[hh]
		if !ok {
			i = len(w.households)
			w.index[hh] = i
			w.households = append(w.households, &chaosHousehold{no: hh, village: village})
		}
		h := w.households[i]
		h.persons = append(h.persons, p)
		if seq, err := strconv.Atoi(p[len(p)-2:]); err == nil && seq >= h.nextSeq {
			h.nextSeq = seq + 1
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(w.households) == 0 || len(w.hhCols) == 0 || len(w.pCols) == 0 {
		return nil, fmt.Errorf("nothing generated to change (%d households)", len(w.households))
	}
	return w, nil
}

func (w *chaosWriter) summary() string {
	var names []string
	for n := range w.ops {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", n, w.ops[n])
	}
	return b.String()
}

// copySQL is INSERT … SELECT of one row of table with the replaced columns set to
// placeholders (in cols order) and updated_at to NOW().
func copySQL(table, key string, cols []string, replaced ...string) string {
	var sel []string
	for _, c := range cols {
		switch {
		case c == "updated_at":
			sel = append(sel, "NOW()")
		case strings.Contains(" "+strings.Join(replaced, " ")+" ", " "+c+" "):
			sel = append(sel, "?")
		default:
			sel = append(sel, c)
		}
	}
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s WHERE %s = ?", table, strings.Join(cols, ", "), strings.Join(sel, ", "), table, key)
}

// run commits changes row changes, spread over about spread (faster is not forced:
// the writer never waits for the pipeline).
func (w *chaosWriter) run(ctx context.Context, changes int, spread time.Duration) error {
	start := time.Now()
	for w.changes < changes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.tx(ctx); err != nil {
			return err
		}
		if d := time.Until(start.Add(time.Duration(float64(spread) * float64(w.changes) / float64(changes)))); d > 0 {
			time.Sleep(d)
		}
	}
	return nil
}

// tx plans and commits one transaction of 1–3 operations on distinct households,
// then records it in the model.
func (w *chaosWriter) tx(ctx context.Context) error {
	type stmt struct {
		q    string
		args []any
	}
	var stmts []stmt
	var after []func()
	touched := map[string]bool{}
	n := 0
	for range 1 + w.rng.IntN(3) {
		i := w.rng.IntN(len(w.households))
		h := w.households[i]
		if touched[h.no] {
			continue
		}
		touched[h.no] = true
		switch r := w.rng.IntN(100); {
		case r < 30 || len(w.households) < 100: // update a household
			cat := w.categories[w.rng.IntN(len(w.categories))]
			stmts = append(stmts, stmt{"UPDATE household SET head_name = ?, category = ?, annual_income = ?, updated_at = NOW() WHERE hh_no = ?",
				[]any{crashNames[w.rng.IntN(len(crashNames))], cat, fmt.Sprintf("%d.%02d", w.rng.IntN(200000), w.rng.IntN(100)), h.no}})
			n++
			after = append(after, func() { w.ops["household updates"]++; w.updated[h.no] = true })
		case r < 60: // update a person
			p := h.persons[w.rng.IntN(len(h.persons))]
			stmts = append(stmts, stmt{"UPDATE person SET name = ?, work_months = ?, updated_at = NOW() WHERE person_no = ?",
				[]any{crashNames[w.rng.IntN(len(crashNames))], w.rng.IntN(13), p}})
			n++
			after = append(after, func() { w.ops["person updates"]++ })
		case r < 75: // a new household, a copy of this one with its members
			w.nextHH++
			no := fmt.Sprintf("%s9%06d", h.village, w.nextHH)
			nh := &chaosHousehold{no: no, village: h.village, nextSeq: len(h.persons) + 1}
			stmts = append(stmts, stmt{copySQL("household", "hh_no", w.hhCols, "hh_no"), []any{no, h.no}})
			for j, p := range h.persons {
				np := fmt.Sprintf("%s%02d", no, j+1)
				nh.persons = append(nh.persons, np)
				stmts = append(stmts, stmt{copySQL("person", "person_no", w.pCols, "person_no", "hh_no"), []any{np, no, p}})
			}
			n += 1 + len(h.persons)
			after = append(after, func() {
				w.ops["household inserts"]++
				w.ops["person inserts"] += len(nh.persons)
				w.index[no] = len(w.households)
				w.households = append(w.households, nh)
			})
		case r < 85: // a new member, a copy of a member with a new key
			if h.nextSeq > 99 {
				continue
			}
			np := fmt.Sprintf("%s%02d", h.no, h.nextSeq)
			stmts = append(stmts, stmt{copySQL("person", "person_no", w.pCols, "person_no"), []any{np, h.persons[len(h.persons)-1]}})
			n++
			after = append(after, func() { w.ops["person inserts"]++; h.persons = append(h.persons, np); h.nextSeq++ })
		case r < 93: // a member leaves
			if len(h.persons) < 2 {
				continue
			}
			p := h.persons[len(h.persons)-1]
			stmts = append(stmts, stmt{"DELETE FROM person WHERE person_no = ?", []any{p}})
			n++
			after = append(after, func() { w.ops["person deletes"]++; h.persons = h.persons[:len(h.persons)-1] })
		default: // the household and its members are deleted
			stmts = append(stmts, stmt{"DELETE FROM person WHERE hh_no = ?", []any{h.no}}, stmt{"DELETE FROM household WHERE hh_no = ?", []any{h.no}})
			n += 1 + len(h.persons)
			after = append(after, func() {
				w.ops["household deletes"]++
				w.ops["person deletes"] += len(h.persons)
				j := w.index[h.no]
				last := w.households[len(w.households)-1]
				w.households[j] = last
				w.index[last.no] = j
				w.households = w.households[:len(w.households)-1]
				delete(w.index, h.no)
				delete(w.updated, h.no)
			})
		}
	}
	if len(stmts) == 0 {
		return nil
	}
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s.q, s.args...); err != nil {
			tx.Rollback()
			return fmt.Errorf("%.200s %v: %w", s.q, s.args, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for _, f := range after {
		f()
	}
	w.changes += n
	return nil
}
