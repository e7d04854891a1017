package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Flavor names reported by (*MariaDBServer).Flavor; they match go-mysql's flavor strings.
const (
	FlavorMariaDB = "mariadb"
	FlavorMySQL   = "mysql"
)

// mysqlDirs are searched after PATH for MariaDB/MySQL binaries.
var mysqlDirs = []string{"/usr/sbin", "/usr/bin", "/usr/local/mysql/bin"}

// MariaDBOptions configures a private MariaDB (or MySQL) server. The zero value gives a
// fast, non-durable server with ROW/FULL/FULL binlog and GTIDs, as capture tests need.
type MariaDBOptions struct {
	// BaseDir is the parent of the instance's temporary directory (default os.TempDir()).
	BaseDir string
	// ServerBinary forces a server binary (mariadbd or mysqld); default: search PATH,
	// /usr/sbin, /usr/bin, preferring mariadbd.
	ServerBinary string
	// ServerID is the binlog server_id (default 1). Binlog readers need different IDs.
	ServerID uint32
	// Durable makes commits survive power loss (innodb_flush_log_at_trx_commit=1,
	// sync_binlog=1). Off by default for speed; SIGKILL recovery works either way
	// because the OS still has the data.
	Durable bool
	// BufferPool is innodb_buffer_pool_size (default "64M").
	BufferPool string
	// ReplUser and ReplPassword name the replication account created at start
	// (default "repl" / "repl-pass").
	ReplUser, ReplPassword string
	// ExtraArgs are appended to the server command line, e.g. "--binlog-row-image=MINIMAL"
	// to test a misconfigured source (later options win).
	ExtraArgs []string
	// StartTimeout bounds initialisation plus start (default 90s).
	StartTimeout time.Duration
	// KeepDir leaves the data directory on disk after Stop, for post-mortems.
	KeepDir bool
	// Logger receives start/stop events (default slog.Default()).
	Logger *slog.Logger
}

