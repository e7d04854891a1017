package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/shouwang/shouwang/capture/filedrop"
	"github.com/shouwang/shouwang/capture/mysqlbinlog"
	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/schemas"
)

func init() {
	register("held", "list or release what the mass-delete breakers hold (held list|release)", func(args []string) int {
		return runHeld(args, os.Stdout, os.Stderr)
	})
}

var heldHelp = helpText{
	usage: []string{"shouwang held list    -c FILE [--source NAME]",
		"shouwang held release -c FILE --source NAME --dataset NAME [--reason TEXT] FILE_NAME",
		"shouwang held release -c FILE --source NAME --table DB.TABLE [--reason TEXT]"},
	about: "List or release what the mass-delete breakers hold: department file deliveries that would delete more than " +
		"mass_delete.max_share of a dataset, and the deletes of a weekly national reload that would remove more than " +
		"reload.mass_delete allows. Every release is recorded in <state.dir>/audit.log with who, when and why.",
	examples: []string{"shouwang held list -c /etc/shouwang/shouwang.yaml",
		"shouwang held release -c /etc/shouwang/shouwang.yaml --source yibao --dataset settlement --reason \"confirmed with 医保\" settlement_202611.csv"},
}

var heldListHelp = helpText{
	usage: []string{"shouwang held list -c FILE [--source NAME]"},
	about: "List every held file delivery (with its reason, summary and report) and every table whose reload deletes are " +
		"held, each with the exact command that releases it. Reads the state directory only: no worker needs to run. " +
		"Exit status 0 (also when nothing is held), 1 when a state folder cannot be read.",
	examples: []string{"shouwang held list -c /etc/shouwang/shouwang.yaml --source national"},
}

var heldReleaseHelp = helpText{
	usage: []string{"shouwang held release -c FILE --source NAME --dataset NAME [--reason TEXT] FILE_NAME",
		"shouwang held release -c FILE --source NAME --table DB.TABLE [--reason TEXT]"},
	about: "Release one held delivery or one table's held deletes once the loss has been confirmed as real. A file " +
		"delivery is moved back into the inbox and applied, deletions included, at the capture worker's next scan. Held " +
		"binlog deletes are released by a message on the signal topic <kafka.topic_prefix>.signal that the running capture " +
		"worker of the source acts on (it must be running, with a real Kafka cluster). The action goes to the audit log.",
	examples: []string{"shouwang held release -c /etc/shouwang/shouwang.yaml --source national --table gbdb.person --reason \"county merger 2026\""},
}

// heldReleaseCommand is the release command a held-delivery report prints, up to the
// file name, with the real configuration, source and dataset names.
func heldReleaseCommand(cfgFile, source, dataset string) string {
	c := cfgFile
	if c == "" {
		c = "CONFIG"
	} else if abs, err := filepath.Abs(c); err == nil {
		c = abs
	}
	return fmt.Sprintf("shouwang held release -c %s --source %s --dataset %s", shellQuote(c), source, dataset)
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe characters.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=:@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func runHeld(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) {
		subcommandHelp(stdout, heldHelp, [][2]string{
			{"list", "show what is held, with the command that releases each"},
			{"release", "release one held delivery or one table's held deletes"}})
		return 0
	}
	if len(args) == 0 || (args[0] != "list" && args[0] != "release") {
		usageError(stderr, "held", heldHelp, "")
		return 2
	}
	name, h := "held "+args[0], heldListHelp
	if args[0] == "release" {
		h = heldReleaseHelp
	}
	fs := newFlagSet(name, stderr)
	cfgPath := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration `file` (default $SHOUWANG_CONFIG)")
	source := fs.String("source", "", "configured source `name` (sources[].name)")
	var dataset, table, reason *string
	if args[0] == "release" {
		dataset = fs.String("dataset", "", "file-delivery dataset `name` (release of a held file)")
		table = fs.String("table", "", "binlog reload table `db.table` (release of held deletes)")
		reason = fs.String("reason", "", "why the release is right (e.g. \"confirmed with 医保 on 12-05\"), kept in the audit log")
	}
	if code, ok := parseFlags(fs, h, args[1:], stdout, stderr); !ok {
		return code
	}
	if *cfgPath == "" {
		usageError(stderr, name, h, "shouwang "+name+": -c FILE is required (or set SHOUWANG_CONFIG)")
		return 2
	}
	if args[0] == "list" && fs.NArg() > 0 {
		usageError(stderr, name, h, "shouwang held list takes only -c and --source")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printProblems(stderr, err)
		return 2
	}
	if *source != "" {
		if _, ok := cfg.SourceByName(*source); !ok {
			fmt.Fprintf(stderr, "shouwang held: --source %q is not configured in %s (sources: %s)\n", *source, cfg.File(), strings.Join(sourceNames(cfg), ", "))
			return 2
		}
	}
	if args[0] == "list" {
		return heldList(cfg, *source, stdout, stderr)
	}
	return heldRelease(cfg, *source, *dataset, *table, *reason, fs.Args(), stdout, stderr)
}

