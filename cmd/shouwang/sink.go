package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/sinks/postgres"
	"github.com/shouwang/shouwang/sinks/sharing"
)

// sinkWorker is a sink of any kind.
type sinkWorker interface {
	Name() string
	Topics() []string
	Run(ctx context.Context) error
}

// sinkWorkers builds the configured sinks: postgres (provincial database), sharing_db
// (the sharing platform's exchange table) and sharing_http (its API).
func (w *worker) sinkWorkers() ([]sinkWorker, error) {
	var out []sinkWorker
	var errs []string
	for i := range w.cfg.Sinks {
		s := &w.cfg.Sinks[i]
		p := fmt.Sprintf("sinks[%d]", i)
		component := "sink/" + s.Name
		setReady := func(ready bool, reason string) { w.server.SetReady(component, ready, reason) }
		entities, tables, err := sinkEntities(w.cfg.Kafka.TopicPrefix, s)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		switch s.Kind {
		case config.SinkPostgres:
		case config.SinkSharingHTTP:
			hc := s.HTTP
			if hc == nil {
				hc = &config.HTTP{}
			}
			sw, err := sharing.New(sharing.Options{Name: s.Name, TopicPrefix: w.cfg.Kafka.TopicPrefix, ClientID: w.cfg.Kafka.ClientID,
				Entities: entities, Fields: s.Fields, Protect: w.pii, Method: pii.Method(s.Protect),
				Client:    sharing.ClientOptions{URL: s.URL, Token: hc.AuthToken, SigningKey: []byte(hc.SigningKey), Timeout: hc.Timeout.D(), MaxElapsed: hc.Retry.MaxElapsed.D()},
				StatePath: filepath.Join(w.cfg.State.Dir, "sharing-"+s.Name+".db"), Bus: w.busOpts, Producer: w.producer,
				BatchSize: s.BatchSize, Registerer: w.reg, Logger: w.log, SetReady: setReady})
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", p, err))
				continue
			}
			out = append(out, sw)
			continue
		case config.SinkSharingDB:
			sw, err := sharing.NewExchange(sharing.ExchangeOptions{Name: s.Name, TopicPrefix: w.cfg.Kafka.TopicPrefix, ClientID: w.cfg.Kafka.ClientID,
				Entities: entities, Fields: s.Fields, Protect: w.pii, Method: pii.Method(s.Protect), Driver: s.Driver, DSN: s.DSN,
				Bus: w.busOpts, Producer: w.producer, BatchSize: s.BatchSize, Registerer: w.reg, Logger: w.log, SetReady: setReady})
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", p, err))
				continue
			}
			out = append(out, sw)
			continue
		default:
			errs = append(errs, fmt.Sprintf("%s.kind: %q is not a sink kind this build runs", p, s.Kind))
			continue
		}
		sw, err := postgres.NewWorker(postgres.WorkerOptions{
			Options: postgres.Options{Name: s.Name, TopicPrefix: w.cfg.Kafka.TopicPrefix, ClientID: w.cfg.Kafka.ClientID,
				Entities: entities, Tables: tables, Delete: s.Delete, Truncate: s.Truncate, Bus: w.busOpts, Producer: w.producer,
				Protect: w.pii, BatchSize: s.BatchSize, StopAfterRefusals: s.StopAfterRefusals, Logger: w.log},
			DSN: s.DSN, Registerer: w.reg, SetReady: setReady, Lanes: s.Lanes,
		})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		out = append(out, sw)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// sinkEntities maps a sink's topics (entity names or full topic names) to canonical
// entities, and its tables: entries (keyed as the topics are written) to entities.
func sinkEntities(prefix string, s *config.Sink) ([]string, map[string]string, error) {
	byName := map[string]string{}
	var names []string
	for _, e := range schemas.Entities() {
		byName[e.Name] = e.Name
		byName[e.Topic(prefix)] = e.Name
		names = append(names, e.Name)
	}
	var entities []string
	asWritten := map[string]string{}
	for j, t := range s.Topics {
		e, ok := byName[t]
		if !ok {
			return nil, nil, fmt.Errorf("topics[%d]: %q is not a canonical entity or its topic (entities: %s)", j, t, strings.Join(names, ", "))
		}
		entities = append(entities, e)
		asWritten[t] = e
	}
	tables := map[string]string{}
	for t, rel := range s.Tables {
		tables[asWritten[t]] = rel
	}
	return entities, tables, nil
}

// runSinks creates the sinks' topics and runs every sink until ctx is done, restarting
// one that fails.
func (w *worker) runSinks(ctx context.Context, sinks []sinkWorker) error {
	k := w.cfg.Kafka
	specs := []bus.TopicSpec{{Name: schemas.DLQTopic(k.TopicPrefix, "sink"), Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor}}
	seen := map[string]bool{}
	for _, s := range sinks {
		for _, t := range s.Topics() {
			if !seen[t] {
				seen[t] = true
				specs = append(specs, bus.TopicSpec{Name: t, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor})
			}
		}
	}
	if err := bus.EnsureTopics(ctx, w.busOpts, specs...); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, s := range sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.superviseRun(ctx, "sink/"+s.Name(), "sink failed; restarting from its stored offsets (an undelivered batch is resent with its idempotency key)", s.Run)
		}()
	}
	wg.Wait()
	return nil
}
