package testenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresOptions configures a private PostgreSQL server. The zero value gives a fast
// server (fsync off, so not safe against machine crashes, but safe against SIGKILL) with wal_level=logical and trust authentication on 127.0.0.1.
type PostgresOptions struct {
	// BaseDir is the parent of the instance's temporary directory (default os.TempDir()).
	// When running as root it must be traversable by the postgres user.
	BaseDir string
	// BinDir forces the directory holding postgres and initdb; default: the highest
	// version under /usr/lib/postgresql/*/bin, then PATH.
	BinDir string
	// Durable turns fsync and full_page_writes back on. Off by default for speed: a
	// SIGKILLed server still recovers every committed transaction because the OS keeps
	// the written WAL; only a machine crash would lose data.
	Durable bool
	// AsyncCommit sets synchronous_commit=off for more speed. Commits then return before
	// their WAL leaves shared memory, so Kill loses the last few transactions: leave it
	// off in crash-recovery tests.
	AsyncCommit bool
	// Settings are extra or overriding server settings (passed as -c name=value), e.g.
	// {"wal_sender_timeout": "5s"}.
	Settings map[string]string
	// StartTimeout bounds initdb plus start (default 90s).
	StartTimeout time.Duration
	// KeepDir leaves the data directory on disk after Stop, for post-mortems.
	KeepDir bool
	// Logger receives start/stop events (default slog.Default()).
	Logger *slog.Logger
}

func (o *PostgresOptions) defaults() {
	if o.StartTimeout <= 0 {
		o.StartTimeout = 90 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// PostgresServer is a private PostgreSQL server in a temporary directory on 127.0.0.1 and a
// free port. The superuser is "postgres" without a password (trust), and replication
// connections are allowed. Kill/Start/Restart must not race with each other.
type PostgresServer struct {
	opts    PostgresOptions
	binDir  string
	version string
	user    serverUser
	baseDir string
	port    int

	mu   sync.Mutex
	proc *process
}

// Superuser is the PostgreSQL superuser of every instance.
const Superuser = "postgres"

// StartPostgres runs initdb in a new temporary directory and starts the server. A missing
// binary yields an error wrapping ErrBinaryNotFound (a *MissingBinaryError); a failed
// start includes the tail of the server log.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*PostgresServer, error) {
	opts.defaults()
	binDir, version, err := findPostgres(opts.BinDir)
	if err != nil {
		return nil, err
	}
	su, err := lookupServerUser("postgres")
	if err != nil {
		return nil, err
	}
	base, err := makeBaseDir(opts.BaseDir, "postgres", su)
	if err != nil {
		return nil, err
	}
	p := &PostgresServer{opts: opts, binDir: binDir, version: version, user: su, baseDir: base}
	ok := false
	defer func() {
		if !ok {
			_ = p.removeDir()
		}
	}()
	// The socket is named .s.PGSQL.<port>; allow for a five-digit port.
	if err := checkSocketPath(filepath.Join(p.runDir(), ".s.PGSQL.65535")); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	for _, d := range []string{p.runDir(), p.logDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("testenv: create %s: %w", d, err)
		}
	}
	if err := su.chownTree(base); err != nil {
		return nil, err
	}
	if err := p.initdb(ctx); err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 {
		if p.port, err = freePort(); err != nil {
			return nil, err
		}
		lastErr = p.start(ctx)
		if lastErr == nil || !errors.Is(lastErr, errBindConflict) {
			break
		}
		opts.Logger.Debug("testenv: port taken, retrying", "server", "postgres", "port", p.port)
	}
	if lastErr != nil {
		return nil, lastErr
	}
	ok = true
	opts.Logger.Info("testenv: server started", "server", "postgres", "version", version, "addr", p.Addr(), "dir", base)
	return p, nil
}

// findPostgres returns the directory holding postgres and initdb and its major version
// (from the Debian directory name, "" when found in PATH).
func findPostgres(forced string) (dir, version string, err error) {
	if forced != "" {
		for _, name := range []string{"postgres", "initdb"} {
			if fi, err := os.Stat(filepath.Join(forced, name)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return "", "", &MissingBinaryError{Binary: name, Searched: []string{forced}, Package: "postgresql"}
			}
		}
		return forced, "", nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(matches, func(i, j int) bool {
		return versionLess(versionOf(matches[j]), versionOf(matches[i]))
	})
	for _, m := range matches {
		d := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, versionOf(m), nil
		}
	}
	pg, err := findBinary("postgresql", []string{"/usr/local/pgsql/bin"}, "postgres")
	if err != nil {
		return "", "", err
	}
	d := filepath.Dir(pg)
	if _, err := findBinary("postgresql", []string{d}, "initdb"); err != nil {
		return "", "", err
	}
	return d, "", nil
}

// versionOf extracts "15" from /usr/lib/postgresql/15/bin/postgres.
func versionOf(postgresPath string) string {
	return filepath.Base(filepath.Dir(filepath.Dir(postgresPath)))
}

