package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	bolt "go.etcd.io/bbolt"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/sinks/postgres"
	"github.com/shouwang/shouwang/sinks/sharing"
	"github.com/shouwang/shouwang/transforms/monitor"
)

func init() {
	register("offsets", "show or reset the consumers' positions (offsets show|reset)", func(args []string) int {
		return runOffsets(args, os.Stdout, os.Stderr)
	})
}

var offsetsHelp = helpText{
	usage: []string{"shouwang offsets show  -c FILE [--group G] [--json]",
		"shouwang offsets reset -c FILE --group G --to-time RFC3339|--to-earliest [--yes]"},
	about: "Show or reset where the configuration's consumers are: the transform pipelines, the monitor and the sinks, each " +
		"a consumer group. A postgres sink's authoritative position is fpjc.sink_offsets in its database and a sharing_db " +
		"sink's fpjc_push_offsets (both written in the same transaction as the rows); the monitor and the sharing_http sink " +
		"keep theirs in local state files. Resets are recorded in <state.dir>/audit.log.",
	examples: []string{"shouwang offsets show -c /etc/shouwang/shouwang.yaml",
		"shouwang offsets reset -c /etc/shouwang/shouwang.yaml --group shouwang-sink-provincial --to-time 2026-12-07T08:00:00+08:00"},
}

var offsetsShowHelp = helpText{
	usage: []string{"shouwang offsets show -c FILE [--group G] [--json]"},
	about: "For every consumer of the configuration (or one group): per topic partition the committed group offset, the " +
		"offset stored with the data where the consumer keeps one (fpjc.sink_offsets, fpjc_push_offsets, the monitor's or " +
		"sharing_http sink's state file), the end offset and the lag (end minus the authoritative position). Exit status " +
		"0, 1 when Kafka or a database cannot be read, 2 on a usage or configuration error.",
	examples: []string{"shouwang offsets show -c /etc/shouwang/shouwang.yaml --group shouwang-transform-national"},
}

var offsetsResetHelp = helpText{
	usage: []string{"shouwang offsets reset -c FILE --group G --to-time RFC3339|--to-earliest [--yes]"},
	about: "Move a stopped consumer group back (or forward) to the first offset at or after a time, or to the earliest " +
		"offset, so that it processes those messages again (consumers drop stale versions, so a replay changes nothing that " +
		"is already current). For a postgres sink fpjc.sink_offsets, and for a sharing_db sink fpjc_push_offsets, are " +
		"rewritten in the same transaction as the group commit: the stored offsets are the ones the sink resumes from. " +
		"Refused while the group has live members (stop its workers first), and for the monitor and sharing_http sinks, " +
		"whose positions live in local state files. Without --yes it prints what would change and changes nothing.",
	examples: []string{"shouwang offsets reset -c /etc/shouwang/shouwang.yaml --group shouwang-sink-provincial --to-time 2026-12-07T08:00:00+08:00 --yes"},
}

// partOffsets is one input partition of a consumer.
type partOffsets struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Start     int64  `json:"start"`
	End       int64  `json:"end"`
	Committed *int64 `json:"committed,omitempty"` // the group's committed offset
	Stored    *int64 `json:"stored,omitempty"`    // the next offset stored with the data
	Lag       int64  `json:"lag"`
}

// consumerOffsets is where one consumer is.
type consumerOffsets struct {
	consumer
	State   string `json:"group_state"`
	Members int    `json:"members"`
	// Position says where the authoritative position lives; StoreErr why it could
	// not be read.
	Position   string        `json:"position"`
	StoreErr   string        `json:"store_error,omitempty"`
	Partitions []partOffsets `json:"partitions"`
	Lag        int64         `json:"lag"`
}

// position describes where c's authoritative position lives.
func (c consumer) position() string {
	switch c.Store {
	case storePostgres:
		return "fpjc.sink_offsets in the provincial database (authoritative; the group offsets are for monitoring)"
	case storeExchange:
		return sharing.ExchangeOffsets + " in the sharing platform's database (authoritative; the group offsets are for monitoring)"
	case storeMonitor:
		return "the monitor's state file " + c.StatePath + " (authoritative, with the rule state)"
	case storeSharing:
		return "the sink's state file " + c.StatePath + " (authoritative, with the batch being delivered)"
	}
	return "the committed group offsets"
}

