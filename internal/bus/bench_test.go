package bus

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// benchValue is a ~1 KiB JSON envelope-like value.
var benchValue = []byte(`{"op":"u","source":{"system":"gbqzk","db":"fpjc","table":"pop_member","file":"binlog.000042","pos":123456789},"key":{"id":"x"},"after":{` +
	strings.Repeat(`"field_xxxxxxxx":"value_yyyyyyyyyyyyyyyy",`, 22) + `"end":1},"ts_ms":1700000000000}`)

const benchBatch = 1000

// BenchmarkProduce writes b.N keyed ~1 KiB messages with acks=all in calls of
// benchBatch messages to a 6-partition topic on kfake.
func BenchmarkProduce(b *testing.B) {
	ctx := context.Background()
	o := testOpts(newCluster(b, kfake.SeedTopics(6, "bench.produce")))
	p, err := NewProducer(o)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	batch := make([]Message, benchBatch)
	b.SetBytes(int64(len(benchValue)))
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; done += benchBatch {
		n := min(benchBatch, b.N-done)
		for i := 0; i < n; i++ {
			batch[i] = Message{Topic: "bench.produce", Key: []byte(fmt.Sprintf("k%d", done+i)), Value: benchValue}
		}
		if err := p.Produce(ctx, batch[:n]...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkConsume reads b.N pre-produced messages through a consumer group, committing
// every benchBatch messages.
func BenchmarkConsume(b *testing.B) {
	ctx := context.Background()
	o := testOpts(newCluster(b, kfake.SeedTopics(6, "bench.consume")))
	p, err := NewProducer(o)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]Message, 0, benchBatch)
	for i := 0; i < b.N; i++ {
		batch = append(batch, Message{Topic: "bench.consume", Key: []byte(fmt.Sprintf("k%d", i)), Value: benchValue})
		if len(batch) == benchBatch || i == b.N-1 {
			if err := p.Produce(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	p.Close()
	c, err := NewGroupConsumer(o, "bench", []string{"bench.consume"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(int64(len(benchValue)))
	b.ResetTimer()
	start := time.Now()
	pending := make([]Message, 0, benchBatch)
	for i := 0; i < b.N; i++ {
		m, err := c.Fetch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		pending = append(pending, m)
		if len(pending) == benchBatch || i == b.N-1 {
			if err := c.Commit(ctx, pending...); err != nil {
				b.Fatal(err)
			}
			pending = pending[:0]
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
