// Command shouwang is the single binary of the Shouwang data-synchronisation service:
// capture, transform, sink and check workers, the demo, the synthetic generator and
// operator tools, as subcommands.
package main

import (
	"fmt"
	"os"
	"sort"
)

// command is one subcommand. run receives the arguments after the subcommand name and
// returns the process exit code (0 ok, 1 failure, 2 usage or configuration error).
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

func usage() {
	fmt.Fprintln(os.Stderr, "usage: shouwang <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'shouwang <command> -h' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "shouwang: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	os.Exit(c.run(os.Args[2:]))
}
