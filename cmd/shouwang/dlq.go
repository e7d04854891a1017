package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/schemas"
)

func init() {
	register("dlq", "list, show and redrive dead-letter records (dlq list|show|redrive)", func(args []string) int {
		return runDLQ(args, os.Stdout, os.Stderr)
	})
}

var dlqHelp = helpText{
	usage: []string{"shouwang dlq list    -c FILE [--stage capture|transform|sink] [--since TIME] [--reason SUBSTR] [--json]",
		"shouwang dlq show    -c FILE --stage STAGE PARTITION/OFFSET",
		"shouwang dlq redrive -c FILE --stage STAGE [--reason SUBSTR] [--since TIME] [--source TOPIC] [--dry-run] [PARTITION/OFFSET...]"},
	about: "Work with the dead-letter topics <kafka.topic_prefix>.dlq.<stage>, where every stage puts what it could not " +
		"process, with the reason. list reads them from the start to the end, show prints one record whole, redrive " +
		"re-injects the original messages so that the stage processes them again (once the cause is fixed). Redrives are " +
		"recorded in <state.dir>/audit.log and marked in <state.dir>/dlq-redriven.jsonl.",
	examples: []string{"shouwang dlq list -c /etc/shouwang/shouwang.yaml --stage sink --since 24h",
		"shouwang dlq redrive -c /etc/shouwang/shouwang.yaml --stage sink --reason person_name_check"},
}

var dlqListHelp = helpText{
	usage: []string{"shouwang dlq list -c FILE [--stage capture|transform|sink] [--since TIME] [--reason SUBSTR] [--json]"},
	about: "List the dead-letter records of every stage (or one) from the start of the topic to its end: where each is in " +
		"the dead-letter topic (PARTITION/OFFSET, the name show and redrive take), when it was dead-lettered, the source " +
		"topic and position, the key and the reason, and whether and where it was redriven. Exit status 0, 1 when Kafka " +
		"cannot be read, 2 on a usage or configuration error.",
	examples: []string{"shouwang dlq list -c /etc/shouwang/shouwang.yaml --stage transform --reason \"no mapping\" --json"},
}

var dlqShowHelp = helpText{
	usage: []string{"shouwang dlq show -c FILE --stage STAGE PARTITION/OFFSET"},
	about: "Print one dead-letter record whole: its fields, whether it was redriven, and the payload (pretty-printed when " +
		"it is JSON). Payloads may be PII-scrubbed (ID numbers and phones masked); redrive re-reads the original instead.",
	examples: []string{"shouwang dlq show -c /etc/shouwang/shouwang.yaml --stage sink 0/17"},
}

var dlqRedriveHelp = helpText{
	usage: []string{"shouwang dlq redrive -c FILE --stage STAGE [--reason SUBSTR] [--since TIME] [--source TOPIC] [--again] [--dry-run] [PARTITION/OFFSET...]"},
	about: "Re-inject dead-lettered messages so that their stage processes them again: the original message is re-read " +
		"from its source topic at the recorded partition and offset and produced again onto the same topic and partition " +
		"with the same key, value and headers. Only when the original is gone from the topic (retention) is the " +
		"dead-letter payload produced instead, which may be PII-scrubbed: the command says so. A record that fails again " +
		"is dead-lettered again by the stage with its new reason, so nothing is lost. Records captured from files, " +
		"binlogs or logical replication have no Kafka original and are refused, and so is a raw change whose key changed " +
		"again after it (its redriven copy would get a newer canonical version than the later change). Records already redriven are skipped " +
		"unless --again is given. Select with --reason, --since, --source or explicit PARTITION/OFFSET arguments (at " +
		"least one). Exit status 0 when every selected record was redriven, 1 when one was refused or failed, 2 on a " +
		"usage error.",
	examples: []string{"shouwang dlq redrive -c /etc/shouwang/shouwang.yaml --stage sink --reason person_name_check --dry-run",
		"shouwang dlq redrive -c /etc/shouwang/shouwang.yaml --stage transform 0/3 1/8"},
}

