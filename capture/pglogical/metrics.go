package pglogical

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/metrics"
)

// connMetrics are the connector's series. They carry the source name as a label
// (not a const label) so that several PostgreSQL sources share one registry.
type connMetrics struct {
	events       *prometheus.CounterVec // source, table, op: decoded, before Kafka
	retained     prometheus.Gauge       // slot's retained WAL bytes
	behind       prometheus.Gauge       // now - commit time of the last decoded transaction
	reconnects   prometheus.Counter
	partial      *prometheus.GaugeVec // source, table: 1 when before-images hold the key only
	snapshotRows *prometheus.CounterVec
}

func newConnMetrics(reg prometheus.Registerer, source, slot string) *connMetrics {
	if reg == nil {
		reg = prometheus.NewRegistry() // counted, not exported
	}
	events := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shouwang_pglogical_events_total",
		Help: "Row changes decoded from the slot or read by the snapshot, by table and op (before Kafka; the runner counts acknowledged ones).",
	}, []string{"source", "table", "op"}))
	retained := metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shouwang_capture_slot_retained_wal_bytes",
		Help: "WAL the replication slot keeps on the source server: pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn). Grows when acks stop.",
	}, []string{"source", "slot"}))
	behind := metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shouwang_pglogical_seconds_behind_source",
		Help: "Now minus the commit time of the last transaction decoded (0 when a keepalive shows nothing is pending).",
	}, []string{"source"}))
	reconnects := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shouwang_pglogical_reconnects_total",
		Help: "Replication connections re-established after an error.",
	}, []string{"source"}))
	partial := metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shouwang_pglogical_partial_before_images",
		Help: "1 for tables whose REPLICA IDENTITY is not FULL: update/delete before-images carry the key columns only.",
	}, []string{"source", "table"}))
	snap := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shouwang_pglogical_snapshot_rows_total",
		Help: "Rows read by the initial snapshot, by table.",
	}, []string{"source", "table"}))
	return &connMetrics{
		events:       events,
		retained:     retained.WithLabelValues(source, slot),
		behind:       behind.WithLabelValues(source),
		reconnects:   reconnects.WithLabelValues(source),
		partial:      partial,
		snapshotRows: snap,
	}
}
