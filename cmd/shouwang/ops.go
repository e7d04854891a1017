package main

// What the operator commands (dlq, offsets, status) share: the Kafka admin client,
// the list of the configuration's consumers with their groups and topics, and the
// parsing of times and positions.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/metrics"
	"github.com/shouwang/shouwang/internal/pii"
)

// dlqStages are the stages that dead-letter records, each to <prefix>.dlq.<stage>.
var dlqStages = []string{"capture", "transform", "sink"}

// errEmbedded is the refusal of an operator command on a configuration whose broker
// lives inside the running worker.
var errEmbedded = errors.New("the configuration uses the embedded in-memory broker, which lives inside the running worker and cannot be reached from another process; operator commands need a real Kafka cluster (kafka.brokers)")

// opsBusOptions are the bus options of an operator command, or errEmbedded.
func opsBusOptions(cfg *config.Config) (bus.Options, error) {
	if cfg.Kafka.Embedded || len(cfg.Kafka.Brokers) == 0 {
		return bus.Options{}, errEmbedded
	}
	o := busOptions(cfg.Kafka)
	o.Logger = slog.New(slog.DiscardHandler)
	return o, nil
}

// opsAdmin connects the admin client of an operator command.
func opsAdmin(cfg *config.Config, extra ...kgo.Opt) (*kgo.Client, *kadm.Client, error) {
	o, err := opsBusOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	cl, err := bus.NewAdminClient(o, extra...)
	if err != nil {
		return nil, nil, err
	}
	return cl, kadm.NewClient(cl), nil
}

// Where a consumer's authoritative position lives.
const (
	storeGroup    = "group"    // the committed group offsets (transform pipelines)
	storePostgres = "postgres" // fpjc.sink_offsets, written with the rows
	storeExchange = "exchange" // fpjc_push_offsets in the sharing platform's database
	storeMonitor  = "monitor"  // the monitor's bbolt state file
	storeSharing  = "sharing"  // the sharing_http sink's bbolt state file
)

// consumer is one consumer group of the configuration: a transform pipeline, the
// monitor, or a sink.
type consumer struct {
	Kind   string   `json:"kind"` // transform, monitor, sink/postgres, sink/sharing_db, sink/sharing_http
	Name   string   `json:"name"`
	Group  string   `json:"group"`
	Topics []string `json:"topics"`
	Store  string   `json:"store"` // one of the store* constants
	// DSN and Driver of the database holding the stored offsets (postgres, exchange);
	// StatePath of the state file (monitor, sharing).
	DSN, Driver, StatePath string `json:"-"`
}

// consumers builds the configuration's workers exactly as `shouwang run` does (no
// I/O: constructors only validate) and lists their groups and input topics.
func consumers(cfg *config.Config) ([]consumer, error) {
	o, err := opsBusOptions(cfg)
	if err != nil {
		return nil, err
	}
	reg := metrics.NewRegistry()
	w := &worker{cfg: cfg, log: slog.New(slog.DiscardHandler), reg: reg, server: metrics.NewServer("127.0.0.1:0", reg), busOpts: o}
	if w.pii, err = pii.Open(cfg.PII, "pii", cfg.Dir()); err != nil {
		return nil, err
	}
	// The producer is handed to the workers' constructors; it connects only on the
	// first write, which never happens here.
	if w.producer, err = bus.NewProducer(o); err != nil {
		return nil, err
	}
	defer w.producer.Close()
	var out []consumer
	ts, err := w.transformers()
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		ins, _ := t.worker.Topics()
		out = append(out, consumer{Kind: "transform", Name: t.name, Group: t.worker.Group(), Topics: ins, Store: storeGroup})
	}
	if w.mon != nil {
		ins, _ := w.mon.Topics()
		mc := cfg.Monitor
		state := filepath.Join(cfg.State.Dir, "monitor.db")
		if mc.State != "" {
			state = cfg.ResolvePath(mc.State)
		}
		out = append(out, consumer{Kind: "monitor", Name: "monitor", Group: w.mon.Group(), Topics: ins, Store: storeMonitor, StatePath: state})
	}
	sinks, err := w.sinkWorkers()
	if err != nil {
		return nil, err
	}
	for i, s := range sinks {
		sc := cfg.Sinks[i]
		c := consumer{Kind: "sink/" + sc.Kind, Name: s.Name(), Topics: append([]string(nil), s.Topics()...), DSN: sc.DSN, Driver: sc.Driver}
		switch sw := s.(type) {
		case interface{ Group() string }:
			c.Group = sw.Group()
		}
		switch sc.Kind {
		case config.SinkPostgres:
			c.Store = storePostgres
		case config.SinkSharingDB:
			c.Store = storeExchange
		case config.SinkSharingHTTP:
			c.Store, c.StatePath = storeSharing, filepath.Join(cfg.State.Dir, "sharing-"+sc.Name+".db")
		}
		sort.Strings(c.Topics)
		out = append(out, c)
	}
	return out, nil
}

