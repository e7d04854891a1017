package main

import (
	"context"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
)

// idleSource stands for a connector's running source; waitRunning only asks whether
// one is set.
type idleSource struct{}

func (idleSource) Open(context.Context, capture.Position) error         { return nil }
func (idleSource) ReadN(context.Context, int) ([]capture.Change, error) { return nil, nil }
func (idleSource) Ack(context.Context, capture.Position) error          { return nil }
func (idleSource) Close() error                                         { return nil }

// A signal for a source between two runs waits for it to run again (and is not
// handled, nor committed, when the worker stops first); one for a source that stays
// down is handled after signalWait.
func TestSignalWaitsForItsSource(t *testing.T) {
	w := &worker{}
	c := &connector{name: "national", source: "national"}
	other := &connector{name: "files/a", source: "files", dataset: "a"}
	other.current = idleSource{}
	conns := []*connector{c, other}
	sig := SnapshotSignal{Type: signalSnapshot, Source: "national", Table: "person"}
	go func() {
		time.Sleep(300 * time.Millisecond)
		c.mu.Lock()
		c.current = idleSource{}
		c.mu.Unlock()
	}()
	start := time.Now()
	if !w.waitRunning(context.Background(), sig, conns) {
		t.Fatal("waitRunning = false with the source running again")
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Error("the signal did not wait for its source (another source's run does not count)")
	}
	c.mu.Lock()
	c.current = nil
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if w.waitRunning(ctx, sig, conns) {
		t.Error("waitRunning = true although the worker stopped before the source ran")
	}
	old := signalWait
	signalWait = 100 * time.Millisecond
	defer func() { signalWait = old }()
	if !w.waitRunning(context.Background(), sig, conns) {
		t.Error("a source that stays down must not hold its signals forever")
	}
}