func (o *MariaDBOptions) defaults() {
	if o.ServerID == 0 {
		o.ServerID = 1
	}
	if o.BufferPool == "" {
		o.BufferPool = "64M"
	}
	if o.ReplUser == "" {
		o.ReplUser = "repl"
	}
	if o.ReplPassword == "" {
		o.ReplPassword = "repl-pass"
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 90 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// MariaDBServer is a private MariaDB or MySQL server in a temporary directory, listening on
// 127.0.0.1 on a free port. Root has no password over TCP from 127.0.0.1. It is safe for
// concurrent use; Kill/Start/Restart must not race with each other.
type MariaDBServer struct {
	opts    MariaDBOptions
	flavor  string
	server  string // server binary path
	user    serverUser
	baseDir string
	port    int

	mu    sync.Mutex
	proc  *process
	admin *sql.DB
}

// StartMariaDB initialises a new data directory and starts a server on it. A missing
// binary yields an error wrapping ErrBinaryNotFound (a *MissingBinaryError); a failed
// start includes the tail of the server's error log.
func StartMariaDB(ctx context.Context, opts MariaDBOptions) (*MariaDBServer, error) {
	opts.defaults()
	server := opts.ServerBinary
	if server == "" {
		var err error
		server, err = findBinary("mariadb-server", mysqlDirs, "mariadbd", "mysqld")
		if err != nil {
			return nil, err
		}
	} else if fi, err := os.Stat(server); err != nil || fi.IsDir() {
		return nil, &MissingBinaryError{Binary: server, Searched: []string{"MariaDBOptions.ServerBinary"}, Package: "mariadb-server"}
	}
	flavor, err := detectFlavor(ctx, server)
	if err != nil {
		return nil, err
	}
	su, err := lookupServerUser("mysql")
	if err != nil {
		return nil, err
	}
	base, err := makeBaseDir(opts.BaseDir, flavor, su)
	if err != nil {
		return nil, err
	}
	m := &MariaDBServer{opts: opts, flavor: flavor, server: server, user: su, baseDir: base}
	ok := false
	defer func() {
		if !ok {
			_ = m.removeDir()
		}
	}()
	if err := checkSocketPath(m.Socket()); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	for _, d := range []string{m.DataDir(), m.BinlogDir(), m.runDir(), m.logDir(), m.tmpDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("testenv: create %s: %w", d, err)
		}
	}
	if err := su.chownTree(base); err != nil {
		return nil, err
	}
	if err := m.initDataDir(ctx); err != nil {
		return nil, err
	}
	// Pick a port; if another process takes it between probe and bind, try another.
	var lastErr error
	for range 5 {
		if m.port, err = freePort(); err != nil {
			return nil, err
		}
		lastErr = m.start(ctx)
		if lastErr == nil || !errors.Is(lastErr, errBindConflict) {
			break
		}
		opts.Logger.Debug("testenv: port taken, retrying", "server", flavor, "port", m.port)
	}
	if lastErr != nil {
		return nil, lastErr
	}
	if err := m.bootstrapUsers(ctx); err != nil {
		m.mu.Lock()
		m.shutdownLocked(true)
		m.mu.Unlock()
		return nil, err
	}
	ok = true
	opts.Logger.Info("testenv: server started", "server", flavor, "addr", m.Addr(), "dir", base)
	return m, nil
}

// detectFlavor tells MariaDB from MySQL: by name first (mariadbd), then by asking the
// binary, because Debian's mysqld is a symlink to mariadbd.
func detectFlavor(ctx context.Context, server string) (string, error) {
	if filepath.Base(server) == "mariadbd" {
		return FlavorMariaDB, nil
	}
	if target, err := filepath.EvalSymlinks(server); err == nil && filepath.Base(target) == "mariadbd" {
		return FlavorMariaDB, nil
	}
	out, err := exec.CommandContext(ctx, server, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("testenv: run %s --version to detect MariaDB or MySQL: %w: %s", server, err, strings.TrimSpace(string(out)))
	}
	if strings.Contains(strings.ToLower(string(out)), "mariadb") {
		return FlavorMariaDB, nil
	}
	return FlavorMySQL, nil
}

// Addr is host:port for TCP clients.
func (m *MariaDBServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

// Host is the address clients connect to (always 127.0.0.1).
func (m *MariaDBServer) Host() string { return "127.0.0.1" }

// Port is the TCP port; it stays the same across Kill/Start/Restart.
func (m *MariaDBServer) Port() int { return m.port }

// Flavor is FlavorMariaDB or FlavorMySQL, as go-mysql's Flavor setting expects.
func (m *MariaDBServer) Flavor() string { return m.flavor }

// ServerID is the server's server_id; binlog readers must use a different one.
func (m *MariaDBServer) ServerID() uint32 { return m.opts.ServerID }

// ReplUser is the replication account (REPLICATION SLAVE, BINLOG MONITOR / REPLICATION
// CLIENT, SELECT, RELOAD on *.*), reachable from 127.0.0.1.
func (m *MariaDBServer) ReplUser() string { return m.opts.ReplUser }

// ReplPassword is ReplUser's password.
func (m *MariaDBServer) ReplPassword() string { return m.opts.ReplPassword }

// Dir is the instance's temporary directory, removed by Stop.
func (m *MariaDBServer) Dir() string { return m.baseDir }

// DataDir is the server's datadir.
func (m *MariaDBServer) DataDir() string { return filepath.Join(m.baseDir, "data") }

// BinlogDir holds the binary logs (files named binlog.NNNNNN) and their index.
func (m *MariaDBServer) BinlogDir() string { return filepath.Join(m.baseDir, "binlog") }

// ErrorLog is the server's error log file.
func (m *MariaDBServer) ErrorLog() string { return filepath.Join(m.logDir(), "error.log") }

// Socket is the server's unix socket path.
func (m *MariaDBServer) Socket() string { return filepath.Join(m.runDir(), "mysqld.sock") }

func (m *MariaDBServer) runDir() string { return filepath.Join(m.baseDir, "run") }
func (m *MariaDBServer) logDir() string { return filepath.Join(m.baseDir, "log") }
func (m *MariaDBServer) tmpDir() string { return filepath.Join(m.baseDir, "tmp") }

// RootDSN is a go-sql-driver DSN for root over TCP to database db ("" for none), with
// parseTime (DATETIME as time.Time, in UTC as the server stores them zone-less) and
// multiStatements (so fixtures can run many statements in one Exec).
func (m *MariaDBServer) RootDSN(db string) string {
	return m.dsn("root", "", db)
}

// ReplDSN is like RootDSN for the replication account.
func (m *MariaDBServer) ReplDSN(db string) string {
	return m.dsn(m.opts.ReplUser, m.opts.ReplPassword, db)
}

func (m *MariaDBServer) dsn(user, pass, db string) string {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = user, pass, "tcp", m.Addr(), db
	c.ParseTime = true
	c.MultiStatements = true
	c.Timeout = 5 * time.Second
	c.Params = map[string]string{"charset": "utf8mb4"}
	return c.FormatDSN()
}

// Open returns a connection pool for root on database db ("" for none). The caller
// closes it.
func (m *MariaDBServer) Open(db string) (*sql.DB, error) {
	d, err := sql.Open("mysql", m.RootDSN(db))
	if err != nil {
		return nil, fmt.Errorf("testenv: open %s database %q: %w", m.flavor, db, err)
	}
	return d, nil
}

// CreateDatabase creates database name (utf8mb4) if it does not exist.
func (m *MariaDBServer) CreateDatabase(ctx context.Context, name string) error {
	return m.Exec(ctx, "", "CREATE DATABASE IF NOT EXISTS "+quoteMySQLIdent(name)+" CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
}

// DropDatabase drops database name if it exists.
func (m *MariaDBServer) DropDatabase(ctx context.Context, name string) error {
	return m.Exec(ctx, "", "DROP DATABASE IF EXISTS "+quoteMySQLIdent(name))
}

// Exec runs each statement (each may hold several, separated by ';') as root in
// database db ("" for none), stopping at the first error.
func (m *MariaDBServer) Exec(ctx context.Context, db string, stmts ...string) error {
	d, err := m.Open(db)
	if err != nil {
		return err
	}
	defer d.Close()
	for i, s := range stmts {
		if _, err := d.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("testenv: %s database %q statement %d (%s): %w", m.flavor, db, i+1, abbreviate(s), err)
		}
	}
	return nil
}

// Kill sends SIGKILL to the server, as a crash would, keeping its data directory. Start
// brings it back on the same data and port.
func (m *MariaDBServer) Kill() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return errors.New("testenv: Kill: server is not running")
	}
	// Close the pool first: closing it after the kill would log broken pipes.
	m.closeAdminLocked()
	m.proc.kill()
	m.proc = nil
	return nil
}