// parseSince reads a point in time: RFC 3339, a date or date and time in local time
// (2006-01-02, "2006-01-02 15:04"), or a duration back from now (90m, 24h, 7d).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if d, err := strconv.Atoi(n); err == nil && d >= 0 {
			return now.AddDate(0, 0, -d), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: give RFC 3339 (2026-12-07T08:00:00+08:00), a local date or date and time (2026-12-07, \"2026-12-07 08:00\") or a duration back from now (90m, 24h, 7d)", s)
}

// parsePartOffset reads a "PARTITION/OFFSET" argument.
func parsePartOffset(s string) (int32, int64, error) {
	p, o, ok := strings.Cut(s, "/")
	pn, err1 := strconv.ParseInt(p, 10, 32)
	on, err2 := strconv.ParseInt(o, 10, 64)
	if !ok || err1 != nil || err2 != nil || pn < 0 || on < 0 {
		return 0, 0, fmt.Errorf("%q is not PARTITION/OFFSET (e.g. 0/17, as dlq list prints it)", s)
	}
	return int32(pn), on, nil
}

// parseTopicPosition reads the Position of a dead-letter record of a consumed message,
// "topic/partition@offset" (bus.DeadRecord).
func parseTopicPosition(pos string) (topic string, part int32, off int64, ok bool) {
	i := strings.LastIndexByte(pos, '/')
	if i <= 0 {
		return "", 0, 0, false
	}
	p, o, found := strings.Cut(pos[i+1:], "@")
	pn, err1 := strconv.ParseInt(p, 10, 32)
	on, err2 := strconv.ParseInt(o, 10, 64)
	if !found || err1 != nil || err2 != nil || pn < 0 || on < 0 {
		return "", 0, 0, false
	}
	return pos[:i], int32(pn), on, true
}

// watermarks are the log start and end (high watermark) offsets of topics' partitions.
type watermarks struct{ start, end kadm.ListedOffsets }

func listWatermarks(ctx context.Context, adm *kadm.Client, topics ...string) (watermarks, error) {
	start, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return watermarks{}, fmt.Errorf("kafka: list start offsets: %w", err)
	}
	end, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return watermarks{}, fmt.Errorf("kafka: list end offsets: %w", err)
	}
	return watermarks{start: start, end: end}, nil
}

// partitions lists the existing partitions of topic in order (none when the topic
// does not exist yet).
func (w watermarks) partitions(topic string) []int32 {
	var ps []int32
	for p, o := range w.end[topic] {
		if p >= 0 && o.Err == nil {
			ps = append(ps, p)
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func (w watermarks) bounds(topic string, p int32) (start, end int64) {
	s, _ := w.start.Lookup(topic, p)
	e, _ := w.end.Lookup(topic, p)
	return s.Offset, e.Offset
}

// size is the number of records between the start and the end of topic.
func (w watermarks) size(topic string) int64 {
	var n int64
	for _, p := range w.partitions(topic) {
		s, e := w.bounds(topic, p)
		n += e - s
	}
	return n
}

// opsFail prints a one-line failure of an operator command and returns status 1.
func opsFail(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "shouwang %s: %v\n", name, err)
	if errors.Is(err, errEmbedded) {
		return 2
	}
	return 1
}

// loadOpsConfig checks -c and loads the configuration (status 2 on failure).
func loadOpsConfig(path, name string, h helpText, stderr io.Writer) (*config.Config, int) {
	if path == "" {
		usageError(stderr, name, h, "shouwang "+name+": -c FILE is required (or set SHOUWANG_CONFIG)")
		return nil, 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		printProblems(stderr, err)
		return nil, 2
	}
	if _, err := opsBusOptions(cfg); err != nil {
		fmt.Fprintf(stderr, "shouwang %s: %v\n", name, err)
		return nil, 2
	}
	return cfg, 0
}

// fmtTime prints a time for the tables, in local time.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
