package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// PrometheusOptions configure a private Prometheus server.
type PrometheusOptions struct {
	// ScrapeTargets are host:port addresses scraped at /metrics.
	ScrapeTargets []string
	// JobName is the scrape job of the targets (default "shouwang", which the shipped
	// rules' up{job=~"shouwang.*"} matches).
	JobName string
	// RuleFiles are rule files to load (absolute paths or relative to the test's
	// working directory).
	RuleFiles []string
	// Interval is both the scrape and the rule evaluation interval (default 1s).
	Interval time.Duration
	// Binary is the prometheus binary (default: found in PATH or /usr/bin).
	Binary string
	// BaseDir is where the temporary directory is created (default os.TempDir()).
	BaseDir string
	// StartTimeout bounds waiting for /-/ready (default 1 minute).
	StartTimeout time.Duration
}

func (o *PrometheusOptions) defaults() {
	if o.JobName == "" {
		o.JobName = "shouwang"
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = time.Minute
	}
}

// PrometheusServer is a running private Prometheus.
type PrometheusServer struct {
	opts    PrometheusOptions
	binary  string
	baseDir string
	port    int
	proc    *process
}

// StartPrometheus writes a configuration scraping opts.ScrapeTargets and loading
// opts.RuleFiles, starts Prometheus on a free loopback port with its TSDB in a temporary
// directory, and waits until it is ready. A missing binary yields a *MissingBinaryError
// (Debian package prometheus); the caller must Stop the server.
func StartPrometheus(ctx context.Context, opts PrometheusOptions) (*PrometheusServer, error) {
	opts.defaults()
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = findBinary("prometheus", []string{"/usr/bin"}, "prometheus"); err != nil {
			return nil, err
		}
	} else if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		return nil, &MissingBinaryError{Binary: bin, Searched: []string{"PrometheusOptions.Binary"}, Package: "prometheus"}
	}
	// Prometheus needs no system user: it runs as the caller, even as root.
	base, err := makeBaseDir(opts.BaseDir, "prometheus", serverUser{})
	if err != nil {
		return nil, err
	}
	p := &PrometheusServer{opts: opts, binary: bin, baseDir: base}
	if err := p.writeConfig(); err != nil {
		_ = os.RemoveAll(base)
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	var lastErr error
	for range 5 {
		if p.port, err = freePort(); err != nil {
			_ = os.RemoveAll(base)
			return nil, err
		}
		if lastErr = p.start(ctx); lastErr == nil || !errors.Is(lastErr, errBindConflict) {
			break
		}
	}
	if lastErr != nil {
		_ = os.RemoveAll(base)
		return nil, lastErr
	}
	return p, nil
}

// NewPrometheus starts a private Prometheus for tb, stopped by tb.Cleanup; when tb
// fails, the tail of the server's log is logged. A missing binary skips the test (fails
// it in CI).
func NewPrometheus(tb testing.TB, opts PrometheusOptions) *PrometheusServer {
	tb.Helper()
	p, err := StartPrometheus(context.Background(), opts)
	if err != nil {
		unavailable(tb, "Prometheus", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("testenv: Prometheus log %s tail:\n%s", p.LogFile(), logTail(p.LogFile(), 60))
		}
		if err := p.Stop(); err != nil {
			tb.Errorf("testenv: stop Prometheus: %v", err)
		}
	})
	return p
}

// URL is the server's base URL, e.g. http://127.0.0.1:40123.
func (p *PrometheusServer) URL() string { return "http://127.0.0.1:" + strconv.Itoa(p.port) }

// LogFile is where the server's output goes.
func (p *PrometheusServer) LogFile() string { return filepath.Join(p.baseDir, "prometheus.log") }

func (p *PrometheusServer) configFile() string { return filepath.Join(p.baseDir, "prometheus.yml") }

func (p *PrometheusServer) writeConfig() error {
	interval := p.opts.Interval.String()
	rules := make([]string, len(p.opts.RuleFiles))
	for i, f := range p.opts.RuleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			return fmt.Errorf("testenv: rule file %s: %w", f, err)
		}
		rules[i] = abs
	}
	cfg := map[string]any{
		"global": map[string]any{"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
		"scrape_configs": []any{map[string]any{
			"job_name":       p.opts.JobName,
			"static_configs": []any{map[string]any{"targets": p.opts.ScrapeTargets}},
		}},
	}
	if len(rules) > 0 {
		cfg["rule_files"] = rules
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("testenv: Prometheus configuration: %w", err)
	}
	if err := os.WriteFile(p.configFile(), b, 0o644); err != nil {
		return fmt.Errorf("testenv: write %s: %w", p.configFile(), err)
	}
	return nil
}

