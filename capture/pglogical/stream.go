package pglogical

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// receiveWait bounds one blocking receive so that acknowledgements are confirmed to
// the server promptly on a quiet stream.
const receiveWait = 200 * time.Millisecond

// txn buffers one transaction's changes until its commit: nothing of a transaction is
// handed to the runner before PostgreSQL committed it, so an aborted streamed
// transaction emits nothing.
type txn struct {
	xid     uint32
	changes []capture.Change
	subxids []uint32 // per change, for StreamAbort of a subtransaction
}

// streamState is owned by the stream goroutine: the decoder's state and the status
// bookkeeping.
type streamState struct {
	s         *Source
	relations map[uint32]*relation
	schemas   map[string]int // column-set version per table
	cur       *txn           // open non-streamed transaction (BEGIN..COMMIT)
	streams   map[uint32]*txn
	inStream  bool
	streamXid uint32

	enqueuedEnd pglogrepl.LSN // end LSN of the last transaction queued
	skipUpTo    pglogrepl.LSN // after a reconnect: transactions already queued

	sent       pglogrepl.LSN // last LSN confirmed to the server
	lastStatus time.Time
	lastBeat   time.Time
	lastStats  time.Time
	// idle is a keepalive's WAL end seen when no transaction was open; it may be
	// confirmed once everything queued before it (idleBarrier) is acknowledged.
	idle, idleBarrier pglogrepl.LSN
}

func newStreamState(s *Source, start pglogrepl.LSN) *streamState {
	st := &streamState{s: s, relations: map[uint32]*relation{}, schemas: maps.Clone(s.pos.Schemas),
		streams: map[uint32]*txn{}, enqueuedEnd: start, sent: start}
	if st.schemas == nil {
		st.schemas = map[string]int{}
	}
	return st
}

// run streams until ctx is cancelled, reconnecting with backoff after errors; a
// permanent failure is handed to ReadN.
func (st *streamState) run(ctx context.Context) {
	s := st.s
	for {
		err := st.receiveLoop(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("replication stream failed; reconnecting", "err", err)
		s.connection(err)
		s.m.reconnects.Inc()
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = 500 * time.Millisecond
		b.MaxInterval = 10 * time.Second
		b.MaxElapsedTime = s.o.ReconnectTimeout
		rerr := backoff.Retry(func() error {
			err := st.reconnect(ctx)
			s.connection(err)
			return err
		}, backoff.WithContext(b, ctx))
		if ctx.Err() != nil {
			return
		}
		if rerr != nil {
			s.fail(fmt.Errorf("pglogical %s: replication stream lost (%v) and reconnecting failed: %w", s.o.Name, err, rerr))
			return
		}
	}
}

// reconnect replaces the replication connection and restarts streaming from the
// last acknowledged LSN. Transactions the server sends again that were already
// queued are skipped; open ones are discarded (the server resends them whole).
func (st *streamState) reconnect(ctx context.Context) error {
	s := st.s
	if s.repl != nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = s.repl.Close(cctx)
		cancel()
	}
	conn, err := s.connectRepl(ctx)
	if err != nil {
		return err
	}
	s.repl = conn
	from := pglogrepl.LSN(s.acked.Load())
	if err := s.startReplication(ctx, conn, from); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42704" { // undefined_object: slot dropped
			return backoff.Permanent(err)
		}
		return err
	}
	st.cur, st.inStream = nil, false
	clear(st.streams)
	st.skipUpTo = st.enqueuedEnd
	st.sent = from
	s.log.Info("replication stream resumed", "from", from.String())
	return nil
}

// connection reports the stream's state to Options.OnConnection.
func (s *Source) connection(err error) {
	if s.o.OnConnection != nil {
		s.o.OnConnection(err)
	}
}

