package pglogical

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shouwang/shouwang/capture"
)

// Kind is the connector kind written into every envelope's source.kind.
const Kind = "pglogical"

// Source captures changes of the configured tables from one PostgreSQL database
// through a logical replication slot (pgoutput, protocol version 2). It implements
// capture.Source.
type Source struct {
	o   Options
	log *slog.Logger
	m   *connMetrics

	tables map[string]*table // by schema.table
	dbName string

	conn *pgx.Conn      // normal connection: catalog, snapshot transaction, then slot metrics
	repl *pgconn.PgConn // replication connection

	// Read side (ReadN's goroutine only).
	pos         Position
	snap        *snapshotRun
	streamStart pglogrepl.LSN
	streaming   bool

	// On-demand re-snapshots (resnapshot.go). handed is the last position handed out
	// by ReadN while streaming, with the re-snapshot list as of that moment.
	handed     Position
	handedRaw  capture.Position // newer than handed, not decoded yet (see stampHanded)
	snapConn   *pgx.Conn        // re-snapshot chunks, one transaction each
	resnapSeq  int64
	resnapTurn bool // the next ReadN reads a chunk before more streamed changes
	reqMu      sync.Mutex
	requests   []Resnapshot

	// Shared with the stream goroutine.
	mu      sync.Mutex
	queue   []capture.Change
	failure error
	notify  chan struct{} // something was queued or the stream failed
	drained chan struct{} // ReadN took changes
	acked   atomic.Uint64 // highest LSN acknowledged by Ack
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

var _ capture.Source = (*Source)(nil)

// New validates opts; it does not connect.
func New(opts Options) (*Source, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Source{o: opts, log: opts.Logger.With("source", opts.Name, "slot", opts.Slot),
		notify: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
	s.m = newConnMetrics(opts.Registerer, opts.Name, opts.Slot)
	return s, nil
}

// sessionParams make text output independent of server defaults: ISO dates and UTC
// timestamps, on both the normal and the replication connection.
var sessionParams = map[string]string{"TimeZone": "UTC", "DateStyle": "ISO, YMD", "application_name": "shouwang"}

func (s *Source) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(s.o.ConnString)
	if err != nil {
		return nil, fmt.Errorf("pglogical %s: option conn_string: %w", s.o.Name, err)
	}
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pglogical %s: connect to %s:%d/%s: %w", s.o.Name, cfg.Host, cfg.Port, cfg.Database, err)
	}
	return conn, nil
}

func (s *Source) connectRepl(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(s.o.ConnString)
	if err != nil {
		return nil, fmt.Errorf("pglogical %s: option conn_string: %w", s.o.Name, err)
	}
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pglogical %s: open replication connection to %s:%d/%s (the user needs the REPLICATION attribute and a pg_hba replication entry): %w",
			s.o.Name, cfg.Host, cfg.Port, cfg.Database, err)
	}
	return conn, nil
}

