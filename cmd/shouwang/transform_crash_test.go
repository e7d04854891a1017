package main

// Kill -9 of `shouwang run --role transform` as its own process (issue #8: "kill -9
// mid-stream loses nothing and duplicates nothing"). Kafka (kfake) lives in the test
// process so it survives the kills; the raw topic is filled first, the transform
// worker is killed several times while it maps, and a last run catches up.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func transformCrashPerson(no string) map[string]any {
	r := map[string]any{"person_no": no, "hh_no": "H" + no[:3], "id_type": "居民身份证", "id_no": "11010519491231002X",
		"name": "张三", "sex": "女", "birth_date": "1949-12-31", "relationship": "户主", "phone": "13800138000"}
	for _, c := range []string{"ethnic", "education", "school_status", "not_in_school_reason", "dropout_reason", "health",
		"disability_type", "disability_grade", "disability_cert_no", "labour_skill", "work_status", "work_place", "work_months",
		"work_monthly_income", "employment_channel", "welfare_job", "welfare_job_months", "ins_resident_medical",
		"ins_employee_medical", "ins_serious_illness", "ins_resident_pension", "ins_employee_pension", "medical_assistance",
		"dibao", "tekun", "deceased", "deregistered_date"} {
		r[c] = nil
	}
	return r
}