// dlqEntry is one dead-letter record as listed.
type dlqEntry struct {
	Stage     string            `json:"stage"`
	Topic     string            `json:"dlq_topic"`
	Partition int32             `json:"dlq_partition"`
	Offset    int64             `json:"dlq_offset"`
	Time      time.Time         `json:"time"`
	Record    schemas.DLQRecord `json:"record"`
	// Undecodable is why the value is not a DLQRecord (the raw value is then the payload).
	Undecodable string `json:"undecodable,omitempty"`
	// Redriven is set when the record was redriven; RedriveOf when the record is the
	// dead letter of a redriven message (it failed again).
	Redriven  *redriveMark `json:"redriven,omitempty"`
	RedriveOf *redriveMark `json:"redrive_of,omitempty"`
}

// id is the record's name on the command line: PARTITION/OFFSET in its DLQ topic.
func (e dlqEntry) id() string { return fmt.Sprintf("%d/%d", e.Partition, e.Offset) }

// redriveMark records that a dead-letter record was redriven, one JSON line per record
// in <state.dir>/dlq-redriven.jsonl.
type redriveMark struct {
	Stage     string    `json:"stage"`
	Partition int32     `json:"dlq_partition"`
	Offset    int64     `json:"dlq_offset"`
	TsMs      int64     `json:"ts_ms"` // the dead-letter record's ts_ms, so a recreated topic does not inherit marks
	At        time.Time `json:"at"`
	By        string    `json:"by"`
	From      string    `json:"from"` // "source topic" or "dlq payload"
	To        string    `json:"to"`   // topic/partition@offset of the re-produced message
}

func redriveMarksPath(cfg *config.Config) string {
	return filepath.Join(cfg.State.Dir, "dlq-redriven.jsonl")
}

