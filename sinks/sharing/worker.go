package sharing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/metrics"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/schemas"
)

// DefaultFields are the base-data fields (防返贫基础数据) agreed with the sharing
// platform, per entity; Options.Fields replaces them.
var DefaultFields = map[string][]string{
	"household": {"household_no", "region_code", "village_code", "household_type", "monitoring_category", "head_name", "head_id_no",
		"member_count", "risks", "identified_ym", "risk_eliminated", "elimination_method", "eliminated_ym", "per_capita_net_income", "relocated"},
	"person": {"person_no", "household_no", "region_code", "id_type", "id_no", "name", "sex", "birth_date", "relation_to_head",
		"health", "disability_type", "disability_grade", "dibao_status", "tekun_status", "deceased", "phone"},
	"monitoring_episode": {"household_no", "region_code", "identified_ym", "category", "risks", "eliminated", "eliminated_ym", "status"},
}

// protected fields and the kind of value they hold.
var protected = map[string]pii.Kind{"id_no": pii.KindIDNumber, "head_id_no": pii.KindIDNumber, "phone": pii.KindPhone,
	"monitoring_contact_phone": pii.KindPhone, "disability_cert_no": pii.KindDisabilityCert}

// Options configures a Worker.
type Options struct {
	// Name is the sink's name (sinks[].name): its consumer group suffix and state.
	Name        string
	TopicPrefix string
	ClientID    string
	// Entities pushed (default household and person); Fields per entity (default
	// DefaultFields).
	Entities []string
	Fields   map[string][]string
	// Protect and Method protect ID numbers and phones in what is pushed (default
	// mask; sm3 gives a pseudonym the platform can join on, sm4 a reversible token).
	Protect *pii.Protector
	Method  pii.Method
	// Client posts the batches.
	Client ClientOptions
	// StatePath is the sink's bbolt file: stored offsets, the batch being delivered
	// and the receipts.
	StatePath string
	// Bus reaches Kafka; Producer sends dead letters (records the platform refuses or
	// that cannot be read) to <prefix>.dlq.sink.
	Bus      bus.Options
	Producer *bus.Producer
	// BatchSize records per request (default 200); Linger to fill one (default 200ms).
	BatchSize int
	Linger    time.Duration
	// Registerer, Logger (nil: none, slog.Default()); SetReady is told readiness
	// changes; Now stamps dead letters.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	SetReady   func(ready bool, reason string)
	Now        func() time.Time
}

// scrub is the protector's ScrubText, or nil.
func (pr *projector) scrub() func(string) string {
	if pr.protect == nil {
		return nil
	}
	return pr.protect.ScrubText
}

// projector turns canonical changes into base-data records.
type projector struct {
	topics  map[string]string // topic → entity
	fields  map[string][]string
	protect *pii.Protector
	method  pii.Method
}

func newProjector(name, prefix string, entities []string, fields map[string][]string, protect *pii.Protector, method pii.Method) (*projector, error) {
	if len(entities) == 0 {
		entities = []string{"household", "person"}
	}
	if fields == nil {
		fields = DefaultFields
	}
	if method == "" {
		method = pii.MethodMask
	}
	switch method {
	case pii.MethodMask, pii.MethodSM3, pii.MethodSM4, pii.MethodRaw:
	default:
		return nil, fmt.Errorf("sharing %s: protect %q: use mask, sm3, sm4 or raw", name, method)
	}
	if method != pii.MethodRaw && protect == nil {
		return nil, fmt.Errorf("sharing %s: protect %s needs a protector", name, method)
	}
	if protect != nil && (method == pii.MethodSM3 || method == pii.MethodSM4) {
		// Fail at start-up, not on every record, when the key is missing.
		if _, err := protect.ProtectWith(method, pii.KindIDNumber, "110105194912310025"); err != nil {
			return nil, fmt.Errorf("sharing %s: protect %s: %w (add a key for it under pii.keys)", name, method, err)
		}
	}
	pr := &projector{topics: map[string]string{}, fields: fields, protect: protect, method: method}
	infos := map[string]schemas.EntityInfo{}
	for _, e := range schemas.Entities() {
		infos[e.Name] = e
	}
	for _, e := range entities {
		info, ok := infos[e]
		if !ok {
			return nil, fmt.Errorf("sharing %s: %q is not a canonical entity", name, e)
		}
		if len(fields[e]) == 0 {
			return nil, fmt.Errorf("sharing %s: no base-data fields agreed for entity %s (fields.%s)", name, e, e)
		}
		pr.topics[info.Topic(prefix)] = e
	}
	return pr, nil
}

