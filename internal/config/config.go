// Package config is the typed configuration of one Shouwang deployment, loaded from a
// single YAML file with ${ENV} substitution and strict decoding, and validated with
// messages that point at the offending key (file, line and dotted key path) so that an
// operator can fix every problem in one pass. Parsing and validation do no I/O beyond
// reading the file; CheckConnectivity is the explicit, separate reachability probe.
package config

import (
	"path/filepath"
	"strings"
	"time"

	"github.com/shouwang/shouwang/internal/pii"
)

// Config is one deployment: the Kafka bus, the metrics endpoint, the region table,
// every capture source, transform pipeline, sink and consistency checker, and the
// synthetic generator's defaults.
type Config struct {
	// Demo marks a throw-away demonstration deployment (`make demo`): it allows an
	// embedded in-memory Kafka broker without saying kafka.embedded explicitly.
	Demo bool `yaml:"demo"`
	// Kafka is the message bus every stage meets through.
	Kafka Kafka `yaml:"kafka"`
	// Metrics is where every worker serves /metrics, /healthz and /readyz.
	Metrics Metrics `yaml:"metrics"`
	// Regions says which region-code table and which code changes to load.
	Regions Regions `yaml:"regions"`
	// Sources are the capture connectors, one per upstream system.
	Sources []Source `yaml:"sources"`
	// Capture configures the capture role as a whole.
	Capture Capture `yaml:"capture"`
	// Pipelines are the transform stages from raw topics to canonical topics.
	Pipelines []Pipeline `yaml:"pipelines"`
	// Monitor runs the supervision rules and the department warning and comparison
	// rules on the canonical topics (part of the transform role).
	Monitor Monitor `yaml:"monitor"`
	// Sinks write canonical topics to the provincial database and the sharing platform.
	Sinks []Sink `yaml:"sinks"`
	// Checkers compare regional totals between a source and a sink.
	Checkers []Checker `yaml:"checkers"`
	// Watchdogs notice what does not arrive: the weekly national push, a department's
	// periodic delivery, a source gone silent (part of the capture role).
	Watchdogs []Watchdog `yaml:"watchdogs"`
	// Gen holds the synthetic data generator's defaults (`shouwang gen`, the demo).
	Gen Gen `yaml:"gen"`
	// State says where workers keep what must survive a restart: source positions,
	// schema history, file-delivery state and reload state.
	State State `yaml:"state"`
	// PII says how ID numbers and phone numbers are protected wherever they are kept at
	// rest outside the source systems: dead-letter records and delivery reports (masked
	// by default), and per canonical topic (mask, SM4 token or HMAC-SM3 pseudonym).
	PII pii.Options `yaml:"pii"`

	// file is the path the configuration was loaded from ("" when built in code); it
	// prefixes problems and anchors relative paths.
	file string
	// lines maps a dotted key path to its line in file, so that validation problems
	// found after decoding still point at a line.
	lines map[string]int
}

// File is the path the configuration was loaded from, or "" when it was built in code.
func (c *Config) File() string { return c.file }

// Dir is the directory relative paths in the configuration are resolved against: the
// configuration file's directory, or "." when it was built in code.
func (c *Config) Dir() string {
	if c.file == "" {
		return "."
	}
	return filepath.Dir(c.file)
}

// ResolvePath makes a path from the configuration (mapping files, region files, drop
// folders) absolute relative to the configuration file's directory, so that a
// deployment does not depend on the working directory it was started from.
func (c *Config) ResolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) || c.file == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.file), p)
}

// SourceByName finds a configured source; ok is false when there is none.
func (c *Config) SourceByName(name string) (src *Source, ok bool) {
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i], true
		}
	}
	return nil, false
}

// SinkByName finds a configured sink; ok is false when there is none.
func (c *Config) SinkByName(name string) (snk *Sink, ok bool) {
	for i := range c.Sinks {
		if c.Sinks[i].Name == name {
			return &c.Sinks[i], true
		}
	}
	return nil, false
}

