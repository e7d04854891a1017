package mysqlbinlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// DeadLetterSchema is the SchemaRef.Name of a dead-letter change. Until capture.Change
// can carry a schemas.DLQRecord, a row the connector cannot convert is emitted as a
// Change whose Topic is schemas.DLQTopic(prefix, "capture") and whose Envelope has
// Schema.Name DeadLetterSchema, DDL holding the reason, Key/Before/After holding what
// could be decoded (undecodable values as "0x…" hex or their Go rendering), and the
// usual source position. The stream continues after it.
const DeadLetterSchema = "shouwang.dlq.capture"

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
			s.m.behind.Set(0)
		}
		return nil
	}
	if h.LogPos > 0 {
		s.cur.Pos = h.LogPos
	}
	if h.Timestamp > 0 {
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
			s.commit()
			return nil
		}
		if s.inTx {
			return nil // SAVEPOINT and the like inside a transaction
		}
		if err := s.handleDDL(ctx, string(e.Schema), q, h); err != nil {
			return err
		}
		s.commit()
	case *replication.XIDEvent:
		s.commit()
	case *replication.RowsEvent:
		s.handleRows(h, e)
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
func (s *Source) commit() {
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
		s.held.Position = s.committed.Encode()
		s.out = append(s.out, *s.held)
		s.held = nil
	}
	s.inTx, s.txGTID = false, ""
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
	db, tb, _ := strings.Cut(table, ".")
	return schemas.Envelope{
		V:  schemas.EnvelopeVersion,
		Op: op,
		Source: schemas.Source{
			System: s.opts.Name, Kind: Kind, DB: db, Table: tb,
			BinlogFile: s.cur.File, BinlogPos: s.cur.Pos, GTID: s.txGTID,
			CommitMs: int64(h.Timestamp) * 1000, Seq: s.seq,
		},
		Schema: schemas.SchemaRef{Name: table, Version: version},
		TsMs:   time.Now().UnixMilli(),
	}
}

func (s *Source) topic(table string) string {
	_, tb, _ := strings.Cut(table, ".")
	return schemas.RawTopic(s.opts.TopicPrefix, s.opts.Name, tb)
}

func (s *Source) handleRows(h *replication.EventHeader, e *replication.RowsEvent) {
	t := e.Table
	table := string(t.Schema) + "." + string(t.Table)
	if !s.isCaptured(table) {
		return
	}
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
		s.deadLetter(table, h, 0, nil, nil, fmt.Sprintf("unsupported rows event %s", h.EventType))
		return
	}
	specs, pk, version, err := s.resolve(table, t)
	if err != nil {
		for range len(e.Rows) / step {
			s.seq++
			s.deadLetter(table, h, version, nil, nil, err.Error())
		}
		return
	}
	for i := 0; i+step-1 < len(e.Rows); i += step {
		s.seq++
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
			s.deadLetter(table, h, version, before, after, cerr.Error())
			continue
		}
		row := after
		if row == nil {
			row = before
		}
		key := keyOf(pk, row)
		env := s.envelope(op, table, h, version)
		env.Key, env.Before, env.After = key, before, after
		kb := encodeKey(key)
		if op == schemas.OpUpdate && len(pk) > 0 {
			// A key change moves the row: the old key's snapshot copy is stale too.
			s.snap.observe(table, encodeKey(keyOf(pk, before)))
		}
		s.snap.observe(table, kb)
		if s.opts.MaxRowBytes > 0 {
			if b, err := json.Marshal(env); err == nil && len(b) > s.opts.MaxRowBytes {
				s.deadLetter(table, h, version, key, nil, fmt.Sprintf("row of %d bytes exceeds max_row_bytes %d", len(b), s.opts.MaxRowBytes))
				continue
			}
		}
		s.m.events.WithLabelValues(table, string(op)).Inc()
		s.emit(capture.Change{Topic: s.topic(table), Key: kb, Envelope: env})
	}
}

// deadLetter queues a change for the capture DLQ (see DeadLetterSchema).
func (s *Source) deadLetter(table string, h *replication.EventHeader, version int, before, after map[string]any, reason string) {
	s.m.deadLetters.WithLabelValues(table).Inc()
	s.log.Warn("row sent to the capture DLQ", "table", table, "file", s.cur.File, "pos", s.cur.Pos, "reason", reason)
	env := s.envelope(schemas.OpCreate, table, h, version)
	if after == nil {
		env.Op = schemas.OpDelete
		if before == nil {
			before = map[string]any{}
		}
	}
	env.Before, env.After = before, after
	env.Schema = schemas.SchemaRef{Name: DeadLetterSchema, Version: 1}
	env.DDL = reason
	s.emit(capture.Change{Topic: schemas.DLQTopic(s.opts.TopicPrefix, "capture"), Envelope: env})
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
