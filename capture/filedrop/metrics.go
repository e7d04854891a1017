package filedrop

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the filedrop counters, labelled by dataset. One Metrics is shared by all
// filedrop sources registered on one registry.
type Metrics struct {
	// Files counts delivery files by outcome: processed, duplicate, rejected, held.
	Files *prometheus.CounterVec
	// Rows counts data rows read from files.
	Rows *prometheus.CounterVec
	// Events counts change events emitted, by op (c, u, d, dlq).
	Events *prometheus.CounterVec
	// BadRows counts rows sent to the dead-letter stream.
	BadRows *prometheus.CounterVec
	// Kept counts previous versions kept because the row delivered for their key was bad.
	Kept *prometheus.CounterVec
	// DeletesWithheld counts deletes not emitted because bad rows without a readable
	// key may have been the missing rows.
	DeletesWithheld *prometheus.CounterVec
	// SkippedRows counts rows left out on purpose, by kind: summary (合计 rows),
	// duplicate (identical repeats of a row).
	SkippedRows *prometheus.CounterVec
}

// NewMetrics creates the counters and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "shouwang", Subsystem: "filedrop", Name: "files_total",
			Help: "Delivery files handled, by outcome (processed, duplicate, rejected, held).",
		}, []string{"dataset", "outcome"}),
		Rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "shouwang", Subsystem: "filedrop", Name: "rows_read_total",
			Help: "Data rows read from delivery files.",
		}, []string{"dataset"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "shouwang", Subsystem: "filedrop", Name: "events_total",
			Help: "Change events emitted from delivery files, by op (c, u, d, dlq).",
		}, []string{"dataset", "op"}),
		BadRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "shouwang", Subsystem: "filedrop", Name: "bad_rows_total",
			Help: "Rows of accepted files that went to the dead-letter stream.",
		}, []string{"dataset"}),
		Kept: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "shouwang", Subsystem: "filedrop", Name: "kept_rows_total",
			Help: "Previous row versions kept because the row delivered for the key was bad (no change, no delete).",
		}, []string{"dataset"}),
		DeletesWithheld: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "shouwang", Subsystem: "filedrop", Name: "deletes_withheld_total",
			Help: "Deletes of full deliveries withheld because bad rows without a readable key may be the missing rows.",
		}, []string{"dataset"}),
		SkippedRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "shouwang", Subsystem: "filedrop", Name: "skipped_rows_total",
			Help: "Rows left out on purpose: summary (totals rows such as 合计) and duplicate (identical repeats).",
		}, []string{"dataset", "kind"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Files, m.Rows, m.Events, m.BadRows, m.Kept, m.DeletesWithheld, m.SkippedRows} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("filedrop: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *Metrics) file(dataset, outcome string) {
	if m != nil {
		m.Files.WithLabelValues(dataset, outcome).Inc()
	}
}

func (m *Metrics) rows(dataset string, n, bad int64) {
	if m != nil {
		m.Rows.WithLabelValues(dataset).Add(float64(n))
		m.BadRows.WithLabelValues(dataset).Add(float64(bad))
	}
}

func (m *Metrics) event(dataset, op string) {
	if m != nil {
		m.Events.WithLabelValues(dataset, op).Inc()
	}
}

// delivery counts what a diffed delivery kept, withheld and skipped.
func (m *Metrics) delivery(dataset string, d *delivery) {
	if m != nil {
		m.Kept.WithLabelValues(dataset).Add(float64(d.kept))
		m.DeletesWithheld.WithLabelValues(dataset).Add(float64(d.withheld))
		m.SkippedRows.WithLabelValues(dataset, "summary").Add(float64(d.summaryRows))
		m.SkippedRows.WithLabelValues(dataset, "duplicate").Add(float64(d.dupIdentical))
	}
}