// State configures durable worker state.
type State struct {
	// Dir is a local directory for per-source state files (schema history, filedrop
	// delivery state, reload state) and, with positions "file", the source positions.
	// Default /var/lib/shouwang; a relative path is relative to the configuration
	// file's directory, so every command finds the same state.
	Dir string `yaml:"dir"`
	// Positions is where capture keeps source positions: "file" (under Dir, for one
	// host) or "postgres" (table shouwang_source_positions at PositionsDSN, so a worker
	// can move between hosts). Default file.
	Positions string `yaml:"positions"`
	// PositionsDSN is the PostgreSQL connection string used with positions "postgres".
	PositionsDSN string `yaml:"positions_dsn"`
}

// Capture configures the capture role.
type Capture struct {
	// Standby lets several capture processes run the same sources, one active per
	// source: each source's processes form an exclusive consumer group
	// (<client_id>-capture-<source> on topic <topic_prefix>.capture.lease); the member
	// holding the lease captures, the others stand by and take over within
	// kafka.session_timeout when it stops or dies. Requires state.positions: postgres,
	// so that the process taking over resumes where the other one stopped, and a real
	// Kafka cluster. Binlog schema history, file-delivery and watchdog state live in
	// state.dir: put it on storage every host shares.
	Standby bool `yaml:"standby"`
}

// Kafka configures the bus. An empty broker list means the embedded in-memory broker
// (kfake), which is not durable and therefore allowed only when asked for explicitly.
type Kafka struct {
	// Brokers are the bootstrap brokers as host:port.
	Brokers []string `yaml:"brokers"`
	// Embedded starts an in-process, in-memory broker instead of using Brokers. Data is
	// lost on exit: for tests, demos and single-machine trials only.
	Embedded bool `yaml:"embedded"`
	// TLS secures the broker connections.
	TLS TLS `yaml:"tls"`
	// SASL authenticates to the brokers.
	SASL SASL `yaml:"sasl"`
	// TopicPrefix starts every topic name (e.g. "sc" or "sc.prod"); [a-z0-9_.] only so
	// that it composes with the names built in schemas/topics.go.
	TopicPrefix string `yaml:"topic_prefix"`
	// Partitions is the partition count of topics Shouwang creates (default 6): the
	// upper bound of consumer parallelism per topic.
	Partitions int `yaml:"partitions"`
	// ReplicationFactor of topics Shouwang creates (default 3, 1 with the embedded
	// broker). 1 on a real cluster loses data with one broker.
	ReplicationFactor int `yaml:"replication_factor"`
	// ClientID names this deployment in broker logs and quotas (default "shouwang").
	ClientID string `yaml:"client_id"`
	// SessionTimeout is how long a consumer group waits for a silent member (a worker
	// killed without leaving) before handing its partitions to the others (default 10s;
	// 1s to 5m, and within the brokers' group.min/max.session.timeout.ms: Kafka's
	// default minimum is 6s, the embedded broker's 1s).
	SessionTimeout Duration `yaml:"session_timeout"`
}

// TLS configures transport security towards Kafka.
type TLS struct {
	// Enabled turns TLS on.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that signed the brokers' certificates; empty
	// means the system pool.
	CAFile string `yaml:"ca_file"`
	// CertFile is the client certificate (PEM) for mutual TLS; needs KeyFile.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the client private key (PEM) for mutual TLS; needs CertFile.
	KeyFile string `yaml:"key_file"`
	// InsecureSkipVerify disables server certificate checks: never in production.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASL configures broker authentication.
type SASL struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512; empty disables SASL.
	Mechanism string `yaml:"mechanism"`
	// Username to authenticate as.
	Username string `yaml:"username"`
	// Password, normally given as ${ENV} so that it is not stored in the file.
	Password string `yaml:"password"`
}

// Metrics configures the HTTP endpoint every worker serves.
type Metrics struct {
	// Addr is host:port to listen on (default ":9464"); an empty host means all
	// interfaces.
	Addr string `yaml:"addr"`
}

// Regions selects the region-code table.
type Regions struct {
	// File is a CSV of region codes; empty means the embedded Sichuan 2023 table.
	File string `yaml:"file"`
	// ChangesFile is an optional CSV of region code changes (merged/renamed units) so
	// that old codes in department data still roll up correctly.
	ChangesFile string `yaml:"changes_file"`
	// Province is the 2-digit province code this deployment serves (default "51",
	// Sichuan); records outside it are quality issues, not silently dropped.
	Province string `yaml:"province"`
}

