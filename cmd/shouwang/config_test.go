package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "shouwang.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigCheckExitCodes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	go func() {
		for {
			c, err := open.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	valid := writeConfig(t, "kafka:\n  brokers: ["+open.Addr().String()+"]\n  topic_prefix: sc\n")
	unreachable := writeConfig(t, "kafka:\n  brokers: ["+closed+"]\n  topic_prefix: sc\n")
	invalid := writeConfig(t, "kafka:\n  brokers: []\n  topic_prefix: SC\n  partitons: 3\n")
	cases := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderrHave []string
	}{
		{"valid", []string{"check", "-c", valid}, 0, valid + ": ok\n", nil},
		{"valid and reachable", []string{"check", "-c", valid, "--connect"}, 0, valid + ": ok\n", nil},
		{"valid but unreachable without --connect", []string{"check", "-c", unreachable}, 0, unreachable + ": ok\n", nil},
		{"unreachable", []string{"check", "-c", unreachable, "--connect"}, 2, "", []string{unreachable + ": kafka.brokers[0]: cannot reach " + closed + ": connection refused"}},
		{"unknown key", []string{"check", "-c", invalid}, 2, "", []string{invalid + `:4: kafka.partitons: unknown key "partitons"`}},
		{"missing file", []string{"check", "-c", filepath.Join(t.TempDir(), "nope.yaml")}, 2, "", []string{"no such file"}},
		{"no file flag", []string{"check"}, 2, "", []string{"usage: shouwang config check -c FILE"}},
		{"no subcommand", nil, 2, "", []string{"usage: shouwang config check"}},
		{"bad flag", []string{"check", "--nope"}, 2, "", []string{"flag provided but not defined"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runConfig(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if stdout.String() != tc.stdout {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.stdout)
			}
			for _, want := range tc.stderrHave {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
		})
	}
}

// TestConfigCheckPrintsEveryProblem checks that all problems come out, one a line.
func TestConfigCheckPrintsEveryProblem(t *testing.T) {
	p := writeConfig(t, "kafka:\n  brokers: []\n  topic_prefix: SC\nmetrics: {addr: nope}\n")
	var stdout, stderr bytes.Buffer
	if code := runConfig([]string{"check", "-c", p}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	want := []string{p + ":2: kafka.brokers: ", p + ":3: kafka.topic_prefix: ", p + ":4: metrics.addr: "}
	if len(lines) != len(want) {
		t.Fatalf("want %d problem lines, got:\n%s", len(want), stderr.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestConfigCheckWarnsButPasses(t *testing.T) {
	p := writeConfig(t, "kafka:\n  embedded: true\n  topic_prefix: sc\n")
	var stdout, stderr bytes.Buffer
	if code := runConfig([]string{"check", "-c", p}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "warning: "+p+":2: kafka.embedded: the embedded broker keeps data in memory only") {
		t.Errorf("want the in-memory warning, got:\n%s", stderr.String())
	}
}
