package poll

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// Kind is the envelope source.kind of poll changes.
const Kind = "poll"

// Source polls read-only views; it implements capture.Source.
type Source struct {
	o   Options
	log *slog.Logger
	m   *pollMetrics

	db *sql.DB
	st *store
	qs []*query

	// pos is the read position: it advances as rows are read, and a copy of it rides on
	// the last change of every batch. Only ReadN touches it.
	pos positionDoc

	mu      sync.Mutex
	seq     int64             // last batch number handed out
	overlay map[string]*entry // query+"\x00"+key → newest not-yet-acknowledged state
	pending []batch           // batches handed out, not yet acknowledged

	// On-demand re-reads (resnapshot.go): requests not yet taken by ReadN, and whose
	// turn it is (a re-read chunk alternates with polls so neither starves).
	reqMu      sync.Mutex
	requests   []resnapPos
	resnapTurn bool
	wake       chan struct{} // a request arrived: stop sleeping

	// onIdle, when set (tests), is called when ReadN is about to sleep because nothing
	// is due, so a test can stop waiting without a timer.
	onIdle func()
}

// entry is the newest emitted state of a key whose event Kafka has not acknowledged.
type entry struct {
	seq  int64
	del  bool
	hash []byte
	row  []byte
}

// batch is one ReadN result awaiting its Ack.
type batch struct {
	seq    int64
	writes []write
}

// query is one polled view at run time.
type query struct {
	QueryOptions
	rel      string   // quoted relation
	cols     []column // every column of the view, in view order
	colList  string   // quoted select list
	order    []int    // ordering columns: Column, then the key columns other than Column
	keyIdx   []int    // key columns
	wm       int      // index of Column
	topic    string
	nextPoll time.Time
	nextScan time.Time
	// deletes waiting to be emitted after a key scan, and the scan's time.
	deletes []capture.Change
	delKeys []string
	scanAt  time.Time
}

// New validates o; it does no I/O (Open does).
func New(o Options) (*Source, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Source{o: o, log: o.Logger.With("source", o.Name, "kind", Kind), m: newMetrics(o.Registerer),
		overlay: map[string]*entry{}, wake: make(chan struct{}, 1)}
	for _, q := range o.Queries {
		q = q.withDefaults()
		s.qs = append(s.qs, &query{QueryOptions: q, rel: s.quoteRelation(q.Relation),
			topic: schemas.RawTopic(o.TopicPrefix, o.Name, q.Name)})
	}
	return s, nil
}

func (s *Source) quote(id string) string {
	if s.o.Driver == DriverMySQL {
		return "`" + strings.ReplaceAll(id, "`", "``") + "`"
	}
	return `"` + strings.ReplaceAll(id, `"`, `""`) + `"`
}

func (s *Source) quoteRelation(rel string) string {
	parts := strings.Split(rel, ".")
	for i, p := range parts {
		parts[i] = s.quote(p)
	}
	return strings.Join(parts, ".")
}