// storedOffsets reads the offsets c stores with its data ("topic/partition" → next
// offset); nil without error when c stores none.
func storedOffsets(ctx context.Context, c consumer) (map[string]int64, error) {
	out := map[string]int64{}
	switch c.Store {
	case storePostgres:
		conn, err := pgx.Connect(ctx, c.DSN)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", config.MaskDSN(c.DSN), err)
		}
		defer conn.Close(ctx)
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", postgres.Schema+".sink_offsets").Scan(&exists); err != nil || !exists {
			return out, err // the sink has not run yet: nothing stored
		}
		rows, err := conn.Query(ctx, "SELECT topic, partition, next_offset FROM "+postgres.Schema+".sink_offsets WHERE sink = $1", c.Name)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		return scanStoredOffsets(rows, out)
	case storeExchange:
		db, q, err := exchangeDB(c)
		if err != nil {
			return nil, err
		}
		defer db.Close()
		rows, err := db.QueryContext(ctx, "SELECT topic, part, next_offset FROM "+sharing.ExchangeOffsets+" WHERE sink = "+q(1), c.Name)
		if err != nil {
			if strings.Contains(err.Error(), "exist") {
				return out, nil // the sink has not run yet
			}
			return nil, err
		}
		defer rows.Close()
		return scanStoredOffsets(rows, out)
	case storeMonitor:
		if _, err := os.Stat(c.StatePath); errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		sum, err := monitor.ReadState(c.StatePath, 300*time.Millisecond)
		if err != nil {
			return nil, fmt.Errorf("%w (a running monitor holds the file: its group offsets follow it)", err)
		}
		return sum.Offsets, nil
	case storeSharing:
		if _, err := os.Stat(c.StatePath); errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		db, err := bolt.Open(c.StatePath, 0o400, &bolt.Options{ReadOnly: true, Timeout: 300 * time.Millisecond})
		if err != nil {
			return nil, fmt.Errorf("open %s: %w (a running sink holds the file: its group offsets follow it)", c.StatePath, err)
		}
		defer db.Close()
		err = db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("offsets"))
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				n, err := strconv.ParseInt(string(v), 10, 64)
				out[string(k)] = n
				return err
			})
		})
		return out, err
	}
	return nil, nil
}

// offsetRows is what pgx.Rows and *sql.Rows share.
type offsetRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanStoredOffsets reads (topic, partition, next_offset) rows into out by
// "topic/partition".
func scanStoredOffsets(rows offsetRows, out map[string]int64) (map[string]int64, error) {
	for rows.Next() {
		var t string
		var p int32
		var n int64
		if err := rows.Scan(&t, &p, &n); err != nil {
			return nil, err
		}
		out[fmt.Sprintf("%s/%d", t, p)] = n
	}
	return out, rows.Err()
}

// exchangeDB opens a sharing_db sink's database, with its placeholder style.
func exchangeDB(c consumer) (*sql.DB, func(int) string, error) {
	driver, q := "pgx", func(i int) string { return "$" + strconv.Itoa(i) }
	if c.Driver == "mysql" {
		driver, q = "mysql", func(int) string { return "?" }
	}
	db, err := sql.Open(driver, c.DSN)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", config.MaskDSN(c.DSN), err)
	}
	return db, q, nil
}

// collectOffsets reads the positions of cs.
func collectOffsets(ctx context.Context, adm *kadm.Client, cs []consumer) ([]consumerOffsets, error) {
	var topics, groups []string
	seen := map[string]bool{}
	for _, c := range cs {
		groups = append(groups, c.Group)
		for _, t := range c.Topics {
			if !seen[t] {
				seen[t] = true
				topics = append(topics, t)
			}
		}
	}
	var out []consumerOffsets
	if len(cs) == 0 {
		return out, nil
	}
	wm, err := listWatermarks(ctx, adm, topics...)
	if err != nil {
		return nil, err
	}
	described, err := adm.DescribeGroups(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("kafka: describe groups: %w", err)
	}
	for _, c := range cs {
		co := consumerOffsets{consumer: c, Position: c.position(), State: "-"}
		if d, ok := described[c.Group]; ok && d.Err == nil {
			co.State, co.Members = d.State, len(d.Members)
		}
		committed, err := adm.FetchOffsets(ctx, c.Group)
		if errors.Is(err, kerr.GroupIDNotFound) {
			committed, err = nil, nil // the group never committed: its workers have not run
		}
		if err != nil {
			return nil, fmt.Errorf("kafka: fetch the offsets of group %s: %w", c.Group, err)
		}
		stored, err := storedOffsets(ctx, c)
		if err != nil {
			co.StoreErr = err.Error()
		}
		for _, t := range c.Topics {
			for _, p := range wm.partitions(t) {
				po := partOffsets{Topic: t, Partition: p}
				po.Start, po.End = wm.bounds(t, p)
				if o, ok := committed.Lookup(t, p); ok && o.Err == nil && o.At >= 0 {
					at := o.At
					po.Committed = &at
				}
				if n, ok := stored[fmt.Sprintf("%s/%d", t, p)]; ok {
					po.Stored = &n
				}
				pos := po.Start // nothing consumed: the whole partition is ahead
				switch {
				case c.Store != storeGroup && po.Stored != nil:
					pos = *po.Stored
				case c.Store != storeGroup && stored != nil:
					// The stored offsets were read and hold none for the partition: the
					// consumer starts it from the beginning whatever the group says.
				case po.Committed != nil:
					pos = *po.Committed
				}
				po.Lag = max(0, po.End-max(pos, po.Start))
				co.Lag += po.Lag
				co.Partitions = append(co.Partitions, po)
			}
		}
		out = append(out, co)
	}
	return out, nil
}

