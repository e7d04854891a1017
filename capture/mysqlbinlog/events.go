package mysqlbinlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// handle applies one binlog event to the stream state.
func (s *Source) handle(ctx context.Context, ev *replication.BinlogEvent) error {
	h := ev.Header
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		s.cur = binlogPos{string(e.NextLogName), uint32(e.Position)}
		if !s.inTx {
			s.boundary()
		}
		return nil
	case *replication.FormatDescriptionEvent:
		// Its LogPos is that of the file's own header, not the resume point.
		return nil
	}
	if h.EventType == replication.HEARTBEAT_EVENT || h.EventType == replication.HEARTBEAT_LOG_EVENT_V2 {
		if !s.inTx {
			// A heartbeat means the server has nothing newer: quiet reload windows
			// must be able to close on the wall clock here too, or a server heartbeat
			// that wins the race against the idle read timeout keeps them open for
			// as long as the source stays quiet (heartbeats carry no timestamp).
			if s.reload != nil {
				s.reload.tick(time.Now().Unix())
			}
			s.m.behind.Set(0)
			s.positionOnly(time.Now().UnixMilli())
		}
		return nil
	}
	if h.LogPos > 0 {
		s.cur.Pos = h.LogPos
	}
	if h.Timestamp > 0 {
		if s.reload != nil {
			s.reload.tick(int64(h.Timestamp))
		}
		s.lastTS = h.Timestamp
		s.m.behind.Set(max(0, time.Since(time.Unix(int64(h.Timestamp), 0)).Seconds()))
	}
	switch e := ev.Event.(type) {
	case *replication.MariadbGTIDEvent:
		s.txGTID = e.GTID.String()
		s.inTx = !e.IsStandalone()
		s.seq = 0
	case *replication.GTIDEvent:
		s.seq = 0
		s.txGTID = ""
		if e.GNO > 0 {
			if next, err := e.GTIDNext(); err == nil {
				s.txGTID = next.String()
			}
		}
	case *replication.QueryEvent:
		q := strings.TrimSpace(string(e.Query))
		switch strings.ToUpper(q) {
		case "BEGIN":
			s.inTx = true
			s.seq = 0
			return nil
		case "COMMIT":
			return s.commit()
		}
		if s.inTx {
			return nil // SAVEPOINT and the like inside a transaction
		}
		if err := s.handleDDL(ctx, string(e.Schema), q, h); err != nil {
			return err
		}
		return s.commit()
	case *replication.XIDEvent:
		return s.commit()
	case *replication.RowsEvent:
		return s.handleRows(h, e)
	default:
		if !s.inTx {
			s.boundary()
		}
	}
	return nil
}

// boundary records a position between transactions that no change carries (rotate,
// GTID list, checkpoint events): the next commit's position includes it anyway.
func (s *Source) boundary() {
	s.committed.File, s.committed.Pos = s.cur.File, s.cur.Pos
}

// commit ends the current transaction: the position after it goes on its last change.
func (s *Source) commit() error {
	if s.reload != nil {
		if err := s.reload.onCommit(); err != nil {
			return fmt.Errorf("capture %s: %w", s.opts.Name, err)
		}
	}
	if s.txGTID != "" {
		if s.gset == nil {
			if g, err := mysql.ParseGTIDSet(s.opts.Flavor, ""); err == nil {
				s.gset = g
			}
		}
		if s.gset != nil {
			if err := s.gset.Update(s.txGTID); err != nil {
				s.log.Warn("cannot add GTID to the executed set", "gtid", s.txGTID, "error", err)
			}
		}
	}
	s.committed.File, s.committed.Pos = s.cur.File, s.cur.Pos
	if s.gset != nil {
		s.committed.GTID = s.gset.String()
	}
	if s.held != nil {
		if s.positionAllowed() {
			s.held.Position = s.committed.Encode()
		}
		s.out = append(s.out, *s.held)
		s.held = nil
	} else {
		// Nothing captured in this transaction (other tables, or a reload window
		// swallowed it): still let the saved position move.
		s.positionOnly(int64(s.lastTS) * 1000)
	}
	s.inTx, s.txGTID = false, ""
	return nil
}

// positionOnly queues a change that only carries the committed position (see
// capture.Change.PositionOnly), merging it into a position-only change already at the
// end of the queue so that a run of skipped transactions costs one entry.
func (s *Source) positionOnly(commitMs int64) {
	if !s.positionAllowed() {
		return
	}
	c := capture.Change{PositionOnly: true, Position: s.committed.Encode(),
		Envelope: schemas.Envelope{Source: schemas.Source{System: s.opts.Name, Kind: Kind,
			BinlogFile: s.committed.File, BinlogPos: s.committed.Pos, GTID: s.committed.GTID, CommitMs: commitMs}}}
	if n := len(s.out); n > 0 && s.out[n-1].PositionOnly {
		s.out[n-1] = c
		return
	}
	s.out = append(s.out, c)
}

