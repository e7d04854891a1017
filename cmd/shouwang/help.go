package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// helpText is what `shouwang <command> --help` prints besides the flags.
type helpText struct {
	// usage holds the usage lines without the leading "usage: ".
	usage []string
	// about says in one or two sentences what the command does.
	about string
	// examples are complete command lines.
	examples []string
}

// newFlagSet returns a flag set for one command: parse errors go to stderr and the
// help is printed by parseFlags, not by the flag package.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args. It returns ok when the command should go on; otherwise code
// is the exit status: 0 after -h/--help printed the whole help to stdout, 2 after a bad
// flag (the flag package has named it on stderr; the usage lines follow it).
func parseFlags(fs *flag.FlagSet, h helpText, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		printHelp(stdout, fs, h)
		return 0, false
	default:
		usageError(stderr, fs.Name(), h, "")
		return 2, false
	}
}

// usageError prints msg (when not empty), the usage lines and where the help is, for
// a command line that cannot run.
func usageError(w io.Writer, name string, h helpText, msg string) {
	if msg != "" {
		fmt.Fprintln(w, msg)
	}
	printUsage(w, h)
	fmt.Fprintf(w, "Run 'shouwang %s --help' for the flags and an example.\n", name)
}

// printHelp writes the usage lines, the description, the flags and the examples.
func printHelp(w io.Writer, fs *flag.FlagSet, h helpText) {
	printUsage(w, h)
	fmt.Fprintln(w)
	fmt.Fprintln(w, wrap(h.about, 88))
	if fs != nil && hasFlags(fs) {
		fmt.Fprintln(w, "\nflags:")
		out := fs.Output()
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(out)
	}
	if len(h.examples) > 0 {
		fmt.Fprintln(w, "\nexample:")
		for _, e := range h.examples {
			fmt.Fprintln(w, "  "+e)
		}
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// wrap breaks text into lines of at most width columns at spaces, keeping the
// paragraph breaks (blank lines) of the text.
func wrap(text string, width int) string {
	var out []string
	for _, para := range strings.Split(text, "\n\n") {
		var line strings.Builder
		var lines []string
		for _, word := range strings.Fields(para) {
			if line.Len() > 0 && line.Len()+1+len(word) > width {
				lines = append(lines, line.String())
				line.Reset()
			}
			if line.Len() > 0 {
				line.WriteByte(' ')
			}
			line.WriteString(word)
		}
		if line.Len() > 0 {
			lines = append(lines, line.String())
		}
		out = append(out, strings.Join(lines, "\n"))
	}
	return strings.Join(out, "\n\n")
}

// isHelp reports whether arg asks for help the way the flag package understands it.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "--h", "help":
		return true
	}
	return false
}

// subcommandHelp prints the help of a command that only groups subcommands.
func subcommandHelp(w io.Writer, h helpText, subs [][2]string) {
	examples := h.examples
	h.examples = nil
	printHelp(w, nil, h)
	fmt.Fprintln(w, "\nsubcommands:")
	for _, s := range subs {
		fmt.Fprintf(w, "  %-8s %s\n", s[0], s[1])
	}
	if len(examples) > 0 {
		fmt.Fprintln(w, "\nexample:")
		for _, e := range examples {
			fmt.Fprintln(w, "  "+e)
		}
	}
}

// printUsage writes the usage lines, the first after "usage: ".
func printUsage(w io.Writer, h helpText) {
	for i, u := range h.usage {
		if i == 0 {
			fmt.Fprintln(w, "usage: "+u)
		} else {
			fmt.Fprintln(w, "       "+u)
		}
	}
}
