package mysqlbinlog

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A source rebuilt by the worker's supervisor registers its series again; the new
// instance must update the exported series, not an unregistered copy.
func TestMetricsSurviveRebuild(t *testing.T) {
	reg := prometheus.NewRegistry()
	first := newMetrics(reg, "national")
	first.reconnects.Inc()
	second := newMetrics(reg, "national")
	second.reconnects.Inc()
	second.purged.Set(1)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				got[mf.GetName()] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[mf.GetName()] += m.GetGauge().GetValue()
			}
		}
	}
	if got["shouwang_mysqlbinlog_reconnects_total"] != 2 || got["shouwang_mysqlbinlog_binlog_purged"] != 1 {
		t.Fatalf("exported after rebuild: reconnects=%v purged=%v, want 2 and 1",
			got["shouwang_mysqlbinlog_reconnects_total"], got["shouwang_mysqlbinlog_binlog_purged"])
	}
}