// versionLess compares dotted numeric versions ("9.6" < "15").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// Addr is host:port for TCP clients.
func (p *PostgresServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// Host is the address clients connect to (always 127.0.0.1).
func (p *PostgresServer) Host() string { return "127.0.0.1" }

// Port is the TCP port; it stays the same across Kill/Start/Restart.
func (p *PostgresServer) Port() int { return p.port }

// Version is the major version taken from the Debian install path ("15"), or "" when the
// binaries came from PATH.
func (p *PostgresServer) Version() string { return p.version }

// Dir is the instance's temporary directory, removed by Stop.
func (p *PostgresServer) Dir() string { return p.baseDir }

// DataDir is the cluster's data directory (PGDATA).
func (p *PostgresServer) DataDir() string { return filepath.Join(p.baseDir, "data") }

// LogFile is where the server writes its log (stderr).
func (p *PostgresServer) LogFile() string { return filepath.Join(p.logDir(), "postgres.log") }

// SocketDir holds the server's unix socket.
func (p *PostgresServer) SocketDir() string { return p.runDir() }

func (p *PostgresServer) runDir() string { return filepath.Join(p.baseDir, "run") }
func (p *PostgresServer) logDir() string { return filepath.Join(p.baseDir, "log") }

// ConnString is a libpq URL (for pgx) to database db ("" means "postgres") as the
// superuser over TCP.
func (p *PostgresServer) ConnString(db string) string {
	return p.connString(db, false)
}

// ReplConnString is ConnString with replication=database, as pglogrepl needs for
// logical replication (slot creation, START_REPLICATION).
func (p *PostgresServer) ReplConnString(db string) string {
	return p.connString(db, true)
}

func (p *PostgresServer) connString(db string, repl bool) string {
	if db == "" {
		db = "postgres"
	}
	q := url.Values{"sslmode": {"disable"}, "connect_timeout": {"5"}}
	if repl {
		q.Set("replication", "database")
	}
	u := url.URL{Scheme: "postgres", User: url.User(Superuser), Host: p.Addr(), Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// Connect opens one connection to database db ("" means "postgres"). The caller closes it.
func (p *PostgresServer) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, p.ConnString(db))
	if err != nil {
		return nil, fmt.Errorf("testenv: connect to postgres database %q at %s: %w", db, p.Addr(), err)
	}
	return c, nil
}

// Exec runs each statement (each may hold several, separated by ';', since no
// arguments means the simple protocol) in database db, stopping at the first error.
func (p *PostgresServer) Exec(ctx context.Context, db string, stmts ...string) error {
	c, err := p.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	for i, s := range stmts {
		if _, err := c.Exec(ctx, s); err != nil {
			return fmt.Errorf("testenv: postgres database %q statement %d (%s): %w", db, i+1, abbreviate(s), err)
		}
	}
	return nil
}

// CreateDatabase creates database name (UTF8) unless it exists.
func (p *PostgresServer) CreateDatabase(ctx context.Context, name string) error {
	c, err := p.Connect(ctx, "")
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("testenv: check postgres database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" ENCODING 'UTF8' TEMPLATE template0"); err != nil {
		return fmt.Errorf("testenv: create postgres database %q: %w", name, err)
	}
	return nil
}

// DropDatabase drops database name, first terminating its replication connections and
// dropping its replication slots (which would otherwise block the drop and keep WAL).
func (p *PostgresServer) DropDatabase(ctx context.Context, name string) error {
	c, err := p.Connect(ctx, "")
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var lastErr error
	for attempt := range 20 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("testenv: drop postgres database %q: %w (last error: %v)", name, ctx.Err(), lastErr)
			case <-time.After(250 * time.Millisecond):
			}
		}
		if _, err := c.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, name); err != nil {
			lastErr = fmt.Errorf("terminate slot users: %w", err)
			continue
		}
		// A terminated walsender releases its slot a moment later; retry until it has.
		if _, err := c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, name); err != nil {
			lastErr = fmt.Errorf("drop slots: %w", err)
			continue
		}
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			lastErr = err
			continue
		}
		return nil
	}
	return fmt.Errorf("testenv: drop postgres database %q: %w", name, lastErr)
}

// Kill sends SIGKILL to the postmaster and all its backends, as a crash would, keeping
// the data directory. Start brings it back on the same data and port (crash recovery).
func (p *PostgresServer) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return errors.New("testenv: Kill: postgres is not running")
	}
	p.proc.kill()
	p.proc = nil
	return nil
}

// Shutdown stops the server with a fast shutdown, keeping its data for Start.
func (p *PostgresServer) Shutdown() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shutdownLocked()
}

func (p *PostgresServer) shutdownLocked() error {
	if p.proc == nil {
		return nil
	}
	pr := p.proc
	p.proc = nil
	if err := pr.stop(syscall.SIGINT, 60*time.Second); err != nil {
		return fmt.Errorf("%w; log tail:\n%s", err, logTail(p.LogFile(), 20))
	}
	return nil
}

