package main

// Kill -9 of `shouwang run --role transform` while its monitor evaluates (issue #8:
// "kill -9 mid-stream loses nothing and duplicates nothing"; the monitor's state and
// input offsets share one bbolt transaction). The killed run's final quality issues
// must equal those of an uninterrupted monitor over the same canonical records.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/monitor"
	"github.com/shouwang/shouwang/transforms/rules"
	"github.com/shouwang/shouwang/transforms/warnings"
)

// monitorCrashPerson is person i of household i/3: a head and two children, with
// defects the supervision rules find — a failing ID checksum (every 11th), a child
// older than the head (every 13th household), a labourer of 8 (every 17th).
func monitorCrashPerson(t *testing.T, i int) map[string]any {
	no := fmt.Sprintf("%08d", i)
	r := transformCrashPerson(no)
	hh := i / 3
	r["hh_no"] = fmt.Sprintf("H%07d", hh)
	birth := time.Date(1960+hh%20, time.Month(1+i%12), 1+i%28, 0, 0, 0, 0, time.UTC)
	if i%3 == 0 {
		r["relationship"] = "户主"
	} else {
		r["relationship"] = "之子"
		birth = birth.AddDate(25, 0, 0)
		if hh%13 == 0 {
			birth = birth.AddDate(-40, 0, 0)
		}
	}
	id, err := ident.MakeID("110105", birth, i%999+1, i%2 == 0)
	if err != nil {
		t.Fatal(err)
	}
	if i%11 == 0 {
		last := byte('0')
		if id[17] == '0' {
			last = '1'
		}
		id = id[:17] + string(last)
	}
	r["id_no"], r["birth_date"] = id, birth.Format("2006-01-02")
	if i%2 == 0 {
		r["sex"] = "男"
	}
	if hh%17 == 0 && i%3 == 2 {
		r["birth_date"] = time.Date(2016, 3, 1, 0, 0, 0, 0, time.UTC).Format("2006-01-02")
		r["labour_skill"] = "普通劳动力"
	}
	return r
}

// monitorCrashHousehold is the national household row of household hh.
func monitorCrashHousehold(hh int, headID string) map[string]any {
	r := map[string]any{}
	for _, c := range []string{"county_name", "township_name", "village_name", "natural_village", "category", "no_labour_protected",
		"phone", "risk1", "risk2", "risk3", "risk4", "risk5", "disaster_subitem", "risk_remark", "identified_ym", "risk_eliminated",
		"elimination_method", "eliminated_ym", "annual_income", "per_capita_income", "wage_income", "business_income", "property_income",
		"transfer_income", "business_expense", "compliant_oop_expense", "dibao_amount", "tekun_amount", "child_dropout", "member_uninsured",
		"dangerous_house", "safe_water", "housing_area", "electricity", "road_hardened", "road_distance_km", "farmland_mu", "forest_mu",
		"returned_farmland_mu", "orchard_mu", "grassland_mu", "water_surface_mu", "m_industry", "m_employment", "m_finance", "m_welfare_job",
		"m_health", "m_education", "m_compulsory_edu", "m_housing", "m_water", "m_social_protection", "m_relocation", "m_social_aid",
		"m_living_conditions", "m_infrastructure", "dev_measure_status", "monitor_contact", "monitor_contact_phone", "collector", "relocated",
		"resettlement_site", "resettlement_mode"} {
		r[c] = nil
	}
	r["hh_no"], r["village_code"], r["household_type"], r["size"] = fmt.Sprintf("H%07d", hh), "510104017001", "脱贫户", 3
	r["head_name"], r["head_id_no"] = "张三", headID
	return r
}

