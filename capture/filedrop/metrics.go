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
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Files, m.Rows, m.Events, m.BadRows} {
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
