package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/schemas"
)

func init() {
	register("snapshot", "ask a capture source to re-snapshot a table (or the rows matching --where)", func(args []string) int {
		return runSnapshot(args, os.Stdout, os.Stderr)
	})
}

var snapshotHelp = helpText{
	usage: []string{"shouwang snapshot -c FILE --source NAME --table TABLE [--where CONDITION]"},
	about: "Ask a running capture worker to re-read a table, or only the rows matching --where, and emit them as snapshot " +
		"events (op r) between watermarks, without stopping the stream. The request is a message on the signal topic " +
		"<kafka.topic_prefix>.signal of the configured Kafka cluster: this command only puts it there and returns; the " +
		"capture worker running the source (shouwang run) must be running, or will act on it when it starts. Its log says " +
		"whether the request was accepted. The embedded in-memory broker of the demo cannot carry signals from outside.",
	examples: []string{"shouwang snapshot -c /etc/shouwang/shouwang.yaml --source national --table gbdb.person --where \"village_code LIKE '510104%'\""},
}

func runSnapshot(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("snapshot", stderr)
	cfgPath := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration `file` (default $SHOUWANG_CONFIG)")
	source := fs.String("source", "", "configured source `name` (sources[].name)")
	table := fs.String("table", "", `table to re-read, as configured (e.g. "national.person")`)
	where := fs.String("where", "", `optional SQL condition limiting the rows (e.g. "village_code LIKE '510104%'")`)
	if code, ok := parseFlags(fs, snapshotHelp, args, stdout, stderr); !ok {
		return code
	}
	if *cfgPath == "" || *source == "" || *table == "" || fs.NArg() > 0 {
		usageError(stderr, "snapshot", snapshotHelp, "shouwang snapshot: -c FILE, --source and --table are required (and nothing else)")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printProblems(stderr, err)
		return 2
	}
	src, ok := cfg.SourceByName(*source)
	if !ok {
		fmt.Fprintf(stderr, "shouwang snapshot: --source %q is not configured in %s\n", *source, cfg.File())
		return 2
	}
	full, err := resolveTable(src, *table)
	if err != nil {
		fmt.Fprintf(stderr, "shouwang snapshot: --table: %v\n", err)
		return 2
	}
	if cfg.Kafka.Embedded || len(cfg.Kafka.Brokers) == 0 {
		fmt.Fprintln(stderr, "shouwang snapshot: the configuration uses the embedded in-memory broker, which lives inside the running worker; signals need a real Kafka cluster (kafka.brokers)")
		return 2
	}
	k := cfg.Kafka
	opts := busOptions(k)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sendSnapshotSignal(ctx, opts, k.TopicPrefix, k.ReplicationFactor, SnapshotSignal{Type: signalSnapshot, Source: *source, Table: full, Where: *where, By: "cli"}); err != nil {
		fmt.Fprintf(stderr, "shouwang snapshot: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "snapshot of %s %s requested on %s; the capture worker running source %s acts on it (its log says so)\n",
		*source, full, schemas.SignalTopic(k.TopicPrefix), *source)
	return 0
}

// resolveTable returns the name the source knows the table by: "db.table" for
// database sources (a bare table name is accepted when it is unambiguous), the query
// or dataset name for poll and filedrop sources.
func resolveTable(s *config.Source, table string) (string, error) {
	var full []string
	switch {
	case s.MySQL != nil:
		full = s.MySQL.Tables
	case s.Postgres != nil:
		full = s.Postgres.Tables
	default:
		full = s.Tables()
	}
	var matches []string
	for _, f := range full {
		if f == table {
			return f, nil
		}
		if i := strings.LastIndexByte(f, '.'); i >= 0 && f[i+1:] == table {
			matches = append(matches, f)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", fmt.Errorf("%q is not captured by source %q (captured: %s)", table, s.Name, strings.Join(full, ", "))
	}
	return "", fmt.Errorf("%q is ambiguous in source %q: write one of %s", table, s.Name, strings.Join(matches, ", "))
}

// sendSnapshotSignal puts snapshot requests on the signal topic (acks=all), with one
// producer for all of them.
func sendSnapshotSignal(ctx context.Context, opts bus.Options, prefix string, replication int, sigs ...SnapshotSignal) error {
	topic := schemas.SignalTopic(prefix)
	msgs := make([]bus.Message, 0, len(sigs))
	for _, sig := range sigs {
		if sig.TsMs == 0 {
			sig.TsMs = time.Now().UnixMilli()
		}
		b, err := json.Marshal(sig)
		if err != nil {
			return err
		}
		msgs = append(msgs, bus.Message{Topic: topic, Key: []byte(sig.Source), Value: b})
	}
	p, err := bus.NewProducer(opts)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := bus.EnsureTopics(ctx, opts, bus.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: replication}); err != nil {
		return err
	}
	return p.Produce(ctx, msgs...)
}