// emit queues a change of the open transaction. The latest one is held back so that
// the commit can stamp it with the transaction's end position.
func (s *Source) emit(c capture.Change) {
	if s.held != nil {
		s.out = append(s.out, *s.held)
	}
	s.held = &c
}

func (s *Source) isCaptured(table string) bool {
	if s.captured[table] {
		return true
	}
	db, _, _ := strings.Cut(table, ".")
	return s.dbs[db]
}

// resolve finds the column specs, primary key and schema version for a rows event.
func (s *Source) resolve(table string, t *replication.TableMapEvent) ([]colSpec, []string, int, error) {
	ver := s.hist.at(table, s.cur)
	if specs, ok := specsFromTableMap(t, s.charsets); ok {
		var pk []string
		if len(t.PrimaryKey) > 0 {
			for _, i := range t.PrimaryKey {
				if int(i) < len(specs) {
					pk = append(pk, specs[i].name)
				}
			}
		} else if ver != nil {
			pk = ver.PK
		}
		version := 0
		if ver != nil {
			version = ver.Version
			if !sameNames(ver.Columns, specs) {
				// The history missed a change (unparsed DDL): record what the binlog says.
				nv := TableVersion{PK: pk}
				for _, sp := range specs {
					nv.Columns = append(nv.Columns, Column{Name: sp.name, Type: sp.kind.typeName(), Scale: sp.scale, Charset: sp.charset, Elems: sp.elems, Unsigned: sp.kind == kUint})
				}
				if s.hist.add(table, s.cur, nv) {
					if err := s.hist.save(); err != nil {
						return nil, nil, 0, err
					}
				}
				if v := s.hist.at(table, s.cur); v != nil {
					version = v.Version
				}
			}
		}
		return specs, pk, version, nil
	}
	if ver == nil || ver.Dropped {
		return nil, nil, 0, fmt.Errorf("no schema known for %s and the binlog has no column names (set binlog_row_metadata=FULL)", table)
	}
	if len(ver.Columns) != int(t.ColumnCount) {
		return nil, nil, 0, fmt.Errorf("schema history of %s version %d has %d columns, the binlog row has %d (set binlog_row_metadata=FULL or re-snapshot)", table, ver.Version, len(ver.Columns), t.ColumnCount)
	}
	specs := make([]colSpec, len(ver.Columns))
	for i, c := range ver.Columns {
		specs[i] = specFromColumn(c)
	}
	return specs, ver.PK, ver.Version, nil
}

func sameNames(cols []Column, specs []colSpec) bool {
	if len(cols) != len(specs) {
		return false
	}
	for i := range cols {
		if cols[i].Name != specs[i].name {
			return false
		}
	}
	return true
}

func (k kind) typeName() string {
	switch k {
	case kInt, kUint:
		return "bigint"
	case kFloat:
		return "float"
	case kDouble:
		return "double"
	case kDecimal:
		return "decimal"
	case kText:
		return "text"
	case kBinary:
		return "blob"
	case kDate:
		return "date"
	case kDateTime:
		return "datetime"
	case kTimestamp:
		return "timestamp"
	case kTime:
		return "time"
	case kYear:
		return "year"
	case kEnum:
		return "enum"
	case kSet:
		return "set"
	case kBit:
		return "bit"
	case kJSON:
		return "json"
	}
	return "unknown"
}

func rowMap(specs []colSpec, row []any) (map[string]any, error) {
	m := make(map[string]any, len(specs))
	var errs []error
	for i, sp := range specs {
		if i >= len(row) {
			break
		}
		v, err := binlogValue(sp, row[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("column %s: %w", sp.name, err))
			m[sp.name] = rawRender(row[i])
			continue
		}
		m[sp.name] = v
	}
	return m, errors.Join(errs...)
}

func rawRender(v any) any {
	switch x := v.(type) {
	case []byte:
		return fmt.Sprintf("0x%x", x)
	case string:
		return fmt.Sprintf("0x%x", x)
	case nil:
		return nil
	}
	return fmt.Sprint(v)
}

// keyConverts reports whether every primary-key column of the row image converts
// (a table without a primary key has no key to keep).
func keyConverts(specs []colSpec, pk []string, row []any) bool {
	if len(pk) == 0 {
		return false
	}
	for _, c := range pk {
		i := slices.IndexFunc(specs, func(sp colSpec) bool { return sp.name == c })
		if i < 0 || i >= len(row) {
			return false
		}
		if _, err := binlogValue(specs[i], row[i]); err != nil {
			return false
		}
	}
	return true
}

