package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// CheckFunc reports why a component is not ready, or nil when it is. It must return
// quickly; /readyz gives all checks together checkTimeout.
type CheckFunc func(ctx context.Context) error

const checkTimeout = 2 * time.Second

// Server serves /metrics, /healthz and /readyz for one worker.
type Server struct {
	addr string
	reg  *prometheus.Registry
	srv  *http.Server

	mu     sync.Mutex
	ln     net.Listener
	checks map[string]CheckFunc
	states map[string]state
	// unhealthy holds the components that declared the process unhealthy, with why.
	unhealthy map[string]string
	done      chan struct{}
	// ready mirrors SetReady as shouwang_ready{component} so that alerts can see a
	// component that stays unready (ShouwangNotReady).
	ready *prometheus.GaugeVec
}

type state struct {
	ready  bool
	reason string
}

// NewServer prepares a server on addr (host:port; ":0" picks a free port) exporting reg.
func NewServer(addr string, reg *prometheus.Registry) *Server {
	s := &Server{addr: addr, reg: reg, checks: map[string]CheckFunc{}, states: map[string]state{}, unhealthy: map[string]string{}}
	s.ready = Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shouwang_ready",
		Help: "1 when the component reported itself ready, 0 when not (see /readyz for the reason).",
	}, []string{"component"}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// Start binds the address and serves in the background until Shutdown or ctx is done.
// A bind failure is returned at once, naming the address and the config key.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("metrics: listen on %q (config key metrics.addr): %w; choose a free port or another address", s.addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.done = make(chan struct{})
	s.mu.Unlock()
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics: server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(sctx)
	})
	slog.Info("metrics: serving /metrics /healthz /readyz", "addr", ln.Addr().String())
	return nil
}

// Addr is the bound address (the real port when started on ":0"), or the configured
// address before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Shutdown stops accepting requests and waits for in-flight ones until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("metrics: shutdown %s: %w", s.Addr(), err)
	}
	if done != nil {
		<-done
	}
	return nil
}

// SetReady records a component's readiness as pushed by the component itself (e.g.
// capture sets "source" ready once connected). A component that was never set does
// not block readiness; register it early with SetReady(name, false, "starting").
func (s *Server) SetReady(component string, ready bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states[component] = state{ready: ready, reason: reason}
	v := 0.0
	if ready {
		v = 1
	}
	s.ready.WithLabelValues(component).Set(v)
}

// SetHealthy records whether a component considers the whole process healthy. /healthz
// answers 503, listing every unhealthy component and its reason, while any component
// is unhealthy; a component that was never set counts as healthy. Liveness is for
// conditions a restart or an operator must fix (a source that never connected after its
// start-up grace), not for transient outages, which belong to SetReady.
func (s *Server) SetHealthy(component string, healthy bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if healthy {
		delete(s.unhealthy, component)
		return
	}
	s.unhealthy[component] = reason
}

// Health reports whether every component is healthy and, when not, one
// "component: reason" line per unhealthy component, sorted.
func (s *Server) Health() (bool, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := make([]string, 0, len(s.unhealthy))
	for c, why := range s.unhealthy {
		lines = append(lines, c+": "+why)
	}
	sort.Strings(lines)
	return len(lines) == 0, lines
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ok, lines := s.Health()
	if ok {
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = fmt.Fprintf(w, "unhealthy\n%s\n", strings.Join(lines, "\n"))
}

// AddCheck registers a readiness check polled on every /readyz request.
func (s *Server) AddCheck(name string, check CheckFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = check
}

// CheckResult is one line of the /readyz JSON body.
type CheckResult struct {
	Name   string `json:"name"`
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// Readiness evaluates every component state and check, sorted by name.
func (s *Server) Readiness(ctx context.Context) (bool, []CheckResult) {
	s.mu.Lock()
	var out []CheckResult
	for name, st := range s.states {
		out = append(out, CheckResult{Name: name, Ready: st.ready, Reason: st.reason})
	}
	checks := make(map[string]CheckFunc, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	for name, check := range checks {
		r := CheckResult{Name: name, Ready: true}
		if err := check(ctx); err != nil {
			r.Ready, r.Reason = false, err.Error()
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	ok := true
	for _, r := range out {
		ok = ok && r.Ready
	}
	return ok, out
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ok, results := s.Readiness(r.Context())
	body := struct {
		Ready  bool          `json:"ready"`
		Checks []CheckResult `json:"checks"`
	}{ok, results}
	if body.Checks == nil {
		body.Checks = []CheckResult{}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
}