// Source kinds: one capture package each.
const (
	KindMySQLBinlog = "mysqlbinlog"
	KindPGLogical   = "pglogical"
	KindPoll        = "poll"
	KindFileDrop    = "filedrop"
)

// Source is one capture connector. Exactly the block matching Kind is set.
type Source struct {
	// Name identifies the source in topics (<p>.raw.<name>.<table>), offsets and
	// metrics; [a-z0-9_], unique. Changing it re-reads the source from scratch.
	Name string `yaml:"name"`
	// Kind is mysqlbinlog, pglogical, poll or filedrop.
	Kind string `yaml:"kind"`
	// MySQL configures a mysqlbinlog source.
	MySQL *MySQLSource `yaml:"mysql"`
	// Postgres configures a pglogical source.
	Postgres *PGSource `yaml:"postgres"`
	// Poll configures a poll source.
	Poll *PollSource `yaml:"poll"`
	// FileDrop configures a filedrop source.
	FileDrop *FileDropSource `yaml:"filedrop"`
	// StartupGrace is how long a source that has never connected since the worker
	// started may keep failing before /healthz reports the worker unhealthy (default
	// 2m). A source that connected once and then lost its server only turns readiness
	// false, however long the outage.
	StartupGrace Duration `yaml:"startup_grace"`
	// ExitOnStartupFailure makes the worker exit with status 3 when the source has not
	// connected within StartupGrace, instead of retrying for ever (for systemd's
	// Restart= and Kubernetes' restart policy); `run --exit-on-startup-failure` sets it
	// for every source.
	ExitOnStartupFailure bool `yaml:"exit_on_startup_failure"`
}

// Tables lists the names a pipeline may refer to as "<source>.<name>": table names
// without their database/schema, poll query names or file dataset names.
func (s *Source) Tables() []string {
	var out []string
	switch {
	case s.MySQL != nil:
		for _, t := range s.MySQL.Tables {
			out = append(out, lastPart(t))
		}
	case s.Postgres != nil:
		for _, t := range s.Postgres.Tables {
			out = append(out, lastPart(t))
		}
	case s.Poll != nil:
		for _, q := range s.Poll.Queries {
			out = append(out, q.Name)
		}
	case s.FileDrop != nil:
		for _, d := range s.FileDrop.Datasets {
			out = append(out, d.Name)
		}
	}
	return out
}

func lastPart(qualified string) string {
	if i := strings.LastIndex(qualified, "."); i >= 0 {
		return qualified[i+1:]
	}
	return qualified
}

// Snapshot says how a source takes its initial consistent copy.
type Snapshot struct {
	// Mode is initial (snapshot when there is no stored position, default),
	// when_needed (also when the stored position is no longer available upstream) or
	// never (stream only).
	Mode string `yaml:"mode"`
	// ChunkSize is the rows read per primary-key range query (default 10000).
	ChunkSize int `yaml:"chunk_size"`
	// Parallel is how many chunks of one table are read at once, each on its own
	// source connection (default 1; 1..64). It helps when the source has idle cores.
	Parallel int `yaml:"parallel"`
}

// MySQLSource reads a MySQL or MariaDB binlog, e.g. the national front-end database.
type MySQLSource struct {
	// DSN is a go-sql-driver DSN, user:pass@tcp(host:port)/db. The user needs
	// REPLICATION SLAVE, REPLICATION CLIENT (MariaDB: BINLOG MONITOR) and SELECT.
	DSN string `yaml:"dsn"`
	// Flavor is mysql (default) or mariadb; it selects the GTID format.
	Flavor string `yaml:"flavor"`
	// ServerID is this reader's replica server id: unique among all replicas of the
	// server, or two readers disconnect each other.
	ServerID uint32 `yaml:"server_id"`
	// GTID makes positions GTID sets instead of file+offset, which survive a failover.
	GTID bool `yaml:"gtid"`
	// Tables are the captured tables as db.table.
	Tables []string `yaml:"tables"`
	// Snapshot configures the initial copy.
	Snapshot Snapshot `yaml:"snapshot"`
	// HeartbeatInterval asks the server for heartbeats so that an idle link is noticed
	// (default 30s).
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// Reload detects whole-table reloads of the weekly national push.
	Reload Reload `yaml:"reload"`
	// MaxRowBytes sends a row whose JSON form is larger than this to the dead-letter
	// topic as oversized (key and length, not the row), keeping the key's previous
	// version (default 4 MiB; keep it below the brokers' message.max.bytes).
	MaxRowBytes int `yaml:"max_row_bytes"`
}

