package watchdog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/testenv"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func at(s string) time.Time              { t, _ := time.Parse(time.RFC3339, s); return t }
func gauge(t *testing.T, reg *prometheus.Registry, name, rule string) float64 {
	t.Helper()
	v := testenv.MetricValue(t, reg, name, "watchdog", rule)
	if v < 0 {
		t.Fatalf("%s{watchdog=%q} not exported", name, rule)
	}
	return v
}

func status(t *testing.T, w *Watchdog, name string) Status {
	t.Helper()
	for _, s := range w.Evaluate() {
		if s.Rule.Name == name {
			return s
		}
	}
	t.Fatalf("no status for %s", name)
	return Status{}
}

// The weekly push is due on Mondays at 12:00 with 6 hours' grace: a push on Sunday
// satisfies Monday's deadline, a missing one is overdue from Monday 18:00 until the
// next push arrives, and the state survives a restart.
func TestWeeklyPushDeadline(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: at("2026-11-02T09:00:00Z")} // a Monday, before the deadline
	rules := []Rule{{Name: "national_weekly_push", Kind: KindPush, Source: "national", Tables: []string{"push_log"}, Due: "0 12 * * 1", Grace: 6 * time.Hour}}
	reg := prometheus.NewRegistry()
	w, err := New(Options{Rules: rules, StateDir: dir, Registerer: reg, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if s := status(t, w, "national_weekly_push"); s.Overdue {
		t.Fatalf("a new rule is overdue at once: %+v", s)
	}
	// The first week after start counts as arrived (since), so nothing is overdue on
	// Monday 18:00 of the first week.
	c.advance(10 * time.Hour)
	if s := status(t, w, "national_weekly_push"); s.Overdue {
		t.Fatalf("overdue within the first period: %s", s.Reason)
	}
	// A change of another table is not the push.
	c.t = at("2026-11-08T20:00:00Z") // Sunday
	w.Arrived("national", "person", c.t)
	c.t = at("2026-11-09T18:00:01Z") // Monday, deadline + grace passed
	s := status(t, w, "national_weekly_push")
	if !s.Overdue || !strings.Contains(s.Reason, "2026-11-02T12:00:00Z") {
		t.Fatalf("missing push not overdue, or reason does not name the previous deadline: %+v", s)
	}
	if g := gauge(t, reg, "shouwang_watchdog_overdue", "national_weekly_push"); g != 1 {
		t.Fatalf("overdue gauge = %v, want 1", g)
	}
	// The push arrives late: overdue clears at once.
	c.advance(time.Hour)
	w.Arrived("national", "push_log", c.t)
	if g := gauge(t, reg, "shouwang_watchdog_overdue", "national_weekly_push"); g != 0 {
		t.Fatalf("overdue gauge after the push = %v, want 0", g)
	}
	if g := gauge(t, reg, "shouwang_watchdog_last_seen_timestamp_seconds", "national_weekly_push"); g != float64(c.t.Unix()) {
		t.Fatalf("last seen = %v, want %d", g, c.t.Unix())
	}
	// The late push counts for this week's deadline; next Monday 18:00 is fine only if
	// another push came after 2026-11-09 12:00 — which the late one did.
	c.t = at("2026-11-16T18:00:01Z")
	if s := status(t, w, "national_weekly_push"); s.Overdue {
		t.Fatalf("the late push should satisfy the next deadline: %s", s.Reason)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Restart a week later with no push in between: the saved arrival makes it overdue
	// at once after the restart.
	c.t = at("2026-11-23T18:00:01Z")
	w2, err := New(Options{Rules: rules, StateDir: dir, Registerer: prometheus.NewRegistry(), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	s = status(t, w2, "national_weekly_push")
	if !s.Overdue || !s.LastSeen.Equal(at("2026-11-09T19:00:01Z")) {
		t.Fatalf("after restart: overdue=%v last=%v, want overdue with the saved arrival", s.Overdue, s.LastSeen)
	}
}

// A monthly delivery given as a gap (due 744h, grace 48h) of one dataset; another
// source's arrivals do not count.
func TestDeliveryGap(t *testing.T) {
	c := &clock{t: at("2026-10-01T00:00:00Z")}
	reg := prometheus.NewRegistry()
	w, err := New(Options{Rules: []Rule{{Name: "yibao_monthly", Kind: KindDelivery, Source: "yibao_files", Tables: []string{"settlement"}, Due: "744h", Grace: 48 * time.Hour}},
		Registerer: reg, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	c.advance(24 * time.Hour)
	w.Arrived("yibao_files", "settlement", c.t)
	w.Arrived("minzheng", "settlement", c.t.Add(30*24*time.Hour))
	c.advance(744*time.Hour + 47*time.Hour)
	if s := status(t, w, "yibao_monthly"); s.Overdue || !s.Deadline.Equal(at("2026-10-02T00:00:00Z").Add(792*time.Hour)) {
		t.Fatalf("within grace: %+v", s)
	}
	c.advance(2 * time.Hour)
	s := status(t, w, "yibao_monthly")
	if !s.Overdue || !strings.Contains(s.Reason, "2026-10-02T00:00:00Z") {
		t.Fatalf("missing delivery not overdue: %+v", s)
	}
}

// A stalled source: heartbeats keep it alive, silence beyond max_silence makes it
// overdue, the next batch clears it.
func TestStalledSource(t *testing.T) {
	c := &clock{t: at("2026-12-01T08:00:00Z")}
	reg := prometheus.NewRegistry()
	w, err := New(Options{Rules: []Rule{{Name: "weijian_stalled", Kind: KindStalled, Source: "weijian", MaxSilence: 5 * time.Minute}},
		Registerer: reg, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		c.advance(time.Minute)
		w.Active("weijian", c.t)
	}
	if s := status(t, w, "weijian_stalled"); s.Overdue {
		t.Fatalf("a source with heartbeats is stalled: %s", s.Reason)
	}
	c.advance(5*time.Minute + time.Second)
	if s := status(t, w, "weijian_stalled"); !s.Overdue {
		t.Fatal("silent source not stalled")
	}
	w.Active("weijian", c.t)
	if g := gauge(t, reg, "shouwang_watchdog_overdue", "weijian_stalled"); g != 0 {
		t.Fatalf("overdue gauge after a batch = %v, want 0", g)
	}
}

func TestBadRulesAndState(t *testing.T) {
	_, err := New(Options{Rules: []Rule{
		{Name: "a", Kind: KindPush, Source: "s", Due: "sometimes"},
		{Name: "b", Kind: KindStalled, Source: "s"},
		{Name: "c", Kind: "late", Source: "s"},
	}})
	for _, want := range []string{"watchdog a: due \"sometimes\" is neither", "watchdog b: max_silence is required", "watchdog c: kind \"late\""} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{StateDir: dir, Rules: []Rule{{Name: "p", Kind: KindPush, Source: "s", Due: "168h"}}})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "p.json")) || !strings.Contains(err.Error(), "remove it") {
		t.Fatalf("corrupt state error = %v", err)
	}
}

// On a standby (capture.standby) the rules of a source another process captures are
// never overdue and write no state; taking over re-reads the state the other process
// saved in the shared state directory, and a stalled rule counts from the takeover.
func TestStandbySource(t *testing.T) {
	c := &clock{t: at("2026-12-01T08:00:00Z")}
	dir := t.TempDir()
	rules := []Rule{{Name: "national_push", Kind: KindPush, Source: "national", Due: "168h", Grace: time.Hour},
		{Name: "national_stalled", Kind: KindStalled, Source: "national", MaxSilence: 5 * time.Minute}}
	reg := prometheus.NewRegistry()
	w, err := New(Options{Rules: rules, StateDir: dir, Registerer: reg, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	w.Standby("national", true)
	before, _ := os.ReadFile(filepath.Join(dir, "national_push.json"))
	c.advance(200 * time.Hour)
	w.Arrived("national", "household", c.t.Add(-2*time.Hour)) // a straggler of the batch in flight when the lease was lost
	for _, name := range []string{"national_push", "national_stalled"} {
		if s := status(t, w, name); s.Overdue {
			t.Errorf("%s overdue on a standby: %s", name, s.Reason)
		}
	}
	if g := gauge(t, reg, "shouwang_watchdog_overdue", "national_push"); g != 0 {
		t.Errorf("overdue gauge on a standby = %v", g)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "national_push.json")); string(after) != string(before) {
		t.Errorf("a standby rewrote the rule's state: %s, was %s", after, before)
	}
	// The active process saw a push an hour ago and saved it.
	other, err := New(Options{Rules: rules, StateDir: dir, Registerer: prometheus.NewRegistry(), Now: c.now, PersistEvery: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	other.Arrived("national", "household", c.t.Add(-time.Hour))
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	w.Standby("national", false)
	if s := status(t, w, "national_push"); s.Overdue || !s.LastSeen.Equal(c.t.Add(-time.Hour)) {
		t.Errorf("after taking over: %+v, want the other process's arrival an hour ago and not overdue", s)
	}
	c.advance(4 * time.Minute)
	if s := status(t, w, "national_stalled"); s.Overdue {
		t.Errorf("stalled 4 minutes after taking over: %s", s.Reason)
	}
	c.advance(2 * time.Minute)
	if s := status(t, w, "national_stalled"); !s.Overdue {
		t.Error("silent 6 minutes after taking over: want stalled")
	}
}