func sourceNames(cfg *config.Config) []string {
	var out []string
	for _, s := range cfg.Sources {
		out = append(out, s.Name)
	}
	return out
}

// heldList prints every held delivery and every table with held deletes, each with
// the command that releases it. Exit 0 also when nothing is held; 1 when a state
// folder cannot be read.
func heldList(cfg *config.Config, only string, stdout, stderr io.Writer) int {
	w := &worker{cfg: cfg}
	status, found := 0, 0
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		if only != "" && s.Name != only {
			continue
		}
		switch {
		case s.FileDrop != nil:
			for _, d := range s.FileDrop.Datasets {
				files, err := filedrop.HeldFiles(w.datasetOptions(s.Name, d))
				if err != nil {
					fmt.Fprintf(stderr, "shouwang held list: %v\n", err)
					status = 1
					continue
				}
				for _, f := range files {
					found++
					fmt.Fprintf(stdout, "%s/%s: file %s (%s, held %s)\n", s.Name, d.Name, f.Name, byteSize(f.Size), f.ModTime.Format("2006-01-02 15:04"))
					if f.Reason != "" {
						fmt.Fprintf(stdout, "  reason: %s\n", f.Reason)
					}
					if f.Summary != "" {
						fmt.Fprintf(stdout, "  %s\n", f.Summary)
					}
					if f.Report != "" {
						fmt.Fprintf(stdout, "  report: %s\n", f.Report)
					}
					fmt.Fprintf(stdout, "  release: %s %s\n", heldReleaseCommand(cfg.File(), s.Name, d.Name), shellQuote(f.Name))
				}
			}
		case s.MySQL != nil:
			tables, err := mysqlbinlog.HeldDeletes(filepath.Join(cfg.State.Dir, "mysqlbinlog", s.Name))
			if err != nil {
				fmt.Fprintf(stderr, "shouwang held list: source %s: %v\n", s.Name, err)
				status = 1
				continue
			}
			for _, t := range tables {
				found++
				fmt.Fprintf(stdout, "%s/%s: %d deletes held since %s (reload at %s)\n", s.Name, t.Table, t.Rows, t.Since.Local().Format("2006-01-02 15:04"), t.At)
				if t.ReleaseRequested {
					fmt.Fprintln(stdout, "  release requested: the capture worker emits the deletes once no reload window of the table is open")
					continue
				}
				fmt.Fprintf(stdout, "  release: shouwang held release -c %s --source %s --table %s\n", shellQuote(absOr(cfg.File())), s.Name, t.Table)
			}
		}
	}
	if found == 0 && status == 0 {
		fmt.Fprintln(stdout, "nothing is held")
	}
	return status
}