func TestMonitorKill9Converges(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it several times")
	}
	k := testenv.Kafka(t)
	dir := t.TempDir()
	bin := crashBinary(t, dir)
	const prefix = "mx"
	raw, rawHH := schemas.RawTopic(prefix, "national", "person"), schemas.RawTopic(prefix, "national", "household")
	canon, canonHH, issuesTopic := schemas.CanonicalTopic(prefix, "person"), schemas.CanonicalTopic(prefix, "household"), schemas.QualityIssueTopic(prefix)
	opts := bus.Options{Brokers: k.Brokers()}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if err := bus.EnsureTopics(ctx, opts, bus.TopicSpec{Name: raw, Partitions: 2, ReplicationFactor: 1},
		bus.TopicSpec{Name: rawHH, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	const n = 30000 // persons, in n/3 households
	p, err := bus.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []bus.Message
	for i := range n {
		no := fmt.Sprintf("%08d", i)
		e := schemas.Envelope{V: 1, Op: schemas.OpRead, Source: schemas.Source{System: "national", Kind: "mysqlbinlog", DB: "national",
			Table: "person", BinlogFile: "binlog.000001", BinlogPos: uint32(4 + i)}, Key: map[string]any{"person_no": no},
			After: monitorCrashPerson(t, i), Schema: schemas.SchemaRef{Name: "national.person", Version: 1}, TsMs: 1}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, bus.Message{Topic: raw, Key: []byte(no), Value: b})
		if i%3 == 0 {
			hh := fmt.Sprintf("H%07d", i/3)
			e := schemas.Envelope{V: 1, Op: schemas.OpRead, Source: schemas.Source{System: "national", Kind: "mysqlbinlog", DB: "national",
				Table: "household", BinlogFile: "binlog.000001", BinlogPos: uint32(4 + i)}, Key: map[string]any{"hh_no": hh},
				After: monitorCrashHousehold(i/3, e.After["id_no"].(string)), Schema: schemas.SchemaRef{Name: "national.household", Version: 1}, TsMs: 1}
			b, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, bus.Message{Topic: rawHH, Key: []byte(hh), Value: b})
		}
	}
	// The input arrives in parts, one during each of the first rounds, so that every
	// round has changes to apply and households to evaluate when it is killed (on a
	// fast machine the whole input is applied before the first kill otherwise).
	const parts = 12
	producePart := func(i int) {
		t.Helper()
		lo, hi := i*len(msgs)/parts, (i+1)*len(msgs)/parts
		if err := p.Produce(ctx, msgs[lo:hi]...); err != nil {
			t.Fatal(err)
		}
	}
	nextPart := 0

	var cfg strings.Builder
	cfg.WriteString("kafka:\n  brokers:\n")
	for _, a := range k.Brokers() {
		fmt.Fprintf(&cfg, "    - %q\n", a)
	}
	cfg.WriteString("  topic_prefix: " + prefix + "\n  session_timeout: 1s\n  partitions: 2\n  replication_factor: 1\nmetrics:\n  addr: 127.0.0.1:0\nregions:\n  province: \"51\"\nstate:\n  dir: ./state\n" +
		"pipelines:\n  - name: registry\n    inputs: [" + raw + ", " + rawHH + "]\n    mapping: embedded\n    outputs: [person, household]\n" +
		"monitor:\n  settle: 100ms\n  max_delay: 1s\n  as_of: \"2024-07-01\"\n")
	cfgPath := filepath.Join(dir, "transform.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(dir, "state", "monitor.db")
	logPath := filepath.Join(dir, "transform.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	failWithLog := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\n%s", append(args, logTailOf(logPath, 30))...)
	}
	size := func(topic string) int64 {
		t.Helper()
		var err error
		for range 5 {
			if ctx.Err() != nil {
				failWithLog("the test's 8 minutes are up reading the size of %s", topic)
			}
			var c int64
			switch c, err = bus.TopicSize(ctx, opts, topic); {
			case err == nil:
				return c
			case errors.Is(err, kafka.UnknownTopicOrPartition):
				return 0 // the worker has not created it yet
			}
			time.Sleep(200 * time.Millisecond)
		}
		failWithLog("%v", err)
		return 0
	}
	// applied is how many canonical records the monitor's state file says it applied.
	applied := func(st monitor.StateSummary) int64 {
		var sum int64
		for k, off := range st.Offsets {
			if strings.HasPrefix(k, canon+"/") || strings.HasPrefix(k, canonHH+"/") {
				sum += off
			}
		}
		return sum
	}

	// Kill at random moments, up to three kills that landed mid-stream (at least one is
	// required; a run usually gets three): the monitor had committed progress in that
	// round (so it was past joining its group and re-sending its outbox, which alone
	// also adds issue events) and still had records to apply or
	// households to evaluate.
	rng := rand.New(rand.NewPCG(3, 4))
	kills := 0
	var lastApplied int64
	for round := 0; round < parts && kills < 3; round++ {
		before := size(issuesTopic)
		proc := startRoleProc(t, bin, "transform", cfgPath, log)
		// The killed member's session (1s) expires and both groups rejoin, then the
		// next part arrives and the kill lands while it is mapped, applied or evaluated.
		time.Sleep(1500 * time.Millisecond)
		if nextPart < parts {
			producePart(nextPart)
			nextPart++
		}
		time.Sleep(50*time.Millisecond + time.Duration(rng.IntN(700))*time.Millisecond)
		if err := proc.kill(); err != nil {
			failWithLog("%v", err)
		}
		after := size(issuesTopic)
		st, err := monitor.ReadState(statePath, time.Second)
		if err != nil {
			t.Fatalf("after a kill: %v", err)
		}
		records := size(canon) + size(canonHH)
		t.Logf("round %d: killed with %d canonical records, %d applied by the monitor, %d households waiting, %d issue events",
			round, records, applied(st), st.Waiting, after)
		if applied(st) > lastApplied && after > before && (applied(st) < records || st.Waiting > 0) {
			kills++
		}
		lastApplied = applied(st)
	}
	if kills == 0 {
		t.Fatal("the monitor was never killed mid-stream: the test proved nothing")
	}
	for ; nextPart < parts; nextPart++ {
		producePart(nextPart)
	}
	// Last run: until the state file says every canonical record is applied and
	// evaluated, then a clean stop.
	for attempt := 0; ; attempt++ {
		if attempt == 3 {
			failWithLog("the monitor never finished the canonical topic")
		}
		proc := startRoleProc(t, bin, "transform", cfgPath, log)
		deadline := time.Now().Add(2 * time.Minute)
		for stable, last := 0, int64(-1); stable < 3; {
			time.Sleep(time.Second)
			if err := proc.exitedEarly(); err != nil {
				failWithLog("%v", err)
			}
			if time.Now().After(deadline) {
				failWithLog("final run %d: after 2 minutes %d of %d persons and %d of %d households are mapped, %d issue events",
					attempt, size(canon), n, size(canonHH), n/3, size(issuesTopic))
			}
			if c := size(issuesTopic); c == last && size(canon) >= n && size(canonHH) >= n/3 {
				stable++
			} else {
				stable, last = 0, c
			}
		}
		if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := <-proc.done; err != nil {
			proc.done <- err
			failWithLog("after SIGTERM the worker exited with %v", err)
		}
		proc.done <- nil
		st, err := monitor.ReadState(statePath, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		total := size(canon) + size(canonHH)
		if applied(st) == total && st.Waiting == 0 {
			if st.Outbox != 0 {
				t.Fatalf("final run %d stopped cleanly with %d events of its last commit still in the outbox: a clean stop sends them", attempt, st.Outbox)
			}
			break
		}
		t.Logf("final run %d stopped with %d of %d canonical records applied, %d households waiting, %d events in the outbox", attempt, applied(st), total, st.Waiting, st.Outbox)
	}

	// The reference: an uninterrupted monitor over a copy of the same canonical topic.
	ref := monitorReference(t, ctx, opts, prefix, "my", filepath.Join(dir, "ref.db"))
	got := latestIssues(t, ctx, k.Brokers(), issuesTopic)
	if len(ref) == 0 {
		t.Fatal("the reference run found no issues: the data carries no defects")
	}
	// Open issues must be the same, with the same facts. An issue that opened and
	// closed again while a household's records were still arriving may exist in one
	// run and not the other (timing decides), but then it is closed.
	open := 0
	for id, w := range ref {
		g, ok := got[id]
		switch {
		case w.Status == schemas.IssueOpen && !ok:
			t.Errorf("open issue %s (%s on %s) of the uninterrupted run is missing after the kills", id, w.RuleID, w.SubjectKey)
		case w.Status == schemas.IssueOpen && g != w:
			t.Errorf("issue %s differs after the kills:\n got %+v\nwant %+v", id, g, w)
		}
		if w.Status == schemas.IssueOpen {
			open++
		}
	}
	for id, g := range got {
		if w, ok := ref[id]; g.Status == schemas.IssueOpen && (!ok || w.Status != schemas.IssueOpen) {
			t.Errorf("issue %s (%s on %s) is open only after the kills", id, g.RuleID, g.SubjectKey)
		}
	}
	if open == 0 {
		t.Fatal("no open issue in the uninterrupted run: the comparison means nothing")
	}
	t.Logf("%d kills; %d issues (%d open) equal to an uninterrupted run", kills, len(ref), open)
}