// Reload detects that upstream replaced a table wholesale (delete all + insert all),
// so that the reload is turned into a diff instead of a storm of deletes and creates.
type Reload struct {
	// Detect is truncate (a TRUNCATE starts a reload), push_log (a row in
	// PushLogTable announces it) or quiet_period (a burst followed by QuietPeriod of
	// silence ends it); empty disables reload detection.
	Detect string `yaml:"detect"`
	// PushLogTable is the db.table the national push writes one row per push into.
	PushLogTable string `yaml:"push_log_table"`
	// QuietPeriod is the silence that ends a reload burst.
	QuietPeriod Duration `yaml:"quiet_period"`
	// MaxWindow closes a reload that stayed open this long anyway (default 12h): a
	// push that died before logging its end must not hold the position for ever.
	MaxWindow Duration `yaml:"max_window"`
	// MassDelete guards against a broken push deleting most of the data.
	MassDelete MassDelete `yaml:"mass_delete"`
}

// MassDelete holds the share of rows a reload or delivery may delete before it is
// held for an operator instead of being applied.
type MassDelete struct {
	// MaxTableShare is the largest share (0..1] of a table's rows one reload may delete
	// (default 0.2).
	MaxTableShare float64 `yaml:"max_table_share"`
	// MaxCountyShare is the largest share (0..1] of one county's rows one reload may
	// delete (default 0.5): a whole county vanishing is a broken push, not real churn.
	MaxCountyShare float64 `yaml:"max_county_share"`
}

// PGSource reads a PostgreSQL logical replication stream (pgoutput).
type PGSource struct {
	// DSN is a postgres:// URL or a key=value libpq string. The user needs REPLICATION
	// and SELECT on the tables.
	DSN string `yaml:"dsn"`
	// Slot is the replication slot name; unique per database, it holds WAL until acked.
	Slot string `yaml:"slot"`
	// Publication is the publication listing the captured tables.
	Publication string `yaml:"publication"`
	// CreateSlot lets `shouwang` create the slot when missing (an explicit operation,
	// never a side effect of opening the source).
	CreateSlot bool `yaml:"create_slot"`
	// CreatePublication lets `shouwang` create the publication when missing.
	CreatePublication bool `yaml:"create_publication"`
	// Tables are the captured tables as schema.table.
	Tables []string `yaml:"tables"`
	// Snapshot configures the initial copy.
	Snapshot Snapshot `yaml:"snapshot"`
	// HeartbeatInterval is how often an idle source emits a heartbeat so that lag is
	// measurable (default 10s).
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// StatusInterval is how often the confirmed LSN is reported (default 10s); it must
	// stay below the server's wal_sender_timeout (60s by default).
	StatusInterval Duration `yaml:"status_interval"`
	// MaxRowBytes sends a row whose JSON form is larger than this to the dead-letter
	// topic as oversized (key and length, not the row), keeping the key's previous
	// version (default 4 MiB; keep it below the brokers' message.max.bytes).
	MaxRowBytes int `yaml:"max_row_bytes"`
}

// PollSource polls tables or views where no change stream is available.
type PollSource struct {
	// DSN of the polled database, in the form its Driver expects.
	DSN string `yaml:"dsn"`
	// Driver is postgres (default) or mysql.
	Driver string `yaml:"driver"`
	// Queries are the polled tables or views.
	Queries []PollQuery `yaml:"queries"`
	// StateDSN is a PostgreSQL database owned by Shouwang where the poller keeps the
	// keys and row hashes it has seen (tables shouwang_poll_rows/_state), so that it can
	// tell creates from updates and find deletes without holding millions of keys in
	// memory. Required.
	StateDSN string `yaml:"state_dsn"`
	// MaxRowBytes sends a row whose JSON form is larger than this to the dead-letter
	// topic as oversized (key and length, not the row), keeping the key's previous
	// version (default 4 MiB; keep it below the brokers' message.max.bytes).
	MaxRowBytes int `yaml:"max_row_bytes"`
}

