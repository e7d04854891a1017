package pipeline

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
)

// loopFixture is an input topic with n records and an empty output topic.
func loopFixture(t *testing.T, n int) (*testenv.KafkaCluster, bus.Options) {
	t.Helper()
	k := testenv.Kafka(t)
	opts := bus.Options{Brokers: k.Brokers()}
	if err := bus.EnsureTopics(context.Background(), opts, bus.TopicSpec{Name: "lp.in", Partitions: 2, ReplicationFactor: 1},
		bus.TopicSpec{Name: "lp.out", Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := bus.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msgs := make([]bus.Message, n)
	for i := range msgs {
		msgs[i] = bus.Message{Topic: "lp.in", Key: []byte(fmt.Sprintf("k%d", i%97)), Value: []byte(fmt.Sprintf("%06d", i))}
	}
	if err := p.Produce(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	return k, opts
}

// committed is the group's committed offsets on lp.in (partitions 0 and 1; -1: none).
func committed(t *testing.T, k *testenv.KafkaCluster, group string) [2]int64 {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(k.Brokers()...)}
	resp, err := cl.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{"lp.in": {0, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	out := [2]int64{-1, -1}
	for _, p := range resp.Topics["lp.in"] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// TestLoopCopiesInOrder: every record is produced once per delivery, each input
// partition's records keep their order in the output, and the committed offsets cover
// exactly what was produced.
func TestLoopCopiesInOrder(t *testing.T) {
	const n = 5000
	k, opts := loopFixture(t, n)
	cons, err := bus.NewGroupConsumer(opts, "lp-copy", []string{"lp.in"})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	prod, err := bus.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var done atomic.Int64
	batches := 0
	l := Loop{Consumer: cons, Producer: prod, BatchSize: 300, Linger: 5 * time.Millisecond,
		Transform: func(batch []bus.Message) []bus.Message {
			out := make([]bus.Message, len(batch))
			for i, m := range batch {
				// The input partition travels in the value, to check order per partition.
				out[i] = bus.Message{Topic: "lp.out", Key: m.Key, Value: []byte(fmt.Sprintf("%d/%s", m.Partition, m.Value))}
			}
			return out
		},
		Committed: func(c int, _ time.Time) {
			batches++
			if done.Add(int64(c)) >= n {
				cancel()
			}
		}}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if done.Load() != n {
		t.Fatalf("committed %d records, want %d", done.Load(), n)
	}
	if batches < 2 {
		t.Errorf("%d batches: the test did not exercise overlapping batches", batches)
	}
	c := committed(t, k, "lp-copy")
	if c[0]+c[1] != n {
		t.Errorf("committed offsets %v add up to %d, want %d", c, c[0]+c[1], n)
	}
	// Read the output back: per key (one input partition, one output partition) the
	// values must come in input order.
	rd, err := bus.NewGroupConsumer(opts, "lp-read", []string{"lp.out"})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	last := map[string]string{}
	seen := map[string]bool{}
	for len(seen) < n {
		m, err := rd.Fetch(rctx)
		if err != nil {
			t.Fatalf("read %d of %d outputs: %v", len(seen), n, err)
		}
		v := string(m.Value)
		if seen[v] {
			t.Fatalf("output %s produced twice", v)
		}
		seen[v] = true
		_, seq, _ := strings.Cut(v, "/")
		if prev := last[string(m.Key)]; prev != "" && seq < prev {
			t.Fatalf("key %s: %s after %s", m.Key, seq, prev)
		}
		last[string(m.Key)] = seq
	}
}

// TestLoopProduceFailureCommitsNothing: when producing fails, Run returns the error
// (it does not hang on the quiet input) and no offset of the failed batch, nor of any
// later one, is committed.
func TestLoopProduceFailureCommitsNothing(t *testing.T) {
	k, opts := loopFixture(t, 2000)
	cons, err := bus.NewGroupConsumer(opts, "lp-fail", []string{"lp.in"})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	popts := opts
	popts.RetryMaxElapsed = 2 * time.Second // the producer gives up sooner than its default
	prod, err := bus.NewProducer(popts)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	commits := 0
	l := Loop{Consumer: cons, Producer: prod, BatchSize: 500, Linger: 5 * time.Millisecond,
		Transform: func(batch []bus.Message) []bus.Message {
			out := make([]bus.Message, len(batch))
			for i, m := range batch {
				out[i] = bus.Message{Topic: "lp.missing", Key: m.Key, Value: m.Value} // no such topic: auto-creation is off
			}
			return out
		},
		Committed: func(int, time.Time) { commits++ }}
	err = l.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "offsets not committed") {
		t.Fatalf("Run = %v, want the produce error", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Run returned only at the test's deadline: %v", err)
	}
	if commits != 0 {
		t.Errorf("%d batches committed after a failed produce", commits)
	}
	if c := committed(t, k, "lp-fail"); c[0] > 0 || c[1] > 0 {
		t.Errorf("offsets %v committed, want none", c)
	}
}
