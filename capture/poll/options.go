package poll

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Driver names the SQL dialect of the polled database.
type Driver string

// The supported drivers. Departments expose read-only views on PostgreSQL or on
// MySQL/MariaDB through the provincial data-sharing platform.
const (
	DriverPostgres Driver = "postgres"
	DriverMySQL    Driver = "mysql"
)

// Mode says how new and changed rows are found.
type Mode string

// The polling modes. Incrementing suits append-only views with a growing id or
// version column; timestamp suits views with a last-modified column and is the only
// mode that honours SafetyLag (see the package documentation for the guarantees).
const (
	ModeIncrementing Mode = "incrementing"
	ModeTimestamp    Mode = "timestamp"
)

// DeleteDetection configures the periodic key-set comparison, the only way a poller
// can see rows that disappeared from a view.
type DeleteDetection struct {
	// Enabled turns the comparison on.
	Enabled bool
	// Interval between two full key scans; 0 means 1 h. Each scan reads every key of
	// the view, so keep it well above the time one scan takes.
	Interval time.Duration
	// MaxDeleteShare is the mass-delete guard: a scan that would delete more than this
	// share (0..1) of the known rows emits nothing, logs, counts
	// shouwang_poll_deletes_held_total and is retried at the next interval (a view
	// briefly emptied by a department's reload must not wipe the province's copy).
	// 0 means the default 0.2; 1 disables the guard.
	MaxDeleteShare float64
}

// QueryOptions configures one polled view or table.
type QueryOptions struct {
	// Name is the dataset name: the envelope's table and schema name and the last part
	// of the raw topic; [a-z0-9_], unique within the source.
	Name string
	// Relation is the view or table to read, optionally schema-qualified
	// ("yibao.v_insured"). Each part must be a plain identifier (letters, digits, _),
	// because it is spliced into SQL; it is quoted for the driver.
	Relation string
	// Key lists the columns identifying a row; they form the Kafka key and the
	// tie-breaker of the keyset pagination, so together they must be unique and NOT NULL.
	Key []string
	// Mode is incrementing or timestamp.
	Mode Mode
	// Column is the incrementing or timestamp column. Rows where it is NULL are never
	// read by the incremental poll.
	Column string
	// Interval between polls once the view is caught up; 0 means 1 min.
	Interval time.Duration
	// BatchSize is the most rows read by one query; 0 means 1000.
	BatchSize int
	// SafetyLag (timestamp mode only) makes the poll read only rows whose Column is at
	// most the database's now() minus SafetyLag, so a transaction that stamped its rows
	// earlier but commits within SafetyLag is not skipped. 0 means 5 s; negative means
	// none (only for views whose rows are committed before their timestamp is set).
	SafetyLag time.Duration
	// DeleteDetection finds deleted rows by comparing key sets.
	DeleteDetection DeleteDetection
}

// Options configures one poll Source (one database, several views).
type Options struct {
	// Name is the configured source name: envelope source.system, the raw topic's
	// source part, and the owner of the key store rows.
	Name string
	// TopicPrefix is the deployment's topic prefix (e.g. "sc").
	TopicPrefix string
	// Driver is postgres or mysql.
	Driver Driver
	// DSN of the polled database in the driver's own form (pgx connection string, or
	// go-sql-driver/mysql DSN). Only SELECT is ever issued on it.
	DSN string
	// StateDSN is a pgx connection string of a PostgreSQL database owned by Shouwang
	// (usually the one holding shouwang_source_positions) where the key store lives; see
	// the package documentation for why it is there and not on local disk.
	StateDSN string
	// Queries are the polled views.
	Queries []QueryOptions
	// MaxRowBytes sends rows whose JSON encoding is larger than this to the DLQ as
	// oversized, with the query, key and length but not the row (default 4 MiB, as
	// the binlog source). Such a row keeps its key's previous version: it is neither
	// updated nor, since its key is still in the view, deleted.
	MaxRowBytes int
	// Registerer receives the metrics (nil: counted but not exported).
	Registerer prometheus.Registerer
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

var (
	nameRe  = regexp.MustCompile(`^[a-z0-9_]+$`)
	identRe = regexp.MustCompile(`^[\p{L}_][\p{L}\p{N}_]*$`)
)

// validIdent reports whether s is a plain identifier that is safe to quote and splice
// into SQL.
func validIdent(s string) bool { return len(s) <= 63*4 && identRe.MatchString(s) }

// validRelation accepts "name" or "schema.name".
func validRelation(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if !validIdent(p) {
			return false
		}
	}
	return true
}

