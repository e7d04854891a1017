package mysqlbinlog

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// The snapshot is lock-free and interleaved with the stream, as in DBLog and
// Debezium's incremental snapshots. For each chunk (ChunkSize rows in primary-key
// order after the table's cursor) the snapshotter reads the binlog end (low
// watermark), SELECTs the chunk, and reads the binlog end again (high watermark).
// The stream keeps running; every row event between low and high removes its key
// from the chunk, because the stream already carries a newer image of that row.
// When the stream reaches the high watermark the remaining rows are emitted as op r
// (snapshot=true), so they always precede the changes made after the SELECT. The
// cursor of the last emitted chunk is part of the Position, so a crash repeats only
// what the runner had not saved yet: at most one runner batch (RunnerOptions.BatchSize
// changes) or one chunk group, whichever is larger.
//
// With Options.Parallel = N > 1 one window covers a group of up to N chunks of the
// same table: the N-1 boundary keys are found first (each the ChunkSize-th key after
// the previous one, an index-only OFFSET scan), then the chunks are SELECTed and
// converted concurrently, each on its own connection, between one low and one high
// watermark. Chunks other than the last are key ranges (lower, boundary], so rows
// inserted or deleted after the boundaries were found are still covered exactly once
// (by the SELECT or by the stream); the last one is the next ChunkSize rows after the
// last boundary. The group's chunks are emitted in key order, each stamped with the
// cursor it completes, so every Position still names a correct resume point.

type snapRow struct {
	key    []byte
	keyMap map[string]any
	row    map[string]any
}

// badRow is a snapshot row that could not be converted; it goes to the DLQ.
type badRow struct {
	key    map[string]any
	row    map[string]any
	code   string
	reason string
}

// chunkPart is one chunk of a group: its rows and the cursor reached after it.
type chunkPart struct {
	rows []snapRow
	bad  []badRow
	last []json.RawMessage // the table cursor once this part is emitted
	done bool              // the table has no rows after this part
}

// chunk is a group of chunkParts of one table read between the same two watermarks.
type chunk struct {
	table     string
	where     string
	low, high binlogPos
	version   int
	parts     []*chunkPart
	dropped   map[string]bool
	cleared   bool // a TRUNCATE happened inside the window
	started   time.Time
}

type snapshotter struct {
	s       *Source
	pending *chunk
}

func newSnapshotter(s *Source) *snapshotter { return &snapshotter{s: s} }

// observe records that the stream changed key of table; called for every row event.
func (sn *snapshotter) observe(table string, key []byte) {
	c := sn.pending
	if c == nil || c.table != table || sn.s.cur.compare(c.low) <= 0 {
		return
	}
	c.dropped[string(key)] = true
}

// truncated records a TRUNCATE of table seen by the stream.
func (sn *snapshotter) truncated(table string) {
	if c := sn.pending; c != nil && c.table == table && sn.s.cur.compare(c.low) > 0 {
		c.cleared = true
	}
}

// tick does the snapshot work that is due between transactions. It reports whether
// it emitted changes or started a chunk.
func (sn *snapshotter) tick(ctx context.Context) (bool, error) {
	s := sn.s
	s.reqMu.Lock()
	for _, r := range s.requests {
		dup := false
		for _, t := range s.committed.Snapshot {
			if t.Table == r.Table && t.Where == r.Where && t.Cursor == nil {
				dup = true
			}
		}
		if !dup {
			s.committed.Snapshot = append(s.committed.Snapshot, r)
			s.log.Info("snapshot requested", "table", r.Table, "where", r.Where)
		}
	}
	s.requests = nil
	s.reqMu.Unlock()
	s.m.snapshotLeft.Set(float64(len(s.committed.Snapshot)))

	if sn.pending == nil {
		if len(s.committed.Snapshot) == 0 {
			return false, nil
		}
		if err := sn.start(ctx); err != nil {
			return false, err
		}
		if sn.pending == nil {
			return true, nil // the table was skipped
		}
	}
	if s.cur.compare(sn.pending.high) < 0 {
		return false, nil
	}
	return true, sn.finish()
}

