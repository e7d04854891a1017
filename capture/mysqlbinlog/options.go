// Package mysqlbinlog captures row changes from a MySQL or MariaDB server (the national
// front-end database) by reading its binary log as a replica, with go-mysql's
// BinlogSyncer. It implements capture.Source: a lock-free, watermark-based chunked
// snapshot interleaved with the binlog stream, its own schema history (column names
// come from the TableMapEvent when binlog_row_metadata=FULL, so replaying binlog
// written before a DDL decodes rows with the columns they were written with), purged
// binlog detection, truncate and schema-change events, dead letters for rows it
// cannot convert (capture.Change.DeadLetter with a bounded reason code: invalid_text,
// zero_date, unknown_type, bad_number, oversized, no_schema), position-only
// heartbeats on quiet or filtered streams, and the collapse of the national push's
// weekly whole-table reloads into their real changes with a mass-delete circuit
// breaker (reload.go).
//
// Only MariaDB is tested here (the machine has no MySQL server); the MySQL flavour
// paths (GTIDEvent, gtid_purged, SHOW BINARY LOG STATUS) follow go-mysql's and
// MySQL's documentation but have not run against a server.
package mysqlbinlog

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SnapshotMode says when the connector reads whole tables.
type SnapshotMode string

// Snapshot modes. SnapshotInitial reads every captured table once when there is no
// saved position; SnapshotWhenNeeded also re-reads them when the saved binlog
// position has been purged from the server; SnapshotNever only streams.
const (
	SnapshotInitial    SnapshotMode = "initial"
	SnapshotWhenNeeded SnapshotMode = "when_needed"
	SnapshotNever      SnapshotMode = "never"
)

// Flavors accepted in Options.Flavor.
const (
	FlavorMySQL   = "mysql"
	FlavorMariaDB = "mariadb"
)

// Options configures one binlog source. Zero values get the defaults documented per
// field; New validates and never connects.
type Options struct {
	// Name is the configured source name (e.g. "national"); it names the raw topics
	// and goes into every envelope's source.system.
	Name string
	// TopicPrefix is the deployment's topic prefix (e.g. "sc").
	TopicPrefix string

	// Host and Port locate the server; User needs REPLICATION SLAVE, BINLOG MONITOR
	// (MySQL: REPLICATION CLIENT) and SELECT on the captured tables.
	Host     string
	Port     int
	User     string
	Password string
	// Flavor is "mysql" or "mariadb" (default "mariadb").
	Flavor string
	// ServerID must be unique among all replicas of the server: two readers with the
	// same id disconnect each other.
	ServerID uint32
	// UseGTID resumes from the GTID set rather than file+pos (both are always saved).
	UseGTID bool

	// Databases lists the schemas to capture (every base table in them).
	Databases []string
	// Tables lists extra tables as "db.table"; when both lists are empty New fails.
	Tables []string

	// SnapshotMode: initial (default), when_needed or never.
	SnapshotMode SnapshotMode
	// ChunkSize is the number of rows per snapshot chunk (default 2000).
	ChunkSize int
	// Parallel is how many chunks of the same table are read at once, each on its own
	// connection between one pair of watermarks (default 1). Tables are still
	// snapshotted one after the other; a table without a primary key is read whole.
	Parallel int
	// HeartbeatInterval is the replication heartbeat period the server is asked for,
	// so that a dead connection is noticed on a quiet source and the lag gauge drops
	// to zero when there is nothing to read (default 5s).
	HeartbeatInterval time.Duration

	// StateDir holds the schema history (schema-history.json) and the reload state.
	// Required: without it a replay after a restart could not decode old events.
	StateDir string

	// MaxRowBytes sends rows whose JSON encoding is larger than this to the DLQ
	// (default 4 MiB).
	MaxRowBytes int

	// Reload configures the weekly-reload collapse (see ReloadOptions and reload.go).
	Reload ReloadOptions
	// MassDelete configures the mass-delete circuit breaker of the reload collapse.
	MassDelete MassDeleteOptions

	// Registerer receives the connector's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Logger is the structured logger (nil: slog.Default()).
	Logger *slog.Logger
	// OnConnection, when set, is told when the stream to the server breaks or a
	// reconnect attempt fails (with the error) and when it streams again (nil), so that
	// readiness follows an outage the source rides out by reconnecting itself.
	OnConnection func(err error)
}