// Topics are the consumed topics, sorted.
func (pr *projector) Topics() []string {
	var out []string
	for t := range pr.topics {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Worker consumes canonical topics and pushes their base data.
type Worker struct {
	o      Options
	log    *slog.Logger
	client *Client
	*projector
	m *sharingMetrics

	mu   sync.Mutex
	next map[string]int64 // stored next offset per "topic/partition"
	// settled counts the receipts of this run: batches, records accepted, rejected.
	settled [3]int
}

// Receipts counts the batches and records this process has settled since it started
// (Totals reads every receipt of a state file not in use).
func (w *Worker) Receipts() (batches, accepted, rejected int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.settled[0], w.settled[1], w.settled[2]
}

type sharingMetrics struct {
	records  *prometheus.CounterVec
	requests *prometheus.CounterVec
	open     prometheus.Gauge
	batch    prometheus.Histogram
	dlq      *prometheus.CounterVec
}

// New checks the options.
func New(o Options) (*Worker, error) {
	if o.Name == "" {
		return nil, errors.New("sharing: the sink has no name (sinks[].name)")
	}
	if o.StatePath == "" {
		return nil, fmt.Errorf("sharing %s: no state file", o.Name)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 200
	}
	if o.Linger <= 0 {
		o.Linger = 200 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	pr, err := newProjector(o.Name, o.TopicPrefix, o.Entities, o.Fields, o.Protect, o.Method)
	if err != nil {
		return nil, err
	}
	w := &Worker{o: o, log: o.Logger.With("sink", o.Name), projector: pr, next: map[string]int64{}}
	labels := prometheus.Labels{"sink": o.Name}
	reg := o.Registerer
	w.m = &sharingMetrics{
		records: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_sharing_records_total",
			Help: "Base-data records settled by the sharing platform, by entity and result (accepted, rejected).", ConstLabels: labels}, []string{"entity", "result"})),
		requests: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_sharing_requests_total",
			Help: "Push attempts, by result: ok, retry (429, 5xx, timeout, broken connection), refused (other 4xx).", ConstLabels: labels}, []string{"result"})),
		open: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "shouwang_sharing_circuit_open",
			Help: "1 while the circuit breaker holds pushes back after consecutive failures.", ConstLabels: labels})),
		batch: metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shouwang_sharing_batch_seconds",
			Help: "Time to deliver one batch, retries included.", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)})),
		dlq: metrics.DLQCounter(reg),
	}
	co := o.Client
	co.Logger = w.log
	co.OnAttempt = func(r string) { w.m.requests.WithLabelValues(r).Inc() }
	co.OnBreaker = func(open bool) {
		if open {
			w.m.open.Set(1)
			w.ready(false, "circuit open: the sharing platform keeps failing")
		} else {
			w.m.open.Set(0)
			w.ready(true, "")
		}
	}
	c, err := NewClient(co)
	if err != nil {
		return nil, fmt.Errorf("sharing %s: %w", o.Name, err)
	}
	w.client = c
	return w, nil
}

// Name is the sink's name; Group its consumer group.
func (w *Worker) Name() string  { return w.o.Name }
func (w *Worker) Group() string { return w.o.ClientID + "-sink-" + w.o.Name }

func (w *Worker) ready(v bool, reason string) {
	if w.o.SetReady != nil {
		w.o.SetReady(v, reason)
	}
}

// pending is the batch being delivered, kept in the state file from before the first
// attempt until its outcome is recorded, so that a crash resends the same batch with
// the same idempotency key.
type pending struct {
	Batch Batch            `json:"batch"`
	Next  map[string]int64 `json:"next"` // next offset per topic/partition once settled
	Dead  []deadRecord     `json:"dead,omitempty"`
}

