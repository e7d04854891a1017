package pglogical

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// SnapshotMode says whether the connector reads whole tables before streaming.
type SnapshotMode string

// Snapshot modes. SnapshotInitial reads every configured table once when there is no
// saved position (and finishes an interrupted snapshot after a restart);
// SnapshotNever only streams changes committed after the slot's position.
const (
	SnapshotInitial SnapshotMode = "initial"
	SnapshotNever   SnapshotMode = "never"
)

// Options configures one PostgreSQL logical replication source. New validates them and
// never connects; zero values get the defaults documented per field.
type Options struct {
	// Name is the configured source name (e.g. "yibao"); it names the raw topics and
	// goes into every envelope's source.system.
	Name string
	// TopicPrefix is the deployment's topic prefix (e.g. "sc").
	TopicPrefix string
	// ConnString is a libpq URL or key=value string for a normal connection to the
	// source database. The replication connection is derived from it by adding
	// replication=database. The user needs the REPLICATION attribute, SELECT on the
	// tables, and (for Setup) the right to create publications.
	ConnString string
	// Slot is the logical replication slot name ([a-z0-9_], at most 63 characters).
	Slot string
	// Publication is the pgoutput publication name.
	Publication string
	// Tables lists the captured tables as "schema.table".
	Tables []string
	// CreateSlot lets Setup and Open create the slot when it is missing. Without it a
	// missing slot is an error naming the slot.
	CreateSlot bool
	// CreatePublication lets Setup and Open create the publication (or add missing
	// tables to it). Without it a missing publication is an error naming it.
	CreatePublication bool
	// SnapshotMode: initial (default) or never.
	SnapshotMode SnapshotMode
	// ChunkSize is the number of rows read per snapshot query (default 2000).
	ChunkSize int
	// HeartbeatInterval is how often, on a quiet stream, the connector asks the server
	// for a keepalive so that the slot's confirmed position can follow WAL written for
	// other tables and retained WAL does not grow (default 10s).
	HeartbeatInterval time.Duration
	// StatusInterval is how often a standby status update with the last acknowledged
	// LSN is sent, and the slot metrics refreshed (default 10s; must stay well below
	// the server's wal_sender_timeout).
	StatusInterval time.Duration
	// ReconnectTimeout bounds how long a lost replication connection is retried,
	// including the time the server still reports the slot as active after the old
	// connection died (about wal_sender_timeout; default 2m).
	ReconnectTimeout time.Duration
	// MaxQueued is the most decoded changes held in memory waiting for ReadN before
	// the connector stops reading WAL (default 100000). A single transaction larger
	// than this is still buffered whole until its commit.
	MaxQueued int
	// MaxRowBytes sends rows whose JSON envelope is larger than this to the DLQ as
	// oversized, with the table, key and length but not the row (default 4 MiB, as the
	// binlog source), so that nothing unbounded enters Kafka.
	MaxRowBytes int

	// Registerer receives the connector's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Logger is the structured logger (nil: slog.Default()).
	Logger *slog.Logger
	// OnConnection, when set, is told when the stream to the server breaks or a
	// reconnect attempt fails (with the error) and when it streams again (nil), so that
	// readiness follows an outage the source rides out by reconnecting itself.
	OnConnection func(err error)
}

var identRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (o *Options) setDefaults() {
	if o.SnapshotMode == "" {
		o.SnapshotMode = SnapshotInitial
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = 2000
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 10 * time.Second
	}
	if o.StatusInterval == 0 {
		o.StatusInterval = 10 * time.Second
	}
	if o.ReconnectTimeout == 0 {
		o.ReconnectTimeout = 2 * time.Minute
	}
	if o.MaxQueued == 0 {
		o.MaxQueued = 100000
	}
	if o.MaxRowBytes == 0 {
		o.MaxRowBytes = 4 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports every problem with the options, each naming its field.
func (o *Options) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("pglogical option %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if o.Name == "" {
		add("name", "required (the source name used in topic names, e.g. \"yibao\")")
	}
	if o.TopicPrefix == "" {
		add("topic_prefix", "required (e.g. \"sc\")")
	}
	if o.ConnString == "" {
		add("conn_string", "required (e.g. postgres://user:pass@host:5432/db)")
	} else if _, err := pgx.ParseConfig(o.ConnString); err != nil {
		add("conn_string", "cannot be parsed: %v", err)
	}
	if !identRe.MatchString(o.Slot) {
		add("slot", "%q: want [a-z_][a-z0-9_]*, at most 63 characters", o.Slot)
	}
	if !identRe.MatchString(o.Publication) {
		add("publication", "%q: want [a-z_][a-z0-9_]*, at most 63 characters", o.Publication)
	}
	if len(o.Tables) == 0 {
		add("tables", "list at least one table as schema.table")
	}
	seen := map[string]bool{}
	for _, t := range o.Tables {
		s, n, ok := strings.Cut(t, ".")
		if !ok || s == "" || n == "" || strings.Contains(n, ".") {
			add("tables", "%q: want schema.table", t)
		}
		if seen[t] {
			add("tables", "%q listed twice", t)
		}
		seen[t] = true
	}
	switch o.SnapshotMode {
	case SnapshotInitial, SnapshotNever:
	default:
		add("snapshot_mode", "%q: want initial or never", o.SnapshotMode)
	}
	if o.ChunkSize < 1 {
		add("chunk_size", "%d: must be at least 1", o.ChunkSize)
	}
	if o.StatusInterval < 0 || o.HeartbeatInterval < 0 || o.ReconnectTimeout < 0 {
		add("status_interval", "intervals must not be negative")
	}
	if o.MaxQueued < 1 {
		add("max_queued", "%d: must be at least 1", o.MaxQueued)
	}
	return errors.Join(errs...)
}