// Shutdown stops the server cleanly, keeping its data directory for Start.
func (m *MariaDBServer) Shutdown() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return nil
	}
	return m.shutdownLocked(false)
}

// Start starts a stopped or killed server again on the same data directory and port,
// waiting until it accepts connections (crash recovery included).
func (m *MariaDBServer) Start(ctx context.Context) error {
	return startRetryingBindConflicts(ctx, m.opts.StartTimeout, m.start)
}

// Restart shuts the server down cleanly and starts it again on the same data.
func (m *MariaDBServer) Restart(ctx context.Context) error {
	if err := m.Shutdown(); err != nil {
		return err
	}
	return m.Start(ctx)
}

// Stop shuts the server down and removes its temporary directory (unless KeepDir).
// It is safe to call more than once.
func (m *MariaDBServer) Stop() error {
	m.mu.Lock()
	var err error
	if m.proc != nil {
		err = m.shutdownLocked(false)
	}
	m.closeAdminLocked()
	m.mu.Unlock()
	if rmErr := m.removeDir(); rmErr != nil && err == nil {
		err = rmErr
	}
	m.opts.Logger.Info("testenv: server stopped", "server", m.flavor, "addr", m.Addr())
	return err
}

func (m *MariaDBServer) removeDir() error {
	if m.opts.KeepDir || m.baseDir == "" {
		return nil
	}
	if err := os.RemoveAll(m.baseDir); err != nil {
		return fmt.Errorf("testenv: remove %s: %w", m.baseDir, err)
	}
	return nil
}