// deadRecord is a consumed change that cannot be pushed.
type deadRecord struct {
	Msg    bus.Message `json:"msg"`
	Reason string      `json:"reason"`
}

// Receipt is what the state file keeps of one settled record, for reconciling pushed
// counts with the platform's.
type Receipt struct {
	Batch   string `json:"batch"`
	OK      bool   `json:"ok"`
	Reason  string `json:"reason,omitempty"`
	AtMs    int64  `json:"at_ms"`
	Version int64  `json:"version"`
}

// BatchReceipt is what the state file keeps of one delivered batch.
type BatchReceipt struct {
	Records  int   `json:"records"`
	Accepted int   `json:"accepted"`
	Rejected int   `json:"rejected"`
	AtMs     int64 `json:"at_ms"`
}

var (
	bucketOffsets  = []byte("offsets")
	bucketPending  = []byte("pending")
	bucketBatches  = []byte("batches")
	bucketRecords  = []byte("records")
	pendingKey     = []byte("batch")
	stateBucketSet = [][]byte{bucketOffsets, bucketPending, bucketBatches, bucketRecords}
)

func openState(path string) (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("sharing: state file %s is locked by another process (a second sink with the same name?)", path)
		}
		return nil, fmt.Errorf("sharing: open state file %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range stateBucketSet {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Totals counts the receipts in a state file: batches, records accepted and rejected.
func Totals(path string) (batches int, accepted, rejected int, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		return 0, 0, 0, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketBatches); b != nil {
			batches = b.Stats().KeyN
		}
		b := tx.Bucket(bucketRecords)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var r Receipt
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.OK {
				accepted++
			} else {
				rejected++
			}
			return nil
		})
	})
	return batches, accepted, rejected, err
}

// projected is a consumed change as a base-data record, or why it cannot be one.
type projected struct {
	it  *Item
	err error
}

// Run consumes until ctx is done (nil) or a batch cannot be delivered within the
// client's MaxElapsed (the error; the batch is resent by the next Run).
func (w *Worker) Run(ctx context.Context) error {
	db, err := openState(w.o.StatePath)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOffsets).ForEach(func(k, v []byte) error {
			n, err := strconv.ParseInt(string(v), 10, 64)
			w.next[string(k)] = n
			return err
		})
	}); err != nil {
		return fmt.Errorf("sharing %s: read state: %w", w.o.Name, err)
	}
	var pend *pending
	if err := db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPending).Get(pendingKey)
		if v == nil {
			return nil
		}
		pend = &pending{}
		return json.Unmarshal(v, pend)
	}); err != nil {
		return fmt.Errorf("sharing %s: read the pending batch: %w", w.o.Name, err)
	}
	if pend != nil {
		w.log.Info("sharing: resending the batch a previous run did not settle", "batch", pend.Batch.ID, "records", len(pend.Batch.Records))
		if err := w.deliver(ctx, db, pend); err != nil {
			return w.stopped(ctx, err)
		}
	}

	pc, err := bus.NewPartitionConsumer(w.o.Bus, w.Group(), w.Topics(), func(_ context.Context, topic string, partition int) (int64, bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if n, ok := w.next[fmt.Sprintf("%s/%d", topic, partition)]; ok {
			return n, true, nil
		}
		return bus.FirstOffset, true, nil
	})
	if err != nil {
		return fmt.Errorf("sharing %s: %w", w.o.Name, err)
	}
	w.ready(true, "")
	w.log.Info("sharing sink started", "topics", w.Topics(), "url", w.o.Client.URL, "group", w.Group())
	err = bus.Batches(ctx, pc, bus.BatchOptions[projected]{Size: w.o.BatchSize, Linger: w.o.Linger, Decode: func(m bus.Message) projected {
		it, err := w.project(m)
		return projected{it: it, err: err}
	}}, func(ctx context.Context, batch []bus.Fetched[projected]) error {
		pend := w.pendingOf(batch)
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := json.Marshal(pend)
			if err != nil {
				return err
			}
			return tx.Bucket(bucketPending).Put(pendingKey, b)
		}); err != nil {
			return fmt.Errorf("sharing %s: keep the batch before sending it: %w", w.o.Name, err)
		}
		if err := w.deliver(ctx, db, pend); err != nil {
			return err
		}
		if err := bus.CommitLast(batch); err != nil && ctx.Err() == nil {
			w.log.Debug("sharing: group offset commit failed (the stored offset counts)", "err", err)
		}
		return nil
	})
	return w.stopped(ctx, err)
}

