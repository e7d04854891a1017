package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/gen"
)

func init() {
	register("gen", "generate the synthetic Sichuan dataset (gen push: simulate a weekly national push)", runGen)
}

var genHelp = helpText{
	usage: []string{"shouwang gen [--seed N] [--households N | --scale full] [--mysql DSN] [--pg DSN] [--out DIR] [--formats LIST]",
		"shouwang gen push --week N --mysql DSN --out DIR [--mode truncate|delete|spread]"},
	about: "Generate a synthetic province on the real Sichuan village codes: the national front-end tables (MySQL), the " +
		"department tables (PostgreSQL) and department file deliveries (CSV, GB18030, XLSX), with injected data-quality " +
		"defects and department signals recorded as ground truth in manifest.jsonl. The same seed and configuration give " +
		"identical output.\n\n" +
		"'shouwang gen push' then simulates the weekly national push on data generated before: a whole-table reload " +
		"with about 1% real changes (see 'shouwang gen push --help').",
	examples: []string{"shouwang gen --households 2000 --mysql 'root@tcp(127.0.0.1:3306)/national' --out /tmp/gen",
		"shouwang gen push --week 1 --mysql 'root@tcp(127.0.0.1:3306)/national' --out /tmp/gen"},
}

var genPushHelp = helpText{
	usage: []string{"shouwang gen push --week N --mysql DSN --out DIR [--seed N] [--mode truncate|delete|spread] [--spread DURATION]"},
	about: "Simulate the weekly national push on a database filled by 'shouwang gen': every national table is reloaded as " +
		"the national system does it (truncate and reinsert, delete in one transaction, or spread over a duration), with " +
		"deterministic real changes for week N written to push-week-N.manifest.jsonl. Use the seed the data was generated with.",
	examples: []string{"shouwang gen push --week 1 --mysql 'root@tcp(127.0.0.1:3306)/national' --out /tmp/gen --mode spread --spread 1m"},
}