// readMarks reads the redrive marks; a missing file is no marks.
func readMarks(cfg *config.Config) ([]redriveMark, error) {
	f, err := os.Open(redriveMarksPath(cfg))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []redriveMark
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m redriveMark
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", f.Name(), n, err)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

func appendMark(cfg *config.Config, m redriveMark) error {
	if err := os.MkdirAll(cfg.State.Dir, 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(m)
	f, err := os.OpenFile(redriveMarksPath(cfg), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readDLQ reads the dead-letter topics of stages from their start to their end.
func readDLQ(ctx context.Context, cfg *config.Config, stages []string) ([]dlqEntry, error) {
	_, adm, err := opsAdmin(cfg)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	var topics []string
	stageOf := map[string]string{}
	for _, s := range stages {
		t := schemas.DLQTopic(cfg.Kafka.TopicPrefix, s)
		topics, stageOf[t] = append(topics, t), s
	}
	wm, err := listWatermarks(ctx, adm, topics...)
	if err != nil {
		return nil, err
	}
	start := map[string]map[int32]kgo.Offset{}
	last := map[string]map[int32]int64{} // the last offset to read per partition
	pending := 0
	for _, t := range topics {
		for _, p := range wm.partitions(t) {
			s, e := wm.bounds(t, p)
			if e <= s {
				continue
			}
			if start[t] == nil {
				start[t], last[t] = map[int32]kgo.Offset{}, map[int32]int64{}
			}
			start[t][p], last[t][p] = kgo.NewOffset().At(s), e-1
			pending++
		}
	}
	var out []dlqEntry
	if pending > 0 {
		cl, _, err := opsAdmin(cfg, kgo.ConsumePartitions(start))
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		for pending > 0 {
			fs := cl.PollFetches(rctx)
			if err := rctx.Err(); err != nil {
				return nil, fmt.Errorf("kafka: reading the dead-letter topics to their end: %w", err)
			}
			var ferr error
			fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("kafka: read %s/%d: %w", t, p, err) })
			if ferr != nil {
				return nil, ferr
			}
			fs.EachRecord(func(r *kgo.Record) {
				l, ok := last[r.Topic][r.Partition]
				if !ok || r.Offset > l {
					return
				}
				if r.Offset == l {
					delete(last[r.Topic], r.Partition)
					pending--
				}
				e := dlqEntry{Stage: stageOf[r.Topic], Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp}
				if err := json.Unmarshal(r.Value, &e.Record); err != nil {
					e.Undecodable = err.Error()
					e.Record = schemas.DLQRecord{Stage: e.Stage, Key: string(r.Key), Payload: r.Value}
				}
				if e.Record.TsMs > 0 {
					e.Time = time.UnixMilli(e.Record.TsMs)
				}
				out = append(out, e)
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Stage != b.Stage {
			return a.Stage < b.Stage
		}
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		return a.Offset < b.Offset
	})
	marks, err := readMarks(cfg)
	if err != nil {
		return nil, fmt.Errorf("redrive marks: %w", err)
	}
	type at struct {
		stage string
		p     int32
		o     int64
	}
	byID := map[at]int{}
	byPos := map[string]int{}
	for i, e := range out {
		byID[at{e.Stage, e.Partition, e.Offset}] = i
		if e.Record.Position != "" {
			byPos[e.Stage+" "+e.Record.Position] = i
		}
	}
	for _, m := range marks {
		m := m
		if i, ok := byID[at{m.Stage, m.Partition, m.Offset}]; ok && (m.TsMs == 0 || out[i].Record.TsMs == m.TsMs) {
			out[i].Redriven = &m
		}
		// The re-produced message dead-lettered again by the same stage.
		if i, ok := byPos[m.Stage+" "+m.To]; ok {
			out[i].RedriveOf = &m
		}
	}
	return out, nil
}

// dlqFilter selects dead-letter records.
type dlqFilter struct {
	since  time.Time
	reason string
	source string
	ids    map[string]bool
}

func (f dlqFilter) match(e dlqEntry) bool {
	if !f.since.IsZero() && e.Time.Before(f.since) {
		return false
	}
	if f.reason != "" && !strings.Contains(strings.ToLower(e.Record.Reason), strings.ToLower(f.reason)) {
		return false
	}
	if f.source != "" && e.Record.Source != f.source && !strings.HasPrefix(e.Record.Position, f.source+"/") {
		return false
	}
	if f.ids != nil && !f.ids[e.id()] {
		return false
	}
	return true
}

func runDLQ(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) {
		subcommandHelp(stdout, dlqHelp, [][2]string{
			{"list", "list the dead-letter records, marking those redriven"},
			{"show", "print one dead-letter record whole"},
			{"redrive", "re-inject dead-lettered messages once the cause is fixed"}})
		return 0
	}
	if len(args) == 0 || (args[0] != "list" && args[0] != "show" && args[0] != "redrive") {
		usageError(stderr, "dlq", dlqHelp, "")
		return 2
	}
	sub := args[0]
	name := "dlq " + sub
	h := map[string]helpText{"list": dlqListHelp, "show": dlqShowHelp, "redrive": dlqRedriveHelp}[sub]
	fs := newFlagSet(name, stderr)
	cfgPath := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration `file` (default $SHOUWANG_CONFIG)")
	stage := fs.String("stage", "", "the `stage` whose dead-letter topic to read: capture, transform or sink")
	var since, reason, source *string
	var asJSON, dryRun, again, fromPayload *bool
	if sub != "show" {
		since = fs.String("since", "", "only records dead-lettered at or after `TIME` (RFC 3339, a local date or \"date hh:mm\", or a duration back: 24h, 7d)")
		reason = fs.String("reason", "", "only records whose reason contains `SUBSTR` (case-insensitive)")
	}
	if sub == "list" {
		asJSON = fs.Bool("json", false, "print JSON (an array of records) instead of the table")
	}
	if sub == "redrive" {
		source = fs.String("source", "", "only records consumed from `TOPIC`")
		dryRun = fs.Bool("dry-run", false, "print what would be redriven, and how, without producing anything")
		again = fs.Bool("again", false, "also redrive records already redriven")
		fromPayload = fs.Bool("from-payload", false, "when the original is gone and pii.dlq is mask, re-produce the dead-letter payload anyway, masked identifiers and all")
	}
	if code, ok := parseFlags(fs, h, args[1:], stdout, stderr); !ok {
		return code
	}
	cfg, code := loadOpsConfig(*cfgPath, name, h, stderr)
	if cfg == nil {
		return code
	}
	stages := dlqStages
	if *stage != "" {
		ok := false
		for _, s := range dlqStages {
			ok = ok || s == *stage
		}
		if !ok {
			usageError(stderr, name, h, fmt.Sprintf("shouwang %s: --stage %q is not capture, transform or sink", name, *stage))
			return 2
		}
		stages = []string{*stage}
	} else if sub != "list" {
		usageError(stderr, name, h, "shouwang "+name+": --stage is required")
		return 2
	}
	var f dlqFilter
	if since != nil {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			usageError(stderr, name, h, "shouwang "+name+": --since: "+err.Error())
			return 2
		}
		f.since, f.reason = t, *reason
	}
	if source != nil {
		f.source = *source
	}
	switch {
	case sub == "list" && fs.NArg() > 0:
		usageError(stderr, name, h, "shouwang dlq list takes no arguments (select with --stage, --since and --reason)")
		return 2
	case sub == "show" && fs.NArg() != 1:
		usageError(stderr, name, h, "shouwang dlq show takes one PARTITION/OFFSET (as dlq list prints it)")
		return 2
	case sub != "list" && fs.NArg() > 0:
		f.ids = map[string]bool{}
		for _, a := range fs.Args() {
			p, o, err := parsePartOffset(a)
			if err != nil {
				usageError(stderr, name, h, "shouwang "+name+": "+err.Error())
				return 2
			}
			f.ids[fmt.Sprintf("%d/%d", p, o)] = true
		}
	case sub == "redrive" && f.since.IsZero() && f.reason == "" && f.source == "":
		usageError(stderr, name, h, "shouwang dlq redrive: select the records: --reason, --since, --source or PARTITION/OFFSET arguments (dlq list shows them)")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	entries, err := readDLQ(ctx, cfg, stages)
	if err != nil {
		return opsFail(stderr, name, err)
	}
	var sel []dlqEntry
	for _, e := range entries {
		if f.match(e) {
			sel = append(sel, e)
		}
	}
	switch sub {
	case "list":
		return dlqList(sel, *asJSON, stdout)
	case "show":
		if len(sel) == 0 {
			fmt.Fprintf(stderr, "shouwang dlq show: %s has no record %s (dlq list --stage %s shows them)\n", schemas.DLQTopic(cfg.Kafka.TopicPrefix, *stage), fs.Arg(0), *stage)
			return 1
		}
		return dlqShow(sel[0], stdout)
	}
	if f.ids != nil && len(sel) < len(f.ids) {
		found := map[string]bool{}
		for _, e := range sel {
			found[e.id()] = true
		}
		for _, a := range fs.Args() {
			p, o, _ := parsePartOffset(a)
			if id := fmt.Sprintf("%d/%d", p, o); !found[id] {
				fmt.Fprintf(stderr, "shouwang dlq redrive: %s has no record %s (dlq list --stage %s shows them)\n", schemas.DLQTopic(cfg.Kafka.TopicPrefix, *stage), id, *stage)
			}
		}
		return 1
	}
	return dlqRedrive(ctx, cfg, entries, sel, *dryRun, *again, *fromPayload, stdout, stderr)
}

func dlqList(entries []dlqEntry, asJSON bool, stdout io.Writer) int {
	if asJSON {
		if entries == nil {
			entries = []dlqEntry{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(entries); err != nil {
			return 1
		}
		return 0
	}
	if len(entries) == 0 {
		fmt.Fprintln(stdout, "no dead-letter records")
		return 0
	}
	for _, e := range entries {
		src := e.Record.Position
		if src == "" {
			src = e.Record.Source
		} else if !strings.HasPrefix(src, e.Record.Source) && e.Record.Source != "" {
			src = e.Record.Source + " " + src
		}
		fmt.Fprintf(stdout, "%s %s  %s  %s  key %s\n", e.Stage, e.id(), fmtTime(e.Time), orDash(src), orDash(e.Record.Key))
		fmt.Fprintf(stdout, "  reason: %s\n", orDash(e.Record.Reason))
		if e.Undecodable != "" {
			fmt.Fprintf(stdout, "  not a dead-letter record: %s\n", e.Undecodable)
		}
		if e.RedriveOf != nil {
			fmt.Fprintf(stdout, "  failed again after the redrive of %s %d/%d\n", e.RedriveOf.Stage, e.RedriveOf.Partition, e.RedriveOf.Offset)
		}
		if m := e.Redriven; m != nil {
			fmt.Fprintf(stdout, "  redriven %s by %s from the %s to %s\n", fmtTime(m.At), m.By, m.From, m.To)
		}
	}
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dlqShow(e dlqEntry, stdout io.Writer) int {
	r := e.Record
	fmt.Fprintf(stdout, "dead letter %s %s (%s)\n", e.Topic, e.id(), e.Stage)
	fmt.Fprintf(stdout, "time:     %s\n", fmtTime(e.Time))
	fmt.Fprintf(stdout, "reason:   %s\n", orDash(r.Reason))
	fmt.Fprintf(stdout, "source:   %s\n", orDash(r.Source))
	fmt.Fprintf(stdout, "position: %s\n", orDash(r.Position))
	fmt.Fprintf(stdout, "key:      %s\n", orDash(r.Key))
	if e.Undecodable != "" {
		fmt.Fprintf(stdout, "not a dead-letter record: %s\n", e.Undecodable)
	}
	if e.RedriveOf != nil {
		fmt.Fprintf(stdout, "failed again after the redrive of %s %d/%d\n", e.RedriveOf.Stage, e.RedriveOf.Partition, e.RedriveOf.Offset)
	}
	if m := e.Redriven; m != nil {
		fmt.Fprintf(stdout, "redriven: %s by %s from the %s to %s\n", fmtTime(m.At), m.By, m.From, m.To)
	} else {
		fmt.Fprintln(stdout, "redriven: no")
	}
	fmt.Fprintln(stdout, "payload:")
	var buf bytes.Buffer
	if json.Valid(r.Payload) && json.Indent(&buf, r.Payload, "  ", "  ") == nil {
		fmt.Fprintln(stdout, "  "+buf.String())
	} else {
		fmt.Fprintf(stdout, "  %s\n", r.Payload)
	}
	return 0
}

// redrivable says why e cannot be redriven from Kafka ("" when it can), and where
// its original is.
func redrivable(prefix string, e dlqEntry) (topic string, part int32, off int64, why string) {
	if e.Undecodable != "" {
		return "", 0, 0, "the value is not a dead-letter record"
	}
	t, p, o, ok := parseTopicPosition(e.Record.Position)
	switch {
	case e.Stage == "capture" || !strings.HasPrefix(e.Record.Source, prefix+"."):
		return "", 0, 0, fmt.Sprintf("its source %q (position %q) is not a Kafka topic but the captured source itself: "+
			"fix the source row (an update captures it again), re-deliver the file to the inbox, or re-read the table with "+
			"`shouwang snapshot`", e.Record.Source, e.Record.Position)
	case !ok:
		return "", 0, 0, fmt.Sprintf("its position %q is not an offset of %s (a record the sharing platform refused names its "+
			"batch): fix the record at its origin so that a new version flows, or re-send the entity with `shouwang snapshot`", e.Record.Position, e.Record.Source)
	case t != e.Record.Source:
		return "", 0, 0, fmt.Sprintf("its position %q is not on its source topic %s", e.Record.Position, e.Record.Source)
	}
	return t, p, o, ""
}

// fetchOriginal reads the message at topic/part@off, or found false when it is no
// longer in the topic (retention or compaction).
func fetchOriginal(ctx context.Context, cfg *config.Config, adm *kadm.Client, topic string, part int32, off int64) (*kgo.Record, bool, string, error) {
	wm, err := listWatermarks(ctx, adm, topic)
	if err != nil {
		return nil, false, "", err
	}
	start, end := wm.bounds(topic, part)
	if len(wm.partitions(topic)) == 0 {
		return nil, false, fmt.Sprintf("topic %s no longer exists", topic), nil
	}
	if off < start || off >= end {
		return nil, false, fmt.Sprintf("%s/%d holds offsets %d to %d now (retention)", topic, part, start, end-1), nil
	}
	cl, _, err := opsAdmin(cfg, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().At(off)}}))
	if err != nil {
		return nil, false, "", err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(rctx)
		if err := rctx.Err(); err != nil {
			return nil, false, "", fmt.Errorf("kafka: read %s/%d@%d: %w", topic, part, off, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("kafka: read %s/%d@%d: %w", t, p, off, err) })
		if ferr != nil {
			return nil, false, "", ferr
		}
		for _, r := range fs.Records() {
			switch {
			case r.Offset == off:
				return r, true, "", nil
			case r.Offset > off:
				return nil, false, fmt.Sprintf("%s/%d@%d was compacted away", topic, part, off), nil
			}
		}
	}
}

// laterChange looks for a change of key after off in topic/part that was not itself
// dead-lettered (dead holds the positions of the stage's dead letters): one that the
// stage processed and that a redriven older change must not overwrite.
func laterChange(ctx context.Context, cfg *config.Config, adm *kadm.Client, topic string, part int32, off int64, key []byte, dead map[string]bool) (int64, bool, error) {
	wm, err := listWatermarks(ctx, adm, topic)
	if err != nil {
		return 0, false, err
	}
	_, end := wm.bounds(topic, part)
	if off+1 >= end {
		return 0, false, nil
	}
	cl, _, err := opsAdmin(cfg, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().At(off + 1)}}))
	if err != nil {
		return 0, false, err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		fs := cl.PollFetches(rctx)
		if err := rctx.Err(); err != nil {
			return 0, false, fmt.Errorf("kafka: read %s/%d from %d for later changes of the key: %w", topic, part, off+1, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("kafka: read %s/%d: %w", t, p, err) })
		if ferr != nil {
			return 0, false, ferr
		}
		for _, r := range fs.Records() {
			if r.Offset >= end {
				return 0, false, nil
			}
			if bytes.Equal(r.Key, key) && !dead[fmt.Sprintf("%s/%d@%d", topic, part, r.Offset)] {
				return r.Offset, true, nil
			}
			if r.Offset == end-1 {
				return 0, false, nil
			}
		}
	}
}

