package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shouwang/shouwang/internal/config"
)

func init() {
	register("config", "check a configuration file: every problem at once, with file:line and key (config check)", func(args []string) int {
		return runConfig(args, os.Stdout, os.Stderr)
	})
}

var configHelp = helpText{
	usage: []string{"shouwang config check -c FILE [--connect]"},
	about: "Work with a Shouwang configuration file. 'config check' reads the file and reports every problem in it in one " +
		"run — wrong types, unknown keys, bad durations and invalid or missing values — each with file:line and key path.",
	examples: []string{"shouwang config check -c /etc/shouwang/shouwang.yaml"},
}

var configCheckHelp = helpText{
	usage: []string{"shouwang config check -c FILE [--connect]"},
	about: "Load and validate a configuration file and list every problem in one run, one line each with file:line, key " +
		"path and what to do; exit status 0 when the file is valid, 2 otherwise. With --connect it also dials every broker, " +
		"database and URL the file names.",
	examples: []string{"shouwang config check -c /etc/shouwang/shouwang.yaml",
		"SHOUWANG_CONFIG=/etc/shouwang/shouwang.yaml shouwang config check --connect"},
}

// runConfig dispatches `shouwang config <sub>`; only "check" exists so far.
func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) {
		subcommandHelp(stdout, configHelp, [][2]string{{"check", "validate a configuration file (and, with --connect, its endpoints)"}})
		return 0
	}
	if len(args) == 0 || args[0] != "check" {
		usageError(stderr, "config", configHelp, "")
		return 2
	}
	return runConfigCheck(args[1:], stdout, stderr)
}

// runConfigCheck loads and validates a configuration and, with --connect, dials
// every endpoint it names. Exit codes: 0 valid (and reachable), 2 any problem — one
// line per problem with its key path, so that an operator fixes all in one pass.
func runConfigCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("config check", stderr)
	file := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration `file` (default $SHOUWANG_CONFIG)")
	connect := fs.Bool("connect", false, "also check that every broker, database and URL accepts a TCP connection")
	if code, ok := parseFlags(fs, configCheckHelp, args, stdout, stderr); !ok {
		return code
	}
	if *file == "" || fs.NArg() > 0 {
		usageError(stderr, "config check", configCheckHelp, "shouwang config check: give the file with -c FILE (or set SHOUWANG_CONFIG)")
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		printProblems(stderr, err)
		return 2
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "warning: "+w)
	}
	if *connect {
		errs := cfg.CheckConnectivity(context.Background())
		if len(errs) > 0 {
			for _, e := range errs {
				fmt.Fprintf(stderr, "%s: %v\n", *file, e)
			}
			return 2
		}
	}
	fmt.Fprintf(stdout, "%s: ok\n", *file)
	return 0
}

// printProblems writes one line per joined error.
func printProblems(w io.Writer, err error) {
	if multi, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range multi.Unwrap() {
			printProblems(w, e)
		}
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(w, line)
	}
}