func runGen(args []string) int {
	if len(args) > 0 && args[0] == "push" {
		return runGenPush(args[1:])
	}
	fs := newFlagSet("gen", os.Stderr)
	seed := fs.Uint64("seed", 1, "random seed: same seed and config give identical output")
	households := fs.Int("households", 2000, "number of households to generate")
	scale := fs.String("scale", "", `"full" = Sichuan scale (2.2 M households ≈ 7 M persons); overrides --households`)
	mysqlDSN := fs.String("mysql", "", "national front-end DB as a go-sql-driver DSN, e.g. root@tcp(127.0.0.1:3306)/national")
	pgDSN := fs.String("pg", "", "department DB, e.g. postgres://postgres@127.0.0.1:5432/departments")
	out := fs.String("out", "", "output directory: manifest.jsonl, manifest.summary.json, files/")
	formats := fs.String("formats", "csv,gb18030,xlsx", "department file formats: csv, csv-bom, gb18030, xlsx (empty: none)")
	cfgPath := fs.String("config", "", "optional gen.yaml overriding rates, thresholds and distributions")
	workers := fs.Int("workers", 0, "generator goroutines (default: number of CPUs); output does not depend on it")
	if code, ok := parseFlags(fs, genHelp, args, os.Stdout, os.Stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		usageError(os.Stderr, "gen", genHelp, fmt.Sprintf("shouwang gen: unexpected argument %q (the only subcommand is push)", fs.Arg(0)))
		return 2
	}
	cfg := gen.DefaultConfig()
	if *cfgPath != "" {
		var err error
		if cfg, err = gen.LoadConfigFile(*cfgPath, cfg); err != nil {
			fmt.Fprintln(os.Stderr, "shouwang gen:", err)
			return 2
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["seed"] || *cfgPath == "" {
		cfg.Seed = *seed
	}
	if set["households"] || *cfgPath == "" {
		cfg.Households = *households
	}
	switch *scale {
	case "":
	case "full":
		cfg.Households = gen.FullScaleHouseholds
	default:
		fmt.Fprintf(os.Stderr, "shouwang gen: --scale %q: only \"full\" is known\n", *scale)
		return 2
	}
	if *mysqlDSN == "" && *pgDSN == "" && *out == "" {
		usageError(os.Stderr, "gen", genHelp, "shouwang gen: nothing to write: give --mysql, --pg and/or --out")
		return 2
	}
	opts := gen.Options{MySQLDSN: *mysqlDSN, PGDSN: *pgDSN, OutDir: *out, Workers: *workers, Progress: printProgress}
	if *out != "" && *formats != "" {
		for _, f := range strings.Split(*formats, ",") {
			if f = strings.TrimSpace(f); f != "" {
				opts.Formats = append(opts.Formats, f)
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if code := checkReachable(ctx, *mysqlDSN, *pgDSN); code != 0 {
		return code
	}
	start := time.Now()
	sum, err := gen.Generate(ctx, cfg, opts)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shouwang gen:", err)
		return 1
	}
	el := time.Since(start).Seconds()
	var dept int64
	for _, n := range sum.DeptRows {
		dept += n
	}
	var defects int64
	for _, n := range sum.Defects {
		defects += n
	}
	fmt.Fprintf(os.Stderr, "generated %d households, %d persons, %d measures, %d department rows, %d defects in %.1fs: %.0f households/s, %.0f persons/s, %.0f department rows/s; peak RSS %s\n",
		sum.Households, sum.Persons, sum.Measures, dept, defects, el, float64(sum.Households)/el, float64(sum.Persons)/el, float64(dept)/el, peakRSS())
	return 0
}

// checkReachable fails fast with one line (password masked) and exit code 2 when a DSN
// is unusable, before any generation work starts.
func checkReachable(ctx context.Context, mysqlDSN, pgDSN string) int {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if mysqlDSN != "" {
		db, err := gen.OpenMySQL(cctx, mysqlDSN)
		if err != nil {
			fmt.Fprintf(os.Stderr, "shouwang gen: MySQL %s unreachable: %v\n", config.MaskDSN(mysqlDSN), oneLine(err))
			return 2
		}
		db.Close()
	}
	if pgDSN != "" {
		if err := gen.PingPG(cctx, pgDSN); err != nil {
			fmt.Fprintf(os.Stderr, "shouwang gen: PostgreSQL %s unreachable: %v\n", config.MaskDSN(pgDSN), oneLine(err))
			return 2
		}
	}
	return 0
}

func oneLine(err error) string {
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

func printProgress(p gen.Progress) {
	s := p.Elapsed.Seconds()
	if s <= 0 {
		return
	}
	eta := "?"
	if p.Households > 0 && p.TotalHouseholds > p.Households {
		eta = (time.Duration(float64(p.TotalHouseholds-p.Households)/float64(p.Households)*s) * time.Second).Round(time.Second).String()
	} else if p.Households >= p.TotalHouseholds {
		eta = "0s"
	}
	fmt.Fprintf(os.Stderr, "\r%d/%d households  %.0f hh/s  %.0f persons/s  %d rows  elapsed %s  ETA %s   ",
		p.Households, p.TotalHouseholds, float64(p.Households)/s, float64(p.Persons)/s, p.Rows, p.Elapsed.Round(time.Second), eta)
}

// peakRSS reads VmHWM (peak resident set size) of this process from /proc.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}

func runGenPush(args []string) int {
	fs := newFlagSet("gen push", os.Stderr)
	week := fs.Int("week", 0, "week number N ≥ 1 (changes are deterministic from seed, week and key)")
	seed := fs.Uint64("seed", 1, "random seed (use the one the data was generated with)")
	mysqlDSN := fs.String("mysql", "", "national front-end DB DSN, e.g. root@tcp(127.0.0.1:3306)/national")
	out := fs.String("out", "", "directory for push-week-N.manifest.jsonl and temporary reload files")
	mode := fs.String("mode", gen.PushTruncate, "reload mode: truncate, delete (one transaction) or spread")
	spread := fs.Duration("spread", 0, "spread mode: total duration (default from config: 30s)")
	cfgPath := fs.String("config", "", "optional gen.yaml (push.change_rate, push.chunk_rows, …)")
	if code, ok := parseFlags(fs, genPushHelp, args, os.Stdout, os.Stderr); !ok {
		return code
	}
	if *week < 1 || *mysqlDSN == "" || *out == "" || fs.NArg() > 0 {
		usageError(os.Stderr, "gen push", genPushHelp, "shouwang gen push: --week N (≥ 1), --mysql DSN and --out DIR are required")
		return 2
	}
	cfg := gen.DefaultConfig()
	if *cfgPath != "" {
		var err error
		if cfg, err = gen.LoadConfigFile(*cfgPath, cfg); err != nil {
			fmt.Fprintln(os.Stderr, "shouwang gen push:", err)
			return 2
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["seed"] || *cfgPath == "" {
		cfg.Seed = *seed
	}
	if *spread > 0 {
		cfg.Push.SpreadDuration = *spread
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if code := checkReachable(ctx, *mysqlDSN, ""); code != 0 {
		return code
	}
	start := time.Now()
	res, err := gen.Push(ctx, cfg, gen.PushOptions{Week: *week, MySQLDSN: *mysqlDSN, OutDir: *out, Mode: *mode,
		Progress: func(table string, rows int64) {
			fmt.Fprintf(os.Stderr, "\rreloading %-9s %d rows  elapsed %s   ", table, rows, time.Since(start).Round(time.Second))
		}})
	fmt.Fprintln(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shouwang gen push:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "week %d pushed (%s) in %.1fs: rows %v, changes %v\n", *week, *mode, time.Since(start).Seconds(), res.Rows, res.Changes)
	return 0
}
