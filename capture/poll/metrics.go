package poll

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/metrics"
)

// pollMetrics are the poll connector's metrics, labelled by source and query (both
// come from configuration, so cardinality is bounded).
type pollMetrics struct {
	rows     *prometheus.CounterVec
	events   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	lag      *prometheus.GaugeVec
	held     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *pollMetrics {
	if reg == nil {
		reg = prometheus.NewRegistry() // counted but not exported
	}
	return &pollMetrics{
		rows: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shouwang_poll_rows_total",
			Help: "Rows read by incremental polls (including unchanged re-reads that emit nothing).",
		}, []string{"source", "query"})),
		events: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shouwang_poll_events_total",
			Help: "Change events emitted by poll sources, by op (c, u, d, dlq), before Kafka acknowledgement.",
		}, []string{"source", "query", "op"})),
		duration: metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shouwang_poll_duration_seconds",
			Help:    "Time one poll query (or one delete-detection key scan, kind=scan) took.",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 10),
		}, []string{"source", "query", "kind"})),
		lag: metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shouwang_poll_watermark_lag_seconds",
			Help: "Database now() minus the timestamp watermark of a timestamp-mode query (includes the safety lag).",
		}, []string{"source", "query"})),
		held: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shouwang_poll_deletes_held_total",
			Help: "Delete-detection scans held by the mass-delete guard (nothing emitted; an operator should check the view).",
		}, []string{"source", "query"})),
	}
}
