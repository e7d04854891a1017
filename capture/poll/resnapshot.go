package poll

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// resnapPos is one on-demand re-read in progress, kept in the position document so
// that a restart continues it.
type resnapPos struct {
	Query string `json:"query"`
	Where string `json:"where,omitempty"`
	// Key holds the key column values of the last row emitted (keyset cursor).
	Key []any `json:"key,omitempty"`
}

// ErrBadCondition marks a RequestSnapshot condition the source refuses.
var ErrBadCondition = errors.New("invalid snapshot condition")

// RequestSnapshot asks for every row of one configured query's view (or only the rows
// matching where, an SQL boolean expression on the view) to be emitted again as op r
// with source.snapshot=true and the row's current values, whatever the key store
// holds, so that downstream can reconcile. The request is checked now (configured
// query name; one expression without ';' or comments; the view database must accept
// "SELECT 1 FROM view WHERE (where) LIMIT 0") and becomes durable with the next saved
// position. Safe to call from any goroutine.
func (s *Source) RequestSnapshot(queryName, where string) error {
	i := slices.IndexFunc(s.qs, func(q *query) bool { return q.Name == queryName })
	if i < 0 {
		names := make([]string, len(s.qs))
		for j, q := range s.qs {
			names[j] = q.Name
		}
		return fmt.Errorf("poll %s: request snapshot: query %q is not configured (queries: %v)", s.o.Name, queryName, names)
	}
	where = strings.TrimSpace(where)
	for _, bad := range []string{";", "--", "/*", "#"} {
		if strings.Contains(where, bad) {
			return fmt.Errorf("poll %s: request snapshot of %s: condition %q must be one SQL expression without %q: %w", s.o.Name, queryName, where, bad, ErrBadCondition)
		}
	}
	if where != "" {
		driver := "pgx"
		if s.o.Driver == DriverMySQL {
			driver = "mysql"
		}
		db, err := sql.Open(driver, s.o.DSN)
		if err != nil {
			return fmt.Errorf("poll %s: request snapshot of %s: open %s database: %w", s.o.Name, queryName, s.o.Driver, err)
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rows, err := db.QueryContext(ctx, "SELECT 1 FROM "+s.qs[i].rel+" WHERE ("+where+") LIMIT 0")
		if err != nil {
			return fmt.Errorf("poll %s: request snapshot of %s: condition %q rejected by the database: %w: %w", s.o.Name, queryName, where, ErrBadCondition, err)
		}
		rows.Close()
	}
	s.reqMu.Lock()
	s.requests = append(s.requests, resnapPos{Query: queryName, Where: where})
	s.reqMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// takeRequests moves requested re-reads into the position document (dropping one
// identical to a request not started yet) and reports whether any was added.
func (s *Source) takeRequests() bool {
	s.reqMu.Lock()
	reqs := s.requests
	s.requests = nil
	s.reqMu.Unlock()
	added := false
	for _, r := range reqs {
		if slices.ContainsFunc(s.pos.Resnapshot, func(o resnapPos) bool { return o.Query == r.Query && o.Where == r.Where && len(o.Key) == 0 }) {
			continue
		}
		s.pos.Resnapshot = append(s.pos.Resnapshot, r)
		s.log.Info("snapshot requested", "query", r.Query, "where", r.Where)
		added = true
	}
	return added
}

// positionOnly hands out the current position alone (a batch without writes), so
// that a new request is saved before any of its rows are read.
func (s *Source) positionOnly() ([]capture.Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.pos.Seq = s.seq
	pos, err := s.pos.clone().encode()
	if err != nil {
		return nil, fmt.Errorf("poll %s: %w", s.o.Name, err)
	}
	s.pending = append(s.pending, batch{seq: s.seq})
	return []capture.Change{{PositionOnly: true, Position: pos}}, nil
}

// resnapshot reads the next chunk of the first requested re-read, in key order, and
// emits every row as r. The rows also go to the key store, so a later poll compares
// with what was just emitted. The cursor and the remaining requests ride on the
// chunk's position.
func (s *Source) resnapshot(ctx context.Context, maxRows int) ([]capture.Change, error) {
	r := &s.pos.Resnapshot[0]
	i := slices.IndexFunc(s.qs, func(q *query) bool { return q.Name == r.Query })
	if i < 0 {
		s.log.Error("saved re-snapshot dropped: the query is no longer configured", "query", r.Query)
		s.pos.Resnapshot = slices.Delete(s.pos.Resnapshot, 0, 1)
		return s.positionOnly()
	}
	q := s.qs[i]
	limit := min(q.BatchSize, maxRows)
	var args []any
	var where []string
	if r.Where != "" {
		where = append(where, "("+r.Where+")")
	}
	keys := make([]string, len(q.keyIdx))
	for j, ki := range q.keyIdx {
		keys[j] = s.quote(q.cols[ki].name)
	}
	if len(r.Key) == len(q.keyIdx) {
		ph := make([]string, len(q.keyIdx))
		for j, ki := range q.keyIdx {
			ph[j] = s.param(&args, q.cols[ki], r.Key[j])
		}
		if len(ph) == 1 {
			where = append(where, keys[0]+" > "+ph[0])
		} else {
			where = append(where, "("+strings.Join(keys, ", ")+") > ("+strings.Join(ph, ", ")+")")
		}
	}
	text := "SELECT " + q.colList + " FROM " + q.rel
	if len(where) > 0 {
		text += " WHERE " + strings.Join(where, " AND ")
	}
	text += " ORDER BY " + strings.Join(keys, ", ") + fmt.Sprintf(" LIMIT %d", limit)
	rows, err := s.db.QueryContext(ctx, text, args...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The view may have changed since the request: give up this request rather
		// than stopping the source.
		s.log.Error("re-snapshot abandoned: the query failed", "query", q.Name, "where", r.Where, "err", err)
		s.pos.Resnapshot = slices.Delete(s.pos.Resnapshot, 0, 1)
		return s.positionOnly()
	}
	defer rows.Close()
	var cs []capture.Change
	var writes []write
	n := 0
	raw := make([]any, len(q.cols))
	ptrs := make([]any, len(q.cols))
	for j := range raw {
		ptrs[j] = &raw[j]
	}
	var cursor []any
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("poll %s: re-snapshot of %s: read row: %w", s.o.Name, q.Name, err)
		}
		n++
		p, _, err := s.row(q, raw)
		if err != nil {
			return nil, err
		}
		cursor = cursor[:0]
		for _, ki := range q.keyIdx {
			v, err := convert(q.cols[ki], raw[ki])
			if err != nil || v == nil {
				return nil, fmt.Errorf("poll %s: re-snapshot of %s: key column %s has value %q that cannot be a cursor: %v", s.o.Name, q.Name, q.cols[ki].name, asString(raw[ki]), err)
			}
			cursor = append(cursor, v)
		}
		if p.dead != nil {
			cs = append(cs, capture.Change{Key: []byte(p.key), DeadLetter: p.dead, DeadLetterReason: p.reason,
				Envelope: schemas.Envelope{Op: schemas.OpRead, Source: s.src(q, p.wm, n)}})
			s.m.events.WithLabelValues(s.o.Name, q.Name, "dlq").Inc()
			continue
		}
		env := schemas.Envelope{Op: schemas.OpRead, Source: s.src(q, p.wm, n), Key: p.keyMap, After: p.after,
			Schema: schemas.SchemaRef{Name: q.Name, Version: 1}}
		env.Source.Snapshot = true
		cs = append(cs, capture.Change{Topic: q.topic, Key: []byte(p.key), Envelope: env})
		writes = append(writes, write{query: q.Name, key: p.key, hash: p.hash, row: p.row})
		s.m.events.WithLabelValues(s.o.Name, q.Name, string(schemas.OpRead)).Inc()
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("poll %s: re-snapshot of %s: %w", s.o.Name, q.Name, err)
	}
	s.m.rows.WithLabelValues(s.o.Name, q.Name).Add(float64(n))
	if n < limit {
		s.log.Info("re-snapshot finished", "query", q.Name, "where", r.Where)
		s.pos.Resnapshot = slices.Delete(s.pos.Resnapshot, 0, 1)
	} else {
		r.Key = slices.Clone(cursor)
	}
	if len(cs) == 0 {
		return s.positionOnly()
	}
	return s.seal(q, cs, writes)
}
