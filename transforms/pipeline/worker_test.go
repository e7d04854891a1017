package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/mapping"
)

func personAfter(no, rel string) map[string]any {
	r := map[string]any{"person_no": no, "hh_no": "H1", "id_type": "居民身份证", "id_no": "11010519491231002X", "name": "张三",
		"sex": "女", "birth_date": "1949-12-31", "relationship": rel, "phone": "13800138000"}
	for _, c := range []string{"ethnic", "education", "school_status", "not_in_school_reason", "dropout_reason", "health",
		"disability_type", "disability_grade", "disability_cert_no", "labour_skill", "work_status", "work_place", "work_months",
		"work_monthly_income", "employment_channel", "welfare_job", "welfare_job_months", "ins_resident_medical",
		"ins_employee_medical", "ins_serious_illness", "ins_resident_pension", "ins_employee_pension", "medical_assistance",
		"dibao", "tekun", "deceased", "deregistered_date"} {
		r[c] = nil
	}
	return r
}

func rawMessage(t *testing.T, op schemas.Op, no string, after map[string]any, pos uint32) bus.Message {
	t.Helper()
	e := schemas.Envelope{V: 1, Op: op, Source: schemas.Source{System: "national", Kind: "mysqlbinlog", DB: "national", Table: "person", BinlogFile: "binlog.000001", BinlogPos: pos},
		Key: map[string]any{"person_no": no}, After: after, Schema: schemas.SchemaRef{Name: "national.person", Version: 1}, TsMs: 1}
	if op == schemas.OpDelete {
		e.After, e.Before = nil, map[string]any{"person_no": no}
	}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return bus.Message{Topic: schemas.RawTopic("tx", "national", "person"), Key: []byte(no), Value: b}
}

type got struct {
	canonical []*schemas.Envelope
	dlq       []schemas.DLQRecord
}

