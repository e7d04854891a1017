package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// runWorker runs a sink worker over k until the test ends.
func runWorker(t *testing.T, k *testenv.KafkaCluster, dsn string, reg prometheus.Registerer) *Worker {
	t.Helper()
	busOpts := bus.Options{Brokers: k.Brokers()}
	prod, err := bus.NewProducer(busOpts)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(WorkerOptions{Options: Options{Name: "provincial", TopicPrefix: prefix, ClientID: "test", Bus: busOpts, Producer: prod,
		Entities: []string{"person", "warning"}, BatchSize: 300, RetryInitial: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond},
		DSN: dsn, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		prod.Close()
	})
	return w
}

func produce(t *testing.T, k *testenv.KafkaCluster, msgs []bus.Message) {
	t.Helper()
	prod, err := bus.NewProducer(bus.Options{Brokers: k.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.Produce(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func personMsgs(t *testing.T, from, to int, version int64) []bus.Message {
	var out []bus.Message
	for i := from; i < to; i++ {
		key := fmt.Sprintf("P%05d", i)
		out = append(out, bus.Message{Topic: topicOf("person"), Key: []byte(key), Value: envelope(t, "person", schemas.OpUpdate, person(key, version, fmt.Sprint("v", version)))})
	}
	return out
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			sum += value(m)
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func kafkaFor(t *testing.T) *testenv.KafkaCluster {
	return testenv.Kafka(t, testenv.WithTopics(3, topicOf("person"), topicOf("warning"), schemas.DLQTopic(prefix, "sink")))
}

// A crash between the database commit and the Kafka commit: the rows and their
// offsets are committed, the group's offsets are not. The restarted sink resumes from
// the stored offsets: nothing is applied twice and nothing is missed.
func TestKillBetweenDBAndKafkaCommit(t *testing.T) {
	p, db := testenv.PostgresDatabase(t)
	k := testenv.Kafka(t, testenv.WithTopics(1, topicOf("person"), topicOf("warning"), schemas.DLQTopic(prefix, "sink")))
	produce(t, k, personMsgs(t, 0, 100, 1))
	// The first 60 changes as a sink that died after its database commit applied them.
	s := newSink(t, Options{Name: "provincial", Entities: []string{"person", "warning"}})
	pool := open(t, p, db, s)
	var recs []Record
	for i, m := range personMsgs(t, 0, 60, 1) {
		m.Offset = int64(i)
		recs = append(recs, s.Decode(m))
	}
	if _, err := s.Apply(context.Background(), pool, recs); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	runWorker(t, k, p.ConnString(db), reg)
	testenv.Eventually(t, 30*time.Second, "all 100 persons stored", func() (bool, string) {
		n := scalar[int](t, pool, "SELECT count(*) FROM fpjc.person")
		return n == 100, fmt.Sprint(n, " persons")
	})
	time.Sleep(200 * time.Millisecond)
	if n := counter(t, reg, "shouwang_sink_rows_total", map[string]string{"result": "applied"}); n != 40 {
		t.Errorf("the restarted sink applied %v changes, want exactly the 40 it had not", n)
	}
	if n := counter(t, reg, "shouwang_sink_rows_total", map[string]string{"result": "stale"}); n != 0 {
		t.Errorf("the restarted sink re-read %v changes it had applied", n)
	}
}

// A database that goes down makes the sink wait and retry (readiness false, the
// database-up gauge 0); when it is back, everything lands exactly once.
func TestDatabaseDownWaitsAndRetries(t *testing.T) {
	p, db := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{})
	k := kafkaFor(t)
	reg := prometheus.NewRegistry()
	w := runWorker(t, k, p.ConnString(db), reg)
	produce(t, k, personMsgs(t, 0, 500, 1))
	s := newSink(t, Options{Name: "provincial", Entities: []string{"person", "warning"}})
	pool := open(t, p, db, s)
	count := func() (bool, string) {
		var n int
		err := pool.QueryRow(context.Background(), "SELECT count(*) FROM fpjc.person WHERE version = 2").Scan(&n)
		return err == nil && n == 500, fmt.Sprint(n, " persons at version 2, ", err)
	}
	testenv.Eventually(t, 30*time.Second, "first 500 persons", func() (bool, string) {
		n := scalar[int](t, pool, "SELECT count(*) FROM fpjc.person")
		return n == 500, fmt.Sprint(n)
	})
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	produce(t, k, personMsgs(t, 0, 500, 2))
	testenv.Eventually(t, 30*time.Second, "readiness false while the database is down", func() (bool, string) {
		return !w.Ready() && counter(t, reg, "shouwang_sink_database_up", nil) == 0, fmt.Sprint("ready ", w.Ready())
	})
	time.Sleep(time.Second) // several failed attempts
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "all 500 persons at version 2 after the database is back", count)
	testenv.Eventually(t, 10*time.Second, "ready again", func() (bool, string) { return w.Ready(), "" })
	if n := counter(t, reg, "shouwang_sink_batches_total", map[string]string{"result": "failed"}); n < 1 {
		t.Errorf("no failed batch attempt counted while the database was down")
	}
	if n := counter(t, reg, "shouwang_sink_rows_total", map[string]string{"result": "applied"}); n != 1000 {
		t.Errorf("%v changes applied, want 1000 (500 creates, 500 updates, none twice)", n)
	}
}

// A database that turns read-only makes the sink wait and retry, never skip; when it
// takes writes again everything lands.
func TestReadOnlyDatabaseWaits(t *testing.T) {
	p, db := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{})
	k := kafkaFor(t)
	reg := prometheus.NewRegistry()
	w := runWorker(t, k, p.ConnString(db), reg)
	s := newSink(t, Options{Name: "provincial", Entities: []string{"person", "warning"}})
	pool := open(t, p, db, s)
	produce(t, k, personMsgs(t, 0, 100, 1))
	testenv.Eventually(t, 30*time.Second, "first 100 persons", func() (bool, string) {
		n := scalar[int](t, pool, "SELECT count(*) FROM fpjc.person")
		return n == 100, fmt.Sprint(n)
	})
	readOnly := func(on bool) {
		t.Helper()
		q := "ALTER SYSTEM SET default_transaction_read_only = on"
		if !on {
			q = "ALTER SYSTEM RESET default_transaction_read_only"
		}
		if err := p.Exec(context.Background(), db, q, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	readOnly(true)
	time.Sleep(200 * time.Millisecond) // the backends take the reload
	produce(t, k, personMsgs(t, 0, 100, 2))
	testenv.Eventually(t, 30*time.Second, "failed attempts while read-only", func() (bool, string) {
		n := counter(t, reg, "shouwang_sink_batches_total", map[string]string{"result": "failed"})
		return n >= 2 && !w.Ready(), fmt.Sprint(n, " failed, ready ", w.Ready())
	})
	if n := scalar[int](t, pool, "SELECT count(*) FROM fpjc.person WHERE version = 2"); n != 0 {
		t.Fatalf("%d rows written while read-only", n)
	}
	readOnly(false)
	testenv.Eventually(t, 30*time.Second, "all 100 persons at version 2", func() (bool, string) {
		n := scalar[int](t, pool, "SELECT count(*) FROM fpjc.person WHERE version = 2")
		return n == 100, fmt.Sprint(n)
	})
	if n := counter(t, reg, "shouwang_dlq_records_total", nil); n != 0 {
		t.Errorf("%v dead letters: a read-only database is not the records' fault", n)
	}
}