func keyOf(pk []string, row map[string]any) map[string]any {
	if len(pk) == 0 || row == nil {
		return nil
	}
	k := make(map[string]any, len(pk))
	for _, c := range pk {
		k[c] = row[c]
	}
	return k
}

func (s *Source) envelope(op schemas.Op, table string, h *replication.EventHeader, version int) schemas.Envelope {
	return s.envelopeAt(op, table, rowMeta{pos: s.cur, gtid: s.txGTID, seq: s.seq, ts: h.Timestamp, version: version})
}

func (s *Source) envelopeAt(op schemas.Op, table string, m rowMeta) schemas.Envelope {
	db, tb, _ := strings.Cut(table, ".")
	return schemas.Envelope{
		V:  schemas.EnvelopeVersion,
		Op: op,
		Source: schemas.Source{
			System: s.opts.Name, Kind: Kind, DB: db, Table: tb,
			BinlogFile: m.pos.File, BinlogPos: m.pos.Pos, GTID: m.gtid,
			CommitMs: int64(m.ts) * 1000, Seq: m.seq,
		},
		Schema: schemas.SchemaRef{Name: table, Version: m.version},
		TsMs:   time.Now().UnixMilli(),
	}
}

func (s *Source) topic(table string) string {
	_, tb, _ := strings.Cut(table, ".")
	return schemas.RawTopic(s.opts.TopicPrefix, s.opts.Name, tb)
}

func (s *Source) handleRows(h *replication.EventHeader, e *replication.RowsEvent) error {
	t := e.Table
	table := string(t.Schema) + "." + string(t.Table)
	captured := s.isCaptured(table)
	isPushLog := s.reload != nil && table == s.pushLogTable
	if !captured && !isPushLog {
		return nil
	}
	rt := s.reload.table(table)
	var op schemas.Op
	step := 1
	switch e.Type() {
	case replication.EnumRowsEventTypeInsert:
		op = schemas.OpCreate
	case replication.EnumRowsEventTypeUpdate:
		op, step = schemas.OpUpdate, 2
	case replication.EnumRowsEventTypeDelete:
		op = schemas.OpDelete
	default:
		if captured {
			s.deadLetter(table, h, 0, nil, nil, nil, "unknown_type", fmt.Sprintf("unsupported rows event %s", h.EventType))
		}
		return nil
	}
	specs, pk, version, err := s.resolve(table, t)
	if err != nil {
		if captured {
			for range len(e.Rows) / step {
				s.seq++
				s.deadLetter(table, h, version, nil, nil, nil, "no_schema", err.Error())
			}
		}
		return nil
	}
	// Rows a reload inserts while its window compares them as they come skip the
	// row map: the comparison's goroutine converts and encodes them (see collapse.go).
	var fast *rawKeyer
	if op == schemas.OpCreate && captured && rt != nil && rt.win != nil && rt.win.stream != nil {
		fast = newRawKeyer(specs, pk)
	}
	for i := 0; i+step-1 < len(e.Rows); i += step {
		s.seq++
		if fast != nil && len(e.Rows[i]) == len(specs) && rt.win != nil && rt.win.stream != nil {
			if kb, ok := fast.key(e.Rows[i]); ok && rt.win.stream.accepts(kb) {
				s.snap.observe(table, kb)
				if err := s.reload.windowRaw(rt, kb, specs, pk, e.Rows[i], rowMeta{pos: s.cur, gtid: s.txGTID, seq: s.seq, ts: h.Timestamp, version: version}); err != nil {
					return fmt.Errorf("capture %s: %w", s.opts.Name, err)
				}
				continue
			}
		}
		var before, after map[string]any
		var cerr error
		switch op {
		case schemas.OpCreate:
			after, cerr = rowMap(specs, e.Rows[i])
		case schemas.OpDelete:
			before, cerr = rowMap(specs, e.Rows[i])
		case schemas.OpUpdate:
			var err2 error
			before, cerr = rowMap(specs, e.Rows[i])
			after, err2 = rowMap(specs, e.Rows[i+1])
			cerr = errors.Join(cerr, err2)
		}
		if cerr != nil {
			if captured {
				row, img := after, e.Rows[i+step-1]
				if row == nil {
					row, img = before, e.Rows[i]
				}
				s.deadLetter(table, h, version, keyOf(pk, row), before, after, reasonCode(cerr), cerr.Error())
				if rt != nil && rt.win != nil {
					// Inside a reload window the row must not look absent: its key keeps
					// its stored row, or, when the key itself did not convert, the
					// window's deletes cannot be trusted and are held.
					if keyConverts(specs, pk, img) {
						if err := s.reload.windowKeep(rt, encodeKey(keyOf(pk, row)), h.Timestamp); err != nil {
							return fmt.Errorf("capture %s: %w", s.opts.Name, err)
						}
					} else {
						rt.win.unkeyed++
					}
				}
			}
			continue
		}
		if isPushLog {
			s.reload.pushLog(string(t.Schema), op, before, after, h.Timestamp)
		}
		if !captured {
			continue
		}
		row := after
		if row == nil {
			row = before
		}
		key := keyOf(pk, row)
		kb := encodeKey(key)
		if op == schemas.OpUpdate && len(pk) > 0 {
			// A key change moves the row: the old key's snapshot copy is stale too.
			s.snap.observe(table, encodeKey(keyOf(pk, before)))
		}
		s.snap.observe(table, kb)
		if rt != nil && rt.win != nil {
			if err := s.reload.windowRowKey(rt, op, pk, kb, before, after, h.Timestamp); err != nil {
				return fmt.Errorf("capture %s: %w", s.opts.Name, err)
			}
			continue
		}
		env := s.envelope(op, table, h, version)
		env.Key, env.Before, env.After = key, before, after
		if bound, ok := envelopeJSONBound(&env); s.opts.MaxRowBytes > 0 && (!ok || bound > s.opts.MaxRowBytes) {
			if b, err := json.Marshal(env); err == nil && len(b) > s.opts.MaxRowBytes {
				s.deadLetter(table, h, version, key, nil, nil, "oversized", fmt.Sprintf("row of %d bytes exceeds max_row_bytes %d", len(b), s.opts.MaxRowBytes))
				continue
			}
		}
		c := capture.Change{Topic: s.topic(table), Key: kb, Envelope: env}
		if rt != nil {
			if s.opts.Reload.Detect == DetectQuiet && (rt.tx != nil || op == schemas.OpDelete) {
				// Hold the transaction's changes of the table until it is clear
				// whether its deletes are a reload emptying the table.
				crossed, err := s.reload.bufferTx(rt, c, op == schemas.OpDelete)
				if err == nil && crossed {
					err = s.reload.txToWindow(rt, pk, h.Timestamp)
				}
				if err != nil {
					return fmt.Errorf("capture %s: %w", s.opts.Name, err)
				}
				continue
			}
			if err := s.reload.record(rt, op, pk, before, after); err != nil {
				return fmt.Errorf("capture %s: %w", s.opts.Name, err)
			}
		}
		s.m.events.WithLabelValues(table, string(op)).Inc()
		s.emit(c)
	}
	return nil
}

