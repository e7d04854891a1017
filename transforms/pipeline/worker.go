// Package pipeline runs one transform pipeline: it consumes raw topics in a consumer
// group, maps every change to its canonical entity (transforms/mapping), protects ID
// numbers and phones per target topic (internal/pii), and produces canonical envelopes;
// a change that cannot be mapped goes to <p>.dlq.transform with its field-level
// reasons. Offsets are committed only after Kafka acknowledged every output of the
// batch (at-least-once); each output carries a version derived from the raw record's
// offset, so redelivered and replayed changes repeat the same versions and consumers
// drop them (effectively once).
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/metrics"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/mapping"
)

// Options configures a Worker.
type Options struct {
	// Name is the pipeline name (consumer group <ClientID>-transform-<Name>, metrics).
	Name string
	// TopicPrefix is kafka.topic_prefix.
	TopicPrefix string
	// ClientID prefixes the consumer group.
	ClientID string
	// Bus reaches Kafka; Producer writes the outputs (acks=all).
	Bus      bus.Options
	Producer *bus.Producer
	// Mappings is the current mapping set; a hot reload swaps it (see Reloader).
	Mappings *atomic.Pointer[mapping.Set]
	// Inputs, when not empty, limits the pipeline to these (source, table) pairs of the
	// set; each must be mapped.
	Inputs [][2]string
	// Protect protects PII per target topic (nil: nothing is protected).
	Protect *pii.Protector
	// BatchSize is the most raw changes handled per produce and commit (default 1000);
	// Linger is how long a batch waits to fill (default 20ms).
	BatchSize int
	Linger    time.Duration
	// Registerer and Logger (nil: none, slog.Default()).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock for updated_ms (nil: time.Now).
	Now func() time.Time
}

// Worker is one running pipeline.
type Worker struct {
	o      Options
	log    *slog.Logger
	m      *workerMetrics
	topics map[string][2]string // raw topic → (source, table)
	// outTopics is the canonical topic of every entity (read-only once built).
	outTopics map[string]string
	// inCount and outCount are the per-topic (and op) counters of the hot path, looked
	// up once in New (a metric vector's lookup by labels costs more than the count).
	inCount  map[string]prometheus.Counter
	outCount map[string]map[schemas.Op]prometheus.Counter
}

// countIn counts a consumed change of topic.
func (w *Worker) countIn(topic string) {
	if c, ok := w.inCount[topic]; ok {
		c.Inc()
		return
	}
	w.m.in.WithLabelValues(topic).Inc()
}

// countOut counts a canonical change produced to topic.
func (w *Worker) countOut(topic string, op schemas.Op) {
	if c, ok := w.outCount[topic][op]; ok {
		c.Inc()
		return
	}
	w.m.out.WithLabelValues(topic, string(op)).Inc()
}

// lookUpCounters fills inCount and outCount for the worker's input topics and every
// entity's canonical topic.
func (w *Worker) lookUpCounters() {
	w.inCount = map[string]prometheus.Counter{}
	for tp := range w.topics {
		w.inCount[tp] = w.m.in.WithLabelValues(tp)
	}
	w.outCount = map[string]map[schemas.Op]prometheus.Counter{}
	for _, tp := range w.outTopics {
		ops := map[schemas.Op]prometheus.Counter{}
		for _, op := range []schemas.Op{schemas.OpCreate, schemas.OpUpdate, schemas.OpRead, schemas.OpDelete} {
			ops[op] = w.m.out.WithLabelValues(tp, string(op))
		}
		w.outCount[tp] = ops
	}
}

type workerMetrics struct {
	in, out, dlq, skipped *prometheus.CounterVec
	drift                 *prometheus.CounterVec
	batch                 prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, name string) *workerMetrics {
	labels := prometheus.Labels{"pipeline": name}
	return &workerMetrics{
		in: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_transform_records_in_total",
			Help: "Raw changes consumed by a transform pipeline, by input topic.", ConstLabels: labels}, []string{"topic"})),
		out: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_transform_records_out_total",
			Help: "Canonical changes produced, by output topic and op.", ConstLabels: labels}, []string{"topic", "op"})),
		dlq: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_transform_dead_letters_total",
			Help: "Changes sent to <prefix>.dlq.transform, by mapping and reason (mapping, schema_drift, no_mapping, decode).", ConstLabels: labels}, []string{"mapping", "reason"})),
		skipped: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_transform_skipped_total",
			Help: "Raw changes with no canonical counterpart (truncate and schema events), by input topic.", ConstLabels: labels}, []string{"topic"})),
		drift: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_transform_missing_columns_total",
			Help: "Changes whose source row lacked a mapped column (schema drift), by mapping and column.", ConstLabels: labels}, []string{"mapping", "column"})),
		batch: metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shouwang_transform_batch_seconds",
			Help: "Time from the first fetched change of a batch to its commit.", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)})),
	}
}