// Open connects, checks every table's replica identity, the publication and the
// slot, and positions the source after last: nil starts according to the snapshot
// mode; a position in the middle of the initial load resumes it with a fresh snapshot
// of the unfinished tables (see the package documentation for the guarantee).
func (s *Source) Open(ctx context.Context, last capture.Position) error {
	p, resume, err := DecodePosition(last)
	if err != nil {
		return err
	}
	if s.conn, err = s.connect(ctx); err != nil {
		return err
	}
	if err := s.conn.QueryRow(ctx, `SELECT current_database()`).Scan(&s.dbName); err != nil {
		return fmt.Errorf("pglogical %s: current database: %w", s.o.Name, err)
	}
	s.tables = make(map[string]*table, len(s.o.Tables))
	var errs []error
	for _, name := range s.o.Tables {
		t, err := loadTable(ctx, s.conn, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.tables[name] = t
		if t.Partial {
			s.m.partial.WithLabelValues(s.o.Name, name).Set(1)
			s.log.Warn("table's replica identity is not FULL: update and delete before-images carry the key columns only",
				"table", name, "fix", "ALTER TABLE "+t.QuotedSQL+" REPLICA IDENTITY FULL")
		} else {
			s.m.partial.WithLabelValues(s.o.Name, name).Set(0)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if did, err := s.ensurePublication(ctx, s.conn, s.o.CreatePublication); err != nil {
		return err
	} else {
		for _, d := range did {
			s.log.Info(d)
		}
	}
	exists, _, err := slotInfo(ctx, s.conn, s.o.Slot)
	if err != nil {
		return err
	}
	if resume && !exists {
		return fmt.Errorf("pglogical %s: replication slot %s is gone but a position (lsn %s) was saved: changes since then are lost; recreate the slot (shouwang setup) and delete the saved position to start over with a new snapshot",
			s.o.Name, s.o.Slot, p.LSN)
	}
	if !exists && !s.o.CreateSlot {
		return fmt.Errorf("pglogical %s: replication slot %s does not exist and create_slot is off: create it (SELECT pg_create_logical_replication_slot('%s', 'pgoutput')) or enable create_slot",
			s.o.Name, s.o.Slot, s.o.Slot)
	}
	if s.repl, err = s.connectRepl(ctx); err != nil {
		return err
	}

	switch {
	case resume:
		s.pos = p
		s.streamStart = p.lsn
		if p.Snapshot != nil && !p.Snapshot.Done {
			if err := s.beginSnapshot(ctx, ""); err != nil {
				return err
			}
			s.log.Info("resuming an interrupted snapshot with a fresh snapshot of the unfinished tables", "stream_from", p.LSN)
		}
	case !exists:
		action := "NOEXPORT_SNAPSHOT"
		if s.o.SnapshotMode == SnapshotInitial {
			action = "EXPORT_SNAPSHOT"
		}
		res, err := pglogrepl.CreateReplicationSlot(ctx, s.repl, s.o.Slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: action})
		if err != nil {
			return fmt.Errorf("pglogical %s: create replication slot %s: %w", s.o.Name, s.o.Slot, err)
		}
		cp, err := pglogrepl.ParseLSN(res.ConsistentPoint)
		if err != nil {
			return fmt.Errorf("pglogical %s: slot %s consistent point %q: %w", s.o.Name, s.o.Slot, res.ConsistentPoint, err)
		}
		s.log.Info("created replication slot", "consistent_point", cp.String(), "snapshot", res.SnapshotName)
		s.streamStart = cp
		s.pos = Position{lsn: cp}
		if s.o.SnapshotMode == SnapshotInitial {
			s.pos.Snapshot = &SnapshotState{LSN: cp.String(), Tables: map[string]*TableCursor{}}
			if err := s.beginSnapshot(ctx, res.SnapshotName); err != nil {
				return err
			}
		}
	default:
		var confirmed string
		if err := s.conn.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn, restart_lsn)::text FROM pg_replication_slots WHERE slot_name = $1`, s.o.Slot).Scan(&confirmed); err != nil {
			return fmt.Errorf("pglogical %s: read position of slot %s: %w", s.o.Name, s.o.Slot, err)
		}
		cp, err := pglogrepl.ParseLSN(confirmed)
		if err != nil {
			return fmt.Errorf("pglogical %s: slot %s position %q: %w", s.o.Name, s.o.Slot, confirmed, err)
		}
		s.streamStart = cp
		s.pos = Position{lsn: cp}
		if s.o.SnapshotMode == SnapshotInitial {
			s.pos.Snapshot = &SnapshotState{LSN: cp.String(), Tables: map[string]*TableCursor{}}
			if err := s.beginSnapshot(ctx, ""); err != nil {
				return err
			}
			s.log.Info("slot exists but no position was saved: snapshot with a fresh consistent read, then stream from the slot", "stream_from", cp.String())
		}
	}
	s.acked.Store(uint64(s.streamStart))
	return nil
}

// ReadN implements capture.Source: snapshot chunks first, then streamed transactions.
func (s *Source) ReadN(ctx context.Context, max int) ([]capture.Change, error) {
	if max < 1 {
		max = 1
	}
	for s.snap != nil {
		cs, err := s.readSnapshot(ctx, max)
		if err != nil {
			return nil, err
		}
		if len(cs) > 0 {
			return cs, nil
		}
	}
	if !s.streaming {
		s.handed = s.pos.clone()
		s.handed.Resnapshot = slices.DeleteFunc(s.handed.Resnapshot, func(r Resnapshot) bool {
			if t := s.tables[r.Table]; t == nil || !t.HasPK {
				s.log.Error("saved re-snapshot dropped: the table is no longer captured or has no primary key", "table", r.Table)
				return true
			}
			return false
		})
		if err := s.startStreaming(ctx); err != nil {
			return nil, err
		}
	}
	for {
		if added, err := s.takeRequests(); err != nil {
			return nil, err
		} else if added {
			// Make the request durable before reading it.
			return []capture.Change{{PositionOnly: true, Position: s.handed.clone().Encode()}}, nil
		}
		s.mu.Lock()
		n := len(s.queue)
		resnap := len(s.handed.Resnapshot) > 0 && (s.resnapTurn || n == 0)
		if n > 0 && !resnap {
			k := min(n, max)
			out := make([]capture.Change, k)
			copy(out, s.queue[:k])
			clear(s.queue[:k])
			s.queue = s.queue[k:]
			s.mu.Unlock()
			select {
			case s.drained <- struct{}{}:
			default:
			}
			// Alternate with re-snapshot chunks so that neither starves the other.
			s.resnapTurn = true
			if err := s.stampHanded(out); err != nil {
				return nil, err
			}
			return out, nil
		}
		if s.failure != nil {
			err := s.failure
			s.mu.Unlock()
			return nil, err
		}
		s.mu.Unlock()
		if resnap {
			s.resnapTurn = false
			return s.readResnapshot(ctx, max)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.notify:
		}
	}
}

// Ack implements capture.Source: the stream goroutine confirms upTo's LSN to the
// server with the next standby status update (within a fraction of a second), which
// lets the slot release WAL. Nothing later than an acknowledged LSN is ever confirmed.
func (s *Source) Ack(_ context.Context, upTo capture.Position) error {
	p, ok, err := DecodePosition(upTo)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("pglogical %s: ack of an empty position (runner bug)", s.o.Name)
	}
	for {
		cur := s.acked.Load()
		if uint64(p.lsn) <= cur || s.acked.CompareAndSwap(cur, uint64(p.lsn)) {
			return nil
		}
	}
}

// Close stops the stream goroutine and closes both connections. The slot and the
// publication stay (only Teardown drops them). Safe after a failed Open.
func (s *Source) Close() error {
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
		s.cancel = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	if s.snap != nil {
		s.snap.close(ctx)
		s.snap = nil
	}
	if s.repl != nil {
		if err := s.repl.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("pglogical %s: close replication connection: %w", s.o.Name, err))
		}
		s.repl = nil
	}
	if s.snapConn != nil {
		if err := s.snapConn.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("pglogical %s: close re-snapshot connection: %w", s.o.Name, err))
		}
		s.snapConn = nil
	}
	if s.conn != nil {
		if err := s.conn.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("pglogical %s: close connection: %w", s.o.Name, err))
		}
		s.conn = nil
	}
	return errors.Join(errs...)
}

// startStreaming issues START_REPLICATION from the stream start and launches the
// goroutine that owns the replication connection from then on.
func (s *Source) startStreaming(ctx context.Context) error {
	if err := s.startReplication(ctx, s.repl, s.streamStart); err != nil {
		return err
	}
	st := newStreamState(s, s.streamStart)
	pctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.streaming = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		st.run(pctx)
	}()
	return nil
}

// startReplication retries while the server still reports the slot active (a
// previous client died less than wal_sender_timeout ago).
func (s *Source) startReplication(ctx context.Context, conn *pgconn.PgConn, from pglogrepl.LSN) error {
	args := []string{"proto_version '2'", fmt.Sprintf("publication_names '%s'", s.o.Publication), "messages 'false'", "streaming 'true'"}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = s.o.ReconnectTimeout
	return backoff.Retry(func() error {
		// A failed START_REPLICATION leaves the connection usable for another try.
		err := pglogrepl.StartReplication(ctx, conn, s.o.Slot, from, pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: args})
		if err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" { // object_in_use: slot active
			s.log.Warn("replication slot still active (a previous client may have died); retrying", "err", pgErr.Message)
			return fmt.Errorf("pglogical %s: start replication on slot %s at %s: %w", s.o.Name, s.o.Slot, from, err)
		}
		return backoff.Permanent(fmt.Errorf("pglogical %s: start replication on slot %s at %s: %w", s.o.Name, s.o.Slot, from, err))
	}, backoff.WithContext(b, ctx))
}