// deadLetter queues a row the connector could read but not convert for the capture
// DLQ: a capture.Change with DeadLetter set (reason code for metrics, full reason,
// position, key, and what could be decoded of the row as the payload; undecodable
// values appear as "0x…" hex or their Go rendering). It keeps its place in the
// transaction, so the position still advances past it.
func (s *Source) deadLetter(table string, h *replication.EventHeader, version int, key, before, after map[string]any, code, reason string) {
	s.emit(s.deadLetterChangeAt(table, rowMeta{pos: s.cur, gtid: s.txGTID, seq: s.seq, ts: h.Timestamp, version: version}, key, before, after, code, reason))
}

// rowMeta is where a row was read: what its envelope carries about the binlog.
type rowMeta struct {
	pos     binlogPos
	gtid    string
	seq     int64
	ts      uint32
	version int
}

// deadLetterChangeAt builds the DLQ change of a row read at meta.
func (s *Source) deadLetterChangeAt(table string, meta rowMeta, key, before, after map[string]any, code, reason string) capture.Change {
	env := s.envelopeAt(schemas.OpCreate, table, meta)
	switch {
	case after == nil && before != nil:
		env.Op = schemas.OpDelete
	case after != nil && before != nil:
		env.Op = schemas.OpUpdate
	}
	env.Key, env.Before, env.After = key, before, after
	return s.deadLetterChange(table, env, code, reason)
}