// chunkQuery builds the queries of one table's snapshot.
type chunkQuery struct {
	table   string // db.table, for messages
	from    string // quoted db.table
	cols    string // quoted select list
	specs   []colSpec
	pk      []string
	pkSpecs []colSpec
	qpk     string // quoted, comma-separated primary key
	where   string
	chunk   int
}

// cond returns the WHERE clause (with its arguments) for keys after lower (nil: from
// the start) and at most upper (nil: no upper bound).
func (q *chunkQuery) cond(lower, upper []json.RawMessage) (string, []any, error) {
	var conds []string
	var args []any
	for _, b := range []struct {
		cur []json.RawMessage
		op  string
	}{{lower, ">"}, {upper, "<="}} {
		if b.cur == nil {
			continue
		}
		ph := make([]string, len(q.pk))
		for i := range q.pk {
			ph[i] = "?"
			v, err := cursorArg(q.pkSpecs[i], b.cur[i])
			if err != nil {
				return "", nil, fmt.Errorf("snapshot cursor of %s column %s value %s: %w", q.table, q.pk[i], b.cur[i], err)
			}
			args = append(args, v)
		}
		conds = append(conds, fmt.Sprintf("(%s) %s (%s)", q.qpk, b.op, strings.Join(ph, ",")))
	}
	if q.where != "" {
		conds = append(conds, "("+q.where+")")
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

// boundary returns the ChunkSize-th primary key after lower, or nil when fewer rows
// follow it.
func (q *chunkQuery) boundary(ctx context.Context, db *sql.DB, lower []json.RawMessage) ([]json.RawMessage, error) {
	where, args, err := q.cond(lower, nil)
	if err != nil {
		return nil, err
	}
	stmt := fmt.Sprintf("SELECT %s FROM %s%s ORDER BY %s LIMIT 1 OFFSET %d", q.qpk, q.from, where, q.qpk, q.chunk-1)
	raw := make([]sql.RawBytes, len(q.pk))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	rows, err := db.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("snapshot boundary of %s: %s: %w", q.table, stmt, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("snapshot boundary of %s: %w", q.table, err)
		}
		return nil, nil
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, fmt.Errorf("snapshot boundary of %s: scan: %w", q.table, err)
	}
	cur := make([]json.RawMessage, len(q.pk))
	for i, sp := range q.pkSpecs {
		if raw[i] == nil {
			return nil, fmt.Errorf("snapshot boundary of %s: primary key column %s is NULL", q.table, sp.name)
		}
		v, err := sqlValue(sp, append([]byte{}, raw[i]...))
		if err != nil {
			return nil, fmt.Errorf("snapshot boundary of %s: primary key column %s: %w (snapshot with parallel 1)", q.table, sp.name, err)
		}
		if cur[i], err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("snapshot boundary of %s: primary key column %s: %w", q.table, sp.name, err)
		}
	}
	return cur, rows.Err()
}

// read SELECTs the rows after lower up to upper (nil upper: the next ChunkSize rows)
// and converts them.
func (q *chunkQuery) read(ctx context.Context, db *sql.DB, lower, upper []json.RawMessage) (*chunkPart, error) {
	where, args, err := q.cond(lower, upper)
	if err != nil {
		return nil, err
	}
	stmt := fmt.Sprintf("SELECT %s FROM %s%s", q.cols, q.from, where)
	if len(q.pk) > 0 {
		stmt += " ORDER BY " + q.qpk
		if upper == nil {
			stmt += fmt.Sprintf(" LIMIT %d", q.chunk)
		}
	}
	rows, err := db.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %s: %w", q.table, stmt, err)
	}
	defer rows.Close()
	raw := make([]sql.RawBytes, len(q.specs))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	p := &chunkPart{last: lower}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("snapshot of %s: scan: %w", q.table, err)
		}
		n++
		row := make(map[string]any, len(q.specs))
		var bad, badCodes []string
		for i, sp := range q.specs {
			var b []byte
			if raw[i] != nil {
				b = append([]byte{}, raw[i]...)
			}
			v, err := sqlValue(sp, b)
			if err != nil {
				bad = append(bad, fmt.Sprintf("column %s: %v", sp.name, err))
				badCodes = append(badCodes, reasonCode(err))
				v = rawRender(b)
			}
			row[sp.name] = v
		}
		key := keyOf(q.pk, row)
		if len(q.pk) > 0 && upper == nil {
			p.last = make([]json.RawMessage, len(q.pk))
			for i, k := range q.pk {
				p.last[i], _ = json.Marshal(row[k])
			}
		}
		if len(bad) > 0 {
			p.bad = append(p.bad, badRow{key: key, row: row, code: badCodes[0], reason: strings.Join(bad, "; ")})
			continue
		}
		p.rows = append(p.rows, snapRow{key: encodeKey(key), keyMap: key, row: row})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", q.table, err)
	}
	if upper != nil {
		p.last = upper
	} else {
		p.done = len(q.pk) == 0 || n < q.chunk
	}
	return p, nil
}