// New checks the options: every input of the current mapping set becomes an input
// topic.
func New(o Options) (*Worker, error) {
	if o.Name == "" || o.Producer == nil || o.Mappings == nil || o.Mappings.Load() == nil {
		return nil, errors.New("pipeline: Name, Producer and Mappings are required")
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.Linger <= 0 {
		o.Linger = 20 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Worker{o: o, log: o.Logger.With("pipeline", o.Name), m: newMetrics(o.Registerer, o.Name), topics: map[string][2]string{},
		outTopics: map[string]string{}}
	for _, e := range schemas.Entities() {
		w.outTopics[e.Name] = e.Topic(o.TopicPrefix)
	}
	set := o.Mappings.Load()
	if len(o.Inputs) > 0 {
		for _, in := range o.Inputs {
			if _, ok := set.For(in[0], in[1]); !ok {
				return nil, fmt.Errorf("pipeline %s: input %s.%s has no mapping in %s", o.Name, in[0], in[1], set.Where())
			}
			w.topics[schemas.RawTopic(o.TopicPrefix, in[0], in[1])] = in
		}
		w.lookUpCounters()
		return w, nil
	}
	for _, m := range set.Mappings() {
		for _, in := range m.Inputs {
			w.topics[schemas.RawTopic(o.TopicPrefix, in[0], in[1])] = in
		}
	}
	w.lookUpCounters()
	return w, nil
}

// Topics lists the raw input topics and the output topics (for topic creation).
func (w *Worker) Topics() (inputs, outputs []string) {
	seen := map[string]bool{}
	for t := range w.topics {
		inputs = append(inputs, t)
	}
	set := w.o.Mappings.Load()
	for _, in := range w.topics {
		m, _ := set.For(in[0], in[1])
		if t := m.Entity.Topic(w.o.TopicPrefix); !seen[t] {
			seen[t] = true
			outputs = append(outputs, t)
		}
	}
	sort.Strings(inputs)
	sort.Strings(outputs)
	return inputs, append(outputs, schemas.DLQTopic(w.o.TopicPrefix, "transform"))
}

// Group is the consumer group of the pipeline.
func (w *Worker) Group() string { return w.o.ClientID + "-transform-" + w.o.Name }

// Run consumes until ctx is done (nil) or producing or committing fails (the error;
// nothing after the last commit counts as done, so a restart redoes it).
func (w *Worker) Run(ctx context.Context) error {
	inputs, _ := w.Topics()
	cons, err := bus.NewGroupConsumer(w.o.Bus, w.Group(), inputs)
	if err != nil {
		return fmt.Errorf("pipeline %s: %w", w.o.Name, err)
	}
	defer cons.Close()
	w.log.Info("transform pipeline started", "inputs", len(inputs), "group", w.Group())
	l := Loop{Consumer: cons, Producer: w.o.Producer, BatchSize: w.o.BatchSize, Linger: w.o.Linger, Transform: w.Transform,
		Committed: func(_ int, start time.Time) { w.m.batch.Observe(time.Since(start).Seconds()) }}
	if err := l.Run(ctx); err != nil {
		return fmt.Errorf("pipeline %s: %w", w.o.Name, err)
	}
	return nil
}

// Loop is a transform worker's consume → transform → produce → commit loop. Batches
// overlap: while one batch is being produced and committed, the next is fetched and
// transformed. Batches are produced and committed strictly in order, and a batch's
// offsets are committed only after Kafka acknowledged all of its outputs, so after a
// failure or a kill nothing past the last commit counts as done.
type Loop struct {
	Consumer *bus.Consumer
	Producer *bus.Producer
	// BatchSize is the most input messages per batch; Linger how long a batch waits to
	// fill after its first message.
	BatchSize int
	Linger    time.Duration
	// Transform turns a batch into the messages to produce (it must not keep the
	// slice).
	Transform func(batch []bus.Message) []bus.Message
	// Committed, if set, is called after each commit with the batch size and the time
	// its first message was fetched.
	Committed func(n int, start time.Time)
}

type loopBatch struct {
	in, out []bus.Message
	start   time.Time
}

// Run runs until ctx is done (nil) or a fetch, produce or commit fails (the error).
func (l Loop) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One batch in flight and one waiting behind it bound what is held in memory.
	work := make(chan loopBatch, 1)
	var sendErr error
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		if sendErr = l.send(ctx, work); sendErr != nil {
			cancel() // stops a fetch waiting on a quiet topic
		}
	}()
	err := l.fetch(ctx, work, sendDone)
	close(work)
	<-sendDone
	if sendErr != nil {
		return sendErr
	}
	return err
}

