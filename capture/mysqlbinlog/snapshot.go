package mysqlbinlog

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
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
// cursor of the last emitted chunk is part of the Position, so a crash repeats at
// most one chunk.

type snapRow struct {
	key    []byte
	keyMap map[string]any
	row    map[string]any
}

type chunk struct {
	table     string
	where     string
	low, high binlogPos
	version   int
	rows      []snapRow
	dropped   map[string]bool
	cleared   bool // a TRUNCATE happened inside the window
	last      []json.RawMessage
	done      bool // the table has no rows after this chunk
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

// start reads the next chunk of the first pending table between two watermarks.
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
	specs := make([]colSpec, len(ver.Columns))
	cols := make([]string, len(ver.Columns))
	pkSpecs := map[string]colSpec{}
	for i, c := range ver.Columns {
		specs[i] = specFromColumn(c)
		cols[i] = quoteIdent(c.Name)
		pkSpecs[c.Name] = specs[i]
	}
	var conds []string
	var args []any
	if len(ver.PK) > 0 && tc.Cursor != nil {
		if len(tc.Cursor) != len(ver.PK) {
			return fmt.Errorf("capture %s: snapshot cursor of %s has %d values, the primary key (%s) has %d: clear the snapshot from the saved position", s.opts.Name, tc.Table, len(tc.Cursor), strings.Join(ver.PK, ","), len(ver.PK))
		}
		ph := make([]string, len(ver.PK))
		qpk := make([]string, len(ver.PK))
		for i, k := range ver.PK {
			ph[i], qpk[i] = "?", quoteIdent(k)
			v, err := cursorArg(pkSpecs[k], tc.Cursor[i])
			if err != nil {
				return fmt.Errorf("capture %s: snapshot cursor of %s column %s: %w", s.opts.Name, tc.Table, k, err)
			}
			args = append(args, v)
		}
		conds = append(conds, fmt.Sprintf("(%s) > (%s)", strings.Join(qpk, ","), strings.Join(ph, ",")))
	}
	if tc.Where != "" {
		conds = append(conds, "("+tc.Where+")")
	}
	q := fmt.Sprintf("SELECT %s FROM %s.%s", strings.Join(cols, ","), quoteIdent(db), quoteIdent(tb))
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	if len(ver.PK) > 0 {
		qpk := make([]string, len(ver.PK))
		for i, k := range ver.PK {
			qpk[i] = quoteIdent(k)
		}
		q += fmt.Sprintf(" ORDER BY %s LIMIT %d", strings.Join(qpk, ","), s.opts.ChunkSize)
	}

	low, err := s.masterStatus(ctx)
	if err != nil {
		return err
	}
	c := &chunk{table: tc.Table, where: tc.Where, low: binlogPos{low.File, low.Pos}, dropped: map[string]bool{}, started: time.Now()}
	if hv := s.hist.latest(tc.Table); hv != nil {
		c.version = hv.Version
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("capture %s: snapshot of %s: %s: %w", s.opts.Name, tc.Table, q, err)
	}
	raw := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return fmt.Errorf("capture %s: snapshot of %s: scan: %w", s.opts.Name, tc.Table, err)
		}
		n++
		row := make(map[string]any, len(specs))
		var bad, badCodes []string
		for i, sp := range specs {
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
		key := keyOf(ver.PK, row)
		if len(ver.PK) > 0 {
			c.last = make([]json.RawMessage, len(ver.PK))
			for i, k := range ver.PK {
				c.last[i], _ = json.Marshal(row[k])
			}
		}
		if len(bad) > 0 {
			env := sn.envelope(c, schemas.OpRead, 0)
			env.After, env.Key = row, key
			s.out = append(s.out, s.deadLetterChange(tc.Table, env, badCodes[0], strings.Join(bad, "; ")))
			continue
		}
		c.rows = append(c.rows, snapRow{key: encodeKey(key), keyMap: key, row: row})
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return fmt.Errorf("capture %s: snapshot of %s: %w", s.opts.Name, tc.Table, err)
	}
	rows.Close()
	c.done = len(ver.PK) == 0 || n < s.opts.ChunkSize
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

// finish emits the chunk's surviving rows and advances the table's cursor.
func (sn *snapshotter) finish() error {
	s := sn.s
	c := sn.pending
	sn.pending = nil
	if s.held != nil { // cannot happen between transactions, but never lose a change
		s.out = append(s.out, *s.held)
		s.held = nil
	}
	if c.done {
		s.committed.Snapshot = s.committed.Snapshot[1:]
		s.log.Info("table snapshot finished", "table", c.table, "where", c.where)
	} else {
		s.committed.Snapshot[0].Cursor = c.last
	}
	s.m.snapshotLeft.Set(float64(len(s.committed.Snapshot)))
	first := len(s.out)
	var seq int64
	rt := s.reload.table(c.table)
	if !c.cleared {
		for _, r := range c.rows {
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
	emitted := len(s.out) - first
	s.m.snapshotRows.WithLabelValues(c.table).Add(float64(emitted))
	s.m.events.WithLabelValues(c.table, string(schemas.OpRead)).Add(float64(emitted))
	if emitted > 0 && s.positionAllowed() {
		s.out[len(s.out)-1].Position = s.committed.Encode()
	} else {
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
