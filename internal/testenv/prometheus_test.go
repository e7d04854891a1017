package testenv_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/testenv"
)

// TestPrometheusScrapesAndEvaluates: a private Prometheus scrapes a target, evaluates a
// recording rule and an alert from a rule file, and the API helpers read them back.
func TestPrometheusScrapesAndEvaluates(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE probe_value gauge\nprobe_value 21\n")
	}))
	defer target.Close()
	rules := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(rules, []byte(`groups:
  - name: probe
    rules:
      - record: probe:doubled
        expr: probe_value * 2
      - alert: ProbeHigh
        expr: probe:doubled > 40
        labels: {severity: warning}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testenv.NewPrometheus(t, testenv.PrometheusOptions{
		ScrapeTargets: []string{strings.TrimPrefix(target.URL, "http://")},
		RuleFiles:     []string{rules},
	})
	ctx := ctxFor(t)
	testenv.Eventually(t, time.Minute, "the target up", func() (bool, string) {
		ts, err := p.Targets(ctx)
		return err == nil && len(ts) == 1 && ts[0].Health == "up", fmt.Sprintf("%+v, %v", ts, err)
	})
	testenv.Eventually(t, time.Minute, "the recorded series", func() (bool, string) {
		s, err := p.Query(ctx, "probe:doubled")
		return err == nil && len(s) == 1 && s[0].Float() == 42, fmt.Sprintf("%+v, %v", s, err)
	})
	testenv.Eventually(t, time.Minute, "ProbeHigh firing", func() (bool, string) {
		as, err := p.Alerts(ctx)
		return err == nil && len(as) == 1 && as[0].Labels["alertname"] == "ProbeHigh" && as[0].State == "firing", fmt.Sprintf("%+v, %v", as, err)
	})
	gs, err := p.RuleGroups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Name != "probe" || len(gs[0].Rules) != 2 {
		t.Fatalf("rule groups %+v, %v", gs, err)
	}
	if _, err := p.Query(ctx, "probe_value["); err == nil {
		t.Error("a malformed query returned no error")
	}
}
