package mysqlbinlog

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	shmetrics "github.com/shouwang/shouwang/internal/metrics"
)

// metrics are the connector's Prometheus series, labelled by source name.
type metrics struct {
	events        *prometheus.CounterVec // table, op
	deadLetters   *prometheus.CounterVec // table, reason
	behind        prometheus.Gauge
	snapshotRows  *prometheus.CounterVec // table
	snapshotLeft  prometheus.Gauge
	purged        prometheus.Gauge
	reconnects    prometheus.Counter
	reloadRows    *prometheus.CounterVec // table, outcome (unchanged, changed, created, deleted, held, kept)
	held          *prometheus.GaugeVec   // table
	schemaChanges *prometheus.CounterVec // table
	reloadWindows *prometheus.CounterVec // table, event (opened, closed)
	reloadEvents  *prometheus.GaugeVec   // table, op
	collapseRatio *prometheus.GaugeVec   // table
}

func newMetrics(reg prometheus.Registerer, source string) *metrics {
	cl := prometheus.Labels{"source": source}
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_mysqlbinlog_events_total",
			Help: "Row changes read from the binlog or a snapshot, by table and op.", ConstLabels: cl}, []string{"table", "op"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_mysqlbinlog_dead_letters_total",
			Help: "Rows sent to the capture DLQ because they could not be converted.", ConstLabels: cl}, []string{"table"}),
		behind: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shouwang_mysqlbinlog_seconds_behind_source",
			Help: "Age of the last binlog event read (0 when caught up).", ConstLabels: cl}),
		snapshotRows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_mysqlbinlog_snapshot_rows_total",
			Help: "Rows emitted by snapshots, by table.", ConstLabels: cl}, []string{"table"}),
		snapshotLeft: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shouwang_mysqlbinlog_snapshot_tables_pending",
			Help: "Tables whose snapshot has not finished.", ConstLabels: cl}),
		purged: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shouwang_mysqlbinlog_binlog_purged",
			Help: "1 when the saved binlog position is no longer on the server.", ConstLabels: cl}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "shouwang_mysqlbinlog_reconnects_total",
			Help: "Binlog connections re-established after an error.", ConstLabels: cl}),
		reloadRows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_mysqlbinlog_reload_rows_total",
			Help: "Rows of weekly reloads by outcome: compared (rows reloaded), unchanged (collapsed away), changed, created, deleted, held.", ConstLabels: cl}, []string{"table", "outcome"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_capture_mass_delete_held",
			Help: "1 while a reload's deletes are held by the mass-delete circuit breaker (release them with ReleaseHeldDeletes once checked).", ConstLabels: cl}, []string{"table"}),
		reloadWindows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_mysqlbinlog_reload_windows_total",
			Help: "Reload windows opened and closed, by table.", ConstLabels: cl}, []string{"table", "event"}),
		reloadEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_mysqlbinlog_reload_last_events",
			Help: "Changes emitted by the last collapsed reload of the table, by op.", ConstLabels: cl}, []string{"table", "op"}),
		collapseRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shouwang_mysqlbinlog_reload_collapse_ratio",
			Help: "Changes emitted / rows reloaded by the last collapsed reload of the table (the share of real changes).", ConstLabels: cl}, []string{"table"}),
		schemaChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_mysqlbinlog_schema_changes_total",
			Help: "DDL statements applied to the schema history, by table.", ConstLabels: cl}, []string{"table"}),
	}
	// A source rebuilt after a failure (the worker's supervisor) registers the same
	// series again: keep using the registered collectors, or the exported values would
	// freeze at the first instance's.
	m.events = shmetrics.Register(reg, m.events)
	m.deadLetters = shmetrics.Register(reg, m.deadLetters)
	m.behind = shmetrics.Register(reg, m.behind)
	m.snapshotRows = shmetrics.Register(reg, m.snapshotRows)
	m.snapshotLeft = shmetrics.Register(reg, m.snapshotLeft)
	m.purged = shmetrics.Register(reg, m.purged)
	m.reconnects = shmetrics.Register(reg, m.reconnects)
	m.reloadRows = shmetrics.Register(reg, m.reloadRows)
	m.held = shmetrics.Register(reg, m.held)
	m.schemaChanges = shmetrics.Register(reg, m.schemaChanges)
	m.reloadWindows = shmetrics.Register(reg, m.reloadWindows)
	m.reloadEvents = shmetrics.Register(reg, m.reloadEvents)
	m.collapseRatio = shmetrics.Register(reg, m.collapseRatio)
	return m
}

// quietHandler drops go-mysql's records below Warn: it logs every connect, rotate and
// close at Info, which would drown the connector's own lines.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}
func (h quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(a)}
}
func (h quietHandler) WithGroup(n string) slog.Handler { return quietHandler{h.Handler.WithGroup(n)} }