// Start starts a stopped or killed server again on the same data directory and port,
// waiting until it accepts connections.
func (p *PostgresServer) Start(ctx context.Context) error {
	return startRetryingBindConflicts(ctx, p.opts.StartTimeout, p.start)
}

// Restart shuts the server down cleanly and starts it again on the same data.
func (p *PostgresServer) Restart(ctx context.Context) error {
	if err := p.Shutdown(); err != nil {
		return err
	}
	return p.Start(ctx)
}

// Stop shuts the server down and removes its temporary directory (unless KeepDir). It
// is safe to call more than once.
func (p *PostgresServer) Stop() error {
	p.mu.Lock()
	err := p.shutdownLocked()
	p.mu.Unlock()
	if rmErr := p.removeDir(); rmErr != nil && err == nil {
		err = rmErr
	}
	p.opts.Logger.Info("testenv: server stopped", "server", "postgres", "addr", p.Addr())
	return err
}

func (p *PostgresServer) removeDir() error {
	if p.opts.KeepDir || p.baseDir == "" {
		return nil
	}
	if err := os.RemoveAll(p.baseDir); err != nil {
		return fmt.Errorf("testenv: remove %s: %w", p.baseDir, err)
	}
	return nil
}

// initdb creates the cluster with trust authentication and replaces pg_hba.conf so
// that replication connections from 127.0.0.1 are trusted too.
func (p *PostgresServer) initdb(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(p.binDir, "initdb"),
		"-D", p.DataDir(), "-U", Superuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	cmd.Dir = p.baseDir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = p.user.sysProcAttr(syscall.SIGKILL)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testenv: initdb -D %s: %w; output tail:\n%s", p.DataDir(), err, tailString(string(out), 20))
	}
	hba := strings.Join([]string{
		"# written by internal/testenv: a private test server trusts local clients",
		"local all all trust",
		"host all all 127.0.0.1/32 trust",
		"host all all ::1/128 trust",
		"local replication all trust",
		"host replication all 127.0.0.1/32 trust",
		"host replication all ::1/128 trust",
		"",
	}, "\n")
	hbaPath := filepath.Join(p.DataDir(), "pg_hba.conf")
	if err := os.WriteFile(hbaPath, []byte(hba), 0o600); err != nil {
		return fmt.Errorf("testenv: write %s: %w", hbaPath, err)
	}
	if p.user.switchTo {
		if err := os.Chown(hbaPath, p.user.uid, p.user.gid); err != nil {
			return fmt.Errorf("testenv: chown %s: %w", hbaPath, err)
		}
	}
	return nil
}

// serverArgs is the postgres command line; settings go on it so a restart needs no
// config file edits.
func (p *PostgresServer) serverArgs() []string {
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": p.runDir(),
		"wal_level":               "logical",
		"max_replication_slots":   "20",
		"max_wal_senders":         "20",
		"max_connections":         "200",
		"shared_buffers":          "32MB",
		"fsync":                   "off",
		"synchronous_commit":      "on",
		"full_page_writes":        "off",
		"logging_collector":       "off",
		"log_min_messages":        "warning",
		"timezone":                "UTC",
	}
	if p.opts.Durable {
		settings["fsync"], settings["full_page_writes"] = "on", "on"
	}
	if p.opts.AsyncCommit {
		settings["synchronous_commit"] = "off"
	}
	for k, v := range p.opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", p.DataDir(), "-p", strconv.Itoa(p.port)}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	return args
}

// start launches the postmaster and waits until it accepts connections.
func (p *PostgresServer) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		return errors.New("testenv: Start: postgres is already running")
	}
	if fi, err := os.Stat(p.LogFile()); err == nil && fi.Size() > 0 {
		_ = os.Rename(p.LogFile(), p.LogFile()+".prev")
	}
	logf, err := os.OpenFile(p.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testenv: open postgres log %s: %w", p.LogFile(), err)
	}
	cmd := exec.Command(filepath.Join(p.binDir, "postgres"), p.serverArgs()...)
	cmd.Dir = p.baseDir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdout, cmd.Stderr = logf, logf
	// SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends down.
	cmd.SysProcAttr = p.user.sysProcAttr(syscall.SIGQUIT)
	proc, err := startProcess(cmd)
	_ = logf.Close() // the child has its own descriptor
	if err != nil {
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if proc.exited() {
			tail := logTail(p.LogFile(), 25)
			err := fmt.Errorf("testenv: postgres exited during start (%v); log %s tail:\n%s", proc.err, p.LogFile(), tail)
			if isBindConflict(tail) {
				return fmt.Errorf("%w: %w", errBindConflict, err)
			}
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, connErr := pgx.Connect(cctx, p.ConnString(""))
		cancel()
		if connErr == nil {
			_ = c.Close(ctx)
			p.proc = proc
			return nil
		}
		select {
		case <-ctx.Done():
			proc.kill()
			return fmt.Errorf("testenv: postgres on port %d not ready: %w (last connect error: %v); log %s tail:\n%s",
				p.port, ctx.Err(), connErr, p.LogFile(), logTail(p.LogFile(), 25))
		case <-tick.C:
		}
	}
}