// Open connects to the view database and the key store, checks every view's columns
// and positions the source after last. Without a saved position the key store of this
// source is cleared and every row is read again as a create. If the key store is
// behind last (a crash between the runner saving a position and Ack committing the
// store), reading resumes from the key store's older position instead: the rows in
// between are emitted again (at-least-once) rather than being missing from the store.
func (s *Source) Open(ctx context.Context, last capture.Position) error {
	lastDoc, err := parsePosition(last)
	if err != nil {
		return err
	}
	driver := "pgx"
	if s.o.Driver == DriverMySQL {
		driver = "mysql"
	}
	s.db, err = sql.Open(driver, s.o.DSN)
	if err != nil {
		return fmt.Errorf("poll %s: open %s database: %w", s.o.Name, s.o.Driver, err)
	}
	s.db.SetMaxOpenConns(2)
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("poll %s: connect to the %s database (check dsn): %w", s.o.Name, s.o.Driver, err)
	}
	if s.st, err = openStore(ctx, s.o.StateDSN, s.o.Name); err != nil {
		return fmt.Errorf("poll %s: %w", s.o.Name, err)
	}
	for _, q := range s.qs {
		if err := s.describe(ctx, q); err != nil {
			return err
		}
	}

	storedPos, found, err := s.st.position(ctx)
	if err != nil {
		return fmt.Errorf("poll %s: %w", s.o.Name, err)
	}
	switch {
	case len(last) == 0:
		n, err := s.st.reset(ctx)
		if err != nil {
			return fmt.Errorf("poll %s: %w", s.o.Name, err)
		}
		if n > 0 {
			s.log.Warn("no saved position: key store cleared, every row is read again as a create", "forgotten_keys", n)
		}
		s.pos = lastDoc
	case !found:
		s.log.Warn("saved position but an empty key store (state database replaced?): re-reading every row as a create")
		s.pos, _ = parsePosition(nil)
		s.pos.Seq = lastDoc.Seq
	default:
		storeDoc, err := parsePosition(storedPos)
		if err != nil {
			return fmt.Errorf("poll %s: key store position: %w", s.o.Name, err)
		}
		s.pos = lastDoc
		if storeDoc.Seq < lastDoc.Seq {
			s.log.Warn("key store is behind the saved position (crash before Ack): resuming from the key store's position; some rows are emitted twice",
				"store_seq", storeDoc.Seq, "saved_seq", lastDoc.Seq)
			s.pos = storeDoc
			s.pos.Seq = lastDoc.Seq
		}
	}
	s.seq = s.pos.Seq
	now := time.Now()
	for _, q := range s.qs {
		q.nextPoll = now
		q.nextScan = now.Add(q.DeleteDetection.Interval)
		if qp := s.pos.Queries[q.Name]; qp != nil && !qp.LastFullScan.IsZero() {
			q.nextScan = qp.LastFullScan.Add(q.DeleteDetection.Interval)
		}
	}
	return nil
}

// describe learns the view's columns (SELECT … WHERE 1=0) and checks the configured ones.
func (s *Source) describe(ctx context.Context, q *query) error {
	rows, err := s.db.QueryContext(ctx, "SELECT * FROM "+q.rel+" WHERE 1=0")
	if err != nil {
		return fmt.Errorf("poll %s: query %s: relation %s cannot be read (does it exist, may the user SELECT it?): %w", s.o.Name, q.Name, q.Relation, err)
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		return fmt.Errorf("poll %s: query %s: describe %s: %w", s.o.Name, q.Name, q.Relation, err)
	}
	idx := map[string]int{}
	q.cols = q.cols[:0]
	names := make([]string, 0, len(cts))
	for i, ct := range cts {
		q.cols = append(q.cols, column{name: ct.Name(), kind: kindOf(ct.DatabaseTypeName()), dbType: strings.ToUpper(ct.DatabaseTypeName()),
			mysql: s.o.Driver == DriverMySQL})
		idx[ct.Name()] = i
		names = append(names, s.quote(ct.Name()))
	}
	q.colList = strings.Join(names, ", ")
	find := func(field, name string) (int, error) {
		i, ok := idx[name]
		if !ok {
			return 0, fmt.Errorf("poll %s: query %s: %s column %q is not a column of %s (columns: %s)", s.o.Name, q.Name, field, name, q.Relation, strings.Join(keysOf(idx), ", "))
		}
		return i, nil
	}
	if q.wm, err = find("column", q.Column); err != nil {
		return err
	}
	if q.Mode == ModeTimestamp {
		switch q.cols[q.wm].kind {
		case kTimestamp, kTimestampTZ, kDate:
		default:
			return fmt.Errorf("poll %s: query %s: column %q has type %s; timestamp mode needs a date/time column", s.o.Name, q.Name, q.Column, q.cols[q.wm].dbType)
		}
	}
	q.order, q.keyIdx = []int{q.wm}, nil
	for _, k := range q.Key {
		i, err := find("key", k)
		if err != nil {
			return err
		}
		q.keyIdx = append(q.keyIdx, i)
		if i != q.wm {
			q.order = append(q.order, i)
		}
	}
	return nil
}

