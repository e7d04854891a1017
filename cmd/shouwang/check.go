package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/consistency"
	"github.com/shouwang/shouwang/internal/dict"
	"github.com/shouwang/shouwang/internal/region"
	"github.com/shouwang/shouwang/sinks/sharing"
)

func init() {
	register("check", "compare regional totals between a source and a sink (check totals)", func(args []string) int {
		return runCheck(args, os.Stdout, os.Stderr)
	})
}

var checkHelp = helpText{
	usage: []string{"shouwang check totals -c FILE [--checker NAME] [--level LEVEL] [--region CODE] [--settle DURATION] [--json FILE] [--xlsx FILE]"},
	about: "地区总数核查: count households, persons, monitored households by category, households with their risk " +
		"eliminated and relocated households by region in the checker's source (the national front-end database) and sink " +
		"(the provincial database or the sharing platform's exchange table), drill every differing region down to the exact " +
		"differing keys with bucketed checksums, and check those keys again after --settle so that changes still in flight " +
		"are not reported. Exit status 0: every region matches; 1: a mismatch (the report lists the keys); 2: a usage or " +
		"configuration error, an unknown region code or an unreachable database.",
	examples: []string{"shouwang check totals -c /etc/shouwang/shouwang.yaml",
		"shouwang check totals -c /etc/shouwang/shouwang.yaml --checker national_vs_provincial --region 513423 --level township --xlsx 核查.xlsx"},
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) {
		subcommandHelp(stdout, checkHelp, [][2]string{{"totals", "compare regional totals, drill down to the differing keys"}})
		return 0
	}
	if len(args) == 0 || args[0] != "totals" {
		usageError(stderr, "check", checkHelp, "")
		return 2
	}
	fs := newFlagSet("check totals", stderr)
	cfgPath := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration `file` (default $SHOUWANG_CONFIG)")
	only := fs.String("checker", "", "run only this checker (checkers[].name; default: every one)")
	level := fs.String("level", "", "group by province, city, county, township or village (default: the checker's level)")
	scope := fs.String("region", "", "check only this region (a code of 2, 4, 6, 9 or 12 digits; default: regions.province)")
	settle := fs.Duration("settle", 30*time.Second, "how long differing keys are given to arrive before they are checked again (0: at once)")
	jsonOut := fs.String("json", "", "write the report as JSON to this `file` (- for stdout)")
	xlsxOut := fs.String("xlsx", "", "write the report as a workbook with Chinese headers to this `file`")
	if code, ok := parseFlags(fs, checkHelp, args[1:], stdout, stderr); !ok {
		return code
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		usageError(stderr, "check totals", checkHelp, "shouwang check totals: -c FILE is required (or set SHOUWANG_CONFIG), and nothing else")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printProblems(stderr, err)
		return 2
	}
	var checkers []config.Checker
	for _, c := range cfg.Checkers {
		if *only == "" || c.Name == *only {
			checkers = append(checkers, c)
		}
	}
	if len(checkers) == 0 {
		if *only != "" {
			fmt.Fprintf(stderr, "shouwang check totals: --checker %q is not configured in %s\n", *only, cfg.File())
		} else {
			fmt.Fprintf(stderr, "shouwang check totals: %s configures no checkers (checkers[])\n", cfg.File())
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := 0
	var reports []*consistency.Report
	for _, ch := range checkers {
		if *level != "" {
			ch.Level = *level
		}
		rc, err := newCheckRun(cfg, ch, *scope)
		if err != nil {
			fmt.Fprintf(stderr, "shouwang check totals: %v\n", err)
			return 2
		}
		rc.opts.Settle = *settle
		if *settle == 0 {
			rc.opts.Settle = -1
		}
		rc.opts.Progress = func(format string, args ...any) {
			fmt.Fprintf(stderr, "  %s: %s\n", ch.Name, fmt.Sprintf(format, args...))
		}
		rep, err := rc.run(ctx)
		rc.close()
		if err != nil {
			fmt.Fprintf(stderr, "shouwang check totals: %s: %v\n", ch.Name, err)
			return 2
		}
		reports = append(reports, rep)
		printReport(stdout, rep)
		if !rep.Match {
			code = 1
		}
	}
	if err := writeReports(reports, *jsonOut, *xlsxOut, stdout); err != nil {
		fmt.Fprintf(stderr, "shouwang check totals: %v\n", err)
		return 2
	}
	return code
}

// checkRun is one checker's comparison, connected.
type checkRun struct {
	opts consistency.Options
	dbs  []*sql.DB
}

func (r *checkRun) close() {
	for _, db := range r.dbs {
		db.Close()
	}
}

func (r *checkRun) run(ctx context.Context) (*consistency.Report, error) {
	return consistency.Run(ctx, r.opts)
}

// newCheckRun connects a checker's source and sink (both must answer) and prepares
// its options; scope overrides regions.province.
func newCheckRun(cfg *config.Config, ch config.Checker, scope string) (*checkRun, error) {
	regions, err := regionTable(cfg)
	if err != nil {
		return nil, err
	}
	lvl, ok := levels[ch.Level]
	if !ok {
		return nil, fmt.Errorf("checker %s: level %q: use province, city, county, township or village", ch.Name, ch.Level)
	}
	if scope == "" {
		scope = cfg.Regions.Province
	} else if err := checkScope(regions, scope); err != nil {
		return nil, err
	}
	ds, err := dict.Default()
	if err != nil {
		return nil, err
	}
	cats, err := ds.Get("category")
	if err != nil {
		return nil, err
	}
	rc := &checkRun{opts: consistency.Options{Checker: ch.Name, Level: lvl, Scope: scope, Tolerance: ch.Tolerance, Regions: regions,
		Indicators: consistency.Indicators(cats)}}
	src, ok := cfg.SourceByName(ch.Source)
	if !ok || src.MySQL == nil {
		return nil, fmt.Errorf("checker %s: source %q is not a national front-end database (kind mysqlbinlog)", ch.Name, ch.Source)
	}
	db, err := openChecked("mysql", src.MySQL.DSN, "source "+src.Name)
	if err != nil {
		return nil, err
	}
	rc.dbs = append(rc.dbs, db)
	rc.opts.Source = &consistency.Store{Name: "国办前置库 " + src.Name, DB: db, Dialect: consistency.MySQL,
		Sets: consistency.NationalSets(nationalDB(src.MySQL), cats)}
	snk, ok := cfg.SinkByName(ch.Sink)
	if !ok {
		rc.close()
		return nil, fmt.Errorf("checker %s: sink %q is not configured", ch.Name, ch.Sink)
	}
	switch snk.Kind {
	case config.SinkPostgres:
		db, err := openChecked("pgx", snk.DSN, "sink "+snk.Name)
		if err != nil {
			rc.close()
			return nil, err
		}
		rc.dbs = append(rc.dbs, db)
		rc.opts.Sink = &consistency.Store{Name: "省级库 " + snk.Name, DB: db, Dialect: consistency.Postgres, Sets: consistency.ProvincialSets(cats)}
	case config.SinkSharingDB:
		driver, dialect := "pgx", consistency.Postgres
		if snk.Driver == "mysql" {
			driver, dialect = "mysql", consistency.MySQL
		}
		db, err := openChecked(driver, snk.DSN, "sink "+snk.Name)
		if err != nil {
			rc.close()
			return nil, err
		}
		rc.dbs = append(rc.dbs, db)
		rc.opts.Sink = &consistency.Store{Name: "共享平台交换表 " + snk.Name, DB: db, Dialect: dialect, Sets: consistency.SharingSets(dialect, sharing.ExchangeTable, cats)}
	default:
		rc.close()
		return nil, fmt.Errorf("checker %s: sink %s is of kind %s, which has no table to count: compare a postgres or sharing_db sink", ch.Name, snk.Name, snk.Kind)
	}
	return rc, nil
}

var levels = map[string]region.Level{"province": region.Province, "city": region.City, "county": region.County, "township": region.Township, "village": region.Village}

func validScope(s string) bool {
	switch len(s) {
	case 2, 4, 6, 9, 12:
		return strings.Trim(s, "0123456789") == ""
	}
	return false
}

// checkScope says what is wrong with a --region value: not a region code, or no such
// region in the table.
func checkScope(regions *region.Table, scope string) error {
	if !validScope(scope) {
		return fmt.Errorf("--region %s: not a region code (give 2, 4, 6, 9 or 12 digits, e.g. 513423)", scope)
	}
	if _, ok := regions.Get((scope + "000000000000")[:12]); !ok {
		return fmt.Errorf("--region %s: no such region in %s (give a code of 2, 4, 6, 9 or 12 digits, e.g. 513423)", scope, regions.Name())
	}
	return nil
}

// openChecked opens a database and pings it (for at most 10s), so that an
// unreachable one is one line.
func openChecked(driver, dsn, what string) (*sql.DB, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: bad dsn: %v", what, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.New("no answer within 10s")
		}
		// one line: pgx lists each address tried on a line of its own
		return nil, fmt.Errorf("%s: cannot reach the database: %s", what, strings.Join(strings.Fields(err.Error()), " "))
	}
	return db, nil
}

