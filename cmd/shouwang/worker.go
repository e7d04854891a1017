package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/metrics"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/internal/watchdog"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/monitor"
)

// worker is what every role shares: the configuration, the metrics endpoint, the bus
// and the durable position store. It is built once per process.
type worker struct {
	cfg       *config.Config
	log       *slog.Logger
	reg       *prometheus.Registry
	server    *metrics.Server
	embedded  *bus.Embedded
	busOpts   bus.Options
	producer  *bus.Producer
	positions capture.PositionStore
	pgPool    *pgxpool.Pool
	// pii protects ID numbers and phones in dead-letter records and reports.
	pii *pii.Protector
	// mon is the monitor of the transform role (set by transformers; nil: none).
	mon *monitor.Worker
	// monRulesFP is the fingerprint of the monitor's rule files as last loaded.
	monRulesFP string
	// watch holds the capture role's watchdogs (nil: none configured).
	watch *watchdog.Watchdog
	// captureActive is 1 for each source this process captures while holding its
	// lease, 0 while it stands by (capture.standby only).
	captureActive *prometheus.GaugeVec
	// exitOnStartupFailure (run --exit-on-startup-failure) applies
	// sources[].exit_on_startup_failure to every source.
	exitOnStartupFailure bool
}

// newWorker connects the shared pieces. metricsAddr overrides cfg.Metrics.Addr when
// not empty (the demo picks a free port).
func newWorker(ctx context.Context, cfg *config.Config, log *slog.Logger, metricsAddr string) (_ *worker, err error) {
	w := &worker{cfg: cfg, log: log, reg: metrics.NewRegistry()}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if w.pii, err = pii.Open(cfg.PII, "pii", cfg.Dir()); err != nil {
		return nil, err
	}
	if metricsAddr == "" {
		metricsAddr = cfg.Metrics.Addr
	}
	w.server = metrics.NewServer(metricsAddr, w.reg)
	if err := w.server.Start(ctx); err != nil {
		return nil, err
	}
	w.busOpts = busOptions(cfg.Kafka)
	w.busOpts.Registerer, w.busOpts.Logger = w.reg, log
	if cfg.Kafka.Embedded || (cfg.Demo && len(cfg.Kafka.Brokers) == 0) {
		if w.embedded, err = bus.StartEmbedded(ctx, bus.EmbeddedOptions{Partitions: cfg.Kafka.Partitions}); err != nil {
			return nil, err
		}
		// The in-process broker speaks plain Kafka: no TLS, no SASL.
		w.busOpts = bus.Options{Brokers: w.embedded.Brokers(), ClientID: cfg.Kafka.ClientID, SessionTimeout: cfg.Kafka.SessionTimeout.D(), Registerer: w.reg, Logger: log}
	}
	if w.producer, err = bus.NewProducer(w.busOpts); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	switch cfg.State.Positions {
	case "postgres":
		if w.pgPool, err = pgxpool.New(ctx, cfg.State.PositionsDSN); err != nil {
			return nil, fmt.Errorf("state.positions_dsn (%s): %w", config.MaskDSN(cfg.State.PositionsDSN), err)
		}
		if w.positions, err = capture.NewPGStore(ctx, w.pgPool); err != nil {
			return nil, fmt.Errorf("state.positions_dsn (%s): %w", config.MaskDSN(cfg.State.PositionsDSN), err)
		}
	default:
		if w.positions, err = capture.NewFileStore(filepath.Join(cfg.State.Dir, "positions")); err != nil {
			return nil, fmt.Errorf("state.dir: %w", err)
		}
	}
	return w, nil
}

// busOptions maps the kafka section of the configuration onto the bus.
func busOptions(k config.Kafka) bus.Options {
	return bus.Options{Brokers: k.Brokers, ClientID: k.ClientID, SessionTimeout: k.SessionTimeout.D(),
		TLSEnabled: k.TLS.Enabled, CAFile: k.TLS.CAFile, CertFile: k.TLS.CertFile, KeyFile: k.TLS.KeyFile,
		InsecureSkipVerify: k.TLS.InsecureSkipVerify,
		SASLMechanism:      k.SASL.Mechanism, Username: k.SASL.Username, Password: k.SASL.Password}
}

// ensureCaptureTopics creates the topics the configured sources write to, with the configured
// partition count and replication factor.
func (w *worker) ensureCaptureTopics(ctx context.Context) error {
	k := w.cfg.Kafka
	spec := func(name string) bus.TopicSpec {
		return bus.TopicSpec{Name: name, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor}
	}
	specs := []bus.TopicSpec{spec(schemas.DLQTopic(k.TopicPrefix, "capture")), spec(schemas.SignalTopic(k.TopicPrefix))}
	if w.cfg.Capture.Standby {
		specs = append(specs, bus.TopicSpec{Name: schemas.CaptureLeaseTopic(k.TopicPrefix), Partitions: 1, ReplicationFactor: k.ReplicationFactor})
	}
	for _, s := range w.cfg.Sources {
		for _, t := range s.Tables() {
			specs = append(specs, spec(schemas.RawTopic(k.TopicPrefix, s.Name, t)))
		}
	}
	return bus.EnsureTopics(ctx, w.busOpts, specs...)
}

// Close releases everything newWorker built.
func (w *worker) Close() error {
	var errs []error
	if w.producer != nil {
		errs = append(errs, w.producer.Close())
	}
	if w.embedded != nil {
		w.embedded.Close()
	}
	if w.pgPool != nil {
		w.pgPool.Close()
	}
	if w.server != nil {
		errs = append(errs, w.server.Shutdown(context.Background()))
	}
	return errors.Join(errs...)
}