// PollQuery is one polled table or view.
type PollQuery struct {
	// Name is the table name in topics; [a-z0-9_], unique within the source.
	Name string `yaml:"name"`
	// TableOrView is the (schema-qualified) relation to read.
	TableOrView string `yaml:"table_or_view"`
	// Key are the columns identifying a row (the Kafka key).
	Key []string `yaml:"key"`
	// Mode is incrementing (Column only grows, e.g. an id) or timestamp (Column is a
	// last-modified time).
	Mode string `yaml:"mode"`
	// Column is the incrementing or timestamp column.
	Column string `yaml:"column"`
	// Interval between polls (default 1m).
	Interval Duration `yaml:"interval"`
	// BatchSize is the most rows read per query (default 1000).
	BatchSize int `yaml:"batch_size"`
	// SafetyLag (timestamp mode) reads only rows at least this old by the database's
	// clock, so a transaction that commits late with an earlier timestamp is not
	// skipped (default 5s; "0s" turns it off).
	SafetyLag *Duration `yaml:"safety_lag"`
	// DeleteDetection finds deleted rows, which polling cannot see otherwise.
	DeleteDetection DeleteDetection `yaml:"delete_detection"`
}

// DeleteDetection periodically compares the full key set to find deletions.
type DeleteDetection struct {
	// Enabled turns key-set comparison on.
	Enabled bool `yaml:"enabled"`
	// Interval between full key scans (default 1h); each scan reads every key.
	Interval Duration `yaml:"interval"`
	// MaxDeleteShare holds the deletes of a scan that would remove more than this
	// share (0..1) of the known keys (default 0.2; 1 disables the breaker).
	MaxDeleteShare float64 `yaml:"max_delete_share"`
}

// FileDropSource reads files departments deliver into folders.
type FileDropSource struct {
	// Datasets are the delivered file series, one per department table.
	Datasets []Dataset `yaml:"datasets"`
}

// Dataset is one series of delivered files.
type Dataset struct {
	// Name is the table name in topics; [a-z0-9_], unique within the source.
	Name string `yaml:"name"`
	// Department that delivers it (e.g. 医保), for feedback and dashboards.
	Department string `yaml:"department"`
	// Inbox is the folder files arrive in.
	Inbox string `yaml:"inbox"`
	// Archive receives files once every row is in Kafka (default <inbox>/archive).
	Archive string `yaml:"archive"`
	// Rejected receives files that could not be read at all, with a reason file
	// (default <inbox>/rejected).
	Rejected string `yaml:"rejected"`
	// Format is csv, xlsx, xls or auto (by extension and content, default).
	Format string `yaml:"format"`
	// Encoding of CSV files: auto (default; UTF-8 if valid, else GB18030), utf-8,
	// gb18030 or gbk.
	Encoding string `yaml:"encoding"`
	// Delimiter of CSV files: one character, or "auto" (default) to sniff it from the header line.
	Delimiter string `yaml:"delimiter"`
	// Delivery is full (each file is the whole table: missing rows are deletions) or
	// incremental (each file only adds or changes rows).
	Delivery string `yaml:"delivery"`
	// Key are the field names identifying a row; each must be a Columns value.
	Key []string `yaml:"key"`
	// Columns maps a header as delivered (often Chinese) to our field name.
	Columns map[string]string `yaml:"columns"`
	// Settle says when a file is complete enough to read.
	Settle Settle `yaml:"settle"`
	// MassDelete guards full deliveries against a truncated file deleting most rows.
	MassDelete FileMassDelete `yaml:"mass_delete"`
	// Held receives full deliveries the mass-delete breaker holds (default <inbox>/held).
	Held string `yaml:"held"`
	// Sheet is the XLSX sheet to read (default: the first sheet).
	Sheet string `yaml:"sheet"`
	// Optional lists field names whose column may be missing from a file (null then).
	Optional []string `yaml:"optional"`
	// Ignore lists delivered headers that are dropped without error.
	Ignore []string `yaml:"ignore"`
	// OpColumn is the header marking deletions in incremental deliveries (D, DEL,
	// DELETE or 删除 in that column makes the row a delete).
	OpColumn string `yaml:"op_column"`
	// Types gives the type of fields (values of columns) whose spelling differs between
	// file formats: integer, decimal, date, datetime, month or text (default), so that
	// "2657.0" and "2657", or "2023/5/17" and a date cell, are the same value.
	Types map[string]string `yaml:"types"`
	// Limits bound one value and one row; a row over them goes to the dead-letter stream.
	Limits RowLimits `yaml:"limits"`
	// MaxBadRowShare rejects the whole file when more than this share (0..1] of its rows
	// are bad, a sign of a wrong layout rather than a few bad values (default 0.5).
	MaxBadRowShare float64 `yaml:"max_bad_row_share"`
	// SummaryLabels are the words of a totals row at the foot of a sheet (default 合计,
	// 总计, 小计); such a row is skipped, not a bad row.
	SummaryLabels []string `yaml:"summary_labels"`
}