// nationalDB is the database of the national source's tables (db.table), or else
// of its dsn.
func nationalDB(m *config.MySQLSource) string {
	for _, t := range m.Tables {
		if i := strings.IndexByte(t, '.'); i > 0 {
			return t[:i]
		}
	}
	if c, err := mysql.ParseDSN(m.DSN); err == nil {
		return c.DBName
	}
	return ""
}

// regionTable is regions.file, or the embedded table.
func regionTable(cfg *config.Config) (*region.Table, error) {
	if cfg.Regions.File != "" {
		return region.LoadFile(cfg.ResolvePath(cfg.Regions.File))
	}
	return region.Default()
}

// printReport prints a report's mismatching regions and keys (at most 20 keys each).
func printReport(w io.Writer, rep *consistency.Report) {
	fmt.Fprintln(w, rep.String())
	for _, ind := range rep.Indicators {
		mark := "一致"
		if ind.Mismatch {
			mark = "不一致"
		}
		fmt.Fprintf(w, "  %-28s %s %d  %s %d  %s\n", ind.Label, "源端", ind.Source, "目标端", ind.Sink, mark)
		for _, g := range ind.Regions {
			if !g.Mismatch {
				continue
			}
			fmt.Fprintf(w, "    %s %s: 源端 %d, 目标端 %d, %d 个差异键\n", g.Code, g.Name, g.Source, g.Sink, len(g.Diffs))
			for i, d := range g.Diffs {
				if i == 20 {
					fmt.Fprintf(w, "      … %d more (see --json or --xlsx)\n", len(g.Diffs)-20)
					break
				}
				fmt.Fprintf(w, "      %s %s %s %s\n", d.Kind, d.Key, d.SourceRegion, d.SinkRegion)
			}
		}
	}
}

// writeReports writes the reports as JSON (one array) and as one workbook per
// checker (name.xlsx → name-<checker>.xlsx when there are several).
func writeReports(reps []*consistency.Report, jsonOut, xlsxOut string, stdout io.Writer) error {
	if jsonOut != "" {
		var w io.Writer = stdout
		if jsonOut != "-" {
			f, err := os.Create(jsonOut)
			if err != nil {
				return fmt.Errorf("--json: %w", err)
			}
			defer f.Close()
			w = f
		}
		for _, r := range reps {
			if err := r.WriteJSON(w); err != nil {
				return fmt.Errorf("--json: %w", err)
			}
		}
	}
	if xlsxOut != "" {
		for _, r := range reps {
			path := xlsxOut
			if len(reps) > 1 {
				path = strings.TrimSuffix(xlsxOut, ".xlsx") + "-" + r.Checker + ".xlsx"
			}
			f, err := os.Create(path)
			if err != nil {
				return fmt.Errorf("--xlsx: %w", err)
			}
			err = r.WriteXLSX(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("--xlsx %s: %w", path, err)
			}
		}
	}
	return nil
}
