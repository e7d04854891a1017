// Package metrics gives every Shouwang worker the same Prometheus registry layout and the
// same HTTP endpoints: /metrics, /healthz (process alive and no component declared it unhealthy) and /readyz (every readiness
// check passes). Metric names follow docs/metrics.md:
// shouwang_<stage>_<thing>_<unit>{labels}, with bounded label values only.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Version is the build version reported by shouwang_build_info; set it with
// -ldflags "-X github.com/shouwang/shouwang/internal/metrics.Version=1.2.3".
var Version = "dev"

// NewRegistry returns a fresh registry with the Go runtime and process collectors and
// shouwang_build_info{version}. Each worker builds its own and passes it down
// explicitly, so nothing lands on prometheus.DefaultRegisterer by accident.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shouwang_build_info",
		Help: "Always 1; the version label says which build is running.",
	}, []string{"version"})
	info.WithLabelValues(Version).Set(1)
	reg.MustRegister(info)
	return reg
}

// DLQCounter returns shouwang_dlq_records_total{stage,reason}, registered on reg (or
// the one already registered there), so every stage counts dead-lettered records the
// same way. reason must come from a fixed set per stage (e.g. "mapping", "constraint",
// "decode"), never from an error message or a record value.
func DLQCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shouwang_dlq_records_total",
		Help: "Records sent to a dead-letter topic, per stage and reason class.",
	}, []string{"stage", "reason"})
	return Register(reg, c)
}

// Register registers c on reg and returns it, or returns the equal collector already
// registered (so two components in one process can ask for the same metric). A
// conflicting definition under the same name panics: that is a programming error.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("metrics: register: " + err.Error())
	}
	return c
}
