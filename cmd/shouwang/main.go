// Command shouwang is the single binary of the Shouwang data-synchronisation service:
// capture, transform, sink and check workers, the demo, the synthetic generator and
// operator tools, as subcommands.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand. run receives the arguments after the subcommand name and
// returns the process exit code (0 ok, 1 failure, 2 usage or configuration error).
// Every command answers -h/--help with its usage, description, flags and an example,
// on stdout, with status 0.
type command struct {
	summary string
	run     func(args []string) int
}

// commands is filled by init functions in this package's files, one file a subcommand.
var commands = map[string]command{}

func register(name, summary string, run func(args []string) int) {
	if _, dup := commands[name]; dup {
		panic("shouwang: subcommand registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage: shouwang <command> [flags]

Shouwang (守望) keeps the provincial anti-return-to-poverty monitoring platform fed with
correct, current data: it captures changes from the national front-end database and the
department sources into Kafka, and (as later roles land) maps, checks and stores them.

commands:`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, `
Run 'shouwang <command> --help' (or 'shouwang help <command>') for a command's usage,
flags and an example.

example:
  shouwang demo --households 2000
  shouwang config check -c /etc/shouwang/shouwang.yaml`)
}

func main() {
	os.Exit(runMain(os.Args[1:]))
}

func runMain(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	if isHelp(args[0]) {
		if args[0] == "help" && len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				return c.run(append(args[2:], "--help"))
			}
			fmt.Fprintf(os.Stderr, "shouwang help: unknown command %q\n\n", args[1])
			usage(os.Stderr)
			return 2
		}
		usage(os.Stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "shouwang: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		return 2
	}
	return c.run(args[1:])
}