// dlqRedrive re-produces the originals of sel onto their source topics.
func dlqRedrive(ctx context.Context, cfg *config.Config, all, sel []dlqEntry, dryRun, again, fromPayload bool, stdout, stderr io.Writer) int {
	if len(sel) == 0 {
		fmt.Fprintln(stdout, "no dead-letter record matches")
		return 0
	}
	prot, err := pii.Open(cfg.PII, "pii", cfg.Dir())
	if err != nil {
		fmt.Fprintf(stderr, "shouwang dlq redrive: %v\n", err)
		return 2
	}
	prod, adm, err := opsAdmin(cfg, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return opsFail(stderr, "dlq redrive", err)
	}
	defer prod.Close()
	dead := map[string]bool{}
	for _, e := range all {
		dead[e.Record.Position] = true
	}
	status, done, skipped := 0, 0, 0
	for _, e := range sel {
		label := e.Stage + " " + e.id()
		if e.Redriven != nil && !again {
			skipped++
			fmt.Fprintf(stdout, "%s: already redriven %s to %s; skipped (--again redrives it once more)\n", label, fmtTime(e.Redriven.At), e.Redriven.To)
			continue
		}
		topic, part, off, why := redrivable(cfg.Kafka.TopicPrefix, e)
		if why != "" {
			status = 1
			fmt.Fprintf(stderr, "shouwang dlq redrive: %s refused: %s\n", label, why)
			continue
		}
		orig, found, gone, err := fetchOriginal(ctx, cfg, adm, topic, part, off)
		if err != nil {
			status = 1
			fmt.Fprintf(stderr, "shouwang dlq redrive: %s: %v\n", label, err)
			continue
		}
		rec := &kgo.Record{Topic: topic, Partition: part}
		from := "source topic"
		if found {
			rec.Key, rec.Value, rec.Headers = orig.Key, orig.Value, orig.Headers
		} else {
			from = "dlq payload"
			key, value, why := payloadForRedrive(prot, e.Record, fromPayload)
			if why != "" {
				status = 1
				fmt.Fprintf(stderr, "shouwang dlq redrive: %s refused: the original is gone (%s) and %s\n", label, gone, why)
				continue
			}
			rec.Key, rec.Value = key, value
		}
		// A raw change gets its canonical version from its offset (pipeline.Version):
		// re-produced, an old change would outrank a newer one of the same key that the
		// pipeline has applied since, and overwrite it downstream.
		if strings.HasPrefix(topic, cfg.Kafka.TopicPrefix+".raw.") {
			later, ok, err := laterChange(ctx, cfg, adm, topic, part, off, rec.Key, dead)
			if err != nil {
				status = 1
				fmt.Fprintf(stderr, "shouwang dlq redrive: %s: %v\n", label, err)
				continue
			}
			if ok {
				status = 1
				fmt.Fprintf(stderr, "shouwang dlq redrive: %s refused: a newer change of its key followed at %s/%d@%d and was transformed; "+
					"canonical versions come from the raw offset, so the redriven old change would overwrite it downstream. Re-read the "+
					"current row with `shouwang snapshot` instead (or fix it at the source)\n", label, topic, part, later)
				continue
			}
		}
		if dryRun {
			if found {
				fmt.Fprintf(stdout, "%s: would re-produce the original %s/%d@%d onto %s/%d\n", label, topic, part, off, topic, part)
			} else {
				fmt.Fprintf(stdout, "%s: the original is gone (%s): would re-produce the dead-letter payload (pii.dlq %s) onto %s/%d\n", label, gone, prot.DLQMethod(), topic, part)
			}
			continue
		}
		res := prod.ProduceSync(ctx, rec)
		err = res.FirstErr()
		to := ""
		if err == nil {
			to = fmt.Sprintf("%s/%d@%d", topic, part, rec.Offset)
		}
		audit(cfg, stderr, auditEntry{Action: "dlq redrive", Source: fmt.Sprintf("%s/%d@%d", topic, part, off), Target: label,
			Reason: "from the " + from + tern(to != "", " to "+to, ""), Err: err})
		if err != nil {
			status = 1
			fmt.Fprintf(stderr, "shouwang dlq redrive: %s: produce to %s/%d: %v\n", label, topic, part, err)
			continue
		}
		if err := appendMark(cfg, redriveMark{Stage: e.Stage, Partition: e.Partition, Offset: e.Offset, TsMs: e.Record.TsMs,
			At: time.Now().UTC(), By: operator(), From: from, To: to}); err != nil {
			fmt.Fprintf(stderr, "shouwang dlq redrive: warning: %s was redriven but the mark could not be written (%s): %v\n", label, redriveMarksPath(cfg), err)
		}
		done++
		if found {
			fmt.Fprintf(stdout, "%s: redriven: the original %s/%d@%d re-produced as %s\n", label, topic, part, off, to)
		} else {
			fmt.Fprintf(stdout, "%s: redriven from the dead-letter payload (pii.dlq %s) as %s: the original is gone (%s)\n", label, prot.DLQMethod(), to, gone)
		}
	}
	if !dryRun {
		fmt.Fprintf(stdout, "%d redriven, %d skipped, %d refused or failed; a record that fails again is dead-lettered again with its new reason (dlq list shows it)\n",
			done, skipped, len(sel)-done-skipped)
	} else {
		fmt.Fprintln(stdout, "dry run: nothing was produced")
	}
	return status
}

// payloadForRedrive is what is re-produced for rec when its original is gone: its
// key and payload with the sm4 tokens of pii.dlq sm4 decrypted (pii.Reveal), as they
// are with raw; with mask the identifiers cannot be restored, so only with
// fromPayload. why says why not.
func payloadForRedrive(prot *pii.Protector, rec schemas.DLQRecord, fromPayload bool) (key, value []byte, why string) {
	switch prot.DLQMethod() {
	case pii.MethodSM4:
		k, err := prot.Reveal(rec.Key)
		if err != nil {
			return nil, nil, "its key cannot be decrypted: " + err.Error()
		}
		v, err := prot.Reveal(string(rec.Payload))
		if err != nil {
			return nil, nil, "its payload cannot be decrypted: " + err.Error()
		}
		return []byte(k), []byte(v), ""
	case pii.MethodMask:
		if !fromPayload {
			return nil, nil, "its dead-letter payload has ID numbers and phones masked (pii.dlq: mask), which would be written as they are: " +
				"re-capture the row at the source instead (an update, or `shouwang snapshot`), or give --from-payload to re-produce it anyway"
		}
	}
	return []byte(rec.Key), rec.Payload, ""
}

func tern(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}