func keysOf(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// ReadN implements capture.Source: pending deletes first, then due polls, then due key
// scans; when nothing is due it sleeps until the next poll.
func (s *Source) ReadN(ctx context.Context, max int) ([]capture.Change, error) {
	if max <= 0 {
		max = 1
	}
	for {
		if s.takeRequests() {
			return s.positionOnly()
		}
		if len(s.pos.Resnapshot) > 0 && s.resnapTurn {
			s.resnapTurn = false
			return s.resnapshot(ctx, max)
		}
		s.resnapTurn = true
		for _, q := range s.qs {
			if len(q.deletes) > 0 {
				return s.emitDeletes(q, max)
			}
		}
		now := time.Now()
		for _, q := range s.qs {
			if now.Before(q.nextPoll) {
				continue
			}
			cs, err := s.poll(ctx, q, max)
			if err != nil {
				return nil, err
			}
			if len(cs) > 0 {
				return cs, nil
			}
		}
		if len(s.pos.Resnapshot) > 0 {
			continue // nothing else due: read the next re-snapshot chunk now
		}
		for _, q := range s.qs {
			if !q.DeleteDetection.Enabled || now.Before(q.nextScan) {
				continue
			}
			if err := s.scan(ctx, q); err != nil {
				return nil, err
			}
		}
		wake := now.Add(time.Hour)
		pendingDeletes := false
		for _, q := range s.qs {
			wake = minTime(wake, q.nextPoll)
			if q.DeleteDetection.Enabled {
				wake = minTime(wake, q.nextScan)
			}
			pendingDeletes = pendingDeletes || len(q.deletes) > 0
		}
		if pendingDeletes {
			continue
		}
		if d := time.Until(wake); d > 0 {
			if s.onIdle != nil {
				s.onIdle()
			}
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			case <-s.wake:
				t.Stop()
			}
		} else if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// polled is one row read by a poll.
type polled struct {
	key    string
	keyMap map[string]any
	after  map[string]any
	row    []byte
	hash   []byte
	wm     any
	dead   *schemas.DLQRecord
	reason string
}

// poll runs one incremental query of q and returns its changes (possibly none when
// every row read was an unchanged re-read).
func (s *Source) poll(ctx context.Context, q *query, max int) ([]capture.Change, error) {
	limit := min(q.BatchSize, max)
	qp := s.pos.Queries[q.Name]
	if qp == nil {
		qp = &queryPos{}
		s.pos.Queries[q.Name] = qp
	}
	sqlText, args := s.pollSQL(q, qp, limit)
	start := time.Now()
	rows, err := s.db.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("poll %s: query %s on %s: %w", s.o.Name, q.Name, q.Relation, err)
	}
	var got []polled
	raw := make([]any, len(q.cols))
	ptrs := make([]any, len(q.cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return nil, fmt.Errorf("poll %s: query %s: read row: %w", s.o.Name, q.Name, err)
		}
		p, ordering, err := s.row(q, raw)
		if err != nil {
			rows.Close()
			return nil, err
		}
		qp.Watermark, qp.Key = ordering[0], ordering[1:]
		got = append(got, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("poll %s: query %s on %s: %w", s.o.Name, q.Name, q.Relation, err)
	}
	rows.Close()
	s.m.duration.WithLabelValues(s.o.Name, q.Name, "poll").Observe(time.Since(start).Seconds())
	s.m.rows.WithLabelValues(s.o.Name, q.Name).Add(float64(len(got)))
	if len(got) < limit {
		q.nextPoll = time.Now().Add(q.Interval) // caught up
	} else {
		q.nextPoll = time.Now()
	}
	if q.Mode == ModeTimestamp && qp.Watermark != nil {
		s.observeLag(ctx, q, qp.Watermark)
	}
	if len(got) == 0 {
		return nil, nil
	}

	// Compare with the newest known state: unacknowledged batches first, then the store.
	known := make(map[string]stored, len(got))
	var ask []string
	s.mu.Lock()
	for _, p := range got {
		if p.dead != nil {
			continue
		}
		if e, ok := s.overlay[q.Name+"\x00"+p.key]; ok {
			if !e.del {
				known[p.key] = stored{hash: e.hash, row: e.row}
			} else {
				known[p.key] = stored{}
			}
			continue
		}
		ask = append(ask, p.key)
	}
	s.mu.Unlock()
	fromStore, err := s.st.lookup(ctx, q.Name, ask)
	if err != nil {
		return nil, fmt.Errorf("poll %s: %w", s.o.Name, err)
	}
	for k, v := range fromStore {
		known[k] = v
	}

	var cs []capture.Change
	var writes []write
	for i, p := range got {
		if p.dead != nil {
			cs = append(cs, capture.Change{Key: []byte(p.key), DeadLetter: p.dead, DeadLetterReason: p.reason,
				Envelope: schemas.Envelope{Op: schemas.OpCreate, Source: s.src(q, p.wm, i)}})
			s.m.events.WithLabelValues(s.o.Name, q.Name, "dlq").Inc()
			continue
		}
		old, seen := known[p.key]
		seen = seen && old.hash != nil
		if seen && bytes.Equal(old.hash, p.hash) {
			continue // unchanged re-read (e.g. after a restart inside the at-least-once window)
		}
		env := schemas.Envelope{Op: schemas.OpCreate, Source: s.src(q, p.wm, i), Key: p.keyMap, After: p.after,
			Schema: schemas.SchemaRef{Name: q.Name, Version: 1}}
		if seen {
			env.Op = schemas.OpUpdate
			env.Before = decodeRow(old.row)
		}
		known[p.key] = stored{hash: p.hash, row: p.row} // a key read twice compares with itself
		cs = append(cs, capture.Change{Topic: q.topic, Key: []byte(p.key), Envelope: env})
		writes = append(writes, write{query: q.Name, key: p.key, hash: p.hash, row: p.row})
		s.m.events.WithLabelValues(s.o.Name, q.Name, string(env.Op)).Inc()
	}
	if len(cs) == 0 {
		return nil, nil
	}
	return s.seal(q, cs, writes)
}

// seal numbers a batch, attaches the position to its last change and remembers its
// key-store writes until Ack.
func (s *Source) seal(q *query, cs []capture.Change, writes []write) ([]capture.Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.pos.Seq = s.seq
	pos, err := s.pos.clone().encode()
	if err != nil {
		return nil, fmt.Errorf("poll %s: query %s: %w", s.o.Name, q.Name, err)
	}
	cs[len(cs)-1].Position = pos
	for i := range cs {
		cs[i].Envelope.V = schemas.EnvelopeVersion
	}
	for _, w := range writes {
		s.overlay[w.query+"\x00"+w.key] = &entry{seq: s.seq, del: w.del, hash: w.hash, row: w.row}
	}
	s.pending = append(s.pending, batch{seq: s.seq, writes: writes})
	return cs, nil
}

func (s *Source) src(q *query, wm any, seq int) schemas.Source {
	src := schemas.Source{System: s.o.Name, Kind: Kind, DB: q.Relation, Table: q.Name, Seq: int64(seq)}
	if wm != nil {
		src.Watermark = fmt.Sprint(wm)
	}
	return src
}

// row converts one scanned row. ordering holds the converted ordering values; a row
// whose ordering columns cannot be converted stops the source, because the poll could
// not move past it.
func (s *Source) row(q *query, raw []any) (polled, []any, error) {
	var p polled
	after := make(map[string]any, len(q.cols))
	var firstErr error
	for i, c := range q.cols {
		v, err := convert(c, raw[i])
		if err != nil && firstErr == nil {
			firstErr = err
		}
		after[c.name] = v
	}
	ordering := make([]any, len(q.order))
	for i, ci := range q.order {
		v, err := convert(q.cols[ci], raw[ci])
		if err != nil || v == nil {
			return p, nil, fmt.Errorf("poll %s: query %s: ordering column %s has value %q that cannot be used as a watermark; fix the row in %s or exclude it from the view: %v",
				s.o.Name, q.Name, q.cols[ci].name, asString(raw[ci]), q.Relation, err)
		}
		ordering[i] = v
	}
	p.wm = ordering[0]
	p.keyMap = make(map[string]any, len(q.keyIdx))
	for _, ki := range q.keyIdx {
		p.keyMap[q.cols[ki].name] = after[q.cols[ki].name]
	}
	kb, err := encodeKey(p.keyMap)
	if err != nil {
		return p, nil, fmt.Errorf("poll %s: query %s: %w", s.o.Name, q.Name, err)
	}
	p.key = string(kb)
	if firstErr != nil {
		var bv *badValue
		reason := "bad_value"
		if errors.As(firstErr, &bv) {
			reason = bv.reason
		}
		payload := make(map[string]string, len(raw))
		for i, c := range q.cols {
			if raw[i] != nil {
				payload[c.name] = asString(raw[i])
			}
		}
		pb, _ := json.Marshal(payload) // invalid UTF-8 becomes U+FFFD, the reason keeps the detail
		p.dead = &schemas.DLQRecord{Reason: fmt.Sprintf("poll %s query %s relation %s key %s: %v", s.o.Name, q.Name, q.Relation, p.key, firstErr),
			Source: s.o.Name, Key: p.key, Payload: pb, Position: fmt.Sprint(p.wm)}
		p.reason = reason
		return p, ordering, nil
	}
	p.after = after
	p.row, err = json.Marshal(after)
	if err != nil {
		return p, nil, fmt.Errorf("poll %s: query %s: encode row %s: %w", s.o.Name, q.Name, p.key, err)
	}
	if max := s.maxRowBytes(); len(p.row) > max {
		p.dead = &schemas.DLQRecord{Reason: fmt.Sprintf("poll %s query %s relation %s key %s: row of %d bytes exceeds max_row_bytes %d", s.o.Name, q.Name, q.Relation, p.key, len(p.row), max),
			Source: s.o.Name, Key: p.key, Payload: []byte(p.key), Position: fmt.Sprint(p.wm)}
		p.reason, p.after, p.row = "oversized", nil, nil
		return p, ordering, nil
	}
	p.hash = rowHash(p.row)
	return p, ordering, nil
}

// maxRowBytes is Options.MaxRowBytes with its default.
func (s *Source) maxRowBytes() int {
	if s.o.MaxRowBytes > 0 {
		return s.o.MaxRowBytes
	}
	return 4 << 20
}

var castTypeRe = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// param renders one placeholder for a value of column c and appends its argument.
// PostgreSQL receives every value as text cast to the column's type, so the watermark
// round-trips exactly whatever Go type it had when the position was decoded.
func (s *Source) param(args *[]any, c column, v any) string {
	if s.o.Driver == DriverMySQL {
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				v = i
			} else {
				v = n.String()
			}
		}
		*args = append(*args, v)
		return "?"
	}
	*args = append(*args, textOf(v))
	n := len(*args)
	if t := strings.ToLower(c.dbType); castTypeRe.MatchString(t) {
		return fmt.Sprintf("CAST($%d::text AS %s)", n, t)
	}
	return fmt.Sprintf("$%d", n)
}

func textOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}

// nowExpr is the database clock in the domain of the watermark column.
func (s *Source) nowExpr(q *query) string {
	if s.o.Driver == DriverMySQL {
		return "NOW(6)"
	}
	if q.cols[q.wm].kind == kTimestampTZ {
		return "now()"
	}
	return "LOCALTIMESTAMP"
}

// pollSQL builds the keyset-paginated incremental query:
//
//	SELECT … FROM rel WHERE col IS NOT NULL [AND (col, k…) > (:col, :k…)]
//	  [AND col <= now() - lag] ORDER BY col, k… LIMIT n
func (s *Source) pollSQL(q *query, qp *queryPos, limit int) (string, []any) {
	var args []any
	where := []string{s.quote(q.Column) + " IS NOT NULL"}
	if qp.Watermark != nil && len(qp.Key) == len(q.order)-1 {
		lhs := make([]string, len(q.order))
		rhs := make([]string, len(q.order))
		vals := append([]any{qp.Watermark}, qp.Key...)
		for i, ci := range q.order {
			lhs[i] = s.quote(q.cols[ci].name)
			rhs[i] = s.param(&args, q.cols[ci], vals[i])
		}
		if len(lhs) == 1 {
			where = append(where, lhs[0]+" > "+rhs[0])
		} else {
			where = append(where, "("+strings.Join(lhs, ", ")+") > ("+strings.Join(rhs, ", ")+")")
		}
	}
	if q.Mode == ModeTimestamp && q.SafetyLag > 0 {
		if s.o.Driver == DriverMySQL {
			args = append(args, q.SafetyLag.Microseconds())
			where = append(where, s.quote(q.Column)+" <= NOW(6) - INTERVAL ? MICROSECOND")
		} else {
			args = append(args, strconv.FormatFloat(q.SafetyLag.Seconds(), 'f', 6, 64))
			where = append(where, fmt.Sprintf("%s <= %s - make_interval(secs => CAST($%d::text AS float8))", s.quote(q.Column), s.nowExpr(q), len(args)))
		}
	}
	order := make([]string, len(q.order))
	for i, ci := range q.order {
		order[i] = s.quote(q.cols[ci].name)
	}
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT %d",
		q.colList, q.rel, strings.Join(where, " AND "), strings.Join(order, ", "), limit), args
}

