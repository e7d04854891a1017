package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func startServer(t *testing.T) (*Server, string) {
	t.Helper()
	reg := NewRegistry()
	s := NewServer("127.0.0.1:0", reg)
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		if err := s.Shutdown(sctx); err != nil {
			t.Error(err)
		}
	})
	return s, "http://" + s.Addr()
}

func TestMetricsEndpointExposesCounters(t *testing.T) {
	s, base := startServer(t)
	dlq := DLQCounter(s.reg)
	dlq.WithLabelValues("sink", "constraint").Add(3)
	if again := DLQCounter(s.reg); again != dlq {
		t.Error("DLQCounter on the same registry returned a second collector")
	}
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics status %d", code)
	}
	for _, want := range []string{
		`shouwang_dlq_records_total{reason="constraint",stage="sink"} 3`,
		`shouwang_build_info{version="dev"} 1`,
		`go_goroutines `,
		`process_start_time_seconds `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
}

func TestReadyzFlips(t *testing.T) {
	s, base := startServer(t)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with nothing registered = %d, want 200", code)
	}
	s.SetReady("source", false, "connecting to 10.0.0.5:3306")
	var kafkaDown atomic.Bool
	kafkaDown.Store(true)
	s.AddCheck("kafka", func(context.Context) error {
		if kafkaDown.Load() {
			return errors.New("no broker reachable")
		}
		return nil
	})

	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d, want 503", code)
	}
	var parsed struct {
		Ready  bool          `json:"ready"`
		Checks []CheckResult `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &parsed); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	want := []CheckResult{
		{Name: "kafka", Ready: false, Reason: "no broker reachable"},
		{Name: "source", Ready: false, Reason: "connecting to 10.0.0.5:3306"},
	}
	if parsed.Ready || len(parsed.Checks) != 2 || parsed.Checks[0] != want[0] || parsed.Checks[1] != want[1] {
		t.Fatalf("/readyz body = %+v, want %+v", parsed, want)
	}

	s.SetReady("source", true, "")
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with kafka still failing = %d, want 503", code)
	}
	kafkaDown.Store(false)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after all ready = %d %s, want 200", code, body)
	}
	// Pushed readiness is also exported for the ShouwangNotReady alert.
	s.SetReady("capture/national", false, "binlog purged")
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, `shouwang_ready{component="capture/national"} 0`) ||
		!strings.Contains(body, `shouwang_ready{component="source"} 1`) {
		t.Fatalf("/metrics lacks shouwang_ready gauges:\n%s", body)
	}
}

func TestStartBindErrorNamesAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := NewServer(ln.Addr().String(), NewRegistry())
	err = s.Start(context.Background())
	if err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	for _, want := range []string{ln.Addr().String(), "metrics.addr"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestHealthzFlips(t *testing.T) {
	s, base := startServer(t)
	s.SetHealthy("capture/national", false, "has not connected within its start-up grace of 2m0s")
	s.SetHealthy("capture/civil", false, "has not connected within its start-up grace of 1m0s")
	code, body := get(t, base+"/healthz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz = %d, want 503", code)
	}
	want := "unhealthy\ncapture/civil: has not connected within its start-up grace of 1m0s\ncapture/national: has not connected within its start-up grace of 2m0s\n"
	if body != want {
		t.Errorf("/healthz body %q, want %q", body, want)
	}
	s.SetHealthy("capture/civil", true, "")
	if code, _ := get(t, base+"/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz with national still unhealthy = %d, want 503", code)
	}
	s.SetHealthy("capture/national", true, "")
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz after recovery = %d %q, want 200 ok", code, body)
	}
}