func optOffset(p *int64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatInt(*p, 10)
}

func runOffsets(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) {
		subcommandHelp(stdout, offsetsHelp, [][2]string{
			{"show", "committed, stored and end offsets and the lag of every consumer"},
			{"reset", "move a stopped consumer to a time or to the earliest offset"}})
		return 0
	}
	if len(args) == 0 || (args[0] != "show" && args[0] != "reset") {
		usageError(stderr, "offsets", offsetsHelp, "")
		return 2
	}
	sub := args[0]
	name, h := "offsets "+sub, offsetsShowHelp
	if sub == "reset" {
		h = offsetsResetHelp
	}
	fs := newFlagSet(name, stderr)
	cfgPath := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration `file` (default $SHOUWANG_CONFIG)")
	group := fs.String("group", "", "the consumer `group` (offsets show lists them all)")
	var asJSON, earliest, yes *bool
	var toTime *string
	if sub == "show" {
		asJSON = fs.Bool("json", false, "print JSON instead of the tables")
	} else {
		toTime = fs.String("to-time", "", "the first offset at or after `RFC3339` time (e.g. 2026-12-07T08:00:00+08:00)")
		earliest = fs.Bool("to-earliest", false, "the earliest offset still in each partition")
		yes = fs.Bool("yes", false, "apply the change (without it, only print what would change)")
	}
	if code, ok := parseFlags(fs, h, args[1:], stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		usageError(stderr, name, h, "shouwang "+name+" takes no arguments")
		return 2
	}
	cfg, code := loadOpsConfig(*cfgPath, name, h, stderr)
	if cfg == nil {
		return code
	}
	cs, err := consumers(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "shouwang %s: %v\n", name, err)
		return 2
	}
	if *group != "" {
		var sel []consumer
		var names []string
		for _, c := range cs {
			names = append(names, c.Group)
			if c.Group == *group {
				sel = append(sel, c)
			}
		}
		if len(sel) == 0 {
			fmt.Fprintf(stderr, "shouwang %s: --group %q is not a consumer group of %s (groups: %s)\n", name, *group, cfg.File(), orNone(names))
			return 2
		}
		cs = sel
	} else if sub == "reset" {
		usageError(stderr, name, h, "shouwang offsets reset: --group is required (offsets show lists the groups)")
		return 2
	}
	var at time.Time
	if sub == "reset" {
		switch {
		case *earliest == (*toTime != ""):
			usageError(stderr, name, h, "shouwang offsets reset: give one of --to-time and --to-earliest")
			return 2
		case *toTime != "":
			if at, err = time.Parse(time.RFC3339, *toTime); err != nil {
				usageError(stderr, name, h, fmt.Sprintf("shouwang offsets reset: --to-time %q is not RFC 3339 (2026-12-07T08:00:00+08:00)", *toTime))
				return 2
			}
		}
	}
	_, adm, err := opsAdmin(cfg)
	if err != nil {
		return opsFail(stderr, name, err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if sub == "reset" {
		return offsetsReset(ctx, cfg, adm, cs[0], at, *yes, stdout, stderr)
	}
	cos, err := collectOffsets(ctx, adm, cs)
	if err != nil {
		return opsFail(stderr, name, err)
	}
	if *asJSON {
		if cos == nil {
			cos = []consumerOffsets{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(cos)
	} else {
		printOffsets(stdout, cos)
	}
	for _, co := range cos {
		if co.StoreErr != "" && co.Store != storeMonitor && co.Store != storeSharing {
			fmt.Fprintf(stderr, "shouwang offsets show: %s %s: stored offsets: %s\n", co.Kind, co.Name, co.StoreErr)
			return 1
		}
	}
	return 0
}

func printOffsets(w io.Writer, cos []consumerOffsets) {
	if len(cos) == 0 {
		fmt.Fprintln(w, "the configuration has no consumers (pipelines, monitor or sinks)")
		return
	}
	for i, co := range cos {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s %s  group %s (%s, %d members)  lag %d\n", co.Kind, co.Name, co.Group, co.State, co.Members, co.Lag)
		fmt.Fprintf(w, "  position: %s\n", co.Position)
		if co.StoreErr != "" {
			fmt.Fprintf(w, "  stored offsets not read: %s\n", co.StoreErr)
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		if co.Store == storeGroup {
			fmt.Fprintln(tw, "  TOPIC\tPART\tCOMMITTED\tEND\tLAG")
		} else {
			fmt.Fprintln(tw, "  TOPIC\tPART\tCOMMITTED\tSTORED\tEND\tLAG")
		}
		for _, p := range co.Partitions {
			if co.Store == storeGroup {
				fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%d\n", p.Topic, p.Partition, optOffset(p.Committed), p.End, p.Lag)
			} else {
				fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%d\t%d\n", p.Topic, p.Partition, optOffset(p.Committed), optOffset(p.Stored), p.End, p.Lag)
			}
		}
		if len(co.Partitions) == 0 {
			fmt.Fprintln(tw, "  (its topics do not exist yet)")
		}
		tw.Flush()
	}
}

// offsetsReset moves c to the first offsets at or after at (zero: the earliest).
func offsetsReset(ctx context.Context, cfg *config.Config, adm *kadm.Client, c consumer, at time.Time, yes bool, stdout, stderr io.Writer) int {
	switch c.Store {
	case storeMonitor:
		fmt.Fprintf(stderr, "shouwang offsets reset: refused: the monitor keeps its input position in its state file %s, in the same transaction as its rule state (issues, warnings, households waiting), and resumes from there whatever the group says; a reset of the group alone would change nothing and one of the file would contradict that state. To evaluate again from the start of the canonical topics: stop the transform role, move %s away and start it again (it rebuilds its state; issue and warning ids are deterministic, so replayed events carry the ids they had)\n", c.StatePath, c.StatePath)
		return 1
	case storeSharing:
		fmt.Fprintf(stderr, "shouwang offsets reset: refused: the sharing_http sink %s keeps its offsets in its state file %s together with the batch being delivered and its idempotency key, and resumes from there whatever the group says. To push again from the start: stop the sink, move %s away and start it (it starts from the beginning of its topics; the platform's receipts are kept in the moved file)\n", c.Name, c.StatePath, c.StatePath)
		return 1
	}
	d, err := adm.DescribeGroups(ctx, c.Group)
	if err != nil {
		return opsFail(stderr, "offsets reset", fmt.Errorf("kafka: describe group %s: %w", c.Group, err))
	}
	if g, ok := d[c.Group]; ok && g.Err == nil && len(g.Members) > 0 {
		var hosts []string
		for _, m := range g.Members {
			hosts = append(hosts, m.ClientHost)
		}
		fmt.Fprintf(stderr, "shouwang offsets reset: refused: group %s has %d live member(s) (%s, state %s): stop the workers of %s %s (the shouwang run processes with its role) first, then run this again\n",
			c.Group, len(g.Members), strings.Join(hosts, ", "), g.State, c.Kind, c.Name)
		return 1
	}
	var target kadm.ListedOffsets
	what := "the earliest offsets"
	if at.IsZero() {
		target, err = adm.ListStartOffsets(ctx, c.Topics...)
	} else {
		what = "the first offsets at or after " + at.Format(time.RFC3339)
		target, err = adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), c.Topics...)
	}
	if err != nil {
		return opsFail(stderr, "offsets reset", fmt.Errorf("kafka: list offsets: %w", err))
	}
	cur, err := collectOffsets(ctx, adm, []consumer{c})
	if err != nil {
		return opsFail(stderr, "offsets reset", err)
	}
	if cur[0].StoreErr != "" {
		return opsFail(stderr, "offsets reset", fmt.Errorf("read the stored offsets: %s", cur[0].StoreErr))
	}
	offs := kadm.Offsets{}
	fmt.Fprintf(stdout, "%s %s  group %s: to %s\n", c.Kind, c.Name, c.Group, what)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	if c.Store == storeGroup {
		fmt.Fprintln(tw, "  TOPIC\tPART\tCOMMITTED\tNEW")
	} else {
		fmt.Fprintln(tw, "  TOPIC\tPART\tCOMMITTED\tSTORED\tNEW")
	}
	for _, p := range cur[0].Partitions {
		o, ok := target.Lookup(p.Topic, p.Partition)
		if !ok || o.Err != nil || o.Offset < 0 {
			tw.Flush()
			return opsFail(stderr, "offsets reset", fmt.Errorf("no offset found for %s/%d: %v", p.Topic, p.Partition, o.Err))
		}
		offs.Add(kadm.Offset{Topic: p.Topic, Partition: p.Partition, At: o.Offset, LeaderEpoch: -1})
		if c.Store == storeGroup {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\n", p.Topic, p.Partition, optOffset(p.Committed), o.Offset)
		} else {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%d\n", p.Topic, p.Partition, optOffset(p.Committed), optOffset(p.Stored), o.Offset)
		}
	}
	tw.Flush()
	if len(offs) == 0 {
		fmt.Fprintln(stdout, "its topics do not exist yet: nothing to reset")
		return 0
	}
	if !yes {
		fmt.Fprintln(stdout, "dry run: nothing changed; run again with --yes to apply (the workers must stay stopped until then)")
		return 0
	}
	reason := "to-earliest"
	if !at.IsZero() {
		reason = "to-time " + at.Format(time.RFC3339)
	}
	err = applyReset(ctx, adm, c, offs)
	audit(cfg, stderr, auditEntry{Action: "offsets reset", Source: c.Kind + " " + c.Name, Target: c.Group, Reason: reason, Err: err})
	if err != nil {
		return opsFail(stderr, "offsets reset", err)
	}
	where := "the group offsets"
	switch c.Store {
	case storePostgres:
		where = "the group offsets and fpjc.sink_offsets"
	case storeExchange:
		where = "the group offsets and " + sharing.ExchangeOffsets
	}
	fmt.Fprintf(stdout, "reset %s of %s: start its workers again to process from there (versions already applied are skipped as stale)\n", where, c.Group)
	return 0
}

// applyReset commits offs for c's group and, for a sink storing its offsets with the
// data, rewrites them in one transaction that commits only after the group commit
// succeeded (a failed group commit leaves both unchanged; the stored offsets are the
// ones the sink resumes from).
func applyReset(ctx context.Context, adm *kadm.Client, c consumer, offs kadm.Offsets) error {
	commitGroup := func() error {
		resp, err := adm.CommitOffsets(ctx, c.Group, offs)
		if err != nil {
			return fmt.Errorf("kafka: commit the offsets of group %s: %w", c.Group, err)
		}
		if err := resp.Error(); err != nil {
			return fmt.Errorf("kafka: commit the offsets of group %s: %w", c.Group, err)
		}
		return nil
	}
	type row struct {
		topic string
		part  int32
		next  int64
	}
	var rows []row
	offs.Each(func(o kadm.Offset) { rows = append(rows, row{o.Topic, o.Partition, o.At}) })
	sort.Slice(rows, func(i, j int) bool {
		return rows[i].topic < rows[j].topic || rows[i].topic == rows[j].topic && rows[i].part < rows[j].part
	})
	switch c.Store {
	case storePostgres:
		conn, err := pgx.Connect(ctx, c.DSN)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", config.MaskDSN(c.DSN), err)
		}
		defer conn.Close(ctx)
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		for _, r := range rows {
			if _, err := tx.Exec(ctx, `INSERT INTO `+postgres.Schema+`.sink_offsets AS o (sink, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
ON CONFLICT (sink, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, applied_at = now()`, c.Name, r.topic, r.part, r.next); err != nil {
				return fmt.Errorf("rewrite %s.sink_offsets: %w", postgres.Schema, err)
			}
		}
		if err := commitGroup(); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("the group offsets were reset but %s.sink_offsets could not be committed, and they are what the sink resumes from: run the reset again: %w", postgres.Schema, err)
		}
		return nil
	case storeExchange:
		db, q, err := exchangeDB(c)
		if err != nil {
			return err
		}
		defer db.Close()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for _, r := range rows {
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+sharing.ExchangeOffsets+" WHERE sink = "+q(1)+" AND topic = "+q(2)+" AND part = "+q(3), c.Name, r.topic, r.part); err != nil {
				return fmt.Errorf("rewrite %s: %w", sharing.ExchangeOffsets, err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+sharing.ExchangeOffsets+" (sink, topic, part, next_offset) VALUES ("+q(1)+", "+q(2)+", "+q(3)+", "+q(4)+")", c.Name, r.topic, r.part, r.next); err != nil {
				return fmt.Errorf("rewrite %s: %w", sharing.ExchangeOffsets, err)
			}
		}
		if err := commitGroup(); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("the group offsets were reset but %s could not be committed, and they are what the sink resumes from: run the reset again: %w", sharing.ExchangeOffsets, err)
		}
		return nil
	}
	return commitGroup()
}