// ReloadOptions configures the collapse of the national push's weekly reloads
// (TRUNCATE or DELETE-all then INSERT of whole tables) into the real changes.
type ReloadOptions struct {
	// Tables lists the "db.table" names whose reloads are collapsed. Empty: off.
	// Their state (the image downstream holds of every row) is kept on disk in
	// StateDir/reload/; a table added later is re-snapshotted once to seed it.
	Tables []string
	// Detect says what opens and closes a reload window: "quiet" (default: TRUNCATE
	// or a transaction deleting more than DeleteShare of the table opens it,
	// QuietPeriod without writes closes it), "truncate" (only TRUNCATE opens it) or
	// "push_log" (a PushLogTable row with started_at and no finished_at opens it,
	// setting finished_at closes it; needed for spread pushes, whose chunked deletes
	// are each too small to recognise).
	Detect string
	// PushLogTable is the push log as "db.table" (default: push_log in the database of
	// the first reload table). Its table_name column names the reloaded table.
	PushLogTable string
	// QuietPeriod closes a reload window when the table saw no change for this long
	// (default 2m).
	QuietPeriod time.Duration
	// DeleteShare is the share (0..1) of a table one transaction must delete for
	// Detect quiet to treat it as the start of a reload (default 0.5). The table's
	// size is counted at Open and kept up to date approximately.
	DeleteShare float64
	// MaxWindow closes a reload window that has been open this long (binlog time)
	// anyway, with a warning (default 12h). A push that died before setting
	// finished_at would otherwise keep every position from being saved, and a restart
	// would re-read the binlog from the window's start, for ever; the mass-delete
	// breaker holds the deletes of a half-loaded table.
	MaxWindow time.Duration
}

// MassDeleteOptions is the circuit breaker that holds the deletes a reload would emit
// when too much of a table, or of one county, would vanish at once.
type MassDeleteOptions struct {
	// MaxShare is the largest share (0..1) of a table's rows a reload may delete
	// before deletes are held (default 0.05).
	MaxShare float64
	// MaxCountyShare is the same limit per county (first 6 digits of CountyColumn).
	MaxCountyShare float64
	// CountyColumn names the region code column whose first 6 digits are the county
	// (default "village_code,hh_no": a comma-separated list, the first column present
	// in a row is used, so that person and measure rows, which carry the household
	// number built on the village code, count too). Rows with none are only counted
	// against MaxShare.
	CountyColumn string
}