// RowLimits bound the size of delivered values and rows, in UTF-8 bytes.
type RowLimits struct {
	// MaxFieldBytes bounds one value (default 8192, at most 262144).
	MaxFieldBytes int `yaml:"max_field_bytes"`
	// MaxRowBytes bounds one row (default 65536, at most 262144).
	MaxRowBytes int `yaml:"max_row_bytes"`
}

// Settle says when a delivered file is complete.
type Settle struct {
	// MinAge is how long a file must stay unmodified before it is read (default 1m
	// when the key is missing; 0s reads a file as soon as it is seen).
	MinAge Duration `yaml:"min_age"`
	// RequireDoneMarker waits for "<file>.done" next to the file.
	RequireDoneMarker bool `yaml:"require_done_marker"`
}

// FileMassDelete caps deletions implied by a full delivery.
type FileMassDelete struct {
	// MaxShare is the largest share (0..1] of rows one full delivery may delete
	// (default 0.2); above it the file is held for an operator.
	MaxShare float64 `yaml:"max_share"`
}

// Pipeline is one transform stage.
type Pipeline struct {
	// Name identifies the pipeline in consumer groups and metrics; [a-z0-9_], unique.
	Name string `yaml:"name"`
	// Inputs are topics (starting with kafka.topic_prefix) or source references
	// "<source>.<table>" (e.g. national.household) meaning that table's raw topic.
	Inputs []string `yaml:"inputs"`
	// Mapping is the field-mapping file (relative to the config file).
	Mapping string `yaml:"mapping"`
	// Rules is the optional monitoring/quality rules file.
	Rules string `yaml:"rules"`
	// Outputs are canonical entity names (household → <p>.canonical.household) or full
	// topic names.
	Outputs []string `yaml:"outputs"`
	// DLQ sends records the pipeline cannot process to <p>.dlq.transform (default
	// true). Turning it off makes such records stop the pipeline instead.
	DLQ *bool `yaml:"dlq"`
}

// DLQEnabled reports whether failed records go to the dead-letter topic.
func (p *Pipeline) DLQEnabled() bool { return p.DLQ == nil || *p.DLQ }

// Monitor configures the monitoring stage: canonical household, person, measure and
// department-fact topics in; quality issues, warnings and discrepancies out.
type Monitor struct {
	// Enabled runs the monitor with the transform role (default: whenever pipelines
	// are configured).
	Enabled *bool `yaml:"enabled"`
	// Rules are supervision rule files (relative to the configuration file) that
	// replace the embedded default rule set; empty means the embedded default.
	Rules []string `yaml:"rules"`
	// Params override rule-set parameters by name (ages, thresholds, dates), e.g.
	// {labour_min_age: 16}; an unknown name is an error.
	Params map[string]any `yaml:"params"`
	// Warnings are department warning and comparison rule files layered over the
	// embedded defaults (later files override rules of the same id).
	Warnings []string `yaml:"warnings"`
	// State is the monitor's state file (default <state.dir>/monitor.db).
	State string `yaml:"state"`
	// Settle is how long the input must be quiet before changed households are
	// evaluated (default 500ms); MaxDelay bounds the wait while input keeps flowing
	// (default 30s).
	Settle   Duration `yaml:"settle"`
	MaxDelay Duration `yaml:"max_delay"`
	// AsOf (YYYY-MM-DD), when set, is the date rules are evaluated at instead of
	// today: ages, 12-month windows and "new" department records. For replaying
	// history and for synthetic data dated in the past (the demo); leave it unset in
	// production.
	AsOf string `yaml:"as_of"`
	// DailyPass re-evaluates every household when the date changes, so age- and
	// date-based issues open without a data change (default true; ignored with as_of).
	DailyPass *bool `yaml:"daily_pass"`
}