func (w *Worker) stopped(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return nil
	}
	w.ready(false, err.Error())
	return err
}

// pendingOf makes the batch of consumed items: the newest version of each record, an
// idempotency key naming the offsets it covers, and the unreadable changes.
func (w *Worker) pendingOf(batch []bus.Fetched[projected]) *pending {
	pend := &pending{Next: map[string]int64{}}
	first := map[string]int64{}
	at := map[string]int{}
	for _, f := range batch {
		it, m := f.V, f.Msg
		tp := fmt.Sprintf("%s/%d", m.Topic, m.Partition)
		if _, ok := first[tp]; !ok {
			first[tp] = m.Offset
		}
		pend.Next[tp] = max(pend.Next[tp], m.Offset+1)
		if it.err != nil {
			pend.Dead = append(pend.Dead, deadRecord{Msg: m, Reason: it.err.Error()})
			continue
		}
		k := it.it.Entity + "\x00" + it.it.Key
		if i, ok := at[k]; ok {
			if it.it.Version >= pend.Batch.Records[i].Version {
				pend.Batch.Records[i] = *it.it
			}
			continue
		}
		at[k] = len(pend.Batch.Records)
		pend.Batch.Records = append(pend.Batch.Records, *it.it)
	}
	var ranges []string
	for tp, f := range first {
		ranges = append(ranges, fmt.Sprintf("%s@%d-%d", tp, f, pend.Next[tp]))
	}
	sort.Strings(ranges)
	pend.Batch.ID = schemas.DeterministicID(append([]string{"sharing", w.o.Name}, ranges...)...)
	return pend
}

// deliver sends a pending batch, dead-letters what cannot be delivered, then records
// the receipts and the offsets and forgets the batch, in one state transaction.
func (w *Worker) deliver(ctx context.Context, db *bolt.DB, pend *pending) error {
	start := time.Now()
	var outs []Outcome
	if len(pend.Batch.Records) > 0 {
		var err error
		if outs, err = w.client.Send(ctx, pend.Batch); err != nil {
			return fmt.Errorf("sharing %s: %w", w.o.Name, err)
		}
	}
	w.m.batch.Observe(time.Since(start).Seconds())
	entityOf := map[string]Item{}
	for _, it := range pend.Batch.Records {
		entityOf[it.ID] = it
	}
	var dead []bus.Message
	for _, d := range pend.Dead {
		dead = append(dead, bus.DeadLetter(w.o.TopicPrefix, bus.DeadRecord("sink", "sink "+w.o.Name+": "+d.Reason, d.Msg, w.o.Now()), w.scrub()))
		w.m.dlq.WithLabelValues("sink", "contract").Inc()
	}
	accepted, rejected := 0, 0
	for _, o := range outs {
		it := entityOf[o.ID]
		if o.OK {
			accepted++
			w.m.records.WithLabelValues(it.Entity, "accepted").Inc()
			continue
		}
		rejected++
		w.m.records.WithLabelValues(it.Entity, "rejected").Inc()
		w.m.dlq.WithLabelValues("sink", "rejected").Inc()
		payload, _ := json.Marshal(it)
		rec := schemas.DLQRecord{Stage: "sink", Reason: "sink " + w.o.Name + ": refused by the sharing platform: " + o.Reason,
			Source: schemas.CanonicalTopic(w.o.TopicPrefix, it.Entity), Position: o.Batch, Key: it.Key, Payload: payload, TsMs: w.o.Now().UnixMilli()}
		dead = append(dead, bus.DeadLetter(w.o.TopicPrefix, rec, w.scrub()))
	}
	if len(dead) > 0 {
		if w.o.Producer == nil {
			return fmt.Errorf("sharing %s: %d records cannot be delivered and no dead-letter producer is configured", w.o.Name, len(dead))
		}
		if err := w.o.Producer.Produce(ctx, dead...); err != nil {
			return fmt.Errorf("sharing %s: send %d dead letters: %w", w.o.Name, len(dead), err)
		}
	}
	now := w.o.Now().UnixMilli()
	err := db.Update(func(tx *bolt.Tx) error {
		if len(outs) > 0 {
			br, _ := json.Marshal(BatchReceipt{Records: len(outs), Accepted: accepted, Rejected: rejected, AtMs: now})
			if err := tx.Bucket(bucketBatches).Put([]byte(pend.Batch.ID), br); err != nil {
				return err
			}
		}
		recs := tx.Bucket(bucketRecords)
		for _, o := range outs {
			rb, _ := json.Marshal(Receipt{Batch: o.Batch, OK: o.OK, Reason: o.Reason, AtMs: now, Version: entityOf[o.ID].Version})
			if err := recs.Put([]byte(o.ID), rb); err != nil {
				return err
			}
		}
		offs := tx.Bucket(bucketOffsets)
		for tp, n := range pend.Next {
			if old, err := strconv.ParseInt(string(offs.Get([]byte(tp))), 10, 64); err == nil && old > n {
				continue // never back: a later batch of this partition settled first
			}
			if err := offs.Put([]byte(tp), []byte(strconv.FormatInt(n, 10))); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketPending).Delete(pendingKey)
	})
	if err != nil {
		return fmt.Errorf("sharing %s: record the receipts of batch %s: %w", w.o.Name, pend.Batch.ID, err)
	}
	w.mu.Lock()
	for tp, n := range pend.Next {
		w.next[tp] = max(w.next[tp], n)
	}
	if len(outs) > 0 {
		w.settled[0]++
	}
	w.settled[1] += accepted
	w.settled[2] += rejected
	w.mu.Unlock()
	return nil
}