// observeLag sets the watermark lag gauge from the database clock (best effort: a
// failure only leaves the gauge stale).
func (s *Source) observeLag(ctx context.Context, q *query, wm any) {
	var args []any
	var text string
	if s.o.Driver == DriverMySQL {
		text = "SELECT TIMESTAMPDIFF(MICROSECOND, " + s.param(&args, q.cols[q.wm], wm) + ", NOW(6)) / 1000000"
	} else {
		text = "SELECT EXTRACT(EPOCH FROM (" + s.nowExpr(q) + " - " + s.param(&args, q.cols[q.wm], wm) + "))::float8"
	}
	var lag sql.NullFloat64
	if err := s.db.QueryRowContext(ctx, text, args...).Scan(&lag); err != nil {
		s.log.Debug("watermark lag not measured", "query", q.Name, "err", err)
		return
	}
	if lag.Valid {
		s.m.lag.WithLabelValues(s.o.Name, q.Name).Set(lag.Float64)
	}
}

func decodeRow(b []byte) map[string]any {
	if len(b) == 0 {
		return nil
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil
	}
	return m
}

// Ack implements capture.Source: the key-store writes of every batch up to upTo are
// committed together with upTo, then forgotten from memory.
func (s *Source) Ack(ctx context.Context, upTo capture.Position) error {
	d, err := parsePosition(upTo)
	if err != nil {
		return fmt.Errorf("poll %s: ack: %w", s.o.Name, err)
	}
	s.mu.Lock()
	var writes []write
	n := 0
	for _, b := range s.pending {
		if b.seq > d.Seq {
			break
		}
		writes = append(writes, b.writes...)
		n++
	}
	s.mu.Unlock()
	if err := s.st.commit(ctx, writes, upTo); err != nil {
		return fmt.Errorf("poll %s: ack batch %d: %w", s.o.Name, d.Seq, err)
	}
	s.mu.Lock()
	s.pending = s.pending[n:]
	for _, w := range writes {
		k := w.query + "\x00" + w.key
		if e, ok := s.overlay[k]; ok && e.seq <= d.Seq {
			delete(s.overlay, k)
		}
	}
	s.mu.Unlock()
	return nil
}

// Close implements capture.Source.
func (s *Source) Close() error {
	var err error
	if s.db != nil {
		err = s.db.Close()
		s.db = nil
	}
	if s.st != nil {
		s.st.close()
		s.st = nil
	}
	if err != nil {
		return fmt.Errorf("poll %s: close: %w", s.o.Name, err)
	}
	return nil
}