func (m *MariaDBServer) shutdownLocked(force bool) error {
	m.closeAdminLocked()
	p := m.proc
	m.proc = nil
	if force {
		p.kill()
		return nil
	}
	if err := p.stop(syscall.SIGTERM, 60*time.Second); err != nil {
		return fmt.Errorf("%w; error log tail:\n%s", err, logTail(m.ErrorLog(), 20))
	}
	return nil
}

func (m *MariaDBServer) closeAdminLocked() {
	if m.admin != nil {
		_ = m.admin.Close()
		m.admin = nil
	}
}

// initDataDir creates the system tables: mariadb-install-db for MariaDB, mysqld
// --initialize-insecure for MySQL.
func (m *MariaDBServer) initDataDir(ctx context.Context) error {
	var cmd *exec.Cmd
	if m.flavor == FlavorMariaDB {
		installDB, err := findBinary("mariadb-server", append([]string{filepath.Dir(m.server)}, mysqlDirs...), "mariadb-install-db", "mysql_install_db")
		if err != nil {
			return err
		}
		args := []string{"--no-defaults", "--datadir=" + m.DataDir(), "--auth-root-authentication-method=normal",
			"--skip-test-db", "--skip-name-resolve", "--tmpdir=" + m.tmpDir()}
		if m.user.switchTo {
			args = append(args, "--user="+m.user.name)
		}
		cmd = exec.CommandContext(ctx, installDB, args...)
	} else {
		args := []string{"--no-defaults", "--initialize-insecure", "--datadir=" + m.DataDir(), "--tmpdir=" + m.tmpDir()}
		if m.user.switchTo {
			args = append(args, "--user="+m.user.name)
		}
		cmd = exec.CommandContext(ctx, m.server, args...)
	}
	cmd.Dir = m.baseDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("testenv: initialise %s datadir %s with %s: %w; output tail:\n%s", m.flavor, m.DataDir(), cmd.Path, err, tailString(string(out), 20))
	}
	return m.user.chownTree(m.baseDir)
}

// errBindConflict marks a start that failed because the port was taken.
var errBindConflict = errors.New("port already in use")

// serverArgs is the command line for the server; options are explicit because
// --no-defaults ignores the machine's my.cnf.
func (m *MariaDBServer) serverArgs() []string {
	flush, sync := "2", "0"
	if m.opts.Durable {
		flush, sync = "1", "1"
	}
	args := []string{
		"--no-defaults",
		"--datadir=" + m.DataDir(),
		"--tmpdir=" + m.tmpDir(),
		"--port=" + strconv.Itoa(m.port),
		"--bind-address=127.0.0.1",
		"--socket=" + m.Socket(),
		"--pid-file=" + filepath.Join(m.runDir(), "mysqld.pid"),
		"--log-error=" + m.ErrorLog(),
		"--skip-name-resolve",
		"--server-id=" + strconv.FormatUint(uint64(m.opts.ServerID), 10),
		"--log-bin=" + filepath.Join(m.BinlogDir(), "binlog"),
		"--binlog-format=ROW",
		"--binlog-row-image=FULL",
		"--binlog-row-metadata=FULL",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
		"--innodb-buffer-pool-size=" + m.opts.BufferPool,
		"--innodb-flush-log-at-trx-commit=" + flush,
		"--sync-binlog=" + sync,
		"--max-connections=500",
	}
	if m.flavor == FlavorMariaDB {
		args = append(args,
			"--gtid-strict-mode=ON",
			// Native AIO can exhaust fs.aio-max-nr when many instances run at once.
			"--innodb-use-native-aio=0",
			"--innodb-log-file-size=32M",
		)
	} else {
		args = append(args,
			"--gtid-mode=ON",
			"--enforce-gtid-consistency=ON",
			// X Plugin would listen on 33060 and clash with the machine's server.
			"--mysqlx=OFF",
		)
	}
	return append(args, m.opts.ExtraArgs...)
}