// project turns a canonical change into a base-data record of the agreed fields, ID
// numbers and phones protected.
func (pr *projector) project(m bus.Message) (*Item, error) {
	entity, ok := pr.topics[m.Topic]
	if !ok {
		return nil, fmt.Errorf("topic %s is not one of this sink's topics", m.Topic)
	}
	env, err := schemas.UnmarshalEnvelope(m.Value)
	if err != nil {
		return nil, fmt.Errorf("malformed payload: %v", err)
	}
	if env.Schema.Name != entity || env.Schema.Version != 1 {
		return nil, fmt.Errorf("unknown schema %s v%d on the topic of entity %s (this build reads v1)", env.Schema.Name, env.Schema.Version, entity)
	}
	op, doc := "upsert", env.After
	switch env.Op {
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
	case schemas.OpDelete:
		op, doc = "delete", env.Before
	default:
		return nil, fmt.Errorf("op %q is not pushed to the sharing platform", env.Op)
	}
	if doc == nil {
		doc = env.Key
	}
	key, _ := doc["key"].(string)
	vn, _ := doc["version"].(json.Number)
	version, err := vn.Int64()
	if key == "" || err != nil || version <= 0 {
		return nil, fmt.Errorf("no entity key or version (fields key and version): the change cannot be ordered")
	}
	if len(key) > 64 {
		return nil, fmt.Errorf("entity key of %d bytes: the sharing platform takes keys of at most 64", len(key))
	}
	it := &Item{ID: entity + ":" + key + ":" + strconv.FormatInt(version, 10), Entity: entity, Key: key, Version: version, Op: op}
	if op == "upsert" {
		it.Data = map[string]any{}
		for _, f := range pr.fields[entity] {
			v, ok := doc[f]
			if !ok {
				continue
			}
			if kind, sensitive := protected[f]; sensitive {
				s, _ := v.(string)
				if pr.method != pii.MethodRaw {
					if s, err = pr.protect.ProtectWith(pr.method, kind, s); err != nil {
						return nil, fmt.Errorf("field %s: %v", f, err)
					}
				}
				v = s
			}
			if t, ok := v.(string); ok && strings.ContainsRune(t, 0) {
				return nil, fmt.Errorf("field %s holds a NUL character, which the sharing platform's databases refuse", f)
			}
			it.Data[f] = v
		}
	}
	return it, nil
}
