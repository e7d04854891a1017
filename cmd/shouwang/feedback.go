package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/consistency"
	"github.com/shouwang/shouwang/internal/pii"
)

func init() {
	register("feedback", "export the open department discrepancies as workbooks to send back (feedback export)", func(args []string) int {
		return runFeedback(args, os.Stdout, os.Stderr)
	})
}

var feedbackHelp = helpText{
	usage: []string{"shouwang feedback export -c FILE --out DIR [--sink NAME] [--department CODE,...] [--region CODE] [--status pending,...] [--mask]"},
	about: "行业数据比对反馈: read the open discrepancies (department facts that contradict the registry) from the provincial " +
		"database and write one workbook per department into --out, named 行业数据比对反馈_<department>_<date>.xlsx, with " +
		"Chinese headers: 说明 (how to answer), 汇总 (discrepancies per county and compared field) and one sheet per county " +
		"listing every discrepancy with the subject's name, 户编号 and ID number, both values, and the columns 核实结果 (a " +
		"drop-down list) and 核实说明 for the department's answer. SM4 tokens are decrypted with pii.keys; --mask masks ID " +
		"numbers instead. Every export is recorded in <state.dir>/audit.log. Exit status 0 (also when nothing is open), 2 " +
		"on a usage or configuration error or an unreachable database.",
	examples: []string{"shouwang feedback export -c /etc/shouwang/shouwang.yaml --out 反馈",
		"shouwang feedback export -c /etc/shouwang/shouwang.yaml --out 反馈 --department canlian,minzheng --region 513423"},
}

func runFeedback(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) {
		subcommandHelp(stdout, feedbackHelp, [][2]string{{"export", "write the open discrepancies, one workbook per department"}})
		return 0
	}
	if len(args) == 0 || args[0] != "export" {
		usageError(stderr, "feedback", feedbackHelp, "")
		return 2
	}
	fs := newFlagSet("feedback export", stderr)
	cfgPath := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration `file` (default $SHOUWANG_CONFIG)")
	out := fs.String("out", "", "write the workbooks into this `directory` (created when missing)")
	sinkName := fs.String("sink", "", "the postgres sink whose database holds the discrepancies (sinks[].name; default: the only postgres sink)")
	deps := fs.String("department", "", "export only these department `codes`, comma-separated (e.g. canlian,minzheng; default: every one)")
	scope := fs.String("region", "", "export only this region (a code of 2, 4, 6, 9 or 12 digits; default: everything, subjects of no known region included)")
	statuses := fs.String("status", "pending", "export discrepancies in these `statuses`, comma-separated (pending, confirmed, corrected, rejected)")
	mask := fs.Bool("mask", false, "mask ID numbers (e.g. for a department that verifies by name and 户编号)")
	if code, ok := parseFlags(fs, feedbackHelp, args[1:], stdout, stderr); !ok {
		return code
	}
	if *cfgPath == "" || *out == "" || fs.NArg() > 0 {
		usageError(stderr, "feedback export", feedbackHelp, "shouwang feedback export: -c FILE and --out DIR are required (or set SHOUWANG_CONFIG), and nothing else")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printProblems(stderr, err)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "shouwang feedback export: %v\n", err)
		return 2
	}
	snk, err := feedbackSink(cfg, *sinkName)
	if err != nil {
		return fail(err)
	}
	regions, err := regionTable(cfg)
	if err != nil {
		return fail(err)
	}
	// Without --region every open discrepancy is exported, those whose subject has no
	// known region included (their own sheet 未知区划): the provincial database holds
	// the province only.
	if *scope != "" {
		if err := checkScope(regions, *scope); err != nil {
			return fail(err)
		}
	}
	var departments []string
	for _, d := range splitList(*deps) {
		if _, ok := consistency.DepartmentLabels[d]; !ok {
			return fail(fmt.Errorf("--department %s: not a department code (use %s)", d, strings.Join(departmentCodes(), ", ")))
		}
		departments = append(departments, d)
	}
	prot, err := pii.Open(cfg.PII, "pii", cfg.Dir())
	if err != nil {
		return fail(err)
	}
	identity := prot.Reveal
	if *mask {
		identity = func(s string) (string, error) {
			v, err := prot.Reveal(s)
			return pii.MaskText(v), err
		}
	}
	db, err := openChecked("pgx", snk.DSN, "sink "+snk.Name)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	lists, err := consistency.LoadFeedback(ctx, consistency.FeedbackOptions{DB: db, Regions: regions, Scope: *scope,
		Departments: departments, Statuses: splitList(*statuses), Identity: identity,
		Progress: func(format string, args ...any) { fmt.Fprintf(stderr, "  %s\n", fmt.Sprintf(format, args...)) }})
	if err != nil {
		return fail(err)
	}
	files, err := writeFeedback(lists, *out, time.Now(), stdout)
	audit(cfg, stderr, auditEntry{Action: "feedback export", Source: snk.Name, Target: *out, File: strings.Join(files, ","),
		Reason: fmt.Sprintf("region %s, departments %s, status %s, mask %t", orAll(*scope), orAll(*deps), *statuses, *mask), Err: err})
	if err != nil {
		return fail(err)
	}
	if len(lists) == 0 {
		fmt.Fprintf(stdout, "没有待核实的行业数据比对差异 (no open discrepancies in %s)\n", orAll(*scope))
	}
	return 0
}

// writeFeedback writes one workbook per department list into dir (created when
// missing), prints a line per workbook and returns the files' names.
func writeFeedback(lists []*consistency.DepartmentFeedback, dir string, now time.Time, stdout io.Writer) ([]string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	var files []string
	for _, l := range lists {
		path := filepath.Join(dir, fmt.Sprintf("行业数据比对反馈_%s_%s.xlsx", l.Label(), now.Format("20060102")))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
		if err != nil {
			return files, fmt.Errorf("--out: %w", err)
		}
		err = l.WriteXLSX(f, now)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return files, fmt.Errorf("%s: %w", path, err)
		}
		codes, _ := l.Counties()
		fmt.Fprintf(stdout, "%s %s: %d 条差异, %d 个县 → %s\n", l.Department, l.Label(), len(l.Rows), len(codes), path)
		files = append(files, filepath.Base(path))
	}
	return files, nil
}

// feedbackSink is the postgres sink named, or the only one.
func feedbackSink(cfg *config.Config, name string) (*config.Sink, error) {
	if name != "" {
		snk, ok := cfg.SinkByName(name)
		if !ok || snk.Kind != config.SinkPostgres {
			return nil, fmt.Errorf("--sink %s: not a postgres sink of %s (sinks[].kind postgres)", name, cfg.File())
		}
		return snk, nil
	}
	var found []*config.Sink
	for i := range cfg.Sinks {
		if cfg.Sinks[i].Kind == config.SinkPostgres {
			found = append(found, &cfg.Sinks[i])
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("%s configures no postgres sink (sinks[].kind postgres): the discrepancies live in the provincial database", cfg.File())
	}
	return nil, fmt.Errorf("%s configures %d postgres sinks: choose one with --sink NAME", cfg.File(), len(found))
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func orAll(s string) string {
	if s == "" {
		return "all"
	}
	return s
}

func departmentCodes() []string {
	var out []string
	for c := range consistency.DepartmentLabels {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}