func TestTransformKill9LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it several times")
	}
	k := testenv.Kafka(t)
	dir := t.TempDir()
	bin := crashBinary(t, dir)
	raw, canon := schemas.RawTopic("tx", "national", "person"), schemas.CanonicalTopic("tx", "person")
	opts := bus.Options{Brokers: k.Brokers()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := bus.EnsureTopics(ctx, opts, bus.TopicSpec{Name: raw, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	const n = 150000
	p, err := bus.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]bus.Message, 0, 1000)
	for i := range n {
		no := fmt.Sprintf("%08d", i)
		e := schemas.Envelope{V: 1, Op: schemas.OpRead, Source: schemas.Source{System: "national", Kind: "mysqlbinlog", DB: "national",
			Table: "person", BinlogFile: "binlog.000001", BinlogPos: uint32(4 + i)}, Key: map[string]any{"person_no": no},
			After: transformCrashPerson(no), Schema: schemas.SchemaRef{Name: "national.person", Version: 1}, TsMs: 1}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, bus.Message{Topic: raw, Key: []byte(no), Value: b})
		if len(msgs) == cap(msgs) || i == n-1 {
			if err := p.Produce(ctx, msgs...); err != nil {
				t.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	p.Close()

	var cfg strings.Builder
	cfg.WriteString("kafka:\n  brokers:\n")
	for _, a := range k.Brokers() {
		fmt.Fprintf(&cfg, "    - %q\n", a)
	}
	cfg.WriteString("  topic_prefix: tx\n  session_timeout: 1s\n  partitions: 2\n  replication_factor: 1\nmetrics:\n  addr: 127.0.0.1:0\nregions:\n  province: \"11\"\nstate:\n  dir: ./state\n" +
		"pipelines:\n  - name: registry\n    inputs: [tx.raw.national.person]\n    mapping: embedded\n    outputs: [person]\n")
	cfgPath := filepath.Join(dir, "transform.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "transform.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()

	count := func() int {
		c, err := bus.TopicSize(ctx, opts, canon)
		if err != nil {
			if !errors.Is(err, kafka.UnknownTopicOrPartition) { // not created by the worker yet
				t.Logf("size of %s: %v", canon, err)
			}
			return 0
		}
		return int(c)
	}
	rng := rand.New(rand.NewPCG(8, 9))
	kills := 0
	// Each round waits until the restarted worker has made progress of its own (it
	// rejoins the group only once the killed member's session has expired), then kills
	// it a random moment later, so that every counted kill lands mid-stream.
	prev := 0
	for round := 0; round < 6 && kills < 3; round++ {
		proc := startRoleProc(t, bin, "transform", cfgPath, log)
		for deadline := time.Now().Add(time.Minute); count() <= prev; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no progress past %d canonical records in a minute\n%s", round, prev, logTailOf(logPath, 30))
			}
			if err := proc.exitedEarly(); err != nil {
				t.Fatalf("%v\n%s", err, logTailOf(logPath, 30))
			}
		}
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		if err := proc.kill(); err != nil {
			t.Fatalf("%v\n%s", err, logTailOf(logPath, 30))
		}
		c := count()
		t.Logf("round %d: killed at %d of %d canonical records", round, c, n)
		if c >= n {
			break
		}
		kills++
		prev = c
	}
	proc := startRoleProc(t, bin, "transform", cfgPath, log)
	// The topic's size counts redelivered copies too, so it reaching n is only the cue
	// to count distinct keys; the last run must go on until every person is there.
	distinct := func() int {
		evs, err := readCrashTopic(ctx, k.Brokers(), canon)
		if err != nil {
			t.Logf("read %s: %v", canon, err)
			return 0
		}
		seen := map[string]bool{}
		for _, ev := range evs {
			key, _ := ev.env.Key["key"].(string)
			seen[key] = true
		}
		return len(seen)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if count() >= n {
			if d := distinct(); d >= n {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("canonical topic has %d distinct of %d persons after the last run\n%s", d, n, logTailOf(logPath, 30))
			}
			time.Sleep(time.Second)
		}
		if time.Now().After(deadline) {
			t.Fatalf("canonical topic has %d of %d after the last run\n%s", count(), n, logTailOf(logPath, 30))
		}
		if err := proc.exitedEarly(); err != nil {
			t.Fatalf("%v\n%s", err, logTailOf(logPath, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = proc.kill()
	if kills == 0 {
		t.Fatal("the worker was never killed mid-stream: the test proved nothing")
	}

	evs, err := readCrashTopic(ctx, k.Brokers(), canon)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing lost: every raw person has its canonical record. Nothing duplicated in
	// effect: a key seen twice (redelivery after a kill, before the offset commit) has
	// the same version and the same document, so a consumer applying by version ends
	// in the same state as with exactly one copy.
	first := map[string]*schemas.Envelope{}
	dups := 0
	for _, ev := range evs {
		key, _ := ev.env.Key["key"].(string)
		if prev, ok := first[key]; ok {
			dups++
			if !reflect.DeepEqual(withoutUpdatedMs(prev.After), withoutUpdatedMs(ev.env.After)) {
				t.Errorf("key %s redelivered with a different document:\n%v\n%v", key, prev.After, ev.env.After)
			}
			continue
		}
		first[key] = ev.env
	}
	missing := 0
	for i := range n {
		no := fmt.Sprintf("%08d", i)
		_, found := first[no]
		if !found {
			missing++
			if missing <= 5 {
				t.Errorf("person %s has no canonical record (keys look like %v)", no, sampleKeys(first))
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d persons lost after %d kills", missing, n, kills)
	}
	t.Logf("%d kills; %d canonical records for %d persons (%d redelivered copies, identical by version)", kills, len(evs), n, dups)
}

// withoutUpdatedMs drops the processing time stamp, the one field a redelivered copy
// may differ in.
func withoutUpdatedMs(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != "updated_ms" {
			out[k] = v
		}
	}
	return out
}

func sampleKeys(m map[string]*schemas.Envelope) []string {
	var out []string
	for k := range m {
		if out = append(out, k); len(out) == 3 {
			break
		}
	}
	return out
}

// startRoleProc runs `shouwang run --role ROLE -c CFG`, logging to log.
func startRoleProc(t *testing.T, bin, role, cfg string, log *os.File) *crashProc {
	t.Helper()
	fmt.Fprintf(log, "\n===== start %s %s =====\n", role, time.Now().Format(time.RFC3339Nano))
	return startCrashProcArgs(t, bin, log, "run", "--role", role, "-c", cfg)
}
