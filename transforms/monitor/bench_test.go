package monitor

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/gen/gentest"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/mapping"
	"github.com/shouwang/shouwang/transforms/pipeline"
	"github.com/shouwang/shouwang/transforms/rules"
	"github.com/shouwang/shouwang/transforms/warnings"
)

// benchHouseholds is the size of the province the stage benchmark generates
// (SHOUWANG_BENCH_HOUSEHOLDS, default 10,000: about 60,000 raw changes).
func benchHouseholds(b *testing.B) int {
	n := 10000
	if v := os.Getenv("SHOUWANG_BENCH_HOUSEHOLDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("SHOUWANG_BENCH_HOUSEHOLDS=%q: want a positive number of households", v)
		}
	}
	return n
}

var benchData *dataset

// benchDataset generates the benchmarks' province once per process.
func benchDataset(b *testing.B) *dataset {
	if benchData == nil {
		cfg := gentest.RoundTripConfig()
		cfg.Households = benchHouseholds(b)
		benchData = generate(b, cfg)
	}
	return benchData
}

// BenchmarkTransformStages measures, over the same raw changes of a generated province
// (national households, persons, measures and every department dataset) in the same
// kfake cluster and run, the throughput of
//
//   - passthrough: consume the raw topics and produce every record unchanged to the
//     canonical topic its mapping would write (batch, produce with acks, commit: the
//     transform pipeline's loop without the mapping);
//   - mapping: the transform pipeline (transforms/pipeline) with the embedded mappings;
//   - all_rules: the transform pipeline and the monitor (every default Q-rule,
//     department warning and comparison, state committed to bbolt) together, until the
//     monitor has committed every canonical change and evaluated every household
//     (out_events: the warnings, issues and discrepancies it produced);
//   - passthrough_2hop: the all_rules topology without its work, a reference for it:
//     the passthrough into the canonical topics and, at the same time, a second
//     passthrough from the canonical topics into the monitor's issue topic, until the
//     second has committed every record.
//
// Each iteration uses its own topic prefix, filled before the timer starts; events/s is
// raw changes per second. Run with -benchtime 1x -count N so that the three stages
// alternate:
//
//	go test -run '^$' -bench TransformStages -benchtime 1x -count 3 ./transforms/monitor/
func BenchmarkTransformStages(b *testing.B) {
	d := benchDataset(b)
	k := testenv.Kafka(b)
	brokers := k.Brokers()
	set, err := mapping.Load(mapping.Embedded, &mapping.Env{})
	if err != nil {
		b.Fatal(err)
	}
	var sets atomic.Pointer[mapping.Set]
	sets.Store(set)
	prod, err := bus.NewProducer(bus.Options{Brokers: brokers})
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	re, err := rules.Default()
	if err != nil {
		b.Fatal(err)
	}
	wr, err := warnings.Default()
	if err != nil {
		b.Fatal(err)
	}
	iter := 0
	// prepare fills a fresh prefix's raw topics and returns the prefix and a pipeline
	// worker over it (whose topic lists also serve the pass-through).
	prepare := func(b *testing.B, stage string) (string, *pipeline.Worker, *bus.Producer) {
		b.StopTimer()
		defer b.StartTimer()
		iter++
		p := fmt.Sprintf("b%d%s", iter, strings.ReplaceAll(stage, "_", ""))
		w, err := pipeline.New(pipeline.Options{Name: "bench", TopicPrefix: p, ClientID: p, Bus: bus.Options{Brokers: brokers},
			Producer: prod, Mappings: &sets, Now: func() time.Time { return d.now }})
		if err != nil {
			b.Fatal(err)
		}
		ins, outs := w.Topics()
		mon, err := New(Options{TopicPrefix: p, ClientID: p, Bus: bus.Options{Brokers: brokers}, Producer: prod, Rules: re, Warnings: wr,
			StatePath: filepath.Join(b.TempDir(), "monitor.db")})
		if err != nil {
			b.Fatal(err)
		}
		_, monOuts := mon.Topics()
		var specs []bus.TopicSpec
		for _, tp := range append(append(ins, outs...), monOuts...) {
			specs = append(specs, bus.TopicSpec{Name: tp, Partitions: 3, ReplicationFactor: 1})
		}
		if err := bus.EnsureTopics(context.Background(), bus.Options{Brokers: brokers}, specs...); err != nil {
			b.Fatal(err)
		}
		// A new producer: kafka-go's transport caches the topic metadata it has seen.
		prod, err := bus.NewProducer(bus.Options{Brokers: brokers})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { prod.Close() })
		w, err = pipeline.New(pipeline.Options{Name: "bench", TopicPrefix: p, ClientID: p, Bus: bus.Options{Brokers: brokers},
			Producer: prod, Mappings: &sets, Now: func() time.Time { return d.now }})
		if err != nil {
			b.Fatal(err)
		}
		msgs := make([]bus.Message, len(d.raw))
		for i, m := range d.raw {
			m.Topic = p + strings.TrimPrefix(m.Topic, prefix)
			msgs[i] = m
		}
		for i := 0; i < len(msgs); i += 5000 {
			if err := prod.Produce(context.Background(), msgs[i:min(i+5000, len(msgs))]...); err != nil {
				b.Fatal(err)
			}
		}
		return p, w, prod
	}
	n := int64(len(d.raw))
	report := func(b *testing.B) {
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(n), "events")
		b.ReportMetric(0, "ns/op")
	}

	// canonicalOf maps every raw topic of prefix p to the canonical topic its mapping
	// writes.
	canonicalOf := func(b *testing.B, p string, ins []string) map[string]string {
		out := map[string]string{}
		for _, tp := range ins {
			for _, m := range set.Mappings() {
				for _, src := range m.Inputs {
					if schemas.RawTopic(p, src[0], src[1]) == tp {
						out[tp] = m.Entity.Topic(p)
					}
				}
			}
			if out[tp] == "" {
				b.Fatalf("no output topic for %s", tp)
			}
		}
		return out
	}
	b.Run("passthrough", func(b *testing.B) {
		for range b.N {
			p, w, prod := prepare(b, "passthrough")
			ins, _ := w.Topics()
			if err := passThrough(b, brokers, p+"-passthrough", ins, canonicalOf(b, p, ins), prod, n); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("passthrough_2hop", func(b *testing.B) {
		for range b.N {
			p, w, prod := prepare(b, "passthrough_2hop")
			ins, _ := w.Topics()
			first := canonicalOf(b, p, ins)
			second := map[string]string{}
			for _, c := range first {
				second[c] = schemas.QualityIssueTopic(p)
			}
			hop := make(chan error, 1)
			go func() { hop <- passThrough(b, brokers, p+"-hop1", ins, first, prod, n) }()
			if err := passThrough(b, brokers, p+"-hop2", slices.Sorted(maps.Keys(second)), second, prod, n); err != nil {
				b.Fatal(err)
			}
			if err := <-hop; err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("mapping", func(b *testing.B) {
		for range b.N {
			_, w, _ := prepare(b, "mapping")
			ins, _ := w.Topics()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			waitCommitted(b, brokers, w.Group(), ins, n, done)
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	var events int64 // produced by the monitor in the last all_rules run
	b.Run("all_rules", func(b *testing.B) {
		for range b.N {
			p, w, prod := prepare(b, "all_rules")
			mon, err := New(Options{TopicPrefix: p, ClientID: p, Bus: bus.Options{Brokers: brokers}, Producer: prod, Rules: re, Warnings: wr,
				StatePath: filepath.Join(b.TempDir(), "monitor.db"), Now: func() time.Time { return d.now }, BatchSize: benchMonitorBatch})
			if err != nil {
				b.Fatal(err)
			}
			monIns, _ := mon.Topics()
			want := int64(0)
			for _, c := range d.changes {
				for _, tp := range monIns {
					if tp == schemas.CanonicalTopic(p, c.entity) {
						want++
					}
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 2)
			go func() { done <- w.Run(ctx) }()
			go func() { done <- mon.Run(ctx) }()
			deadline := time.Now().Add(20 * time.Minute)
			for {
				c, waiting := mon.Progress()
				if c >= want && waiting == 0 {
					break
				}
				select {
				case err := <-done:
					b.Fatalf("a worker stopped: %v", err)
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					b.Fatalf("monitor committed %d of %d changes (%d households waiting) in 20 minutes", c, want, waiting)
				}
			}
			cancel()
			for range 2 {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			_, monOuts := mon.Topics()
			events = 0
			for _, tp := range monOuts {
				c, err := bus.TopicSize(context.Background(), bus.Options{Brokers: brokers}, tp)
				if err != nil {
					b.Fatal(err)
				}
				events += c
			}
		}
		report(b)
		b.ReportMetric(float64(events), "out_events")
	})
}

// passThrough is the transform pipeline's loop (pipeline.Loop, same batch size and
// linger) with the mapping replaced by a copy to out[topic]; it returns once n records
// are committed.
func passThrough(b *testing.B, brokers []string, group string, ins []string, out map[string]string, prod *bus.Producer, n int64) error {
	cons, err := bus.NewGroupConsumer(bus.Options{Brokers: brokers}, group, ins)
	if err != nil {
		return err
	}
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var done atomic.Int64
	l := pipeline.Loop{Consumer: cons, Producer: prod, BatchSize: 1000, Linger: 20 * time.Millisecond,
		Transform: func(batch []bus.Message) []bus.Message {
			outs := make([]bus.Message, len(batch))
			for i, m := range batch {
				outs[i] = bus.Message{Topic: out[m.Topic], Key: m.Key, Value: m.Value, Headers: m.Headers}
			}
			return outs
		},
		Committed: func(k int, _ time.Time) {
			if done.Add(int64(k)) >= n {
				cancel()
			}
		}}
	if err := l.Run(ctx); err != nil {
		return err
	}
	if done.Load() < n {
		return fmt.Errorf("pass-through: %d of %d records in 20 minutes", done.Load(), n)
	}
	return nil
}

// waitCommitted polls the group's committed offsets on topics (3 partitions each, all
// starting at 0) until they add up to n.
func waitCommitted(b *testing.B, brokers []string, group string, topics []string, n int64, done <-chan error) {
	b.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...)}
	req := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for _, tp := range topics {
		req.Topics[tp] = []int{0, 1, 2}
	}
	deadline := time.Now().Add(20 * time.Minute)
	for {
		resp, err := cl.OffsetFetch(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		var sum int64
		for _, ps := range resp.Topics {
			for _, p := range ps {
				if p.CommittedOffset > 0 {
					sum += p.CommittedOffset
				}
			}
		}
		if sum >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("group %s committed %d of %d records in 20 minutes", group, sum, n)
		}
		select {
		case err := <-done:
			b.Fatalf("worker stopped after %d of %d records: %v", sum, n, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// benchMonitorBatch is the monitor's batch size in the all_rules stage
// (SHOUWANG_BENCH_MONITOR_BATCH; 0: the default).
var benchMonitorBatch = func() int { n, _ := strconv.Atoi(os.Getenv("SHOUWANG_BENCH_MONITOR_BATCH")); return n }()

// BenchmarkTransformCPU measures the transform pipeline's per-change work alone
// (decode the raw envelope, map, validate, encode the canonical envelope) over the
// stage benchmark's raw changes, in batches of 1,000 on every core, without Kafka.
//
//	go test -run '^$' -bench TransformCPU ./transforms/monitor/
func BenchmarkTransformCPU(b *testing.B) {
	d := benchDataset(b)
	w, _ := offlinePipeline(b, d)
	msgs := make([]bus.Message, len(d.raw))
	for i, m := range d.raw {
		m.Offset = int64(i)
		msgs[i] = m
	}
	b.ResetTimer()
	for range b.N {
		for i := 0; i < len(msgs); i += 1000 {
			out := w.Transform(msgs[i:min(i+1000, len(msgs))])
			if len(out) == 0 {
				b.Fatal("no output")
			}
		}
	}
	b.ReportMetric(float64(len(msgs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(msgs))/float64(b.N), "ns/event")
}

// offlinePipeline returns a transform pipeline worker with the embedded mappings for
// calling Transform directly, and its producer (which reaches no broker).
func offlinePipeline(tb testing.TB, d *dataset) (*pipeline.Worker, *bus.Producer) {
	set, err := mapping.Load(mapping.Embedded, &mapping.Env{})
	if err != nil {
		tb.Fatal(err)
	}
	var sets atomic.Pointer[mapping.Set]
	sets.Store(set)
	prod, err := bus.NewProducer(bus.Options{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { prod.Close() })
	w, err := pipeline.New(pipeline.Options{Name: "bench", TopicPrefix: prefix, ClientID: prefix, Producer: prod, Mappings: &sets,
		Now: func() time.Time { return d.now }})
	if err != nil {
		tb.Fatal(err)
	}
	return w, prod
}

// monitorInput returns a monitor over the default rules (not running) and the
// canonical changes the embedded mappings make of d's raw changes, with the offsets
// of their partitions.
func monitorInput(tb testing.TB, d *dataset) (*Worker, []bus.Message) {
	pw, prod := offlinePipeline(tb, d)
	re, err := rules.Default()
	if err != nil {
		tb.Fatal(err)
	}
	wr, err := warnings.Default()
	if err != nil {
		tb.Fatal(err)
	}
	mon, err := New(Options{TopicPrefix: prefix, ClientID: prefix, Producer: prod, Rules: re, Warnings: wr,
		StatePath: filepath.Join(tb.TempDir(), "unused.db"), Now: func() time.Time { return d.now }})
	if err != nil {
		tb.Fatal(err)
	}
	var canon []bus.Message
	for i := 0; i < len(d.raw); i += 1000 {
		batch := make([]bus.Message, 0, 1000)
		for j, m := range d.raw[i:min(i+1000, len(d.raw))] {
			m.Offset = int64(i + j)
			batch = append(batch, m)
		}
		for _, m := range pw.Transform(batch) {
			if _, ok := mon.kinds[m.Topic]; ok {
				canon = append(canon, m)
			}
		}
	}
	if len(canon) == 0 {
		tb.Fatal("the mappings made no canonical changes")
	}
	offsets := map[string]int64{}
	for i := range canon {
		k := offsetKey(canon[i].Topic, canon[i].Partition)
		canon[i].Offset = offsets[k]
		offsets[k]++
	}
	return mon, canon
}

// BenchmarkMonitorCPU measures the monitor's own goroutine without Kafka: the canonical
// changes the embedded mappings make of a generated province (a 3,000-household one
// with SHOUWANG_BENCH_HOUSEHOLDS=3000) are applied in batches of the default batch
// size into a fresh state file, every waiting household is evaluated, and each batch is
// committed (fsync included) — the all_rules stage's monitor work, without consuming
// the input and producing the events.
func BenchmarkMonitorCPU(b *testing.B) {
	d := benchDataset(b)
	mon, canon := monitorInput(b, d)
	events := 0
	b.ResetTimer()
	for it := range b.N {
		b.StopTimer()
		st, err := openState(filepath.Join(b.TempDir(), fmt.Sprintf("monitor%d.db", it)))
		if err != nil {
			b.Fatal(err)
		}
		r := mon.newRun(st)
		b.StartTimer()
		commit := func() {
			r.st.offsets = r.position()
			if err := r.st.commit(r.out); err != nil {
				b.Fatal(err)
			}
			events += len(r.out)
			r.out = r.out[:0]
		}
		for i := 0; i < len(canon); i += mon.o.BatchSize {
			for _, m := range canon[i:min(i+mon.o.BatchSize, len(canon))] {
				mon.applied[offsetKey(m.Topic, m.Partition)] = m.Offset + 1
				if err := r.apply(m); err != nil {
					b.Fatal(err)
				}
			}
			commit()
		}
		for r.st.len(bucketDirty) > 0 {
			if err := r.evaluateWaiting(); err != nil {
				b.Fatal(err)
			}
			commit()
		}
		b.StopTimer()
		st.close()
		b.StartTimer()
	}
	b.ReportMetric(float64(len(canon))*float64(b.N)/b.Elapsed().Seconds(), "changes/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(canon))/float64(b.N), "ns/change")
	b.ReportMetric(float64(events)/float64(b.N), "events")
}