// drain reads the canonical person topic and the transform DLQ from the start until
// want messages arrived in all.
func drain(t *testing.T, k *testenv.KafkaCluster, want int) got {
	t.Helper()
	c, err := bus.NewGroupConsumer(bus.Options{Brokers: k.Brokers()}, fmt.Sprintf("read-%d", time.Now().UnixNano()),
		[]string{schemas.CanonicalTopic("tx", "person"), schemas.DLQTopic("tx", "transform")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var g got
	for len(g.canonical)+len(g.dlq) < want {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("after %d canonical and %d dead letters: %v", len(g.canonical), len(g.dlq), err)
		}
		if m.Topic == schemas.DLQTopic("tx", "transform") {
			var r schemas.DLQRecord
			if err := json.Unmarshal(m.Value, &r); err != nil {
				t.Fatal(err)
			}
			g.dlq = append(g.dlq, r)
			continue
		}
		e, err := schemas.UnmarshalEnvelope(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != e.Key["key"] {
			t.Errorf("Kafka key %q differs from the entity key %v", m.Key, e.Key)
		}
		g.canonical = append(g.canonical, e)
	}
	return g
}

func runWorker(t *testing.T, k *testenv.KafkaCluster, name string, set *mapping.Set, protect *pii.Protector, reg prometheus.Registerer) (stop func()) {
	t.Helper()
	p, err := bus.NewProducer(bus.Options{Brokers: k.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[mapping.Set]
	cur.Store(set)
	w, err := New(Options{Name: name, TopicPrefix: "tx", ClientID: "t", Bus: bus.Options{Brokers: k.Brokers()}, Producer: p,
		Mappings: &cur, Protect: protect, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ins, outs := w.Topics()
	var specs []bus.TopicSpec
	for _, tp := range append(ins, outs...) {
		specs = append(specs, bus.TopicSpec{Name: tp, Partitions: 2, ReplicationFactor: 1})
	}
	if err := bus.EnsureTopics(context.Background(), bus.Options{Brokers: k.Brokers()}, specs...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		p.Close()
	}
}

// TestPipelineMapsRawToCanonical: raw changes become canonical envelopes keyed by the
// entity key with versions from the raw offsets; a bad change goes to the DLQ with its
// field-level reason and a metric; a replay from the start gives the same versions.
func TestPipelineMapsRawToCanonical(t *testing.T) {
	k := testenv.Kafka(t)
	set, err := mapping.Load(mapping.Embedded, &mapping.Env{})
	if err != nil {
		t.Fatal(err)
	}
	prot, err := pii.New(pii.Options{DLQ: pii.MethodMask, Topics: map[string]pii.Methods{"tx.canonical.person": {IDNumber: pii.MethodMask, Phone: pii.MethodMask}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	stop := runWorker(t, k, "registry", set, prot, reg)
	p, err := bus.NewProducer(bus.Options{Brokers: k.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	in := []bus.Message{
		rawMessage(t, schemas.OpRead, "P1", personAfter("P1", "户主"), 10),
		rawMessage(t, schemas.OpUpdate, "P1", personAfter("P1", "配偶"), 20),
		rawMessage(t, schemas.OpUpdate, "P2", personAfter("P2", "邻居"), 30), // not in the dictionary
		rawMessage(t, schemas.OpDelete, "P1", nil, 40),
	}
	if err := p.Produce(context.Background(), in...); err != nil {
		t.Fatal(err)
	}
	g := drain(t, k, 4)
	stop()
	if len(g.canonical) != 3 || len(g.dlq) != 1 {
		t.Fatalf("%d canonical, %d dead letters; want 3 and 1", len(g.canonical), len(g.dlq))
	}
	var versions []int64
	for _, e := range g.canonical {
		doc := e.After
		if e.Op == schemas.OpDelete {
			doc = e.Before
		}
		v, _ := doc["version"].(json.Number).Int64()
		versions = append(versions, v)
		if e.Schema.Name != "person" || doc["key"] != "P1" {
			t.Errorf("envelope %+v", e)
		}
	}
	if !(versions[0] < versions[1] && versions[1] < versions[2]) || g.canonical[2].Op != schemas.OpDelete {
		t.Errorf("versions %v (ops %s %s %s): want growing, ending with the delete", versions, g.canonical[0].Op, g.canonical[1].Op, g.canonical[2].Op)
	}
	if a := g.canonical[1].After; a["relation_to_head"] != "配偶" || a["id_no"] != "1101**********002X" || a["phone"] != "138****8000" {
		t.Errorf("mapped person: %v", a)
	}
	d := g.dlq[0]
	if d.Stage != "transform" || d.Key != "P2" || !contains(d.Reason, `field relation_to_head (column relationship): "邻居" is not in dictionary relationship`) {
		t.Errorf("dead letter %+v", d)
	}
	if contains(string(d.Payload), "11010519491231002X") {
		t.Error("the dead letter carries a full ID number")
	}
	if n := deadLetters(reg); n != 1 {
		t.Errorf("dead-letter metric %v, want 1", n)
	}

	// Replaying the raw topic from the beginning (a new group) repeats the versions.
	stop = runWorker(t, k, "replay", set, prot, prometheus.NewRegistry())
	g2 := drain(t, k, 8)
	stop()
	again := map[string]int64{}
	for _, e := range g2.canonical[3:] {
		doc := e.After
		if e.Op == schemas.OpDelete {
			doc = e.Before
		}
		v, _ := doc["version"].(json.Number).Int64()
		again[string(e.Op)] = v
	}
	if again["r"] != versions[0] || again["u"] != versions[1] || again["d"] != versions[2] {
		t.Errorf("replay versions %v, first run %v", again, versions)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// deadLetters sums the dead-letter counter.
func deadLetters(reg *prometheus.Registry) float64 {
	mfs, _ := reg.Gather()
	n := -1.0
	for _, mf := range mfs {
		if mf.GetName() == "shouwang_transform_dead_letters_total" {
			n = 0
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// position writes each kind of source position as it always has (the canonical
// documents' meta source.position, compared by replays).
func TestPositionForms(t *testing.T) {
	long := strings.Repeat("x", 120)
	for _, c := range []struct {
		src  schemas.Source
		want string
	}{
		{schemas.Source{BinlogFile: "binlog.000012", BinlogPos: 4294967295, Seq: 7}, "binlog.000012:4294967295#7"},
		{schemas.Source{BinlogFile: long, BinlogPos: 1}, long + ":1#0"},
		{schemas.Source{LSN: "0/16B3748", Seq: -1}, "0/16B3748#-1"},
		{schemas.Source{File: "医保/2024-06.csv", Line: 123456789012}, "医保/2024-06.csv:123456789012"},
		{schemas.Source{Watermark: "2024-06-01T00:00:00Z"}, "watermark 2024-06-01T00:00:00Z"},
		{schemas.Source{}, ""},
	} {
		if got := position(&schemas.Envelope{Source: c.src}); got != c.want {
			t.Errorf("position(%+v) = %q, want %q", c.src, got, c.want)
		}
	}
}
