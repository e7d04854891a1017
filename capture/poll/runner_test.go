package poll

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func TestRestartThroughRunnerPostgres(t *testing.T) { testRestart(t, pgBackend) }
func TestRestartThroughRunnerMariaDB(t *testing.T)  { testRestart(t, mariaBackend) }

// testRestart runs the source under the real runner against kfake, stops it, changes
// the view while it is down, restarts it from the saved position and checks that the
// topic, replayed, equals the view and repeats nothing beyond one batch.
func testRestart(t *testing.T, mk func(*testing.T) (*backend, string)) {
	b, state := mk(t)
	b.exec(t, b.seedRows(250))
	k := testenv.Kafka(t)
	opts := bus.Options{Brokers: k.Brokers()}
	ctx := context.Background()
	raw := schemas.RawTopic("pt", "dept", "person")
	if err := bus.EnsureTopics(ctx, opts, bus.TopicSpec{Name: raw, Partitions: 3, ReplicationFactor: 1},
		bus.TopicSpec{Name: schemas.DLQTopic("pt", "capture"), Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	prod, err := bus.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	positions, err := capture.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const runnerBatch = 60
	run := func(want int) {
		t.Helper()
		o := b.options("dept", state, nil)
		o.Queries[0].Interval = 50 * time.Millisecond
		o.Queries[0].DeleteDetection.Interval = 200 * time.Millisecond
		src, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		var n atomic.Int64
		done := make(chan struct{})
		r, err := capture.NewRunner(capture.RunnerOptions{Name: "dept", TopicPrefix: "pt", Source: src, Producer: prod,
			Positions: positions, BatchSize: runnerBatch,
			OnBatch: func(k int, _ capture.Position) {
				if n.Add(int64(k)) >= int64(want) {
					select {
					case <-done:
					default:
						close(done)
					}
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- r.Run(rctx) }()
		select {
		case <-done:
		case err := <-errc:
			t.Fatalf("runner stopped: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatalf("runner acknowledged %d of %d changes", n.Load(), want)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	run(250)
	// While the source is down: 20 updates, 10 inserts, 2 deletes.
	b.exec(t, fmt.Sprintf(`UPDATE person SET name = concat('u', id), updated_at = %s WHERE id <= 20`, b.ago(5)),
		fmt.Sprintf(`INSERT INTO person SELECT id + 250, concat('new', id), 1, birth, 1, %s FROM person WHERE id BETWEEN 21 AND 30`, b.ago(5)),
		`DELETE FROM person WHERE id IN (40, 41)`)
	run(32)

	// Replay the topic.
	c, err := bus.NewGroupConsumer(opts, "verify", []string{raw})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	state2 := map[string]string{}
	total := 0
	for {
		fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		m, err := c.Fetch(fctx)
		cancel()
		if err != nil {
			if total < 282 {
				t.Fatalf("fetched %d of at least 282 messages: %v", total, err)
			}
			break
		}
		total++
		e, err := schemas.UnmarshalEnvelope(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if e.Op == schemas.OpDelete {
			delete(state2, string(m.Key))
		} else {
			state2[string(m.Key)] = fmt.Sprint(e.After["name"])
		}
	}
	if total-282 > runnerBatch {
		t.Fatalf("%d messages for 282 changes: more repeats than one batch", total)
	}
	rows, err := b.db.QueryContext(ctx, `SELECT id, name FROM person`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := map[string]string{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprintf(`{"id":%d}`, id)] = name
	}
	if len(want) != len(state2) {
		t.Fatalf("replayed %d keys, view has %d", len(state2), len(want))
	}
	for k, v := range want {
		if state2[k] != v {
			t.Fatalf("key %s: replayed name %q, view has %q", k, state2[k], v)
		}
	}
	t.Logf("%d messages for 282 changes", total)
}