// deadLetterChange builds the DLQ change for a row of table.
func (s *Source) deadLetterChange(table string, env schemas.Envelope, code, reason string) capture.Change {
	s.m.deadLetters.WithLabelValues(table).Inc()
	pos := fmt.Sprintf("%s:%d", env.Source.BinlogFile, env.Source.BinlogPos)
	s.log.Warn("row sent to the capture DLQ", "table", table, "position", pos, "snapshot", env.Source.Snapshot, "reason_code", code, "reason", reason)
	payload, err := json.Marshal(struct {
		Table  string         `json:"table"`
		Op     schemas.Op     `json:"op"`
		Before map[string]any `json:"before,omitempty"`
		After  map[string]any `json:"after,omitempty"`
	}{table, env.Op, env.Before, env.After})
	if err != nil {
		payload = []byte(fmt.Sprintf("%q", fmt.Sprint(env.Before, env.After)))
	}
	var key []byte
	if len(env.Key) > 0 {
		key = encodeKey(env.Key)
	}
	return capture.Change{
		Topic: s.topic(table), Key: key, Envelope: env,
		DeadLetter: &schemas.DLQRecord{
			Reason:   fmt.Sprintf("table %s at %s: %s", table, pos, reason),
			Source:   s.opts.Name,
			Position: pos,
			Key:      string(key),
			Payload:  payload,
		},
		DeadLetterReason: code,
	}
}

// handleDDL updates the schema history and emits schema-change and truncate events.
func (s *Source) handleDDL(ctx context.Context, defaultDB, query string, h *replication.EventHeader) error {
	effects, err := parseDDL(defaultDB, query, func(t string) *TableVersion { return s.hist.at(t, s.cur) })
	if err != nil {
		// Not every statement is DDL the parser knows (e.g. MariaDB-only syntax); the
		// TableMapEvent's column names keep decoding right, so only log it.
		s.log.Warn("statement not understood; schema history unchanged", "error", err, "file", s.cur.File, "pos", s.cur.Pos)
		return nil
	}
	histChanged := false
	for _, ef := range effects {
		table := ef.Table
		if ef.Kind == ddlCreate && !s.isCaptured(table) {
			continue
		}
		if !s.isCaptured(table) && !(ef.Kind == ddlRename && s.isCaptured(ef.NewName)) {
			continue
		}
		s.seq++
		switch ef.Kind {
		case ddlTruncate:
			if rt := s.reload.table(table); rt != nil {
				// A reload: the window compares the rows loaded next with the
				// stored image instead of letting downstream drop everything.
				s.reload.truncated(rt, h.Timestamp)
				s.snap.truncated(table)
				continue
			}
			env := s.envelope(schemas.OpTruncate, table, h, s.versionOf(table))
			env.DDL = query
			s.m.events.WithLabelValues(table, string(schemas.OpTruncate)).Inc()
			s.emit(capture.Change{Topic: s.topic(table), Key: []byte(table), Envelope: env})
			s.snap.truncated(table)
			continue
		case ddlDrop:
			if v := s.hist.latest(table); v != nil {
				nv := *v
				nv.Dropped, nv.DDL = true, query
				histChanged = s.hist.add(table, s.cur, nv) || histChanged
			}
		case ddlRename:
			if v := s.hist.at(table, s.cur); v != nil {
				nv := *v
				nv.Dropped, nv.DDL = true, query
				histChanged = s.hist.add(table, s.cur, nv) || histChanged
				nv2 := *v
				nv2.Dropped, nv2.DDL = false, query
				histChanged = s.hist.add(ef.NewName, s.cur, nv2) || histChanged
			}
			if s.captured[table] {
				s.captured[ef.NewName] = true
			}
		case ddlCreate, ddlAlter:
			v := ef.Version
			if v == nil {
				db, tb, _ := strings.Cut(table, ".")
				cur, err := readTableSchema(ctx, s.db, db, tb)
				if err != nil {
					s.log.Warn("cannot refresh table schema after DDL", "table", table, "error", err)
				} else {
					v = &cur
				}
			}
			if v != nil {
				nv := *v
				nv.DDL, nv.Dropped = query, false
				histChanged = s.hist.add(table, s.cur, nv) || histChanged
			}
			if ef.Kind == ddlCreate {
				s.captured[table] = true
			}
		}
		s.m.schemaChanges.WithLabelValues(table).Inc()
		env := s.envelope(schemas.OpSchema, table, h, s.versionOf(table))
		env.DDL = query
		s.emit(capture.Change{Topic: s.topic(table), Key: []byte(table), Envelope: env})
	}
	if histChanged {
		return s.hist.save()
	}
	return nil
}

func (s *Source) versionOf(table string) int {
	if v := s.hist.at(table, s.cur); v != nil {
		return v.Version
	}
	return 0
}

// positionAllowed reports whether the committed position may be handed to the runner
// now: not while a reload window is open or its collapse is still being emitted,
// because a restart must re-read the window from its start (see reload.go).
func (s *Source) positionAllowed() bool {
	return s.reload == nil || s.reload.quiet()
}
