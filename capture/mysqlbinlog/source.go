package mysqlbinlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	drv "github.com/go-sql-driver/mysql"

	"github.com/shouwang/shouwang/capture"
)

// Kind is the connector kind written into every envelope's source.kind.
const Kind = "mysqlbinlog"

// ErrBinlogPurged is returned (wrapped) by Open when the saved position is no longer
// on the server and the snapshot mode is not when_needed: continuing would silently
// lose every change in the purged files. Re-snapshot (snapshot_mode when_needed, or
// delete the saved position) to recover.
var ErrBinlogPurged = errors.New("saved binlog position has been purged from the server")

// Source reads one MySQL/MariaDB server. It implements capture.Source. ReadN and Close
// must not be called concurrently with each other; Ack may run concurrently with ReadN
// (the runner reads the next batch while it acknowledges the last), and
// RequestSnapshot and ReleaseHeldDeletes may be called from any goroutine.
type Source struct {
	opts Options
	log  *slog.Logger
	m    *metrics

	db       *sql.DB
	hist     *history
	charsets map[uint64]string // collation id → charset
	captured map[string]bool   // db.table
	dbs      map[string]bool   // databases captured whole

	syncer   *replication.BinlogSyncer
	streamer *replication.BinlogStreamer

	cur       binlogPos     // position after the last event read
	committed Position      // last transaction boundary emitted, with snapshot state
	gset      mysql.GTIDSet // executed GTID set at committed (nil when unknown)
	txGTID    string
	inTx      bool
	seq       int64
	lastTS    uint32
	held      *capture.Change
	out       []capture.Change

	snap *snapshotter

	// reload is the weekly-reload collapse (nil when no table is configured).
	reload       *reloadManager
	countyCols   []string
	pushLogTable string

	reqMu    sync.Mutex
	requests []TableCursor
}

var _ capture.Source = (*Source)(nil)

// New validates the options; it does no I/O.
func New(opts Options) (*Source, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Source{opts: opts, log: opts.Logger.With("source", opts.Name, "kind", Kind)}
	s.m = newMetrics(opts.Registerer, opts.Name)
	for _, c := range strings.Split(opts.MassDelete.CountyColumn, ",") {
		if c = strings.TrimSpace(c); c != "" {
			s.countyCols = append(s.countyCols, c)
		}
	}
	s.pushLogTable = opts.Reload.PushLogTable
	return s, nil
}