// start launches the server on the existing datadir and waits for it to answer.
func (m *MariaDBServer) start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		return errors.New("testenv: Start: server is already running")
	}
	// A fresh log per start keeps the error tail about this attempt; keep the old one.
	if fi, err := os.Stat(m.ErrorLog()); err == nil && fi.Size() > 0 {
		_ = os.Rename(m.ErrorLog(), m.ErrorLog()+".prev")
	}
	cmd := exec.Command(m.server, m.serverArgs()...)
	cmd.Dir = m.baseDir
	cmd.SysProcAttr = m.user.sysProcAttr(syscall.SIGKILL)
	p, err := startProcess(cmd)
	if err != nil {
		return err
	}
	d, err := sql.Open("mysql", m.socketDSN())
	if err != nil {
		p.kill()
		return fmt.Errorf("testenv: open %s socket connection: %w", m.flavor, err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var pingErr error
	for {
		if p.exited() {
			_ = d.Close()
			tail := logTail(m.ErrorLog(), 25)
			err := fmt.Errorf("testenv: %s exited during start (%v); error log %s tail:\n%s", m.server, p.err, m.ErrorLog(), tail)
			if isBindConflict(tail) {
				return fmt.Errorf("%w: %w", errBindConflict, err)
			}
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		pingErr = d.PingContext(pctx)
		cancel()
		if pingErr == nil {
			break
		}
		select {
		case <-ctx.Done():
			p.kill()
			_ = d.Close()
			return fmt.Errorf("testenv: %s on port %d not ready: %w (last connect error: %v); error log %s tail:\n%s",
				m.flavor, m.port, ctx.Err(), pingErr, m.ErrorLog(), logTail(m.ErrorLog(), 25))
		case <-tick.C:
		}
	}
	m.proc = p
	m.admin = d
	return nil
}

// socketDSN connects as root over the unix socket, which works before any TCP account
// exists (mysqld --initialize-insecure creates only root@localhost).
func (m *MariaDBServer) socketDSN() string {
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr = "root", "unix", m.Socket()
	c.Timeout = 2 * time.Second
	return c.FormatDSN()
}

// bootstrapUsers makes root usable over TCP from 127.0.0.1 and creates the replication
// account. --skip-name-resolve means 'localhost' accounts match only socket clients.
func (m *MariaDBServer) bootstrapUsers(ctx context.Context) error {
	m.mu.Lock()
	d := m.admin
	m.mu.Unlock()
	ru, rp := quoteMySQLString(m.opts.ReplUser), quoteMySQLString(m.opts.ReplPassword)
	stmts := []string{
		"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'",
		"GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION",
	}
	if m.flavor == FlavorMariaDB {
		stmts = append(stmts,
			"CREATE USER IF NOT EXISTS "+ru+"@'%' IDENTIFIED BY "+rp,
			"GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT, RELOAD ON *.* TO "+ru+"@'%'",
		)
	} else {
		stmts = append(stmts,
			"CREATE USER IF NOT EXISTS "+ru+"@'%' IDENTIFIED BY "+rp,
			"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, RELOAD ON *.* TO "+ru+"@'%'",
		)
	}
	for _, s := range stmts {
		if _, err := d.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("testenv: bootstrap %s accounts: %q: %w", m.flavor, s, err)
		}
	}
	return nil
}

// quoteMySQLIdent quotes an identifier with backticks.
func quoteMySQLIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// quoteMySQLString quotes a string literal (NO_BACKSLASH_ESCAPES-independent for the
// characters that matter in user names and passwords).
func quoteMySQLString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(s) + "'"
}

// abbreviate shortens a statement for error messages.
func abbreviate(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		return s[:117] + "..."
	}
	return s
}

// tailString returns the last n lines of s.
func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