// withDefaults fills the zero values so the rest of the package can rely on them.
func (q QueryOptions) withDefaults() QueryOptions {
	if q.Interval == 0 {
		q.Interval = time.Minute
	}
	if q.BatchSize == 0 {
		q.BatchSize = 1000
	}
	if q.SafetyLag == 0 {
		q.SafetyLag = 5 * time.Second
	}
	if q.SafetyLag < 0 || q.Mode != ModeTimestamp {
		q.SafetyLag = 0
	}
	if q.DeleteDetection.Interval == 0 {
		q.DeleteDetection.Interval = time.Hour
	}
	if q.DeleteDetection.MaxDeleteShare == 0 {
		q.DeleteDetection.MaxDeleteShare = 0.2
	}
	return q
}

// Validate reports every problem in o, each naming its field, so an operator can fix
// the configuration in one go. It does no I/O.
func (o Options) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("poll source %q: %s: %s", o.Name, field, fmt.Sprintf(format, args...)))
	}
	if !nameRe.MatchString(o.Name) {
		bad("name", "must match [a-z0-9_]+")
	}
	if o.TopicPrefix == "" {
		bad("topic_prefix", "required (kafka.topic_prefix)")
	}
	switch o.Driver {
	case DriverPostgres, DriverMySQL:
	default:
		bad("driver", "unknown driver %q (want postgres or mysql)", o.Driver)
	}
	if o.DSN == "" {
		bad("dsn", "required: the connection string of the department database")
	}
	if o.StateDSN == "" {
		bad("state_dsn", "required: a PostgreSQL database owned by Shouwang for the key store")
	}
	if len(o.Queries) == 0 {
		bad("queries", "at least one view or table to poll is required")
	}
	if o.MaxRowBytes < 0 {
		bad("max_row_bytes", "%d: must be positive (0 means the default 4 MiB)", o.MaxRowBytes)
	}
	seen := map[string]bool{}
	for i, q := range o.Queries {
		f := func(field string) string { return fmt.Sprintf("queries[%d].%s", i, field) }
		if !nameRe.MatchString(q.Name) {
			bad(f("name"), "%q must match [a-z0-9_]+", q.Name)
		} else if seen[q.Name] {
			bad(f("name"), "%q is used twice", q.Name)
		}
		seen[q.Name] = true
		if !validRelation(q.Relation) {
			bad(f("relation"), "%q is not a plain identifier or schema.identifier (letters, digits, _)", q.Relation)
		}
		if len(q.Key) == 0 {
			bad(f("key"), "required: the column(s) identifying a row")
		}
		keys := map[string]bool{}
		for _, k := range q.Key {
			if !validIdent(k) {
				bad(f("key"), "column %q is not a plain identifier", k)
			}
			if keys[k] {
				bad(f("key"), "column %q is listed twice", k)
			}
			keys[k] = true
		}
		switch q.Mode {
		case ModeIncrementing, ModeTimestamp:
		default:
			bad(f("mode"), "unknown mode %q (want incrementing or timestamp)", q.Mode)
		}
		if !validIdent(q.Column) {
			bad(f("column"), "%q is not a plain identifier", q.Column)
		}
		if q.Interval < 0 {
			bad(f("interval"), "negative")
		}
		if q.BatchSize < 0 {
			bad(f("batch_size"), "negative")
		}
		if q.SafetyLag != 0 && q.Mode == ModeIncrementing {
			bad(f("safety_lag"), "only applies to timestamp mode")
		}
		if q.DeleteDetection.Interval < 0 {
			bad(f("delete_detection.interval"), "negative")
		}
		if s := q.DeleteDetection.MaxDeleteShare; s < 0 || s > 1 {
			bad(f("delete_detection.max_delete_share"), "%v is outside 0..1", s)
		}
	}
	return errors.Join(errs...)
}
