package pglogical

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// Resnapshot is one on-demand re-read in progress, kept in the Position so that a
// restart continues it from its cursor (see the package documentation).
type Resnapshot struct {
	// Table is the configured "schema.table".
	Table string `json:"table"`
	// Where is the operator's SQL condition ("" = every row).
	Where string `json:"where,omitempty"`
	// Cursor holds the key values (PostgreSQL text form) of the last row emitted.
	Cursor []string `json:"cursor,omitempty"`
	// ReadLSN is pg_current_wal_lsn() taken inside the last chunk's transaction, for
	// operators comparing it with the stream; envelopes carry the stream LSN instead.
	ReadLSN string `json:"read_lsn,omitempty"`
}

// ErrBadCondition marks a RequestSnapshot condition the connector refuses.
var ErrBadCondition = errors.New("invalid snapshot condition")

// RequestSnapshot asks for a re-read of one configured table ("schema.table", or the
// table alone when that is unambiguous, as topics name it),
// optionally only the rows matching where (an SQL boolean expression on that table,
// e.g. "village_code LIKE '510104%'"). The rows are emitted as op r with
// source.snapshot=true in primary-key chunks while streaming continues. The request
// is checked now on a short-lived connection (configured table with a primary key,
// one expression without ';' or comments that EXPLAIN accepts, so that unknown
// columns and syntax errors are refused here, not later) and becomes durable with the next saved position. Safe to
// call from any goroutine.
func (s *Source) RequestSnapshot(tableName, where string) error {
	if !strings.Contains(tableName, ".") {
		// The configuration names raw topics by the table alone: accept that name
		// when it is unambiguous.
		var match []string
		for _, t := range s.o.Tables {
			if _, rel, _ := strings.Cut(t, "."); rel == tableName {
				match = append(match, t)
			}
		}
		if len(match) == 1 {
			tableName = match[0]
		}
	}
	if !slices.Contains(s.o.Tables, tableName) {
		return fmt.Errorf("pglogical %s: request snapshot: table %q is not captured (configured: %v)", s.o.Name, tableName, s.o.Tables)
	}
	where = strings.TrimSpace(where)
	if err := checkCondition(where); err != nil {
		return fmt.Errorf("pglogical %s: request snapshot of %s: %w", s.o.Name, tableName, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := s.connect(ctx)
	if err != nil {
		return fmt.Errorf("pglogical %s: request snapshot of %s: check the table: %w", s.o.Name, tableName, err)
	}
	defer conn.Close(context.Background())
	schema, rel, _ := strings.Cut(tableName, ".")
	quoted := pgx.Identifier{schema, rel}.Sanitize()
	var pk bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1::regclass AND indisprimary)`, quoted).Scan(&pk); err != nil {
		return fmt.Errorf("pglogical %s: request snapshot of %s: look up its primary key: %w", s.o.Name, tableName, err)
	}
	if !pk {
		return fmt.Errorf("pglogical %s: request snapshot of %s: the table has no primary key to read it in chunks beside the stream; re-create the slot's initial snapshot instead", s.o.Name, tableName)
	}
	if where != "" {
		if _, err := conn.Exec(ctx, "EXPLAIN SELECT 1 FROM "+quoted+" WHERE ("+where+")"); err != nil {
			return fmt.Errorf("pglogical %s: request snapshot of %s: condition %q: %w: %w", s.o.Name, tableName, where, ErrBadCondition, err)
		}
	}
	s.reqMu.Lock()
	s.requests = append(s.requests, Resnapshot{Table: tableName, Where: where})
	s.reqMu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// checkCondition refuses what cannot be one boolean expression: a statement separator
// or a comment (which could hide the closing parenthesis the connector adds).
func checkCondition(where string) error {
	for _, bad := range []string{";", "--", "/*"} {
		if strings.Contains(where, bad) {
			return fmt.Errorf("condition %q must be one SQL expression without %q: %w", where, bad, ErrBadCondition)
		}
	}
	return nil
}

// takeRequests moves requests made by RequestSnapshot into the position's list (a
// request identical to one not yet started is dropped). It reports whether the list
// changed, so that ReadN hands out a position-only change making it durable.
func (s *Source) takeRequests() (bool, error) {
	s.reqMu.Lock()
	reqs := s.requests
	s.requests = nil
	s.reqMu.Unlock()
	if len(reqs) == 0 {
		return false, nil
	}
	if err := s.syncHanded(); err != nil {
		return false, err
	}
	changed := false
	for _, r := range reqs {
		dup := slices.ContainsFunc(s.handed.Resnapshot, func(o Resnapshot) bool {
			return o.Table == r.Table && o.Where == r.Where && len(o.Cursor) == 0
		})
		if dup {
			continue
		}
		if t := s.tables[r.Table]; t == nil || !t.HasPK {
			s.log.Error("snapshot request dropped: the table has no primary key to read it in chunks", "table", r.Table)
			continue
		}
		s.handed.Resnapshot = append(s.handed.Resnapshot, r)
		s.log.Info("snapshot requested", "table", r.Table, "where", r.Where)
		changed = true
	}
	return changed, nil
}

// stampHanded gives streamed changes' positions the current re-snapshot list (the
// stream goroutine does not know it) and remembers the last position handed out.
// Without a re-snapshot pending it only keeps the last position's bytes (decoded
// lazily by syncHanded), so streaming pays nothing for the feature.
func (s *Source) stampHanded(cs []capture.Change) error {
	for i := range cs {
		if cs[i].Position == nil {
			continue
		}
		if len(s.handed.Resnapshot) == 0 {
			s.handedRaw = cs[i].Position
			continue
		}
		p, _, err := DecodePosition(cs[i].Position)
		if err != nil {
			return fmt.Errorf("pglogical %s: restamp position: %w", s.o.Name, err)
		}
		p.Resnapshot = s.handed.Resnapshot
		s.handed = p.clone()
		s.handedRaw = nil
		cs[i].Position = p.Encode()
	}
	return nil
}

// syncHanded decodes the last handed-out position kept as bytes by stampHanded.
func (s *Source) syncHanded() error {
	if s.handedRaw == nil {
		return nil
	}
	p, _, err := DecodePosition(s.handedRaw)
	if err != nil {
		return fmt.Errorf("pglogical %s: last handed-out position: %w", s.o.Name, err)
	}
	p.Resnapshot = s.handed.Resnapshot
	s.handed = p
	s.handedRaw = nil
	return nil
}

// readResnapshot reads the next chunk of the first requested re-snapshot in its own
// REPEATABLE READ, READ ONLY transaction on a connection of its own (the normal one
// belongs to the stream goroutine once streaming).
//
// Rows carry source.lsn = the commit LSN bound below which every transaction was
// already handed out by the stream (handed position's LSN - 1), not the LSN of the
// read: every transaction with a lower commit LSN is visible to the chunk's snapshot,
// and every transaction handed out later has a higher commit LSN, so under "highest
// version per key wins" a streamed change committed after the read always beats the
// snapshot row, and one committed before it either is contained in the row or is
// replaced by a later streamed change of the same row. The rows also follow those
// transactions in the topic, so in-order consumers converge too.
func (s *Source) readResnapshot(ctx context.Context, maxRows int) ([]capture.Change, error) {
	r := &s.handed.Resnapshot[0]
	t := s.tables[r.Table]
	if s.snapConn == nil || s.snapConn.IsClosed() {
		c, err := s.connect(ctx)
		if err != nil {
			return nil, err
		}
		s.snapConn = c
	}
	tx, err := s.snapConn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("pglogical %s: re-snapshot of %s: begin: %w", s.o.Name, r.Table, err)
	}
	defer tx.Rollback(context.Background())
	var readLSN string
	if err := tx.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&readLSN); err != nil {
		return nil, fmt.Errorf("pglogical %s: re-snapshot of %s: read WAL position: %w", s.o.Name, r.Table, err)
	}
	limit := min(s.o.ChunkSize, maxRows)
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quoteIdent(c.Name)
	}
	keys := make([]string, len(t.KeyCols))
	for i, k := range t.KeyCols {
		keys[i] = quoteIdent(k)
	}
	var conds []string
	if r.Where != "" {
		conds = append(conds, "("+r.Where+")")
	}
	var params [][]byte
	if len(r.Cursor) == len(t.KeyCols) {
		ph := make([]string, len(t.KeyCols))
		for i, k := range t.KeyCols {
			c, _ := t.column(k)
			ph[i] = fmt.Sprintf("$%d::text::%s", i+1, c.TypeSQL)
			params = append(params, []byte(r.Cursor[i]))
		}
		conds = append(conds, "("+strings.Join(keys, ", ")+") > ("+strings.Join(ph, ", ")+")")
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + t.QuotedSQL
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	q += " ORDER BY " + strings.Join(keys, ", ") + fmt.Sprintf(" LIMIT %d", limit)
	res := s.snapConn.PgConn().ExecParams(ctx, q, params, slices.Repeat([]uint32{pgtype.TextOID}, len(params)), nil, nil).Read()
	if res.Err != nil {
		var pgErr *pgconn.PgError
		if errors.As(res.Err, &pgErr) && (strings.HasPrefix(pgErr.Code, "42") || strings.HasPrefix(pgErr.Code, "22")) {
			// The condition (or a changed table) cannot be read: drop this request,
			// keep the connector running.
			s.log.Error("re-snapshot abandoned: the query failed", "table", r.Table, "where", r.Where, "err", res.Err)
			s.handed.Resnapshot = slices.Delete(slices.Clone(s.handed.Resnapshot), 0, 1)
			return []capture.Change{{PositionOnly: true, Position: s.handed.clone().Encode()}}, nil
		}
		return nil, fmt.Errorf("pglogical %s: re-snapshot of %s after key %v: %w", s.o.Name, r.Table, r.Cursor, res.Err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("pglogical %s: re-snapshot of %s: end transaction: %w", s.o.Name, r.Table, err)
	}
	lsn := (max(s.handed.lsn, 1) - 1).String()
	out := make([]capture.Change, 0, len(res.Rows)+1)
	var cursor []string
	for _, row := range res.Rows {
		s.resnapSeq++
		after := make(map[string]any, len(row))
		var bad error
		for i, v := range row {
			if v == nil {
				after[t.Columns[i].Name] = nil
				continue
			}
			val, err := decodeValue(res.FieldDescriptions[i].DataTypeOID, v)
			if err != nil && bad == nil {
				if ve, ok := err.(*valueError); ok {
					ve.Column = t.Columns[i].Name
				}
				bad = err
			}
			after[t.Columns[i].Name] = val
		}
		env := schemas.Envelope{Op: schemas.OpRead, Source: s.envSource(r.Table, lsn, 0, s.resnapSeq), After: after,
			Schema: schemas.SchemaRef{Name: r.Table, Version: s.handedSchemaVersion(r.Table)}}
		env.Source.Snapshot = true
		out = append(out, s.rowChange(t.KeyCols, env, bad, nil))
		cursor = cursor[:0]
		for _, k := range t.KeyCols {
			i := slices.IndexFunc(t.Columns, func(c column) bool { return c.Name == k })
			cursor = append(cursor, string(row[i]))
		}
	}
	s.m.snapshotRows.WithLabelValues(s.o.Name, r.Table).Add(float64(len(res.Rows)))
	s.m.events.WithLabelValues(s.o.Name, r.Table, string(schemas.OpRead)).Add(float64(len(res.Rows)))
	list := slices.Clone(s.handed.Resnapshot)
	if len(res.Rows) < limit {
		s.log.Info("re-snapshot of table finished", "table", r.Table, "where", r.Where, "read_lsn", readLSN)
		list = list[1:]
	} else {
		list[0] = Resnapshot{Table: r.Table, Where: r.Where, Cursor: slices.Clone(cursor), ReadLSN: readLSN}
	}
	s.handed.Resnapshot = list
	pos := s.handed.clone().Encode()
	if len(out) == 0 {
		return []capture.Change{{PositionOnly: true, Position: pos}}, nil
	}
	out[len(out)-1].Position = pos
	return out, nil
}

// handedSchemaVersion is the column-set version of table as of the last handed-out
// streamed change.
func (s *Source) handedSchemaVersion(table string) int {
	if v := s.handed.Schemas[table]; v > 0 {
		return v
	}
	return 1
}
