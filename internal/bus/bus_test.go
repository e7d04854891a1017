package bus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/shouwang/shouwang/internal/testenv"
)

// newCluster starts a private kfake broker for one test.
func newCluster(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func testOpts(brokers []string) Options {
	return Options{Brokers: brokers, ClientID: "bus-test", RetryMaxElapsed: 3 * time.Second}
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustEnsure(t testing.TB, ctx context.Context, o Options, specs ...TopicSpec) {
	t.Helper()
	if err := EnsureTopics(ctx, o, specs...); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
}

func TestProduceConsumeKeyOrderAcrossPartitions(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	o := testOpts(newCluster(t))
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	mustEnsure(t, ctx, o, TopicSpec{Name: "t.a", Partitions: 4}, TopicSpec{Name: "t.b", Partitions: 2})

	p, err := NewProducer(o)
	if err != nil {
		t.Fatal(err)
	}
	const keys, perKey = 20, 25
	var msgs []Message
	for s := 0; s < perKey; s++ {
		for k := 0; k < keys; k++ {
			topic := "t.a"
			if k%5 == 0 {
				topic = "t.b" // several topics in one call
			}
			msgs = append(msgs, Message{Topic: topic, Key: []byte(fmt.Sprintf("k%02d", k)),
				Value: []byte(fmt.Sprintf(`{"seq":%d}`, s)), Headers: []Header{{Key: "schema", Value: []byte("v1")}}})
		}
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		t.Fatalf("Produce: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, reg, "shouwang_bus_produced_messages_total", "t.b"); got != float64(4*perKey) {
		t.Errorf("produced metric for t.b = %v, want %d", got, 4*perKey)
	}

	c, err := NewGroupConsumer(o, "g-order", []string{"t.a", "t.b"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	next := map[string]int{}
	partOf := map[string]int{}
	parts := map[string]bool{}
	for i := 0; i < len(msgs); i++ {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch %d: %v", i, err)
		}
		k := string(m.Key)
		var seq int
		fmt.Sscanf(string(m.Value), `{"seq":%d}`, &seq)
		if seq != next[k] {
			t.Fatalf("key %s: got seq %d, want %d (order broken)", k, seq, next[k])
		}
		next[k]++
		if p, ok := partOf[k]; ok && p != m.Partition {
			t.Fatalf("key %s in partitions %d and %d", k, p, m.Partition)
		}
		partOf[k] = m.Partition
		parts[fmt.Sprintf("%s/%d", m.Topic, m.Partition)] = true
		if m.Header("schema") != "v1" {
			t.Fatalf("header lost: %+v", m.Headers)
		}
	}
	if len(parts) < 4 {
		t.Errorf("keys landed in only %d partitions: %v", len(parts), parts)
	}
	for k, n := range next {
		if n != perKey {
			t.Errorf("key %s: %d messages, want %d", k, n, perKey)
		}
	}
}

func TestCommitResume(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	o := testOpts(newCluster(t))
	mustEnsure(t, ctx, o, TopicSpec{Name: "t.resume", Partitions: 1})
	p, err := NewProducer(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []Message
	for i := 0; i < 10; i++ {
		msgs = append(msgs, Message{Topic: "t.resume", Key: []byte("k"), Value: []byte(fmt.Sprint(i))})
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	c1, err := NewGroupConsumer(o, "g-resume", []string{"t.resume"})
	if err != nil {
		t.Fatal(err)
	}
	var got []Message
	for i := 0; i < 7; i++ {
		m, err := c1.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	// Only the first 4 are done; 5..7 were fetched but not committed.
	if err := c1.Commit(ctx, got[:4]...); err != nil {
		t.Fatal(err)
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}

	c2, err := NewGroupConsumer(o, "g-resume", []string{"t.resume"})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	m, err := c2.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Value) != "4" || m.Offset != 4 {
		t.Fatalf("resumed at value %q offset %d, want the first uncommitted message 4", m.Value, m.Offset)
	}
}

func TestEnsureTopicsIdempotentAndPartitions(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	o := testOpts(newCluster(t))
	specs := []TopicSpec{
		{Name: "sc.canonical.household", Partitions: 6, Config: map[string]string{"cleanup.policy": "compact"}},
		{Name: "sc.dlq.sink", Partitions: 1},
	}
	for i := 0; i < 2; i++ {
		if err := EnsureTopics(ctx, o, specs...); err != nil {
			t.Fatalf("EnsureTopics run %d: %v", i+1, err)
		}
	}
	for _, s := range specs {
		n, err := Partitions(ctx, o, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if n != s.Partitions {
			t.Errorf("%s: %d partitions, want %d", s.Name, n, s.Partitions)
		}
	}
	// An invalid spec is reported with its topic name.
	// An invalid name is reported with the topic named.
	err := EnsureTopics(ctx, o, TopicSpec{Name: "bad topic/x", Partitions: 1})
	if err == nil || !strings.Contains(err.Error(), `"bad topic/x"`) {
		t.Errorf("EnsureTopics with an invalid name: %v, want an error naming the topic", err)
	}
	if _, err := Partitions(ctx, o, "no.such.topic"); err == nil || !strings.Contains(err.Error(), "no.such.topic") {
		t.Errorf("Partitions of a missing topic: %v, want an error naming it", err)
	}
}

func TestProduceMissingTopicClearError(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	o := testOpts(newCluster(t))
	o.RetryMaxElapsed = 500 * time.Millisecond
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	p, err := NewProducer(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Produce(ctx, Message{Topic: "sc.raw.typo", Key: []byte("1"), Value: []byte("x")})
	var perr *ProduceError
	if !errors.As(err, &perr) {
		t.Fatalf("err = %v (%T), want *ProduceError", err, err)
	}
	if len(perr.Failed) != 1 || perr.Failed[0].Topic != "sc.raw.typo" || perr.Failed[0].Index != 0 {
		t.Fatalf("Failed = %+v", perr.Failed)
	}
	if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("errors.Is(UnknownTopicOrPartition) = false for %v", err)
	}
	if !strings.Contains(err.Error(), "EnsureTopics") || !strings.Contains(err.Error(), "sc.raw.typo") {
		t.Errorf("message does not say what to do: %v", err)
	}
	if got := counterValue(t, reg, "shouwang_bus_produce_errors_total", "sc.raw.typo"); got != 1 {
		t.Errorf("produce_errors_total = %v, want 1", got)
	}
}

func TestProduceOversizedMessageFailsAlone(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	o := testOpts(newCluster(t, kfake.SeedTopics(1, "t.big")))
	o.BatchBytes = 4096
	p, err := NewProducer(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Produce(ctx,
		Message{Topic: "t.big", Value: []byte("small")},
		Message{Topic: "t.big", Value: make([]byte, 10000)},
		Message{Topic: "t.big", Value: []byte("small2")})
	var perr *ProduceError
	if !errors.As(err, &perr) || len(perr.Failed) != 1 || perr.Failed[0].Index != 1 {
		t.Fatalf("err = %v, want a ProduceError for message 1 only", err)
	}
	if !errors.Is(err, kafka.MessageSizeTooLarge) {
		t.Errorf("not MessageSizeTooLarge: %v", err)
	}
	n, err := lastOffset(ctx, o, "t.big", 0)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("high watermark %d, want 2 (the two small messages)", n)
	}
}

func lastOffset(ctx context.Context, o Options, topic string, partition int) (int64, error) {
	conn, err := kafka.DialLeader(ctx, "tcp", o.Brokers[0], topic, partition)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.ReadLastOffset()
}

func counterValue(t testing.TB, reg *prometheus.Registry, name, topic string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "topic" && l.GetValue() == topic {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestSASLPlain(t *testing.T) {
	testSASL(t, "PLAIN", SASLPlain)
}

func TestSASLScram(t *testing.T) {
	testSASL(t, "SCRAM-SHA-256", SASLScramSHA256)
	testSASL(t, "SCRAM-SHA-512", SASLScramSHA512)
}

// testSASL checks that the mechanism authenticates with the right password and is
// refused with a wrong one, against kfake's SASL implementation.
func testSASL(t *testing.T, kfakeMech, mech string) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	brokers := newCluster(t, kfake.EnableSASL(), kfake.Superuser(kfakeMech, "shouwang", "s3cret"), kfake.SeedTopics(1, "t.sasl"))
	good := testOpts(brokers)
	good.SASLMechanism, good.Username, good.Password = mech, "shouwang", "s3cret"
	p, err := NewProducer(good)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Produce(ctx, Message{Topic: "t.sasl", Value: []byte("hello")}); err != nil {
		t.Fatalf("produce with valid %s credentials: %v", mech, err)
	}

	bad := good
	bad.Password = "wrong"
	bad.RetryMaxElapsed = -1
	bp, err := NewProducer(bad)
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	if err := bp.Produce(ctx, Message{Topic: "t.sasl", Value: []byte("hello")}); err == nil {
		t.Fatal("produce with a wrong password succeeded")
	}
}

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want string // substring of the error, "" for valid
	}{
		{"minimal", Options{Brokers: []string{"k:9092"}}, ""},
		{"no brokers", Options{}, "brokers"},
		{"broker without port", Options{Brokers: []string{"kafka"}}, "brokers[0]"},
		{"plain without password", Options{Brokers: []string{"k:1"}, SASLMechanism: "plain", Username: "u"}, "sasl.password"},
		{"unknown mechanism", Options{Brokers: []string{"k:1"}, SASLMechanism: "gssapi"}, "sasl.mechanism"},
		{"scram ok", Options{Brokers: []string{"k:1"}, SASLMechanism: "scram-sha-256", Username: "u", Password: "p"}, ""},
		{"scram without username", Options{Brokers: []string{"k:1"}, SASLMechanism: "scram-sha-512", Password: "p"}, "sasl.username"},
		{"credentials without mechanism", Options{Brokers: []string{"k:1"}, Username: "u"}, "sasl.mechanism"},
		{"cert without key", Options{Brokers: []string{"k:1"}, CertFile: "c.pem"}, "tls.cert_file"},
		{"bad partitioner", Options{Brokers: []string{"k:1"}, Partitioner: "crc32"}, "partitioner"},
		{"bad compression", Options{Brokers: []string{"k:1"}, Compression: "brotli"}, "compression"},
		{"fnv1a ok", Options{Brokers: []string{"k:1"}, Partitioner: PartitionerFNV1a, Compression: "zstd"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := NewProducer(Options{Brokers: []string{"k:1"}, CAFile: "/nonexistent/ca.pem"}); err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
		t.Errorf("missing CA file: %v", err)
	}
}

// TopicSize sees a topic created after an earlier call (it reads fresh metadata; the
// demo once shared kafka-go's default transport, whose cached metadata reported a new
// topic as empty for seconds) and names a missing topic.
func TestTopicSize(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	o := testOpts(newCluster(t, kfake.SeedTopics(2, "t.first")))
	if n, err := TopicSize(ctx, o, "t.first"); err != nil || n != 0 {
		t.Fatalf("TopicSize of an empty topic = %d, %v; want 0", n, err)
	}
	if err := EnsureTopics(ctx, o, TopicSpec{Name: "t.later", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []Message
	for i := range 7 {
		msgs = append(msgs, Message{Topic: "t.later", Key: []byte(fmt.Sprint(i)), Value: []byte("v")})
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if n, err := TopicSize(ctx, o, "t.later"); err != nil || n != 7 {
		t.Errorf("TopicSize of a topic created and filled after the first call = %d, %v; want 7", n, err)
	}
	if _, err := TopicSize(ctx, o, "no.such.topic"); err == nil || !strings.Contains(err.Error(), "no.such.topic") {
		t.Errorf("TopicSize of a missing topic: %v, want an error naming it", err)
	}
}

func TestPartitionConsumerSeeksAndRebalances(t *testing.T) {
	ctx := ctxFor(t, 90*time.Second)
	o := testOpts(newCluster(t, kfake.SeedTopics(4, "t.part")))
	p, err := NewProducer(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []Message
	for i := 0; i < 400; i++ {
		msgs = append(msgs, Message{Topic: "t.part", Key: []byte(fmt.Sprintf("key-%d", i)), Value: []byte("v")})
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	// "Stored" offsets: partition 0 resumes at offset 5, the others have nothing stored.
	offsets := func(_ context.Context, topic string, partition int) (int64, bool, error) {
		if partition == 0 {
			return 5, true, nil
		}
		return 0, false, nil
	}
	type seen struct {
		member string
		part   int
		offset int64
	}
	var mu sync.Mutex
	var log []seen
	starts := map[string]map[int]int64{}
	handler := func(member string) PartitionFunc {
		return func(ctx context.Context, pt *Partition) error {
			mu.Lock()
			if starts[member] == nil {
				starts[member] = map[int]int64{}
			}
			starts[member][pt.ID] = pt.StartOffset
			mu.Unlock()
			for {
				m, err := pt.Fetch(ctx)
				if err != nil {
					return ctx.Err() // generation over
				}
				mu.Lock()
				log = append(log, seen{member, m.Partition, m.Offset})
				mu.Unlock()
				if err := pt.Commit(m); err != nil && ctx.Err() == nil {
					return err
				}
			}
		}
	}

	ctxA, stopA := context.WithCancel(ctx)
	pcA, err := NewPartitionConsumer(o, "g-part", []string{"t.part"}, offsets)
	if err != nil {
		t.Fatal(err)
	}
	doneA := make(chan error, 1)
	go func() { doneA <- pcA.Run(ctxA, handler("A")) }()
	waitFor(t, ctx, func() bool { mu.Lock(); defer mu.Unlock(); return len(starts["A"]) == 4 })
	mu.Lock()
	if got := starts["A"][0]; got != 5 {
		t.Errorf("partition 0 started at %d, want stored offset 5", got)
	}
	mu.Unlock()

	ctxB, stopB := context.WithCancel(ctx)
	pcB, err := NewPartitionConsumer(o, "g-part", []string{"t.part"}, offsets)
	if err != nil {
		t.Fatal(err)
	}
	doneB := make(chan error, 1)
	go func() { doneB <- pcB.Run(ctxB, handler("B")) }()
	// After the rebalance each member holds two of the four partitions.
	waitFor(t, ctx, func() bool { mu.Lock(); defer mu.Unlock(); return len(starts["B"]) == 2 })
	// Every message from the stored/initial offsets on was delivered at least once.
	waitFor(t, ctx, func() bool {
		mu.Lock()
		defer mu.Unlock()
		got := map[[2]int64]bool{}
		for _, s := range log {
			got[[2]int64{int64(s.part), s.offset}] = true
		}
		return len(got) == len(msgs)-5
	})

	stopA()
	stopB()
	for _, ch := range []chan error{doneA, doneB} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-ctx.Done():
			t.Fatal("Run did not end after cancel")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range log {
		if s.part == 0 && s.offset < 5 {
			t.Fatalf("partition 0 delivered offset %d below the stored offset 5", s.offset)
		}
	}
}

func waitFor(t testing.TB, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not reached before the test deadline")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestShutdownNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		ctx := ctxFor(t, 30*time.Second)
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t.leak"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		o := testOpts(c.ListenAddrs())
		p, err := NewProducer(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Produce(ctx, Message{Topic: "t.leak", Key: []byte("a"), Value: []byte("1")}); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Produce(ctx, Message{Topic: "t.leak", Value: []byte("x")}); !errors.Is(err, ErrClosed) {
			t.Errorf("Produce after Close = %v, want ErrClosed", err)
		}
		gc, err := NewGroupConsumer(o, "g-leak", []string{"t.leak"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gc.Fetch(ctx); err != nil {
			t.Fatal(err)
		}
		if err := gc.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	// Settle: connections and kfake goroutines end asynchronously after Close.
	var after int
	for i := 0; i < 200; i++ {
		after = runtime.NumGoroutine()
		if after <= before {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	n := runtime.Stack(buf, true)
	t.Fatalf("goroutines: %d before, %d after close\n%s", before, after, buf[:n])
}

func TestStartEmbedded(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	e, err := StartEmbedded(ctx, EmbeddedOptions{Partitions: 3, Topics: []string{"sc.warning"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	n, err := Partitions(ctx, testOpts(e.Brokers()), "sc.warning")
	if err != nil || n != 3 {
		t.Fatalf("Partitions = %d, %v; want 3", n, err)
	}
	e.Close()
	e.Close() // idempotent
}

// A session timeout the brokers refuse (below group.min.session.timeout.ms) is logged as
// an error naming the config key, not only retried at debug level for ever.
func TestRefusedSessionTimeoutLogged(t *testing.T) {
	var buf testenv.SyncBuffer
	o := testOpts(newCluster(t, kfake.SeedTopics(1, "t.sess"))) // kfake's floor: 6 s
	o.SessionTimeout = 2 * time.Second
	o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	none := func(context.Context, string, int) (int64, bool, error) { return 0, false, nil }
	pc, err := NewPartitionConsumer(o, "g.sess", []string{"t.sess"}, none)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = pc.Run(ctx, func(ctx context.Context, p *Partition) error { return nil })
	out := buf.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "kafka.session_timeout") {
		t.Fatalf("run: %v; log has no error naming kafka.session_timeout:\n%s", err, out)
	}
}

// The exclusive balancer gives every partition to the member of highest priority
// (ties: the lowest ID; a member without priority loses) and an empty assignment to
// the others.
func TestExclusiveBalancer(t *testing.T) {
	prio := func(p int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(p)) }
	parts := []kafka.Partition{{Topic: "a", ID: 0}, {Topic: "a", ID: 1}, {Topic: "b", ID: 0}}
	all := map[string][]int{"a": {0, 1}, "b": {0}}
	for _, c := range []struct {
		name    string
		members []kafka.GroupMember
		winner  string
	}{
		{"highest priority", []kafka.GroupMember{{ID: "m1", UserData: prio(5)}, {ID: "m2", UserData: prio(9)}, {ID: "m3", UserData: prio(0)}}, "m2"},
		{"tie: lowest id", []kafka.GroupMember{{ID: "m2", UserData: prio(0)}, {ID: "m1", UserData: prio(0)}}, "m1"},
		{"no priority loses", []kafka.GroupMember{{ID: "m0"}, {ID: "m9", UserData: prio(-3)}}, "m9"},
		{"alone", []kafka.GroupMember{{ID: "x"}}, "x"},
	} {
		got := exclusiveBalancer{}.AssignGroups(c.members, parts)
		if len(got) != len(c.members) {
			t.Errorf("%s: assignments for %d of %d members", c.name, len(got), len(c.members))
		}
		for id, a := range got {
			switch {
			case id == c.winner && !reflect.DeepEqual(a, all):
				t.Errorf("%s: winner %s got %v, want %v", c.name, id, a, all)
			case id != c.winner && len(a) != 0:
				t.Errorf("%s: %s got %v, want nothing (winner %s)", c.name, id, a, c.winner)
			}
		}
	}
	if got := (exclusiveBalancer{}).AssignGroups(nil, parts); len(got) != 0 {
		t.Errorf("no members: %v", got)
	}
}