// issueFacts is a quality issue without what legitimately differs between runs
// (versions and wall-clock times).
type issueFacts struct {
	RuleID, SubjectKind, SubjectKey, RegionCode, Severity, Status, Detail string
}

// latestIssues reads topic and keeps the last event of every issue id.
func latestIssues(t *testing.T, ctx context.Context, brokers []string, topic string) map[string]issueFacts {
	t.Helper()
	evs, err := readCrashTopic(ctx, brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]issueFacts{}
	for _, ev := range evs {
		var q schemas.QualityIssue
		b, err := json.Marshal(ev.env.After)
		if err == nil {
			err = json.Unmarshal(b, &q)
		}
		if err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		out[q.ID] = issueFacts{q.RuleID, q.SubjectKind, q.SubjectKey, q.RegionCode, q.Severity, q.Status, q.Detail}
	}
	return out
}

// monitorReference copies the canonical person and household topics under another
// prefix and runs one monitor over them without interruption, returning its final
// issues.
func monitorReference(t *testing.T, ctx context.Context, opts bus.Options, from, prefix, statePath string) map[string]issueFacts {
	t.Helper()
	var topics []bus.TopicSpec
	for _, tp := range []string{schemas.QualityIssueTopic(prefix), schemas.WarningTopic(prefix), schemas.DiscrepancyTopic(prefix), schemas.DLQTopic(prefix, "transform"),
		schemas.CanonicalTopic(prefix, "person"), schemas.CanonicalTopic(prefix, "household"),
		schemas.CanonicalTopic(prefix, "assistance_measure"), schemas.CanonicalTopic(prefix, "department_fact")} {
		topics = append(topics, bus.TopicSpec{Name: tp, Partitions: 2, ReplicationFactor: 1})
	}
	if err := bus.EnsureTopics(ctx, opts, topics...); err != nil {
		t.Fatal(err)
	}
	// A new producer: one made before the topics existed caches their absence.
	p, err := bus.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []bus.Message
	for _, entity := range []string{"person", "household"} {
		evs, err := readCrashTopic(ctx, opts.Brokers, schemas.CanonicalTopic(from, entity))
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			b, err := ev.env.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			key, _ := ev.env.Key["key"].(string)
			msgs = append(msgs, bus.Message{Topic: schemas.CanonicalTopic(prefix, entity), Key: []byte(key), Value: b})
		}
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Default()
	if err != nil {
		t.Fatal(err)
	}
	ws, err := warnings.Default()
	if err != nil {
		t.Fatal(err)
	}
	w, err := monitor.New(monitor.Options{TopicPrefix: prefix, Bus: opts, Producer: p, Rules: rs, Warnings: ws, StatePath: statePath,
		Settle: 100 * time.Millisecond, MaxDelay: time.Second, AsOf: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	for {
		if c, waiting := w.Progress(); c == int64(len(msgs)) && waiting == 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("reference monitor stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("reference monitor did not finish")
		case <-time.After(100 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return latestIssues(t, ctx, opts.Brokers, schemas.QualityIssueTopic(prefix))
}
