package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildShouwang builds the binary once per test, so that exit statuses are the real
// process's.
func buildShouwang(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shouwang")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func runBinary(t *testing.T, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%v: %v", args, err)
	}
	return code, o.String(), e.String()
}

// TestEveryHelpExitsZero runs --help (and its spellings) on every command and
// subcommand: each exits 0 and prints, on stdout, a usage line, a description, its
// flags and an example.
func TestEveryHelpExitsZero(t *testing.T) {
	bin := buildShouwang(t)
	cases := []struct {
		args     []string
		flags    bool     // the command has flags of its own
		contains []string // besides the usage line and the example
	}{
		{[]string{"--help"}, false, []string{"commands:", "demo", "held", "snapshot"}},
		{[]string{"-h"}, false, []string{"commands:"}},
		{[]string{"help"}, false, []string{"commands:"}},
		{[]string{"help", "run"}, true, []string{"usage: shouwang run"}},
		{[]string{"help", "gen", "push"}, true, []string{"usage: shouwang gen push", "--week"}},
		{[]string{"config", "--help"}, false, []string{"subcommands:", "check"}},
		{[]string{"config", "check", "--help"}, true, []string{"-connect", "every problem"}},
		{[]string{"run", "--help"}, true, []string{"-exit-on-startup-failure", "-metrics-addr", "startup_grace", "status 3"}},
		{[]string{"run", "-h"}, true, nil},
		{[]string{"gen", "--help"}, true, []string{"shouwang gen push", "-households"}},
		{[]string{"gen", "push", "--help"}, true, []string{"-week", "-mode"}},
		{[]string{"snapshot", "--help"}, true, []string{"signal topic", "must be running", "-where"}},
		{[]string{"check", "--help"}, false, []string{"subcommands:", "totals", "地区总数核查"}},
		{[]string{"check", "totals", "--help"}, true, []string{"-checker", "-region", "-settle", "-xlsx", "Exit status 0"}},
		{[]string{"feedback", "--help"}, false, []string{"subcommands:", "export", "行业数据比对反馈"}},
		{[]string{"feedback", "export", "--help"}, true, []string{"-out", "-department", "-mask", "audit.log", "核实结果"}},
		{[]string{"held", "--help"}, false, []string{"subcommands:", "list", "release", "audit.log"}},
		{[]string{"held", "list", "--help"}, true, []string{"-source"}},
		{[]string{"held", "release", "--help"}, true, []string{"-dataset", "-table", "-reason", "signal topic"}},
		{[]string{"dlq", "--help"}, false, []string{"subcommands:", "list", "show", "redrive", "audit.log"}},
		{[]string{"dlq", "list", "--help"}, true, []string{"-stage", "-since", "-reason", "-json"}},
		{[]string{"dlq", "show", "--help"}, true, []string{"-stage", "pretty-printed"}},
		{[]string{"dlq", "redrive", "--help"}, true, []string{"-dry-run", "-source", "-again", "same key, value and headers", "PII-scrubbed"}},
		{[]string{"offsets", "--help"}, false, []string{"subcommands:", "show", "reset", "fpjc.sink_offsets", "audit.log"}},
		{[]string{"offsets", "show", "--help"}, true, []string{"-group", "-json", "lag"}},
		{[]string{"offsets", "reset", "--help"}, true, []string{"-to-time", "-to-earliest", "-yes", "live members"}},
		{[]string{"status", "--help"}, true, []string{"-json", "dead-letter", "lag"}},
		{[]string{"demo", "--help"}, true, []string{"-households", "Not for production"}},
		{[]string{"version", "--help"}, false, nil},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		code, stdout, stderr := runBinary(t, bin, tc.args...)
		name := strings.Join(tc.args, " ")
		if code != 0 {
			t.Errorf("shouwang %s: exit %d, want 0 (stderr %q)", name, code, stderr)
			continue
		}
		if stderr != "" {
			t.Errorf("shouwang %s: help went to stderr too: %q", name, stderr)
		}
		want := append([]string{"usage: shouwang", "example:\n  shouwang "}, tc.contains...)
		if tc.flags {
			want = append(want, "\nflags:\n")
		}
		for _, w := range want {
			if !strings.Contains(stdout, w) {
				t.Errorf("shouwang %s: help lacks %q:\n%s", name, w, stdout)
			}
		}
		// The description: a sentence between the usage lines and the flags.
		if parts := strings.SplitN(stdout, "\n\n", 3); len(parts) < 2 || len(strings.TrimSpace(parts[1])) < 30 {
			t.Errorf("shouwang %s: no description after the usage lines:\n%s", name, stdout)
		}
		if tc.args[0] == "help" && len(tc.args) > 1 {
			seen[tc.args[1]] = true
		} else if !strings.HasPrefix(tc.args[0], "-") {
			seen[tc.args[0]] = true
		}
	}
	for name := range commands {
		if !seen[name] {
			t.Errorf("command %q has no --help case in this test", name)
		}
	}

	// A command line that cannot run is a usage error (2) on stderr naming --help.
	for _, args := range [][]string{{}, {"nope"}, {"run", "--nope"}, {"gen", "push", "--week", "x"}, {"config"}, {"held", "list", "--dataset", "x"}, {"dlq"}, {"dlq", "list"}, {"offsets", "reset", "--nope"}, {"status", "extra"}} {
		code, stdout, stderr := runBinary(t, bin, args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, "usage: shouwang") {
			t.Errorf("shouwang %v: exit %d, stdout %q, stderr %q; want 2, nothing on stdout and the usage on stderr", args, code, stdout, stderr)
		}
		if len(args) > 0 && args[0] != "nope" && !strings.Contains(stderr, "--help") {
			t.Errorf("shouwang %v: the error does not say where the help is: %q", args, stderr)
		}
	}
}
