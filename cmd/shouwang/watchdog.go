package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/watchdog"
	"github.com/shouwang/shouwang/schemas"
)

// watchdogTick is how often the capture role evaluates its watchdogs (a variable for
// tests).
var watchdogTick = 15 * time.Second

// startWatchdogs builds the watchdogs of the configured sources that conns capture
// (none configured: w.watch stays nil). Their state lives in <state.dir>/watchdog.
func (w *worker) startWatchdogs(conns []*connector) error {
	if w.watch != nil {
		return nil
	}
	captured := map[string]bool{}
	for _, c := range conns {
		captured[c.source] = true
	}
	var rules []watchdog.Rule
	for _, wd := range w.cfg.Watchdogs {
		if !captured[wd.Source] {
			continue
		}
		rules = append(rules, watchdog.Rule{Name: wd.Name, Kind: wd.Kind, Source: wd.Source, Tables: wd.Tables,
			Due: wd.Due, Grace: wd.Grace.D(), MaxSilence: wd.MaxSilence.D()})
	}
	if len(rules) == 0 {
		return nil
	}
	wd, err := watchdog.New(watchdog.Options{Rules: rules, StateDir: filepath.Join(w.cfg.State.Dir, "watchdog"),
		Registerer: w.reg, Logger: w.log})
	if err != nil {
		return err
	}
	w.watch = wd
	return nil
}

// runWatchdogs evaluates the watchdogs every watchdogTick until ctx ends, then saves
// their state.
func (w *worker) runWatchdogs(ctx context.Context) {
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := w.watch.Close(); err != nil {
				w.log.Warn("watchdog: state not saved at shutdown", "error", err)
			}
			return
		case <-t.C:
			w.watch.Evaluate()
		}
	}
}

// observe reports one committed capture batch of source to the watchdogs: any batch is
// activity, each table with a change (dead letters included: the data arrived) is an
// arrival. Snapshot and re-snapshot rows (op r) are our own reading, not a delivery.
func (w *worker) observe(source string, cs []capture.Change) {
	wd := w.watch
	if wd == nil || len(cs) == 0 {
		return
	}
	now := time.Now()
	wd.Active(source, now)
	var last string
	for i := range cs {
		c := &cs[i]
		if c.PositionOnly || c.Envelope.Op == schemas.OpRead || c.Envelope.Source.Table == "" || c.Envelope.Source.Table == last {
			continue
		}
		last = c.Envelope.Source.Table
		wd.Arrived(source, last, now)
	}
}