// start launches the server and waits for /-/ready.
func (p *PrometheusServer) start(ctx context.Context) error {
	log, err := os.OpenFile(p.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("testenv: create %s: %w", p.LogFile(), err)
	}
	defer log.Close() // the child has its own copy
	cmd := exec.Command(p.binary,
		"--config.file="+p.configFile(),
		"--storage.tsdb.path="+filepath.Join(p.baseDir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(p.port),
		"--log.level=info")
	cmd.Dir = p.baseDir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = serverUser{}.sysProcAttr(syscall.SIGKILL)
	proc, err := startProcess(cmd)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if proc.exited() {
			tail := logTail(p.LogFile(), 25)
			err := fmt.Errorf("testenv: %s exited during start (%v); log %s tail:\n%s", p.binary, proc.err, p.LogFile(), tail)
			if isBindConflict(tail) {
				return fmt.Errorf("%w: %w", errBindConflict, err)
			}
			return err
		}
		resp, err := client.Get(p.URL() + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.proc = proc
				return nil
			}
			err = fmt.Errorf("/-/ready: %s", resp.Status)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			proc.kill()
			return fmt.Errorf("testenv: Prometheus on port %d not ready: %w (last error: %v); log %s tail:\n%s",
				p.port, ctx.Err(), lastErr, p.LogFile(), logTail(p.LogFile(), 25))
		case <-tick.C:
		}
	}
}

// Stop stops the server and removes its temporary directory. It is safe to call more
// than once.
func (p *PrometheusServer) Stop() error {
	var err error
	if p.proc != nil {
		if err = p.proc.stop(syscall.SIGTERM, 30*time.Second); err != nil {
			err = fmt.Errorf("%w; log tail:\n%s", err, logTail(p.LogFile(), 20))
		}
		p.proc = nil
	}
	if rmErr := os.RemoveAll(p.baseDir); rmErr != nil && err == nil {
		err = fmt.Errorf("testenv: remove %s: %w", p.baseDir, rmErr)
	}
	return err
}

// API calls GET /api/v1/<path> with the query parameters params and decodes the
// response's data field into out; an error status is returned as an error.
func (p *PrometheusServer) API(ctx context.Context, path string, params url.Values, out any) error {
	u := p.URL() + "/api/v1/" + strings.TrimPrefix(path, "/")
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("testenv: Prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("testenv: Prometheus %s: %w", path, err)
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("testenv: Prometheus %s: %s: %w (%.200s)", path, resp.Status, err, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("testenv: Prometheus %s: %s: %s", path, resp.Status, env.Error)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(env.Data, out)
}

// PromSample is one series of an instant vector.
type PromSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix seconds, "value"]
}

// Float is the sample's value.
func (s PromSample) Float() float64 {
	v, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

// Query evaluates the instant query expr now and returns its series; an expression
// whose result is not a vector is an error.
func (p *PrometheusServer) Query(ctx context.Context, expr string) ([]PromSample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.API(ctx, "query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("testenv: query %s: result type %s, want vector", expr, data.ResultType)
	}
	var out []PromSample
	err := json.Unmarshal(data.Result, &out)
	return out, err
}

// PromAlert is an alert as /api/v1/alerts lists it.
type PromAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"` // pending or firing
	Value       string            `json:"value"`
}

// Alerts returns the pending and firing alerts.
func (p *PrometheusServer) Alerts(ctx context.Context) ([]PromAlert, error) {
	var data struct {
		Alerts []PromAlert `json:"alerts"`
	}
	err := p.API(ctx, "alerts", nil, &data)
	return data.Alerts, err
}

// PromTarget is an active scrape target as /api/v1/targets lists it.
type PromTarget struct {
	ScrapeURL  string    `json:"scrapeUrl"`
	Health     string    `json:"health"` // up, down or unknown
	LastError  string    `json:"lastError"`
	LastScrape time.Time `json:"lastScrape"`
}

// Targets returns the active scrape targets.
func (p *PrometheusServer) Targets(ctx context.Context) ([]PromTarget, error) {
	var data struct {
		ActiveTargets []PromTarget `json:"activeTargets"`
	}
	err := p.API(ctx, "targets", url.Values{"state": {"active"}}, &data)
	return data.ActiveTargets, err
}

// PromRuleGroup is a loaded rule group as /api/v1/rules lists it.
type PromRuleGroup struct {
	Name  string `json:"name"`
	Rules []struct {
		Name      string `json:"name"`
		Type      string `json:"type"`   // alerting or recording
		Health    string `json:"health"` // ok, err or unknown
		LastError string `json:"lastError"`
	} `json:"rules"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

// RuleGroups returns the loaded rule groups.
func (p *PrometheusServer) RuleGroups(ctx context.Context) ([]PromRuleGroup, error) {
	var data struct {
		Groups []PromRuleGroup `json:"groups"`
	}
	err := p.API(ctx, "rules", nil, &data)
	return data.Groups, err
}