// fetch fills batches and hands them to send until ctx is done, a fetch fails or send
// stopped.
func (l Loop) fetch(ctx context.Context, work chan<- loopBatch, sendDone <-chan struct{}) error {
	for ctx.Err() == nil {
		m, err := l.Consumer.Fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		b := loopBatch{in: make([]bus.Message, 0, l.BatchSize), start: time.Now()}
		b.in = append(b.in, m)
		lctx, lcancel := context.WithTimeout(ctx, l.Linger)
		for len(b.in) < l.BatchSize {
			m, err := l.Consumer.Fetch(lctx)
			if err != nil {
				break
			}
			b.in = append(b.in, m)
		}
		lcancel()
		b.out = l.Transform(b.in)
		select {
		case work <- b:
		case <-sendDone: // send failed; Run reports its error
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// send produces and commits the batches in order.
func (l Loop) send(ctx context.Context, work <-chan loopBatch) error {
	for b := range work {
		if ctx.Err() != nil {
			return nil
		}
		if err := l.Producer.Produce(ctx, b.out...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("produce %d messages (offsets not committed; a restart redoes them): %w", len(b.out), err)
		}
		if err := l.Consumer.Commit(ctx, b.in...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("commit: %w", err)
		}
		if l.Committed != nil {
			l.Committed(len(b.in), b.start)
		}
	}
	return nil
}

// Transform maps a batch; every input gives zero or one output message (canonical or
// dead letter), in input order. Large batches are mapped by one goroutine per CPU.
func (w *Worker) Transform(batch []bus.Message) []bus.Message {
	set := w.o.Mappings.Load()
	now := w.o.Now().UnixMilli()
	res := make([]bus.Message, len(batch))
	ok := make([]bool, len(batch))
	parts := min(runtime.GOMAXPROCS(0), (len(batch)+127)/128)
	if parts <= 1 {
		for i, m := range batch {
			w.countIn(m.Topic)
			res[i], ok[i] = w.one(set, m, now)
		}
	} else {
		var wg sync.WaitGroup
		size := (len(batch) + parts - 1) / parts
		for lo := 0; lo < len(batch); lo += size {
			hi := min(lo+size, len(batch))
			wg.Go(func() {
				for i := lo; i < hi; i++ {
					w.countIn(batch[i].Topic)
					res[i], ok[i] = w.one(set, batch[i], now)
				}
			})
		}
		wg.Wait()
	}
	out := res[:0]
	for i := range res {
		if ok[i] {
			out = append(out, res[i])
		}
	}
	return out
}

// scratch is one change's working space: its decoded rows (only the columns a mapping
// reads, into cells, without building the row maps) and the canonical document (sorted
// members, encoded without a map).
type scratch struct {
	rows schemas.Rows
	doc  schemas.Fields
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// Version is the canonical version of the change at a raw record's offset: offsets
// grow along a partition, and one raw key always lands in one partition, so versions
// grow along each entity's changes and repeat exactly on redelivery and replay.
func Version(offset int64) int64 { return offset + 1 }

func (w *Worker) one(set *mapping.Set, m bus.Message, now int64) (bus.Message, bool) {
	in, ok := w.topics[m.Topic]
	if !ok {
		return w.dead(m, "", "no_mapping", "no mapping for topic "+m.Topic), true
	}
	mp, ok := set.For(in[0], in[1])
	if !ok {
		return w.dead(m, "", "no_mapping", fmt.Sprintf("the reloaded mapping set %s no longer maps %s.%s", set.Where(), in[0], in[1])), true
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	rows := &sc.rows
	rows.Index = mp.Index()
	env, err := schemas.UnmarshalEnvelopeCells(m.Value, rows)
	if err != nil {
		return w.dead(m, mp.Name, "decode", err.Error()), true
	}
	o, err := mp.ApplyFields(env, rows, Version(m.Offset), position(env), now, sc.doc)
	if o.Fields != nil {
		sc.doc = o.Fields
	}
	// Values of this change are not kept reachable from the pool (a refused record
	// may have left some in the spare capacity too).
	defer func() { clear(sc.doc[:cap(sc.doc)]) }()
	var skip *mapping.Skipped
	var rerr *mapping.RecordError
	switch {
	case errors.As(err, &skip):
		w.m.skipped.WithLabelValues(m.Topic).Inc()
		return bus.Message{}, false
	case errors.As(err, &rerr):
		reason := "mapping"
		if len(rerr.Missing) > 0 {
			reason = "schema_drift"
			for _, c := range rerr.Missing {
				w.m.drift.WithLabelValues(mp.Name, c).Inc()
			}
		}
		return w.dead(m, mp.Name, reason, rerr.Error()), true
	case err != nil:
		return w.dead(m, mp.Name, "mapping", err.Error()), true
	}
	topic := w.outTopics[mp.Entity.Name] // Compile accepts canonical entities only
	if err := w.protect(topic, mp.Entity.Name, o.Fields); err != nil {
		return w.dead(m, mp.Name, "pii", err.Error()), true
	}
	// The document goes in as after (before for a delete).
	ce := schemas.Envelope{V: schemas.EnvelopeVersion, Op: o.Op, Source: env.Source, Key: map[string]any{"key": o.Key},
		Schema: schemas.SchemaRef{Name: mp.Entity.Name, Version: mp.Entity.Version}, TsMs: now}
	b, err := schemas.MarshalEnvelopeFields(&ce, o.Fields)
	if err != nil {
		return w.dead(m, mp.Name, "encode", err.Error()), true
	}
	w.countOut(topic, o.Op)
	return bus.Message{Topic: topic, Key: []byte(o.Key), Value: b,
		Headers: []bus.Header{{Key: "shouwang-mapping", Value: mp.Ref()}}}, true
}

// piiFields lists, per entity, the fields that hold ID numbers, phones and disability
// certificate numbers.
var piiFields = map[string]map[string]pii.Kind{
	"person":          {"id_no": pii.KindIDNumber, "phone": pii.KindPhone, "disability_cert_no": pii.KindDisabilityCert},
	"household":       {"head_id_no": pii.KindIDNumber, "phone": pii.KindPhone, "monitoring_contact_phone": pii.KindPhone},
	"department_fact": {"id_no": pii.KindIDNumber},
}

func (w *Worker) protect(topic, entity string, doc schemas.Fields) error {
	if w.o.Protect == nil {
		return nil
	}
	for f, k := range piiFields[entity] {
		v, _ := doc.Get(f)
		s, ok := v.(string)
		if !ok || s == "" {
			continue
		}
		p, err := w.o.Protect.Protect(topic, k, s)
		if err != nil {
			return fmt.Errorf("protect %s: %w", f, err)
		}
		doc.Set(f, p)
	}
	return nil
}

// dead builds the dead-letter record of a raw message: where it came from, why, and
// the message itself with ID numbers and phones protected as pii.dlq says.
func (w *Worker) dead(m bus.Message, mappingName, reason, why string) bus.Message {
	w.m.dlq.WithLabelValues(mappingName, reason).Inc()
	payload := m.Value
	key := string(m.Key)
	if w.o.Protect != nil {
		why = w.o.Protect.ScrubText(why)
		payload = []byte(w.o.Protect.ScrubText(string(m.Value)))
		key = w.o.Protect.ScrubText(key)
	}
	rec := schemas.DLQRecord{Stage: "transform", Reason: reason + ": " + why, Source: m.Topic, Position: fmt.Sprintf("%s/%d@%d", m.Topic, m.Partition, m.Offset),
		Key: key, Payload: payload, Partition: m.Partition, Offset: m.Offset, TsMs: w.o.Now().UnixMilli()}
	b, err := jsonMarshal(rec)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"stage":"transform","reason":%q}`, reason))
	}
	w.log.Warn("change sent to the dead-letter queue", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "reason", rec.Reason)
	return bus.Message{Topic: schemas.DLQTopic(w.o.TopicPrefix, "transform"), Key: []byte(key), Value: b}
}

// position is the readable source position of a raw change.
func position(e *schemas.Envelope) string {
	s := e.Source
	var buf [96]byte
	b := buf[:0]
	switch {
	case s.BinlogFile != "":
		b = append(b, s.BinlogFile...)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(s.BinlogPos), 10)
		b = append(b, '#')
		b = strconv.AppendInt(b, s.Seq, 10)
	case s.LSN != "":
		b = append(b, s.LSN...)
		b = append(b, '#')
		b = strconv.AppendInt(b, s.Seq, 10)
	case s.File != "":
		b = append(b, s.File...)
		b = append(b, ':')
		b = strconv.AppendInt(b, s.Line, 10)
	case s.Watermark != "":
		return "watermark " + s.Watermark
	}
	return string(b)
}