// start reads the next chunk group of the first pending table between two watermarks.
func (sn *snapshotter) start(ctx context.Context) error {
	s := sn.s
	tc := s.committed.Snapshot[0]
	db, tb, _ := strings.Cut(tc.Table, ".")
	ver, err := readTableSchema(ctx, s.db, db, tb)
	if err != nil {
		s.log.Warn("snapshot skipped: table unreadable", "table", tc.Table, "error", err)
		s.committed.Snapshot = s.committed.Snapshot[1:]
		return nil
	}
	q := &chunkQuery{table: tc.Table, from: quoteIdent(db) + "." + quoteIdent(tb), pk: ver.PK, where: tc.Where, chunk: s.opts.ChunkSize}
	q.specs = make([]colSpec, len(ver.Columns))
	cols := make([]string, len(ver.Columns))
	bySpec := map[string]colSpec{}
	for i, c := range ver.Columns {
		q.specs[i] = specFromColumn(c)
		cols[i] = quoteIdent(c.Name)
		bySpec[c.Name] = q.specs[i]
	}
	q.cols = strings.Join(cols, ",")
	qpk := make([]string, len(ver.PK))
	for i, k := range ver.PK {
		qpk[i] = quoteIdent(k)
		q.pkSpecs = append(q.pkSpecs, bySpec[k])
	}
	q.qpk = strings.Join(qpk, ",")
	if len(ver.PK) > 0 && tc.Cursor != nil && len(tc.Cursor) != len(ver.PK) {
		return fmt.Errorf("capture %s: snapshot cursor of %s has %d values, the primary key (%s) has %d: clear the snapshot from the saved position", s.opts.Name, tc.Table, len(tc.Cursor), strings.Join(ver.PK, ","), len(ver.PK))
	}
	lower := tc.Cursor
	if len(ver.PK) == 0 {
		lower = nil
	}

	// The boundaries are found before the low watermark: the ranges they define are
	// exact whatever happens to the rows afterwards.
	bounds := [][]json.RawMessage{}
	if len(ver.PK) > 0 {
		for from := lower; len(bounds) < s.opts.Parallel-1; {
			b, err := q.boundary(ctx, s.db, from)
			if err != nil {
				return fmt.Errorf("capture %s: %w", s.opts.Name, err)
			}
			if b == nil {
				break
			}
			bounds = append(bounds, b)
			from = b
		}
	}

	low, err := s.masterStatus(ctx)
	if err != nil {
		return err
	}
	c := &chunk{table: tc.Table, where: tc.Where, low: binlogPos{low.File, low.Pos}, dropped: map[string]bool{}, started: time.Now()}
	if hv := s.hist.latest(tc.Table); hv != nil {
		c.version = hv.Version
	}
	c.parts = make([]*chunkPart, len(bounds)+1)
	errs := make([]error, len(c.parts))
	var wg sync.WaitGroup
	for i := range c.parts {
		from, to := lower, []json.RawMessage(nil)
		if i > 0 {
			from = bounds[i-1]
		}
		if i < len(bounds) {
			to = bounds[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.parts[i], errs[i] = q.read(ctx, s.db, from, to)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("capture %s: %w", s.opts.Name, err)
	}
	for _, p := range c.parts {
		for _, b := range p.bad {
			env := sn.envelope(c, schemas.OpRead, 0)
			env.After, env.Key = b.row, b.key
			s.out = append(s.out, s.deadLetterChange(tc.Table, env, b.code, b.reason))
		}
	}
	high, err := s.masterStatus(ctx)
	if err != nil {
		return err
	}
	c.high = binlogPos{high.File, high.Pos}
	sn.pending = c
	return nil
}

func (sn *snapshotter) envelope(c *chunk, op schemas.Op, seq int64) schemas.Envelope {
	db, tb, _ := strings.Cut(c.table, ".")
	return schemas.Envelope{
		V: schemas.EnvelopeVersion, Op: op,
		Source: schemas.Source{System: sn.s.opts.Name, Kind: Kind, DB: db, Table: tb,
			BinlogFile: c.high.File, BinlogPos: c.high.Pos, Snapshot: true,
			CommitMs: c.started.UnixMilli(), Seq: seq},
		Schema: schemas.SchemaRef{Name: c.table, Version: c.version},
		TsMs:   time.Now().UnixMilli(),
	}
}

// finish emits the surviving rows of the group's chunks in key order, each chunk's
// last change carrying the position with the cursor that chunk completes.
func (sn *snapshotter) finish() error {
	s := sn.s
	c := sn.pending
	sn.pending = nil
	if s.held != nil { // cannot happen between transactions, but never lose a change
		s.out = append(s.out, *s.held)
		s.held = nil
	}
	rt := s.reload.table(c.table)
	emitted, partEmitted := 0, 0
	var seq int64
	for _, p := range c.parts {
		if p.done {
			s.committed.Snapshot = s.committed.Snapshot[1:]
			s.log.Info("table snapshot finished", "table", c.table, "where", c.where)
		} else {
			s.committed.Snapshot[0].Cursor = p.last
		}
		first := len(s.out)
		if !c.cleared {
			for _, r := range p.rows {
				if c.dropped[string(r.key)] {
					continue
				}
				if rt != nil {
					pk := sortedCols(r.keyMap)
					var err error
					if rt.win != nil {
						// The table is being reloaded: the row is part of its new content.
						err = s.reload.windowRow(rt, schemas.OpRead, pk, nil, r.row, 0)
					} else {
						err = s.reload.record(rt, schemas.OpRead, pk, nil, r.row)
					}
					if err != nil {
						return fmt.Errorf("capture %s: %w", s.opts.Name, err)
					}
					if rt.win != nil {
						continue
					}
				}
				seq++
				env := sn.envelope(c, schemas.OpRead, seq)
				env.Key, env.After = r.keyMap, r.row
				s.out = append(s.out, capture.Change{Topic: s.topic(c.table), Key: r.key, Envelope: env})
			}
		}
		partEmitted = len(s.out) - first
		emitted += partEmitted
		if partEmitted > 0 && s.positionAllowed() {
			s.out[len(s.out)-1].Position = s.committed.Encode()
		}
	}
	s.m.snapshotLeft.Set(float64(len(s.committed.Snapshot)))
	s.m.snapshotRows.WithLabelValues(c.table).Add(float64(emitted))
	s.m.events.WithLabelValues(c.table, string(schemas.OpRead)).Add(float64(emitted))
	if partEmitted == 0 {
		s.positionOnly(c.started.UnixMilli())
	}
	return nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// cursorArg turns a saved cursor value back into a query argument of the column's type.
func cursorArg(sp colSpec, raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case json.Number:
		switch sp.kind {
		case kUint:
			var u uint64
			_, err := fmt.Sscan(x.String(), &u)
			return u, err
		case kInt, kYear, kBit:
			return x.Int64()
		}
		return x.String(), nil
	case string:
		if sp.kind == kBinary {
			return base64.StdEncoding.DecodeString(x)
		}
		return x, nil
	}
	return v, nil
}
