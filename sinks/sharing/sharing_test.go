package sharing

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

const prefix = "ts"

var signingKey = []byte("0123456789abcdef-signing")

// platform is a sharing-platform endpoint that checks the token and signature, applies
// each idempotency key once (a repeated key gets the first answer again) and injects
// faults from a script: one entry per request.
type platform struct {
	t      *testing.T
	mu     sync.Mutex
	faults []string // "500", "429", "timeout", "reset", "" (answer)
	// applied counts how often each key's batch was applied; records how often each
	// record was accepted; answers the first answer per key; keys every request's key.
	applied  map[string]int
	records  map[string]int
	answers  map[string][]byte
	requests int
	keys     []string
}

func newPlatform(t *testing.T, faults ...string) (*platform, *httptest.Server) {
	p := &platform{t: t, faults: faults, applied: map[string]int{}, records: map[string]int{}, answers: map[string][]byte{}}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

func (p *platform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := r.Header.Get("Idempotency-Key")
	p.mu.Lock()
	p.requests++
	p.keys = append(p.keys, key)
	fault := ""
	if len(p.faults) > 0 {
		fault, p.faults = p.faults[0], p.faults[1:]
	}
	p.mu.Unlock()
	switch fault {
	case "500":
		http.Error(w, "internal error", 500)
		return
	case "429":
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", 429)
		return
	case "timeout":
		time.Sleep(400 * time.Millisecond) // the client gives up at 200ms
		return
	case "reset":
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
		return
	}
	if r.Header.Get("Authorization") != "Bearer tok" {
		http.Error(w, "bad token", 401)
		return
	}
	if want := Sign(signingKey, r.URL.Path, r.Header.Get("X-Shouwang-Timestamp"), key, body); r.Header.Get("X-Shouwang-Signature") != want {
		http.Error(w, "bad signature", 401)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.answers[key]; ok {
		w.Write(a) // a repeat: the first answer, nothing applied again
		return
	}
	var b Batch
	if err := json.Unmarshal(body, &b); err != nil || b.ID != key {
		http.Error(w, "bad batch", 400)
		return
	}
	type result struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Reason string `json:"reason,omitempty"`
	}
	var res []result
	for _, it := range b.Records {
		if it.Data["name"] == "POISON" {
			http.Error(w, "record "+it.ID+": name is not allowed", 422) // refuses the whole request
			return
		}
	}
	for _, it := range b.Records {
		if it.Data["name"] == "BAD" {
			res = append(res, result{ID: it.ID, Status: "rejected", Reason: "name BAD fails the platform's check"})
			continue
		}
		if id, _ := it.Data["id_no"].(string); strings.HasPrefix(id, "5134") && !strings.Contains(id, "*") {
			http.Error(w, "a full ID number was pushed", 400)
			return
		}
		p.records[it.ID]++
		res = append(res, result{ID: it.ID, Status: "accepted"})
	}
	a, _ := json.Marshal(map[string]any{"results": res})
	p.answers[key] = a
	p.applied[key]++
	w.Write(a)
}

func personMsg(t *testing.T, key string, version int64, name string) bus.Message {
	p := schemas.Person{Meta: schemas.Meta{Key: key, Version: version}, PersonNo: key, HouseholdNo: "H1", RegionCode: "513423101001",
		IDNo: "513423198503120027", Name: name, Phone: "13812345678"}
	b, _ := json.Marshal(p)
	doc, err := schemas.DecodeObject(b)
	if err != nil {
		t.Fatal(err)
	}
	e := schemas.Envelope{V: 1, Op: schemas.OpUpdate, Source: schemas.Source{System: "t", Kind: "transform", Table: "person"},
		Key: map[string]any{"key": key}, After: doc, Schema: schemas.SchemaRef{Name: "person", Version: 1}, TsMs: 1}
	v, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return bus.Message{Topic: schemas.CanonicalTopic(prefix, "person"), Key: []byte(key), Value: v}
}

func newWorker(t *testing.T, k *testenv.KafkaCluster, url, state string) *Worker {
	t.Helper()
	prot, err := pii.New(pii.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := bus.Options{Brokers: k.Brokers()}
	prod, err := bus.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	w, err := New(Options{Name: "share", TopicPrefix: prefix, ClientID: "t", Entities: []string{"person"}, Protect: prot,
		Client: ClientOptions{URL: url + "/api/base-data", Token: "tok", SigningKey: signingKey, Timeout: 200 * time.Millisecond,
			RetryInitial: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, MaxElapsed: 30 * time.Second, BreakerFailures: 3, BreakerCooldown: 100 * time.Millisecond},
		StatePath: state, Bus: opts, Producer: prod, BatchSize: 50, Linger: 50 * time.Millisecond, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func run(t *testing.T, w *Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}
}

// An endpoint that fails every way (500s, timeouts, 429 with Retry-After, connection
// resets) ends with every record delivered once per idempotency key; a record the
// platform rejects and one whose request it refuses (4xx) are marked failed with the
// reason, and the others are delivered.
func TestPushThroughFaults(t *testing.T) {
	k := testenv.Kafka(t, testenv.WithTopics(2, schemas.CanonicalTopic(prefix, "person"), schemas.DLQTopic(prefix, "sink")))
	plat, srv := newPlatform(t, "500", "timeout", "429", "reset", "500", "500", "500", "", "reset", "timeout", "500")
	var msgs []bus.Message
	for i := 0; i < 300; i++ {
		name := "好"
		switch i {
		case 17:
			name = "BAD"
		case 123:
			name = "POISON"
		}
		msgs = append(msgs, personMsg(t, fmt.Sprintf("P%03d", i), 1, name))
	}
	produce(t, k, msgs)
	state := filepath.Join(t.TempDir(), "share.db")
	w := newWorker(t, k, srv.URL, state)
	stop := run(t, w)
	testenv.Eventually(t, 60*time.Second, "every record settled", func() (bool, string) {
		plat.mu.Lock()
		n := len(plat.records)
		plat.mu.Unlock()
		return n == 298, fmt.Sprint(n, " records accepted")
	})
	// The receipts are written right after the answer; wait for the last batch's.
	testenv.Eventually(t, 10*time.Second, "receipts", func() (bool, string) {
		w.mu.Lock()
		var n int64
		for _, o := range w.next {
			n += o
		}
		w.mu.Unlock()
		return n == 300, fmt.Sprint(n, " offsets stored")
	})
	stop()
	plat.mu.Lock()
	for key, n := range plat.applied {
		if n != 1 {
			t.Errorf("batch %s applied %d times", key, n)
		}
	}
	for id, n := range plat.records {
		if n != 1 {
			t.Errorf("record %s accepted %d times", id, n)
		}
	}
	if plat.requests <= len(plat.applied) {
		t.Errorf("%d requests for %d batches: the faults were not retried", plat.requests, len(plat.applied))
	}
	plat.mu.Unlock()
	batches, accepted, rejected, err := Totals(state)
	if err != nil {
		t.Fatal(err)
	}
	if accepted != 298 || rejected != 2 || batches == 0 {
		t.Errorf("receipts: %d batches, %d accepted, %d rejected; want 298 and 2", batches, accepted, rejected)
	}
	dead := readDLQ(t, k, 2)
	for _, want := range []string{"name BAD fails the platform's check", "HTTP 422: record person:P123:1: name is not allowed"} {
		if !strings.Contains(strings.Join(dead, "\n"), want) {
			t.Errorf("no dead letter says %q: %q", want, dead)
		}
	}
}

// A worker stopped while its batch is undelivered resends the same batch, with the same
// idempotency key, when it starts again; the platform applies it once.
func TestRestartResendsTheSameBatch(t *testing.T) {
	k := testenv.Kafka(t, testenv.WithTopics(1, schemas.CanonicalTopic(prefix, "person"), schemas.DLQTopic(prefix, "sink")))
	faults := make([]string, 200)
	for i := range faults {
		faults[i] = "500"
	}
	plat, srv := newPlatform(t, faults...)
	var msgs []bus.Message
	for i := 0; i < 40; i++ {
		msgs = append(msgs, personMsg(t, fmt.Sprintf("P%03d", i), 1, "好"))
	}
	produce(t, k, msgs)
	state := filepath.Join(t.TempDir(), "share.db")
	stop := run(t, newWorker(t, k, srv.URL, state))
	testenv.Eventually(t, 30*time.Second, "attempts failing", func() (bool, string) {
		plat.mu.Lock()
		defer plat.mu.Unlock()
		return plat.requests >= 3, fmt.Sprint(plat.requests)
	})
	stop()
	plat.mu.Lock()
	plat.faults = nil // the platform recovers
	first := plat.keys[0]
	plat.mu.Unlock()
	w := newWorker(t, k, srv.URL, state)
	stop = run(t, w)
	testenv.Eventually(t, 30*time.Second, "all 40 delivered", func() (bool, string) {
		plat.mu.Lock()
		defer plat.mu.Unlock()
		return len(plat.records) == 40, fmt.Sprint(len(plat.records))
	})
	stop()
	plat.mu.Lock()
	defer plat.mu.Unlock()
	if plat.applied[first] != 1 {
		t.Fatalf("batches applied: %v; want the first run's batch %s applied once by the second run", plat.applied, first)
	}
	for id, n := range plat.records {
		if n != 1 {
			t.Errorf("record %s accepted %d times", id, n)
		}
	}
}

func TestSignature(t *testing.T) {
	a := Sign([]byte("k"), "/p", "1", "id", []byte("{}"))
	if len(a) != 64 || a != Sign([]byte("k"), "/p", "1", "id", []byte("{}")) {
		t.Fatalf("signature %q is not a stable 64-hex HMAC-SM3", a)
	}
	for _, b := range []string{Sign([]byte("k2"), "/p", "1", "id", []byte("{}")), Sign([]byte("k"), "/q", "1", "id", []byte("{}")),
		Sign([]byte("k"), "/p", "2", "id", []byte("{}")), Sign([]byte("k"), "/p", "1", "id2", []byte("{}")), Sign([]byte("k"), "/p", "1", "id", []byte("{ }"))} {
		if a == b {
			t.Errorf("signature does not cover every part")
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, "x": 0, now.Add(5 * time.Second).Format(http.TimeFormat): 5 * time.Second} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", h, got, want)
		}
	}
}

func produce(t *testing.T, k *testenv.KafkaCluster, msgs []bus.Message) {
	t.Helper()
	p, err := bus.NewProducer(bus.Options{Brokers: k.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Produce(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func readDLQ(t *testing.T, k *testenv.KafkaCluster, n int) []string {
	t.Helper()
	c, err := bus.NewGroupConsumer(bus.Options{Brokers: k.Brokers()}, "dlq-reader", []string{schemas.DLQTopic(prefix, "sink")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for len(out) < n {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("after %d dead letters: %v", len(out), err)
		}
		var rec schemas.DLQRecord
		if err := json.Unmarshal(m.Value, &rec); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(rec.Payload), "513423198503120027") {
			t.Errorf("a dead letter carries a full ID number: %s", rec.Payload)
		}
		out = append(out, rec.Reason)
	}
	return out
}

// After BreakerFailures failed attempts in a row the circuit opens (no request for the
// cooldown), and the first answered request closes it.
func TestCircuitBreaker(t *testing.T) {
	plat, srv := newPlatform(t, "500", "500", "500", "500")
	var mu sync.Mutex
	var events []bool
	var times []time.Time
	c, err := NewClient(ClientOptions{URL: srv.URL + "/x", Token: "tok", SigningKey: signingKey, RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond,
		BreakerFailures: 2, BreakerCooldown: 300 * time.Millisecond,
		OnBreaker: func(open bool) { mu.Lock(); events = append(events, open); mu.Unlock() },
		OnAttempt: func(string) { mu.Lock(); times = append(times, time.Now()); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Send(context.Background(), Batch{ID: "b1", Records: []Item{{ID: "person:A:1", Entity: "person", Key: "A", Version: 1, Op: "upsert", Data: map[string]any{"name": "甲"}}}})
	if err != nil || len(out) != 1 || !out[0].OK {
		t.Fatalf("send: %v %+v", out, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(events) != "[true false]" {
		t.Errorf("breaker events %v, want opened then closed", events)
	}
	// Attempts 3 and 5 follow an opening: each waits out the cooldown.
	if len(times) != 5 || times[2].Sub(times[1]) < 250*time.Millisecond || times[4].Sub(times[3]) < 250*time.Millisecond {
		t.Errorf("attempt times %v: want the cooldown before attempts 3 and 5", times)
	}
	if plat.requests != 5 {
		t.Errorf("%d requests, want 5", plat.requests)
	}
}

// A 401 (or 403, 404) is the sink's configuration, not the records': Send fails and
// nothing is marked rejected.
func TestUnauthorizedStopsNotRejects(t *testing.T) {
	_, srv := newPlatform(t)
	c, err := NewClient(ClientOptions{URL: srv.URL + "/x", Token: "wrong", SigningKey: signingKey})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Send(context.Background(), Batch{ID: "b1", Records: []Item{{ID: "person:A:1"}, {ID: "person:B:1"}}})
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") || out != nil {
		t.Fatalf("Send = %v, %v; want an error naming HTTP 401 and no outcomes", out, err)
	}
}

// A Retry-After longer than the time left of MaxElapsed is still waited for (up to
// MaxElapsed): the platform is called again no earlier than it asked, and Send gives
// up only after an attempt made once MaxElapsed has passed.
func TestRetryAfterBeyondMaxElapsed(t *testing.T) {
	plat, srv := newPlatform(t, "429", "429", "429")
	var mu sync.Mutex
	var times []time.Time
	c, err := NewClient(ClientOptions{URL: srv.URL + "/x", Token: "tok", SigningKey: signingKey, RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond,
		MaxElapsed: 700 * time.Millisecond, BreakerFailures: 100,
		OnAttempt: func(string) { mu.Lock(); times = append(times, time.Now()); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Send(context.Background(), Batch{ID: "b1", Records: []Item{{ID: "person:A:1", Entity: "person", Key: "A", Version: 1, Op: "upsert", Data: map[string]any{"name": "甲"}}}})
	if err == nil || !strings.Contains(err.Error(), "not delivered after 2 attempts") {
		t.Fatalf("Send: %v; want it to give up after the second attempt", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The platform answers 429 with Retry-After: 1 (second); MaxElapsed caps the wait at 700ms.
	if len(times) != 2 || times[1].Sub(times[0]) < 650*time.Millisecond {
		t.Errorf("attempt times %v: want a second attempt after the capped Retry-After", times)
	}
	if plat.requests != 2 {
		t.Errorf("%d requests, want 2", plat.requests)
	}
}