// MonitorAsOf parses monitor.as_of; the zero time when unset or invalid (Validate
// reports an invalid one).
func (c *Config) MonitorAsOf() time.Time {
	t, err := time.Parse("2006-01-02", c.Monitor.AsOf)
	if err != nil {
		return time.Time{}
	}
	return t
}

// MonitorEnabled reports whether the transform role runs the monitor.
func (c *Config) MonitorEnabled() bool {
	if c.Monitor.Enabled != nil {
		return *c.Monitor.Enabled
	}
	return len(c.Pipelines) > 0
}

// Sink kinds.
const (
	SinkPostgres    = "postgres"
	SinkSharingDB   = "sharing_db"
	SinkSharingHTTP = "sharing_http"
)

// Sink writes topics to a database or an HTTP endpoint.
type Sink struct {
	// Name identifies the sink in offsets and metrics; [a-z0-9_], unique.
	Name string `yaml:"name"`
	// Kind is postgres (provincial DB), sharing_db (sharing platform exchange table)
	// or sharing_http (sharing platform API).
	Kind string `yaml:"kind"`
	// DSN of the target database (postgres and sharing_db).
	DSN string `yaml:"dsn"`
	// Driver of a sharing_db target: postgres (default) or mysql.
	Driver string `yaml:"driver"`
	// URL of the sharing platform API (sharing_http).
	URL string `yaml:"url"`
	// Topics consumed; canonical entity names or full topic names.
	Topics []string `yaml:"topics"`
	// Tables maps a topic (as written in Topics) to its target table; unmapped topics
	// use the entity name.
	Tables map[string]string `yaml:"tables"`
	// BatchSize is the records applied per transaction or request (default 500).
	BatchSize int `yaml:"batch_size"`
	// Delete is how a postgres sink applies a delete: soft (default: the row stays
	// with deleted = true and its last values) or hard (the row is removed; its
	// version is kept in fpjc.sink_tombstones so an older change cannot bring it back).
	Delete string `yaml:"delete"`
	// Truncate is what a postgres sink does with a truncate on a canonical topic:
	// ignore (default: logged and counted) or apply (every row of the table deleted,
	// soft or hard as delete says).
	Truncate string `yaml:"truncate"`
	// Lanes is how many batches a postgres sink applies at once, each over its own
	// partitions and connection (default 4).
	Lanes int `yaml:"lanes"`
	// StopAfterRefusals is how many changes of one table in a row a postgres sink lets
	// the database refuse for the same reason (SQLSTATE, column, constraint) before it
	// takes the table for the cause and stops dead-lettering: the batch is retried with
	// backoff until the table is fixed (default 100).
	StopAfterRefusals int `yaml:"stop_after_refusals"`
	// HTTP configures a sharing_http sink.
	HTTP *HTTP `yaml:"http"`
	// Fields are the base-data fields agreed with the sharing platform, per entity
	// (sharing sinks; default: the built-in agreement, sinks/sharing.DefaultFields).
	Fields map[string][]string `yaml:"fields"`
	// Protect is how ID numbers and phones are pushed to the sharing platform: mask
	// (default), sm3 (a pseudonym the platform can join on), sm4 (a reversible token,
	// keys in pii.keys) or raw (only where the agreement allows it).
	Protect string `yaml:"protect"`
}

// HTTP configures calls to the sharing platform.
type HTTP struct {
	// Timeout of one request (default 10s).
	Timeout Duration `yaml:"timeout"`
	// Retry bounds retrying of retryable failures (network, 5xx).
	Retry Retry `yaml:"retry"`
	// AuthToken is sent as a bearer token; give it as ${ENV}.
	AuthToken string `yaml:"auth_token"`
	// SigningKey signs every request with HMAC-SM3 (header X-Shouwang-Signature);
	// give it as ${ENV}. Empty sends no signature.
	SigningKey string `yaml:"signing_key"`
}

