package pglogical

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// snapshotRun is the initial load in progress: one REPEATABLE READ transaction on the
// normal connection, reading the unfinished tables one after another in key order.
type snapshotRun struct {
	tx      pgx.Tx
	pending []string // tables still to read, in option order
	lsn     string   // source.lsn of every snapshot row
	seq     int64
	cursor  bool // the current table is read through a server-side cursor (no key)
}

func (r *snapshotRun) close(ctx context.Context) {
	if r.tx != nil {
		_ = r.tx.Rollback(ctx)
		r.tx = nil
	}
}

// beginSnapshot opens the snapshot transaction. With an exported snapshot name the
// transaction sees exactly the slot's consistent point; without one it is a fresh
// consistent read taken now (resume after a crash, or a slot created beforehand).
func (s *Source) beginSnapshot(ctx context.Context, exported string) error {
	tx, err := s.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("pglogical %s: begin snapshot transaction: %w", s.o.Name, err)
	}
	if exported != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(exported, "'", "")+"'"); err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("pglogical %s: import snapshot %s exported by slot %s: %w", s.o.Name, exported, s.o.Slot, err)
		}
	}
	if s.pos.Snapshot == nil {
		s.pos.Snapshot = &SnapshotState{}
	}
	if s.pos.Snapshot.Tables == nil {
		s.pos.Snapshot.Tables = map[string]*TableCursor{}
	}
	// Snapshot rows carry the LSN streaming starts from: every streamed change has a
	// later commit LSN, so "newer version wins" lets the stream override them.
	s.pos.Snapshot.LSN = s.streamStart.String()
	run := &snapshotRun{tx: tx, lsn: s.pos.Snapshot.LSN}
	for _, name := range s.o.Tables {
		c := s.pos.Snapshot.Tables[name]
		if c == nil {
			c = &TableCursor{}
			s.pos.Snapshot.Tables[name] = c
		}
		if !c.Done {
			if !s.tables[name].HasPK && len(c.Cursor) == 0 {
				c.Cursor = nil // keyless tables restart from their beginning
			}
			run.pending = append(run.pending, name)
		}
	}
	s.snap = run
	return nil
}