// Open connects, loads the schema history and positions the stream just after last
// (nil: at the server's current position, with a snapshot of every captured table
// unless the snapshot mode is never).
func (s *Source) Open(ctx context.Context, last capture.Position) error {
	cfg := drv.NewConfig()
	cfg.User, cfg.Passwd = s.opts.User, s.opts.Password
	cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
	cfg.Params = map[string]string{"time_zone": "'+00:00'"}
	cfg.Collation = "utf8mb4_general_ci"
	cfg.Timeout = 10 * time.Second
	conn, err := drv.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("capture %s: mysql connector for %s: %w", s.opts.Name, cfg.Addr, err)
	}
	s.db = sql.OpenDB(conn)
	// One connection per parallel chunk read, plus one for the watermarks and schema.
	s.db.SetMaxOpenConns(max(4, s.opts.Parallel+1))
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("capture %s: connect to %s as %s: %w", s.opts.Name, cfg.Addr, s.opts.User, err)
	}
	if s.hist, err = loadHistory(s.opts.StateDir); err != nil {
		return fmt.Errorf("capture %s: %w", s.opts.Name, err)
	}
	if err := s.loadCharsets(ctx); err != nil {
		return err
	}
	tables, err := listTables(ctx, s.db, s.opts.Databases, s.opts.Tables)
	if err != nil {
		return fmt.Errorf("capture %s: %w", s.opts.Name, err)
	}
	s.captured, s.dbs = map[string]bool{}, map[string]bool{}
	for _, d := range s.opts.Databases {
		s.dbs[d] = true
	}
	for _, t := range tables {
		s.captured[t] = true
	}

	saved, ok, err := DecodePosition(last)
	if err != nil {
		return fmt.Errorf("capture %s: %w", s.opts.Name, err)
	}
	if ok {
		purged, why, err := s.isPurged(ctx, saved)
		if err != nil {
			return err
		}
		if purged {
			s.m.purged.Set(1)
			s.log.Error("saved binlog position purged from the server", "position", saved.String(), "why", why, "snapshot_mode", string(s.opts.SnapshotMode))
			if s.opts.SnapshotMode != SnapshotWhenNeeded {
				return fmt.Errorf("capture %s: resume at %s: %s: %w (set snapshot_mode when_needed or clear the saved position to re-snapshot)", s.opts.Name, saved, why, ErrBinlogPurged)
			}
			ok = false
		} else {
			s.m.purged.Set(0)
		}
	}
	if ok {
		s.committed = saved
	} else {
		head, err := s.masterStatus(ctx)
		if err != nil {
			return err
		}
		s.committed = head
		if s.opts.SnapshotMode != SnapshotNever {
			for _, t := range tables {
				s.committed.Snapshot = append(s.committed.Snapshot, TableCursor{Table: t})
			}
		}
	}
	s.committed.V = positionVersion
	if len(s.opts.Reload.Tables) > 0 {
		if s.reload != nil {
			s.reload.closeFiles()
		}
		s.reload = newReloadManager(s)
		seed, err := s.reload.open(ctx, saved.Reload, !ok)
		if err != nil {
			return fmt.Errorf("capture %s: %w", s.opts.Name, err)
		}
		for _, t := range seed {
			if !slices.ContainsFunc(s.committed.Snapshot, func(c TableCursor) bool { return c.Table == t && c.Where == "" }) {
				s.committed.Snapshot = append(s.committed.Snapshot, TableCursor{Table: t})
			}
		}
		s.committed.Reload = s.reload.epochs()
	}
	if s.committed.GTID != "" {
		if s.gset, err = mysql.ParseGTIDSet(s.opts.Flavor, s.committed.GTID); err != nil {
			return fmt.Errorf("capture %s: parse GTID set %q of the saved position: %w", s.opts.Name, s.committed.GTID, err)
		}
	}
	s.cur = binlogPos{s.committed.File, s.committed.Pos}

	start := s.cur
	changed := false
	for _, t := range tables {
		if s.hist.latest(t) != nil {
			continue
		}
		db, tb, _ := strings.Cut(t, ".")
		v, err := readTableSchema(ctx, s.db, db, tb)
		if err != nil {
			return fmt.Errorf("capture %s: %w", s.opts.Name, err)
		}
		s.hist.add(t, start, v)
		changed = true
	}
	if changed {
		if err := s.hist.save(); err != nil {
			return fmt.Errorf("capture %s: %w", s.opts.Name, err)
		}
	}
	s.snap = newSnapshotter(s)
	s.m.snapshotLeft.Set(float64(len(s.committed.Snapshot)))
	if err := s.startStream(); err != nil {
		return err
	}
	s.log.Info("binlog capture opened", "position", s.committed.String(), "tables", len(tables), "snapshot_tables", len(s.committed.Snapshot))
	return nil
}