func (s *Source) fail(err error) {
	s.mu.Lock()
	s.failure = err
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Source) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// receiveLoop reads replication messages until an error.
func (st *streamState) receiveLoop(ctx context.Context) error {
	s := st.s
	for {
		if err := st.maybeStatus(ctx, false); err != nil {
			return err
		}
		// Back-pressure: stop reading WAL while ReadN is far behind, but keep
		// answering the server so it does not time the connection out.
		for s.queued() >= s.o.MaxQueued {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.drained:
			case <-time.After(receiveWait):
			}
			if err := st.maybeStatus(ctx, false); err != nil {
				return err
			}
		}
		rctx, cancel := context.WithTimeout(ctx, receiveWait)
		msg, err := s.repl.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				st.keepalive(ka)
				if ka.ReplyRequested {
					if err := st.maybeStatus(ctx, true); err != nil {
						return err
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse XLogData: %w", err)
				}
				if err := st.handle(xld); err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("server error: %s (SQLSTATE %s)", m.Message, m.Code)
		case *pgproto3.CopyDone:
			return errors.New("server ended the replication stream")
		}
	}
}

// keepalive records a safe idle confirmation point: with no transaction open, every
// transaction committed before the keepalive's WAL end has been received, so once
// those are acknowledged the slot may move to the WAL end (WAL written for tables
// outside the publication is then released on a quiet database).
func (st *streamState) keepalive(ka pglogrepl.PrimaryKeepaliveMessage) {
	if st.cur != nil || len(st.streams) > 0 {
		return
	}
	if ka.ServerWALEnd > st.idle {
		st.idle, st.idleBarrier = ka.ServerWALEnd, st.enqueuedEnd
	}
	if pglogrepl.LSN(st.s.acked.Load()) >= st.enqueuedEnd && st.s.queued() == 0 {
		st.s.m.behind.Set(0)
	}
}

// confirmable is the highest LSN that may be confirmed: the last acknowledged one, or
// the idle keepalive point once everything before it is acknowledged.
func (st *streamState) confirmable() pglogrepl.LSN {
	acked := pglogrepl.LSN(st.s.acked.Load())
	if st.idle > acked && acked >= st.idleBarrier {
		return st.idle
	}
	return acked
}

// maybeStatus sends a standby status update when the confirmable LSN moved, when the
// status interval passed, or when the server asked; on a quiet stream it asks the
// server for a keepalive every heartbeat interval. It also refreshes slot metrics.
func (st *streamState) maybeStatus(ctx context.Context, force bool) error {
	s := st.s
	now := time.Now()
	lsn := st.confirmable()
	quiet := st.cur == nil && len(st.streams) == 0
	beat := quiet && now.Sub(st.lastBeat) >= s.o.HeartbeatInterval
	if force || beat || lsn > st.sent || now.Sub(st.lastStatus) >= s.o.StatusInterval {
		if lsn < st.sent {
			lsn = st.sent // never move backwards (the idle point may be ahead of acks)
		}
		err := pglogrepl.SendStandbyStatusUpdate(ctx, s.repl, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: lsn, WALFlushPosition: lsn, WALApplyPosition: lsn, ReplyRequested: beat})
		if err != nil {
			return fmt.Errorf("send standby status at %s: %w", lsn, err)
		}
		st.sent, st.lastStatus = lsn, now
		if beat {
			st.lastBeat = now
		}
	}
	if now.Sub(st.lastStats) >= s.o.StatusInterval {
		st.lastStats = now
		st.refreshSlotMetrics(ctx)
	}
	return nil
}

// refreshSlotMetrics reads the slot's retained WAL over the normal connection (owned
// by this goroutine once the snapshot is over), reconnecting it when it broke.
func (st *streamState) refreshSlotMetrics(ctx context.Context) {
	s := st.s
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if s.conn == nil || s.conn.IsClosed() {
		c, err := s.connect(qctx)
		if err != nil {
			s.log.Warn("slot metrics: cannot connect", "err", err)
			return
		}
		s.conn = c
	}
	var retained float64
	err := s.conn.QueryRow(qctx, `SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::float8 FROM pg_replication_slots WHERE slot_name = $1`, s.o.Slot).Scan(&retained)
	if err != nil {
		s.log.Warn("slot metrics: query pg_replication_slots", "err", err)
		return
	}
	s.m.retained.Set(retained)
}