// Retry bounds a backoff loop.
type Retry struct {
	// MaxElapsed is how long one batch is retried before the sink stops and alerts
	// (default 5m).
	MaxElapsed Duration `yaml:"max_elapsed"`
}

// Checker compares regional totals (地区总数核查) between a source and a sink.
type Checker struct {
	// Name identifies the checker in metrics and discrepancy events; unique.
	Name string `yaml:"name"`
	// Source is the name of the compared source.
	Source string `yaml:"source"`
	// Sink is the name of the compared sink.
	Sink string `yaml:"sink"`
	// Level is the region level totals are grouped by: province, city, county,
	// township or village.
	Level string `yaml:"level"`
	// Schedule is a Go duration ("1h") or a 5-field cron expression ("0 2 * * 1").
	Schedule string `yaml:"schedule"`
	// Tolerance is the absolute count difference per region that is not a mismatch
	// (in-flight changes), default 0.
	Tolerance int `yaml:"tolerance"`
	// OnMismatch is alert (default) or resnapshot (also request a re-snapshot of the
	// mismatching tables).
	OnMismatch string `yaml:"on_mismatch"`
}

// Watchdog is one expected arrival the capture role watches (internal/watchdog).
type Watchdog struct {
	// Name identifies the watchdog in metrics, logs and its state file; unique.
	Name string `yaml:"name"`
	// Kind is push (the weekly national push), delivery (a department's periodic
	// delivery of tables or files) or stalled (a source sending no changes and no
	// heartbeats).
	Kind string `yaml:"kind"`
	// Source is the watched source's name.
	Source string `yaml:"source"`
	// Tables (push, delivery) are the tables or filedrop datasets whose arrivals count
	// (e.g. push_log); empty: any table of the source.
	Tables []string `yaml:"tables"`
	// Due (push, delivery) is the longest gap between arrivals as a duration ("168h")
	// or the deadlines as a 5-field cron expression ("0 12 * * 1": every Monday 12:00,
	// something must have arrived since the previous Monday 12:00).
	Due string `yaml:"due"`
	// Grace (push, delivery) is added to every deadline or gap (default 0).
	Grace Duration `yaml:"grace"`
	// MaxSilence (stalled) is the longest time without a change or heartbeat.
	MaxSilence Duration `yaml:"max_silence"`
}

// Gen holds the synthetic generator's defaults.
type Gen struct {
	// Seed makes a generated data set reproducible.
	Seed int64 `yaml:"seed"`
	// Households to generate (default 1000).
	Households int `yaml:"households"`
	// MySQLDSN is where the national front-end tables are generated.
	MySQLDSN string `yaml:"mysql_dsn"`
	// PGDSN is where department tables are generated.
	PGDSN string `yaml:"pg_dsn"`
	// OutDir receives generated department files.
	OutDir string `yaml:"out_dir"`
	// Rates maps a supervision rule (Q-001 …) to the share (0..1) of subjects
	// generated to violate it.
	Rates map[string]float64 `yaml:"rates"`
	// Signals maps a department warning rule (e.g. medical.out_of_pocket) to the share
	// (0..1) of persons generated to trigger it.
	Signals map[string]float64 `yaml:"signals"`
	// Thresholds are the policy figures the generated data is shaped around.
	Thresholds Thresholds `yaml:"thresholds"`
}

// Thresholds are policy figures that vary by year and place (never constants in code).
type Thresholds struct {
	// MonitoringIncome is the monitoring income threshold, yuan per person per year,
	// by year.
	MonitoringIncome map[int]float64 `yaml:"monitoring_income"`
	// MedicalOutOfPocketMonitored is the 12-month in-scope out-of-pocket medical cost
	// that raises a warning for 脱贫/监测 persons (yuan).
	MedicalOutOfPocketMonitored float64 `yaml:"medical_out_of_pocket_monitored"`
	// MedicalOutOfPocketOthers is the same threshold for other rural residents (yuan).
	MedicalOutOfPocketOthers float64 `yaml:"medical_out_of_pocket_others"`
}