func absOr(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// heldRelease releases one held delivery (a file operation the worker picks up at
// its next scan) or one table's held binlog deletes (a signal to the running capture
// worker), and records the action in the audit log.
func heldRelease(cfg *config.Config, source, dataset, table, reason string, files []string, stdout, stderr io.Writer) int {
	if source == "" {
		usageError(stderr, "held release", heldReleaseHelp, "shouwang held release: --source is required")
		return 2
	}
	src, _ := cfg.SourceByName(source)
	switch {
	case src.FileDrop != nil:
		if table != "" || dataset == "" || len(files) != 1 {
			fmt.Fprintf(stderr, "shouwang held release: source %s takes files: --dataset NAME and one held file name (see shouwang held list -c %s)\n", source, cfg.File())
			return 2
		}
		var ds *config.Dataset
		for i := range src.FileDrop.Datasets {
			if src.FileDrop.Datasets[i].Name == dataset {
				ds = &src.FileDrop.Datasets[i]
			}
		}
		if ds == nil {
			fmt.Fprintf(stderr, "shouwang held release: --dataset %q is not a dataset of source %s\n", dataset, source)
			return 2
		}
		opts := (&worker{cfg: cfg}).datasetOptions(source, *ds)
		err := filedrop.Release(opts, files[0])
		audit(cfg, stderr, auditEntry{Action: "held release", Source: source, Target: dataset, File: files[0], Reason: reason, Err: err})
		if err != nil {
			fmt.Fprintf(stderr, "shouwang held release: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "released %s: it is back in %s and the capture worker applies it, deletions included, at its next scan\n", files[0], opts.Inbox)
		return 0
	case src.MySQL != nil:
		if dataset != "" || len(files) > 0 || table == "" {
			fmt.Fprintf(stderr, "shouwang held release: source %s holds binlog deletes: give --table DB.TABLE (see shouwang held list -c %s)\n", source, cfg.File())
			return 2
		}
		held, err := mysqlbinlog.HeldDeletes(filepath.Join(cfg.State.Dir, "mysqlbinlog", source))
		if err != nil {
			fmt.Fprintf(stderr, "shouwang held release: source %s: %v\n", source, err)
			return 1
		}
		var tables []string
		for _, t := range held {
			if t.Table == table || strings.HasSuffix(t.Table, "."+table) {
				table = t.Table
				tables = nil
				break
			}
			tables = append(tables, t.Table)
		}
		if tables != nil || len(held) == 0 {
			fmt.Fprintf(stderr, "shouwang held release: source %s holds no deletes of %s (held: %s)\n", source, table, orNone(tables))
			return 2
		}
		if cfg.Kafka.Embedded || len(cfg.Kafka.Brokers) == 0 {
			fmt.Fprintln(stderr, "shouwang held release: the configuration uses the embedded in-memory broker, which lives inside the running worker; the release signal needs a real Kafka cluster (kafka.brokers)")
			return 2
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		k := cfg.Kafka
		err = sendSnapshotSignal(ctx, busOptions(k), k.TopicPrefix, k.ReplicationFactor,
			SnapshotSignal{Type: signalReleaseHeld, Source: source, Table: table, By: operator(), Reason: reason})
		audit(cfg, stderr, auditEntry{Action: "held release", Source: source, Target: table, Reason: reason, Err: err})
		if err != nil {
			fmt.Fprintf(stderr, "shouwang held release: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "release of the held deletes of %s requested on %s: the running capture worker of %s emits them once no reload window of the table is open (shouwang held list shows it pending until then)\n",
			table, schemas.SignalTopic(k.TopicPrefix), source)
		return 0
	}
	fmt.Fprintf(stderr, "shouwang held release: source %s (%s) holds nothing an operator releases: a poll source's held delete scan is retried at every interval and passes once the view is whole again (or after raising delete_detection.max_delete_share)\n", source, src.Kind)
	return 2
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// auditEntry is one operator action, appended as a JSON line to
// <state.dir>/audit.log: who, what and when, and whether it worked.
type auditEntry struct {
	Time   time.Time `json:"time"`
	User   string    `json:"user"`
	Host   string    `json:"host"`
	Action string    `json:"action"`
	Source string    `json:"source,omitempty"`
	Target string    `json:"target,omitempty"`
	File   string    `json:"file,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Result string    `json:"result"`
	Err    error     `json:"-"`
}

// operator names the person running the command: the sudo caller when there is one.
func operator() string {
	if s := os.Getenv("SUDO_USER"); s != "" {
		return s
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// audit appends e to the audit log. A log that cannot be written is reported but does
// not undo the action (which already happened).
func audit(cfg *config.Config, stderr io.Writer, e auditEntry) {
	e.Time, e.User = time.Now().UTC(), operator()
	e.Host, _ = os.Hostname()
	e.Result = "ok"
	if e.Err != nil {
		e.Result = "failed: " + e.Err.Error()
	}
	b, _ := json.Marshal(e)
	path := filepath.Join(cfg.State.Dir, "audit.log")
	err := os.MkdirAll(cfg.State.Dir, 0o755)
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640); err == nil {
			_, err = f.Write(append(b, '\n'))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "shouwang: warning: could not write the audit log %s: %v\n", path, err)
	}
}
