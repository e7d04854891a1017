package monitor

import (
	"context"
	"io/fs"
	"reflect"
	"testing"
	"testing/fstest"
	"time"

	"github.com/shouwang/shouwang/transforms/rules"
	"github.com/shouwang/shouwang/transforms/warnings"
)

// TestMonitorReloadAndNewDay: a hot reload applies new rule sets to everything already
// in the state (supervision rules through a full pass, department warnings at once),
// and a new evaluation day re-evaluates every household, so age-based issues change
// without any input change.
func TestMonitorReloadAndNewDay(t *testing.T) {
	h := newHarness(t)
	d := h.d
	h.produce(d.changes)
	n := int64(len(d.changes))
	dir := t.TempDir()
	h.runUntil(h.worker("a", dir), n)
	first := readOutcome(t, h.k)
	compareOpen(t, "before the reload", first, reference(t, d, h.rules, h.warn, nil))

	// New rule sets: 60 → 55 as the age from which nobody is a labourer, and
	// the 12-month out-of-pocket warning switched off.
	re2, err := rules.DefaultWith(rules.Options{Params: map[string]any{"elderly_age": 55}})
	if err != nil {
		t.Fatal(err)
	}
	def, err := fs.ReadFile(warnings.DefaultFS(), warnings.DefaultFile)
	if err != nil {
		t.Fatal(err)
	}
	wr2, err := warnings.Load(fstest.MapFS{warnings.DefaultFile: {Data: def}, "off.yaml": {Data: []byte("version: 1\ndisable: [yibao.oop_12m]\n")}},
		warnings.DefaultFile, "off.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := reference(t, d, re2, wr2, nil)
	wi, ww, _ := want.open()
	fi, fw, _ := first.open()
	if reflect.DeepEqual(wi, fi) || reflect.DeepEqual(ww, fw) {
		t.Fatal("the new rule sets change neither issues nor warnings: the test means nothing")
	}
	w := h.worker("a", dir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	w.Reload(re2, wr2)
	waitOutcome(t, h, done, "after the reload", func(o outcome) bool {
		gi, gw, gd := o.open()
		wi, ww, wd := want.open()
		return reflect.DeepEqual(gi, wi) && reflect.DeepEqual(gw, ww) && reflect.DeepEqual(gd, wd)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	reloaded := readOutcome(t, h.k)
	compareOpen(t, "after the reload", reloaded, want)

	// Three years later, nothing else changed: the daily pass re-evaluates everyone.
	h.rules, h.warn = re2, wr2
	d.now = d.now.AddDate(3, 0, 0)
	later := reference(t, d, re2, wr2, nil)
	li, _, _ := later.open()
	ri, _, _ := reloaded.open()
	if reflect.DeepEqual(li, ri) {
		t.Fatal("three years change no issue: the test means nothing")
	}
	w = h.worker("a", dir)
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitOutcome(t, h, done, "on the new day", func(o outcome) bool {
		gi, _, _ := o.open()
		return reflect.DeepEqual(gi, li)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Versions keep growing through the passes, so no event of a pass looks stale.
	final := readOutcome(t, h.k)
	for id, q := range final.issues {
		if old, ok := reloaded.issues[id]; ok && q.Status != old.Status && q.Version <= old.Version {
			t.Errorf("issue %s changed %s → %s at version %d ≤ %d", id, old.Status, q.Status, q.Version, old.Version)
		}
	}
	t.Logf("reload: %d → %d open issues, %d → %d open warnings; 3 years later: %d open issues", len(fi), len(wi), len(fw), len(ww), len(li))
}

// waitOutcome polls the derived topics until ok holds (a running worker's output
// converging), failing after two minutes.
func waitOutcome(t *testing.T, h *harness, done chan error, what string, ok func(outcome) bool) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		o := readOutcome(t, h.k)
		if ok(o) {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("%s: the monitor stopped: %v", what, err)
		case <-deadline:
			gi, gw, gd := o.open()
			t.Fatalf("%s: the output did not converge in 2 minutes (%d open issues, %d warnings, %d discrepancies)", what, len(gi), len(gw), len(gd))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