func (o *Options) setDefaults() {
	if o.Flavor == "" {
		o.Flavor = FlavorMariaDB
	}
	if o.SnapshotMode == "" {
		o.SnapshotMode = SnapshotInitial
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = 2000
	}
	if o.Parallel == 0 {
		o.Parallel = 1
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 5 * time.Second
	}
	if o.MaxRowBytes == 0 {
		o.MaxRowBytes = 4 << 20
	}
	if o.Reload.QuietPeriod == 0 {
		o.Reload.QuietPeriod = 2 * time.Minute
	}
	if o.Reload.Detect == "" {
		o.Reload.Detect = DetectQuiet
	}
	if o.Reload.MaxWindow == 0 {
		o.Reload.MaxWindow = 12 * time.Hour
	}
	if o.Reload.DeleteShare == 0 {
		o.Reload.DeleteShare = 0.5
	}
	if o.Reload.PushLogTable == "" && len(o.Reload.Tables) > 0 {
		db, _, _ := strings.Cut(o.Reload.Tables[0], ".")
		o.Reload.PushLogTable = db + ".push_log"
	}
	if o.MassDelete.MaxShare == 0 {
		o.MassDelete.MaxShare = 0.05
	}
	if o.MassDelete.MaxCountyShare == 0 {
		o.MassDelete.MaxCountyShare = 0.2
	}
	if o.MassDelete.CountyColumn == "" {
		o.MassDelete.CountyColumn = "village_code,hh_no"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports every problem with the options, each naming its field.
func (o *Options) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("mysqlbinlog option %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if o.Name == "" {
		add("name", "required (the source name used in topic names, e.g. \"national\")")
	}
	if o.TopicPrefix == "" {
		add("topic_prefix", "required (e.g. \"sc\")")
	}
	if o.Host == "" {
		add("host", "required")
	}
	if o.Port <= 0 || o.Port > 65535 {
		add("port", "%d is not a TCP port", o.Port)
	}
	if o.User == "" {
		add("user", "required")
	}
	if o.Flavor != FlavorMySQL && o.Flavor != FlavorMariaDB {
		add("flavor", "%q: want mysql or mariadb", o.Flavor)
	}
	if o.ServerID == 0 {
		add("server_id", "required and unique among the server's replicas (0 is reserved)")
	}
	if len(o.Databases) == 0 && len(o.Tables) == 0 {
		add("databases", "list databases or tables to capture")
	}
	for _, t := range append(append([]string{}, o.Tables...), o.Reload.Tables...) {
		if db, tb, ok := strings.Cut(t, "."); !ok || db == "" || tb == "" {
			add("tables", "%q: want db.table", t)
		}
	}
	switch o.SnapshotMode {
	case SnapshotInitial, SnapshotWhenNeeded, SnapshotNever:
	default:
		add("snapshot_mode", "%q: want initial, when_needed or never", o.SnapshotMode)
	}
	if o.ChunkSize < 1 {
		add("chunk_size", "%d: must be at least 1", o.ChunkSize)
	}
	if o.Parallel < 1 || o.Parallel > 64 {
		add("parallel", "%d: want 1..64 concurrent chunk reads", o.Parallel)
	}
	if o.StateDir == "" {
		add("state_dir", "required (holds the schema history needed to replay old binlog)")
	}
	switch o.Reload.Detect {
	case DetectQuiet, DetectTruncate, DetectPushLog:
	default:
		add("reload.detect", "%q: want quiet, truncate or push_log", o.Reload.Detect)
	}
	if o.Reload.DeleteShare <= 0 || o.Reload.DeleteShare > 1 {
		add("reload.delete_share", "%v: want more than 0, at most 1", o.Reload.DeleteShare)
	}
	if o.Reload.MaxWindow < o.Reload.QuietPeriod {
		add("reload.max_window", "%s: want at least the quiet period %s", o.Reload.MaxWindow, o.Reload.QuietPeriod)
	}
	if o.Reload.QuietPeriod < time.Second {
		add("reload.quiet_period", "%s: want at least 1s (binlog timestamps have second resolution)", o.Reload.QuietPeriod)
	}
	if db, tb, ok := strings.Cut(o.Reload.PushLogTable, "."); len(o.Reload.Tables) > 0 && (!ok || db == "" || tb == "") {
		add("reload.push_log_table", "%q: want db.table", o.Reload.PushLogTable)
	}
	if o.MassDelete.MaxShare < 0 || o.MassDelete.MaxShare > 1 {
		add("mass_delete.max_share", "%v: want 0..1", o.MassDelete.MaxShare)
	}
	if o.MassDelete.MaxCountyShare < 0 || o.MassDelete.MaxCountyShare > 1 {
		add("mass_delete.max_county_share", "%v: want 0..1", o.MassDelete.MaxCountyShare)
	}
	return errors.Join(errs...)
}