// readSnapshot returns the next chunk of snapshot rows. It returns no changes and a
// nil error when a table just finished (the caller loops) and clears s.snap, after
// committing the transaction, when every table is done.
func (s *Source) readSnapshot(ctx context.Context, max int) ([]capture.Change, error) {
	run := s.snap
	if len(run.pending) == 0 {
		err := run.tx.Commit(ctx)
		run.tx = nil
		s.snap = nil
		if err != nil {
			return nil, fmt.Errorf("pglogical %s: end snapshot transaction: %w", s.o.Name, err)
		}
		s.pos.Snapshot.Done = true
		s.log.Info("snapshot finished; streaming from the slot", "from", s.streamStart.String())
		return nil, nil
	}
	name := run.pending[0]
	t := s.tables[name]
	cur := s.pos.Snapshot.Tables[name]
	limit := min(s.o.ChunkSize, max)
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quoteIdent(c.Name)
	}
	var rows [][][]byte
	var oids []uint32
	if t.HasPK {
		keys := make([]string, len(t.KeyCols))
		for i, k := range t.KeyCols {
			keys[i] = quoteIdent(k)
		}
		q := "SELECT " + strings.Join(cols, ", ") + " FROM " + t.QuotedSQL
		var params [][]byte
		if len(cur.Cursor) == len(t.KeyCols) {
			ph := make([]string, len(t.KeyCols))
			for i, k := range t.KeyCols {
				c, _ := t.column(k)
				ph[i] = fmt.Sprintf("$%d::text::%s", i+1, c.TypeSQL)
				params = append(params, []byte(cur.Cursor[i]))
			}
			q += " WHERE (" + strings.Join(keys, ", ") + ") > (" + strings.Join(ph, ", ") + ")"
		}
		q += " ORDER BY " + strings.Join(keys, ", ") + fmt.Sprintf(" LIMIT %d", limit)
		res := s.conn.PgConn().ExecParams(ctx, q, params, slices.Repeat([]uint32{pgtype.TextOID}, len(params)), nil, nil).Read()
		if res.Err != nil {
			return nil, fmt.Errorf("pglogical %s: snapshot of %s after key %v: %w", s.o.Name, name, cur.Cursor, res.Err)
		}
		rows = res.Rows
		for _, fd := range res.FieldDescriptions {
			oids = append(oids, fd.DataTypeOID)
		}
	} else {
		if !run.cursor {
			if _, err := run.tx.Exec(ctx, "DECLARE shouwang_snap NO SCROLL CURSOR FOR SELECT "+strings.Join(cols, ", ")+" FROM "+t.QuotedSQL); err != nil {
				return nil, fmt.Errorf("pglogical %s: snapshot of %s: declare cursor: %w", s.o.Name, name, err)
			}
			run.cursor = true
		}
		res := s.conn.PgConn().ExecParams(ctx, fmt.Sprintf("FETCH FORWARD %d FROM shouwang_snap", limit), nil, nil, nil, nil).Read()
		if res.Err != nil {
			return nil, fmt.Errorf("pglogical %s: snapshot of %s: fetch: %w", s.o.Name, name, res.Err)
		}
		rows = res.Rows
		for _, fd := range res.FieldDescriptions {
			oids = append(oids, fd.DataTypeOID)
		}
	}
	out := make([]capture.Change, 0, len(rows))
	for _, row := range rows {
		run.seq++
		after := make(map[string]any, len(row))
		var bad error
		for i, v := range row {
			if v == nil {
				after[t.Columns[i].Name] = nil
				continue
			}
			val, err := decodeValue(oids[i], v)
			if err != nil && bad == nil {
				if ve, ok := err.(*valueError); ok {
					ve.Column = t.Columns[i].Name
				}
				bad = err
			}
			after[t.Columns[i].Name] = val
		}
		env := schemas.Envelope{Op: schemas.OpRead, Source: s.envSource(name, run.lsn, 0, run.seq), After: after,
			Schema: schemas.SchemaRef{Name: name, Version: s.schemaVersion(name)}}
		env.Source.Snapshot = true
		ch := s.rowChange(t.KeyCols, env, bad, nil)
		out = append(out, ch)
		if t.HasPK {
			cur.Cursor = cur.Cursor[:0]
			for _, k := range t.KeyCols {
				i := slices.IndexFunc(t.Columns, func(c column) bool { return c.Name == k })
				cur.Cursor = append(cur.Cursor, string(row[i]))
			}
		}
	}
	s.m.snapshotRows.WithLabelValues(s.o.Name, name).Add(float64(len(rows)))
	s.m.events.WithLabelValues(s.o.Name, name, string(schemas.OpRead)).Add(float64(len(rows)))
	if len(rows) < limit {
		cur.Done = true
		cur.Cursor = nil
		run.pending = run.pending[1:]
		if run.cursor {
			if _, err := run.tx.Exec(ctx, "CLOSE shouwang_snap"); err != nil {
				return nil, fmt.Errorf("pglogical %s: snapshot of %s: close cursor: %w", s.o.Name, name, err)
			}
			run.cursor = false
		}
		s.log.Info("snapshot of table finished", "table", name)
	}
	if len(out) > 0 {
		out[len(out)-1].Position = s.pos.clone().Encode()
	}
	return out, nil
}

// envSource fills the envelope's source block.
func (s *Source) envSource(table, lsn string, commitMs, seq int64) schemas.Source {
	return schemas.Source{System: s.o.Name, Kind: Kind, DB: s.dbName, Table: table, LSN: lsn, CommitMs: commitMs, Seq: seq}
}

func (s *Source) schemaVersion(table string) int {
	if v := s.pos.Schemas[table]; v > 0 {
		return v
	}
	return 1
}

// topic names the raw topic of "schema.table" by the table alone, as the other
// connectors and the configuration (config.Source.Tables) do.
func (s *Source) topic(table string) string {
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		table = table[i+1:]
	}
	return schemas.RawTopic(s.o.TopicPrefix, s.o.Name, table)
}
