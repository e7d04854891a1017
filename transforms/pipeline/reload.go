package pipeline

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/shouwang/shouwang/transforms/mapping"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// Reloader watches a mapping location and swaps in a new set when its files change.
// A set that does not compile is logged with every problem and not applied: the
// running version stays in force, so a reload never half-applies.
type Reloader struct {
	Where    string
	Env      *mapping.Env
	Current  *atomic.Pointer[mapping.Set]
	Interval time.Duration // default 5s
	Logger   *slog.Logger
	// OnResult, when set, sees every reload attempt (nil error: applied).
	OnResult func(err error)
}

// Run polls until ctx is done.
func (r *Reloader) Run(ctx context.Context) {
	if r.Where == mapping.Embedded {
		return
	}
	iv := r.Interval
	if iv <= 0 {
		iv = 5 * time.Second
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	last, _ := mapping.Fingerprint(r.Where)
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp, err := mapping.Fingerprint(r.Where)
		if err != nil || fp == last {
			continue
		}
		last = fp
		set, err := mapping.Load(r.Where, r.Env)
		if err != nil {
			log.Error("mapping reload refused; the running mappings stay in force", "where", r.Where, "err", err)
		} else {
			r.Current.Store(set)
			var names []any
			for _, m := range set.Mappings() {
				names = append(names, m.Name+"@"+itoa(m.Version))
			}
			log.Info("mappings reloaded", "where", r.Where, "mappings", names)
		}
		if r.OnResult != nil {
			r.OnResult(err)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