// handle decodes one pgoutput message.
func (st *streamState) handle(xld pglogrepl.XLogData) error {
	s := st.s
	if len(xld.WALData) == 0 {
		return nil
	}
	msg, err := pglogrepl.ParseV2(xld.WALData, st.inStream)
	if err != nil {
		return fmt.Errorf("decode pgoutput message %q at %s: %w", xld.WALData[0], xld.WALStart, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		st.cur = &txn{xid: m.Xid}
	case *pglogrepl.CommitMessage:
		if st.cur == nil {
			return fmt.Errorf("COMMIT at %s without BEGIN", m.CommitLSN)
		}
		st.finish(st.cur, m.CommitLSN, m.TransactionEndLSN, m.CommitTime)
		st.cur = nil
	case *pglogrepl.StreamStartMessageV2:
		st.inStream, st.streamXid = true, m.Xid
		if st.streams[m.Xid] == nil {
			st.streams[m.Xid] = &txn{xid: m.Xid}
		}
	case *pglogrepl.StreamStopMessageV2:
		st.inStream = false
	case *pglogrepl.StreamCommitMessageV2:
		t := st.streams[m.Xid]
		delete(st.streams, m.Xid)
		if t != nil {
			st.finish(t, m.CommitLSN, m.TransactionEndLSN, m.CommitTime)
		}
	case *pglogrepl.StreamAbortMessageV2:
		t := st.streams[m.Xid]
		if t == nil {
			return nil
		}
		if m.SubXid == m.Xid {
			delete(st.streams, m.Xid)
			s.log.Info("streamed transaction aborted; its changes are dropped", "xid", m.Xid, "changes", len(t.changes))
			return nil
		}
		kept, subs := t.changes[:0], t.subxids[:0]
		for i, c := range t.changes {
			if t.subxids[i] != m.SubXid {
				kept, subs = append(kept, c), append(subs, t.subxids[i])
			}
		}
		clear(t.changes[len(kept):])
		t.changes, t.subxids = kept, subs
	case *pglogrepl.RelationMessageV2:
		st.relation(&m.RelationMessage, m.Xid)
	case *pglogrepl.InsertMessageV2:
		return st.row(m.RelationID, m.Xid, schemas.OpCreate, 0, nil, m.Tuple)
	case *pglogrepl.UpdateMessageV2:
		return st.row(m.RelationID, m.Xid, schemas.OpUpdate, m.OldTupleType, m.OldTuple, m.NewTuple)
	case *pglogrepl.DeleteMessageV2:
		return st.row(m.RelationID, m.Xid, schemas.OpDelete, m.OldTupleType, m.OldTuple, nil)
	case *pglogrepl.TruncateMessageV2:
		for _, id := range m.RelationIDs {
			rel := st.relations[id]
			if rel == nil || rel.table == nil {
				continue
			}
			env := schemas.Envelope{Op: schemas.OpTruncate, Source: s.envSource(rel.name, "", 0, 0),
				Schema: schemas.SchemaRef{Name: rel.name, Version: st.version(rel.name)}}
			st.add(m.Xid, capture.Change{Topic: s.topic(rel.name), Key: []byte(rel.name), Envelope: env})
			s.m.events.WithLabelValues(s.o.Name, rel.name, string(schemas.OpTruncate)).Inc()
		}
	}
	return nil
}

func (st *streamState) version(table string) int {
	if v := st.schemas[table]; v > 0 {
		return v
	}
	return 1
}

// target is the transaction a change belongs to.
func (st *streamState) target() *txn {
	if st.inStream {
		return st.streams[st.streamXid]
	}
	return st.cur
}

func (st *streamState) add(subxid uint32, c capture.Change) {
	t := st.target()
	if t == nil {
		// A change outside any transaction cannot happen with pgoutput; keep it as a
		// transaction of its own rather than dropping it.
		t = &txn{}
		st.cur = t
	}
	t.changes = append(t.changes, c)
	t.subxids = append(t.subxids, subxid)
}

// relation records a relation message; a changed column set of a captured table
// becomes a schema-change event in the transaction that carries it.
func (st *streamState) relation(m *pglogrepl.RelationMessage, xid uint32) {
	s := st.s
	name := m.Namespace + "." + m.RelationName
	rel := &relation{name: name, table: s.tables[name]}
	for _, c := range m.Columns {
		rel.cols = append(rel.cols, column{Name: c.Name, OID: c.DataType, Key: c.Flags&1 != 0})
	}
	if rel.table != nil {
		// Keys: the primary key when every column of it is still there, else the
		// replica identity columns flagged in the message.
		ok := len(rel.table.KeyCols) > 0 && rel.table.HasPK
		for _, k := range rel.table.KeyCols {
			found := false
			for _, c := range rel.cols {
				found = found || c.Name == k
			}
			ok = ok && found
		}
		if ok {
			rel.keyCols = rel.table.KeyCols
		} else {
			for _, c := range rel.cols {
				if c.Key {
					rel.keyCols = append(rel.keyCols, c.Name)
				}
			}
		}
	}
	prev := st.relations[m.RelationID]
	st.relations[m.RelationID] = rel
	if rel.table == nil {
		return
	}
	var before []column
	if prev != nil {
		before = prev.cols
	} else {
		before = rel.table.Columns
	}
	if sameColumns(before, rel.cols) {
		return
	}
	st.schemas[name] = st.version(name) + 1
	env := schemas.Envelope{Op: schemas.OpSchema, Source: s.envSource(name, "", 0, 0),
		Schema: schemas.SchemaRef{Name: name, Version: st.schemas[name]}, DDL: describeColumns(name, rel.cols)}
	st.add(xid, capture.Change{Topic: s.topic(name), Key: []byte(name), Envelope: env})
	s.m.events.WithLabelValues(s.o.Name, name, string(schemas.OpSchema)).Inc()
	s.log.Info("table's column set changed", "table", name, "version", st.schemas[name])
}

// row decodes one insert, update or delete.
func (st *streamState) row(relID, xid uint32, op schemas.Op, oldType uint8, oldTup, newTup *pglogrepl.TupleData) error {
	s := st.s
	rel := st.relations[relID]
	if rel == nil {
		return fmt.Errorf("change for relation %d before its relation message (protocol error)", relID)
	}
	if rel.table == nil {
		return nil
	}
	before, berr := decodeTuple(rel, oldTup, nil, oldType == 'K')
	after, aerr := decodeTuple(rel, newTup, before, false)
	bad := aerr
	if bad == nil {
		bad = berr
	}
	env := schemas.Envelope{Op: op, Source: s.envSource(rel.name, "", 0, 0), Before: before, After: after,
		Schema: schemas.SchemaRef{Name: rel.name, Version: st.version(rel.name)}}
	if op == schemas.OpDelete && len(before) == 0 {
		env.Before = nil
	}
	var raw []byte
	if bad != nil {
		raw = append(rawTuple(rel, oldTup), rawTuple(rel, newTup)...)
	}
	st.add(xid, s.rowChange(rel.keyCols, env, bad, raw))
	s.m.events.WithLabelValues(s.o.Name, rel.name, string(op)).Inc()
	return nil
}

// finish stamps a committed transaction's changes with its commit LSN and time, puts
// the resumable position on its last change only, and queues them for ReadN.
func (st *streamState) finish(t *txn, commit, end pglogrepl.LSN, at time.Time) {
	s := st.s
	if end <= st.skipUpTo {
		return // queued before a reconnect
	}
	if len(t.changes) == 0 {
		return
	}
	ms := at.UnixMilli()
	lsn := commit.String()
	for i := range t.changes {
		c := &t.changes[i]
		c.Envelope.Source.LSN = lsn
		c.Envelope.Source.CommitMs = ms
		c.Envelope.Source.Seq = int64(i + 1)
		if c.DeadLetter != nil {
			c.DeadLetter.Position = lsn
		}
	}
	p := Position{lsn: end}
	if len(st.schemas) > 0 {
		p.Schemas = maps.Clone(st.schemas)
	}
	t.changes[len(t.changes)-1].Position = p.Encode()
	st.enqueuedEnd = end
	s.m.behind.Set(max(0, time.Since(at).Seconds()))
	s.mu.Lock()
	if len(s.queue) == 0 {
		s.queue = t.changes // the transaction is finished: hand its slice over, no copy
	} else {
		s.queue = append(s.queue, t.changes...)
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}
