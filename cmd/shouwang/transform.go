package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/transforms/mapping"
	"github.com/shouwang/shouwang/transforms/pipeline"
)

// transformer is one configured pipeline with its mapping set and reloader.
type transformer struct {
	name   string
	worker *pipeline.Worker
	reload *pipeline.Reloader
}

// transformers builds the configured pipelines. Mapping problems are reported all
// together, each with file:line.
func (w *worker) transformers() ([]*transformer, error) {
	var out []*transformer
	var errs []string
	env := &mapping.Env{}
	for i, pl := range w.cfg.Pipelines {
		path := fmt.Sprintf("pipelines[%d]", i)
		where := pl.Mapping
		if where != mapping.Embedded {
			where = w.cfg.ResolvePath(where)
		}
		set, err := mapping.Load(where, env)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s.mapping: %v", path, err))
			continue
		}
		var inputs [][2]string
		rawPrefix := w.cfg.Kafka.TopicPrefix + ".raw."
		for _, in := range pl.Inputs {
			// A raw topic name (<prefix>.raw.<source>.<table>) names the same input as
			// the source reference <source>.<table>, for a transform process whose
			// config does not list the sources.
			src, tbl, ok := strings.Cut(strings.TrimPrefix(in, rawPrefix), ".")
			if !ok {
				errs = append(errs, fmt.Sprintf("%s.inputs: %q: the transform role reads <source>.<table> or %s<source>.<table>", path, in, rawPrefix))
				continue
			}
			inputs = append(inputs, [2]string{src, tbl})
		}
		cur := &atomic.Pointer[mapping.Set]{}
		cur.Store(set)
		pw, err := pipeline.New(pipeline.Options{Name: pl.Name, TopicPrefix: w.cfg.Kafka.TopicPrefix, ClientID: w.cfg.Kafka.ClientID,
			Bus: w.busOpts, Producer: w.producer, Mappings: cur, Inputs: inputs, Protect: w.pii, Registerer: w.reg, Logger: w.log})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		out = append(out, &transformer{name: pl.Name, worker: pw,
			reload: &pipeline.Reloader{Where: where, Env: env, Current: cur, Logger: w.log.With("pipeline", pl.Name)}})
	}
	mon, err := w.monitorWorker()
	if err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	w.mon = mon
	return out, nil
}

// runTransforms runs every pipeline until ctx is done; a pipeline that fails is
// restarted with backoff from its last committed offsets (readiness false meanwhile).
func (w *worker) runTransforms(ctx context.Context, ts []*transformer) error {
	k := w.cfg.Kafka
	// One spec per topic: pipelines share the DLQ topic, and a CreateTopics request
	// that names a topic twice is rejected whole by the broker.
	var specs []bus.TopicSpec
	seen := map[string]bool{}
	var all [][]string
	for _, t := range ts {
		ins, outs := t.worker.Topics()
		all = append(all, append(ins, outs...))
	}
	if w.mon != nil {
		ins, outs := w.mon.Topics()
		all = append(all, append(ins, outs...))
	}
	for _, tps := range all {
		for _, tp := range tps {
			if seen[tp] {
				continue
			}
			seen[tp] = true
			specs = append(specs, bus.TopicSpec{Name: tp, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor})
		}
	}
	if err := bus.EnsureTopics(ctx, w.busOpts, specs...); err != nil {
		return err
	}
	var wg sync.WaitGroup
	if w.mon != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.superviseRun(ctx, "transform/monitor", "monitor failed; restarting from its committed state", w.mon.Run)
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.watchMonitorRules(ctx, 5*time.Second)
		}()
	}
	for _, t := range ts {
		wg.Add(2)
		go func() {
			defer wg.Done()
			t.reload.Run(ctx)
		}()
		go func() {
			defer wg.Done()
			w.superviseRun(ctx, "transform/"+t.name, "transform pipeline failed; restarting from its committed offsets", t.worker.Run)
		}()
	}
	wg.Wait()
	return nil
}

// superviseRun runs fn until ctx is done, restarting it with backoff when it fails
// (readiness of component false meanwhile, with the error as the reason).
func (w *worker) superviseRun(ctx context.Context, component, failed string, fn func(context.Context) error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = time.Second, time.Minute, 0
	for ctx.Err() == nil {
		w.server.SetReady(component, true, "")
		err := fn(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := bo.NextBackOff()
		w.log.Error(failed, "component", component, "retry_in", wait.Round(100*time.Millisecond).String(), "err", err)
		w.server.SetReady(component, false, fmt.Sprint(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