func (s *Source) loadCharsets(ctx context.Context) error {
	s.charsets = map[uint64]string{}
	rows, err := s.db.QueryContext(ctx, `SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL AND CHARACTER_SET_NAME IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("capture %s: read collations: %w", s.opts.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uint64
		var cs string
		if err := rows.Scan(&id, &cs); err != nil {
			return fmt.Errorf("capture %s: read collations: %w", s.opts.Name, err)
		}
		s.charsets[id] = cs
	}
	return rows.Err()
}

// masterStatus returns the server's current binlog end and executed GTID set.
func (s *Source) masterStatus(ctx context.Context) (Position, error) {
	var p Position
	q := "SHOW MASTER STATUS"
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		q = "SHOW BINARY LOG STATUS" // MySQL 8.4 removed SHOW MASTER STATUS
		if rows, err = s.db.QueryContext(ctx, q); err != nil {
			return p, fmt.Errorf("capture %s: %s: %w (the user needs BINLOG MONITOR / REPLICATION CLIENT)", s.opts.Name, q, err)
		}
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return p, fmt.Errorf("capture %s: %s returned no row: binary logging is off (start the server with --log-bin)", s.opts.Name, q)
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return p, fmt.Errorf("capture %s: %s: %w", s.opts.Name, q, err)
	}
	rows.Close()
	p.File = vals[0].String
	pos, err := strconv.ParseUint(vals[1].String, 10, 32)
	if err != nil {
		return p, fmt.Errorf("capture %s: %s: position %q: %w", s.opts.Name, q, vals[1].String, err)
	}
	p.Pos = uint32(pos)
	if s.opts.Flavor == FlavorMariaDB {
		var g string
		if err := s.db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&g); err != nil {
			return p, fmt.Errorf("capture %s: read @@gtid_binlog_pos: %w", s.opts.Name, err)
		}
		p.GTID = g
	} else if len(vals) > 4 {
		p.GTID = strings.ReplaceAll(vals[4].String, "\n", "")
	}
	return p, nil
}

// isPurged reports whether saved is no longer readable from the server.
func (s *Source) isPurged(ctx context.Context, saved Position) (bool, string, error) {
	rows, err := s.db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return false, "", fmt.Errorf("capture %s: SHOW BINARY LOGS: %w (the user needs BINLOG MONITOR / REPLICATION CLIENT)", s.opts.Name, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var files []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return false, "", fmt.Errorf("capture %s: SHOW BINARY LOGS: %w", s.opts.Name, err)
		}
		files = append(files, vals[0].String)
	}
	if err := rows.Err(); err != nil {
		return false, "", fmt.Errorf("capture %s: SHOW BINARY LOGS: %w", s.opts.Name, err)
	}
	if len(files) == 0 {
		return true, "the server has no binary logs", nil
	}
	if s.opts.UseGTID && s.opts.Flavor == FlavorMySQL && saved.GTID != "" {
		var purged string
		if err := s.db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_purged").Scan(&purged); err == nil && purged != "" {
			have, err1 := mysql.ParseMysqlGTIDSet(saved.GTID)
			gone, err2 := mysql.ParseMysqlGTIDSet(strings.ReplaceAll(purged, "\n", ""))
			if err1 == nil && err2 == nil && !have.Contain(gone) {
				return true, fmt.Sprintf("gtid_purged %s is not contained in the saved set %s", purged, saved.GTID), nil
			}
		}
	}
	if saved.File == "" {
		return false, "", nil
	}
	for _, f := range files {
		if f == saved.File {
			return false, "", nil
		}
	}
	return true, fmt.Sprintf("binlog file %s is not among the server's files (oldest %s, newest %s)", saved.File, files[0], files[len(files)-1]), nil
}

func (s *Source) startStream() error {
	cfg := replication.BinlogSyncerConfig{
		ServerID:                s.opts.ServerID,
		Flavor:                  s.opts.Flavor,
		Host:                    s.opts.Host,
		Port:                    uint16(s.opts.Port),
		User:                    s.opts.User,
		Password:                s.opts.Password,
		UseDecimal:              true,
		TimestampStringLocation: time.UTC,
		HeartbeatPeriod:         s.opts.HeartbeatInterval,
		ReadTimeout:             3*s.opts.HeartbeatInterval + 10*time.Second,
		DisableRetrySync:        true, // we reconnect ourselves from the last commit
		Logger:                  slog.New(quietHandler{s.log.Handler()}).With("component", "go-mysql"),
	}
	s.syncer = replication.NewBinlogSyncer(cfg)
	var err error
	if s.opts.UseGTID && s.gset != nil {
		s.streamer, err = s.syncer.StartSyncGTID(s.gset.Clone())
	} else {
		s.streamer, err = s.syncer.StartSync(mysql.Position{Name: s.committed.File, Pos: s.committed.Pos})
	}
	if err != nil {
		s.syncer.Close()
		s.syncer = nil
		return fmt.Errorf("capture %s: start binlog stream at %s: %w", s.opts.Name, s.committed, err)
	}
	s.cur = binlogPos{s.committed.File, s.committed.Pos}
	s.inTx, s.txGTID, s.held = false, "", nil
	return nil
}

// reconnect restarts the stream at the last emitted commit point, with backoff. The
// changes of a transaction cut in half are read again (at-least-once).
func (s *Source) reconnect(ctx context.Context, cause error) error {
	s.log.Warn("binlog stream broken, reconnecting", "error", cause, "position", s.committed.String())
	s.connection(cause)
	if s.syncer != nil {
		s.syncer.Close()
		s.syncer = nil
	}
	// Drop the half-read transaction: its changes will be read again.
	s.held = nil
	if s.reload != nil {
		s.reload.abortTx()
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxInterval(30*time.Second), backoff.WithMaxElapsedTime(0)), ctx)
	return backoff.Retry(func() error {
		if purged, why, err := s.isPurged(ctx, s.committed); err == nil && purged {
			s.m.purged.Set(1)
			return backoff.Permanent(fmt.Errorf("capture %s: resume at %s: %s: %w", s.opts.Name, s.committed, why, ErrBinlogPurged))
		}
		if err := s.startStream(); err != nil {
			s.log.Warn("binlog reconnect failed", "error", err)
			s.connection(err)
			return err
		}
		s.m.reconnects.Inc()
		s.connection(nil)
		return nil
	}, b)
}

// connection reports the stream's state to Options.OnConnection.
func (s *Source) connection(err error) {
	if s.opts.OnConnection != nil {
		s.opts.OnConnection(err)
	}
}

// ReadN returns between 1 and max changes, blocking until at least one is ready.
func (s *Source) ReadN(ctx context.Context, max int) ([]capture.Change, error) {
	if s.streamer == nil {
		return nil, fmt.Errorf("capture %s: ReadN before a successful Open", s.opts.Name)
	}
	if max < 1 {
		max = 1
	}
	for len(s.out) == 0 {
		if err := s.step(ctx, 0); err != nil {
			return nil, err
		}
	}
	for len(s.out) < max {
		got, err := s.stepOnce(ctx, 20*time.Millisecond)
		if err != nil {
			return nil, err
		}
		if !got {
			break
		}
	}
	n := min(max, len(s.out))
	res := make([]capture.Change, n)
	copy(res, s.out)
	s.out = s.out[n:]
	if s.reload != nil {
		withPos := false
		for i := range res {
			withPos = withPos || res[i].Position != nil
		}
		// The reload state must hold every change up to a position before the
		// runner can save that position.
		if err := s.reload.flush(withPos); err != nil {
			return nil, fmt.Errorf("capture %s: %w", s.opts.Name, err)
		}
	}
	return res, nil
}

// step runs the snapshot work that is due, then reads one event (waiting at most
// wait; 0 waits until ctx is done).
func (s *Source) step(ctx context.Context, wait time.Duration) error {
	_, err := s.stepOnce(ctx, wait)
	return err
}

func (s *Source) stepOnce(ctx context.Context, wait time.Duration) (bool, error) {
	if !s.inTx {
		if s.reload != nil {
			progressed, err := s.reload.work(ctx)
			if err != nil || progressed {
				return progressed, err
			}
		}
		progressed, err := s.snap.tick(ctx)
		if err != nil {
			return false, err
		}
		if progressed {
			return true, nil
		}
	}
	gctx, cancel := ctx, context.CancelFunc(func() {})
	if wait > 0 {
		gctx, cancel = context.WithTimeout(ctx, wait)
	} else if s.opts.HeartbeatInterval > 0 && s.snap.pending == nil {
		// Wake up now and then so that requested snapshots start on a quiet source.
		gctx, cancel = context.WithTimeout(ctx, s.opts.HeartbeatInterval)
	}
	ev, err := s.streamer.GetEvent(gctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			if !s.inTx && s.reload != nil {
				s.reload.tick(time.Now().Unix())
			}
			if s.snap.pending == nil && !s.inTx {
				s.m.behind.Set(0)
				if wait == 0 {
					// A quiet source: commit where we stand so lag stays measurable.
					s.positionOnly(time.Now().UnixMilli())
				}
			}
			return false, nil
		}
		var me *mysql.MyError
		if errors.As(err, &me) && me.Code == mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG {
			s.m.purged.Set(1)
			return false, fmt.Errorf("capture %s: read binlog at %s: %v: %w", s.opts.Name, s.committed, err, ErrBinlogPurged)
		}
		if rerr := s.reconnect(ctx, err); rerr != nil {
			return false, rerr
		}
		return true, nil
	}
	if err := s.handle(ctx, ev); err != nil {
		return false, err
	}
	return true, nil
}

// Ack releases nothing on the server (the binlog is the server's and positions are
// stored by the runner); it lets the reload collapse drop state generations older than
// the acknowledged one. It may run concurrently with ReadN.
func (s *Source) Ack(ctx context.Context, upTo capture.Position) error {
	p, _, err := DecodePosition(upTo)
	if err != nil {
		return fmt.Errorf("capture %s: ack: %w", s.opts.Name, err)
	}
	if s.reload != nil && p.Reload != nil {
		// Runs concurrently with ReadN (the runner reads ahead): only note it, the
		// reading loop drops the older reload generations.
		s.reload.ack(p.Reload)
	}
	return nil
}

// Close releases the binlog connection and the SQL pool.
func (s *Source) Close() error {
	if s.syncer != nil {
		s.syncer.Close()
		s.syncer = nil
	}
	s.streamer = nil
	if s.reload != nil {
		s.reload.closeFiles()
	}
	if s.db != nil {
		err := s.db.Close()
		s.db = nil
		if err != nil {
			return fmt.Errorf("capture %s: close: %w", s.opts.Name, err)
		}
	}
	return nil
}

// RequestSnapshot asks for a (re-)snapshot of one table ("db.table"), optionally only
// the rows matching where (an SQL condition on that table, e.g. "village_code LIKE
// '510104%'"). The rows are emitted as op r while streaming continues.
func (s *Source) RequestSnapshot(table, where string) error {
	if db, tb, ok := strings.Cut(table, "."); !ok || db == "" || tb == "" {
		return fmt.Errorf("capture %s: request snapshot: table %q: want db.table", s.opts.Name, table)
	}
	if strings.Contains(where, ";") {
		return fmt.Errorf("capture %s: request snapshot of %s: condition %q must be one expression without ';'", s.opts.Name, table, where)
	}
	s.reqMu.Lock()
	s.requests = append(s.requests, TableCursor{Table: table, Where: where})
	s.reqMu.Unlock()
	return nil
}
