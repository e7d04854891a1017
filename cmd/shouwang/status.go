package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/shouwang/shouwang/schemas"
)

func init() {
	register("status", "where every consumer is: lag per topic, dead-letter counts, capture positions", func(args []string) int {
		return runStatus(args, os.Stdout, os.Stderr)
	})
}

var statusHelp = helpText{
	usage: []string{"shouwang status -c FILE [--json]"},
	about: "One table per consumer of the configuration (transform pipelines, monitor, sinks): per topic the committed " +
		"position (the stored one where the consumer keeps its offsets with the data), the end offset and the lag; then " +
		"the number of records in each dead-letter topic <kafka.topic_prefix>.dlq.<stage>, and the capture sources' saved " +
		"positions when they are kept under state.dir. Reads Kafka, the sinks' databases and the state directory; no " +
		"worker needs to run. Exit status 0, 1 when Kafka or a database cannot be read, 2 on a usage or configuration error.",
	examples: []string{"shouwang status -c /etc/shouwang/shouwang.yaml", "shouwang status -c /etc/shouwang/shouwang.yaml --json"},
}

// topicStatus is one topic of a consumer, its partitions summed.
type topicStatus struct {
	Topic    string `json:"topic"`
	Position int64  `json:"position"` // sum over partitions of the authoritative next offset
	End      int64  `json:"end"`
	Lag      int64  `json:"lag"`
}

type consumerStatus struct {
	Kind     string        `json:"kind"`
	Name     string        `json:"name"`
	Group    string        `json:"group"`
	State    string        `json:"group_state"`
	Members  int           `json:"members"`
	Position string        `json:"position_kept_in"`
	StoreErr string        `json:"store_error,omitempty"`
	Topics   []topicStatus `json:"topics"`
	Lag      int64         `json:"lag"`
}

type captureStatus struct {
	Source   string `json:"source"`
	Kind     string `json:"kind"`
	Position string `json:"position,omitempty"`
	Saved    string `json:"saved,omitempty"`
	Note     string `json:"note,omitempty"`
}

type status struct {
	Consumers []consumerStatus `json:"consumers"`
	// DLQ is the number of records in each stage's dead-letter topic.
	DLQ     map[string]int64 `json:"dlq"`
	Capture []captureStatus  `json:"capture,omitempty"`
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", stderr)
	cfgPath := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration `file` (default $SHOUWANG_CONFIG)")
	asJSON := fs.Bool("json", false, "print JSON instead of the tables")
	if code, ok := parseFlags(fs, statusHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		usageError(stderr, "status", statusHelp, "shouwang status takes no arguments")
		return 2
	}
	cfg, code := loadOpsConfig(*cfgPath, "status", statusHelp, stderr)
	if cfg == nil {
		return code
	}
	cs, err := consumers(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "shouwang status: %v\n", err)
		return 2
	}
	_, adm, err := opsAdmin(cfg)
	if err != nil {
		return opsFail(stderr, "status", err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cos, err := collectOffsets(ctx, adm, cs)
	if err != nil {
		return opsFail(stderr, "status", err)
	}
	st := status{Consumers: []consumerStatus{}, DLQ: map[string]int64{}}
	rc := 0
	for _, co := range cos {
		s := consumerStatus{Kind: co.Kind, Name: co.Name, Group: co.Group, State: co.State, Members: co.Members, Position: co.Position, StoreErr: co.StoreErr, Lag: co.Lag}
		if co.StoreErr != "" && co.Store != storeMonitor && co.Store != storeSharing {
			rc = 1
		}
		byTopic := map[string]*topicStatus{}
		for _, p := range co.Partitions {
			t := byTopic[p.Topic]
			if t == nil {
				t = &topicStatus{Topic: p.Topic}
				byTopic[p.Topic] = t
			}
			t.End += p.End
			t.Lag += p.Lag
			t.Position += p.End - p.Lag
		}
		for _, name := range co.Topics {
			if t := byTopic[name]; t != nil {
				s.Topics = append(s.Topics, *t)
			}
		}
		st.Consumers = append(st.Consumers, s)
	}
	var dlqTopics []string
	for _, s := range dlqStages {
		dlqTopics = append(dlqTopics, schemas.DLQTopic(cfg.Kafka.TopicPrefix, s))
	}
	wm, err := listWatermarks(ctx, adm, dlqTopics...)
	if err != nil {
		return opsFail(stderr, "status", err)
	}
	for i, s := range dlqStages {
		st.DLQ[s] = wm.size(dlqTopics[i])
	}
	for _, s := range cfg.Sources {
		c := captureStatus{Source: s.Name, Kind: s.Kind}
		if cfg.State.Positions == "postgres" {
			c.Note = "kept in state.positions_dsn"
		} else {
			p := filepath.Join(cfg.State.Dir, "positions", s.Name+".position.json")
			switch b, err := os.ReadFile(p); {
			case err == nil:
				c.Position = string(b)
				if len(c.Position) > 160 {
					c.Position = c.Position[:157] + "..."
				}
				if fi, err := os.Stat(p); err == nil {
					c.Saved = fmtTime(fi.ModTime())
				}
			case os.IsNotExist(err):
				c.Note = "no position saved yet"
			default:
				c.Note = err.Error()
			}
		}
		st.Capture = append(st.Capture, c)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return rc
	}
	printStatus(stdout, st)
	return rc
}

func printStatus(w io.Writer, st status) {
	if len(st.Consumers) == 0 {
		fmt.Fprintln(w, "no consumers (pipelines, monitor or sinks) in the configuration")
	}
	for _, c := range st.Consumers {
		fmt.Fprintf(w, "%s %s  group %s (%s, %d members)  lag %d\n", c.Kind, c.Name, c.Group, c.State, c.Members, c.Lag)
		if c.StoreErr != "" {
			fmt.Fprintf(w, "  stored offsets not read: %s\n", c.StoreErr)
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TOPIC\tPOSITION\tEND\tLAG")
		for _, t := range c.Topics {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", t.Topic, t.Position, t.End, t.Lag)
		}
		if len(c.Topics) == 0 {
			fmt.Fprintln(tw, "  (its topics do not exist yet)")
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "dead letters")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STAGE\tRECORDS")
	stages := make([]string, 0, len(st.DLQ))
	for s := range st.DLQ {
		stages = append(stages, s)
	}
	sort.Strings(stages)
	for _, s := range stages {
		fmt.Fprintf(tw, "  %s\t%d\n", s, st.DLQ[s])
	}
	tw.Flush()
	if len(st.Capture) > 0 {
		fmt.Fprintln(w, "\ncapture positions")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SOURCE\tKIND\tSAVED\tPOSITION")
		for _, c := range st.Capture {
			pos := c.Position
			if pos == "" {
				pos = c.Note
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Source, c.Kind, orDash(c.Saved), pos)
		}
		tw.Flush()
	}
}
