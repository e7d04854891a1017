package poll

import (
	"context"
	"fmt"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// scan compares the view's full key set with the key store and queues a delete for
// every stored key that is gone, unless the mass-delete guard holds them.
func (s *Source) scan(ctx context.Context, q *query) error {
	start := time.Now()
	keyCols := make([]string, len(q.keyIdx))
	for i, ki := range q.keyIdx {
		keyCols[i] = s.quote(q.cols[ki].name)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+joinComma(keyCols)+" FROM "+q.rel)
	if err != nil {
		return fmt.Errorf("poll %s: query %s: key scan of %s: %w", s.o.Name, q.Name, q.Relation, err)
	}
	defer rows.Close()
	raw := make([]any, len(q.keyIdx))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	skipped := 0
	next := func() (string, bool, error) {
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				return "", false, fmt.Errorf("read key: %w", err)
			}
			km := make(map[string]any, len(raw))
			ok := true
			for i, ki := range q.keyIdx {
				v, err := convert(q.cols[ki], raw[i])
				if err != nil {
					ok = false // such a row was dead-lettered, so it is not in the store either
					break
				}
				km[q.cols[ki].name] = v
			}
			if !ok {
				skipped++
				continue
			}
			kb, err := encodeKey(km)
			if err != nil {
				return "", false, err
			}
			return string(kb), true, nil
		}
		return "", false, rows.Err()
	}
	gone, total, err := s.st.vanished(ctx, q.Name, next)
	if err != nil {
		return fmt.Errorf("poll %s: %w", s.o.Name, err)
	}
	s.m.duration.WithLabelValues(s.o.Name, q.Name, "scan").Observe(time.Since(start).Seconds())
	q.nextScan = time.Now().Add(q.DeleteDetection.Interval)

	// A key deleted by a batch not yet acknowledged is already on its way.
	s.mu.Lock()
	for k := range gone {
		if e, ok := s.overlay[q.Name+"\x00"+k]; ok {
			if e.del {
				delete(gone, k)
			}
		}
	}
	s.mu.Unlock()

	share := q.DeleteDetection.MaxDeleteShare
	if len(gone) > 0 && share < 1 && float64(len(gone)) > share*float64(total) {
		s.m.held.WithLabelValues(s.o.Name, q.Name).Inc()
		s.log.Error("mass delete held: the view lost too many keys; nothing emitted, the scan is retried at the next interval",
			"query", q.Name, "relation", q.Relation, "deletes", len(gone), "known", total,
			"limit_share", share, "next_scan", q.nextScan,
			"what_to_do", "check the view with the department; if the deletes are real, raise delete_detection.max_delete_share (1 disables the guard) and restart")
		return nil
	}
	s.log.Info("key scan done", "query", q.Name, "known", total, "deletes", len(gone), "unreadable_keys", skipped,
		"took", time.Since(start).Round(time.Millisecond))
	q.scanAt = start
	if len(gone) == 0 {
		s.markScanned(q)
		return nil
	}
	for k, row := range gone {
		before := decodeRow(row)
		key := decodeRow([]byte(k))
		env := schemas.Envelope{Op: schemas.OpDelete, Source: schemas.Source{System: s.o.Name, Kind: Kind, DB: q.Relation, Table: q.Name},
			Key: key, Before: before, Schema: schemas.SchemaRef{Name: q.Name, Version: 1}}
		q.deletes = append(q.deletes, capture.Change{Topic: q.topic, Key: []byte(k), Envelope: env})
		q.delKeys = append(q.delKeys, k)
	}
	return nil
}

// markScanned records the scan time in the read position (it rides on the next batch).
func (s *Source) markScanned(q *query) {
	qp := s.pos.Queries[q.Name]
	if qp == nil {
		qp = &queryPos{}
		s.pos.Queries[q.Name] = qp
	}
	qp.LastFullScan = q.scanAt.UTC()
}

// emitDeletes hands out up to max queued deletes of q as one batch.
func (s *Source) emitDeletes(q *query, max int) ([]capture.Change, error) {
	n := min(max, len(q.deletes))
	cs := append([]capture.Change(nil), q.deletes[:n]...)
	writes := make([]write, n)
	for i, k := range q.delKeys[:n] {
		writes[i] = write{query: q.Name, key: k, del: true}
		s.m.events.WithLabelValues(s.o.Name, q.Name, "d").Inc()
	}
	q.deletes, q.delKeys = q.deletes[n:], q.delKeys[n:]
	if len(q.deletes) == 0 {
		q.deletes, q.delKeys = nil, nil
		s.markScanned(q)
	}
	return s.seal(q, cs, writes)
}

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}
