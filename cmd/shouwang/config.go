package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shouwang/shouwang/internal/config"
)

func init() {
	register("config", "check a configuration file (config check -c FILE [--connect])", func(args []string) int {
		return runConfig(args, os.Stdout, os.Stderr)
	})
}

// runConfig dispatches `shouwang config <sub>`; only "check" exists so far.
func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: shouwang config check -c FILE [--connect]")
		return 2
	}
	return runConfigCheck(args[1:], stdout, stderr)
}

// runConfigCheck loads and validates a configuration and, with --connect, dials
// every endpoint it names. Exit codes: 0 valid (and reachable), 2 any problem — one
// line per problem with its key path, so that an operator fixes all in one pass.
func runConfigCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", os.Getenv("SHOUWANG_CONFIG"), "configuration `file` (default $SHOUWANG_CONFIG)")
	connect := fs.Bool("connect", false, "also check that every broker, database and URL accepts a TCP connection")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: shouwang config check -c FILE [--connect]")
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
