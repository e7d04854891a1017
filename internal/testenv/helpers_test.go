package testenv

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"9.6", "15", true},
		{"15", "9.6", false},
		{"15", "16", true},
		{"16", "16", false},
		{"13", "13.1", true},
	} {
		if got := versionLess(c.a, c.b); got != c.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestIsBindConflict(t *testing.T) {
	for _, c := range []struct {
		log  string
		want bool
	}{
		{"[ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use", true},
		{`LOG:  could not bind IPv4 address "127.0.0.1": Address already in use`, true},
		{"FATAL:  could not create any TCP/IP sockets", true},
		{`err="listen tcp 127.0.0.1:9090: bind: address already in use"`, true},
		{"[ERROR] InnoDB: Cannot allocate memory for the buffer pool", false},
		{"", false},
	} {
		if got := isBindConflict(c.log); got != c.want {
			t.Errorf("isBindConflict(%q) = %v, want %v", c.log, got, c.want)
		}
	}
}

func TestDatabaseName(t *testing.T) {
	valid := regexp.MustCompile(`^t_[a-z0-9_]+_[0-9]+$`)
	names := map[string]bool{}
	for _, sub := range []string{"simple", "with spaces/and-dashes", "中文名称", strings.Repeat("long", 40), "simple"} {
		t.Run(sub, func(t *testing.T) {
			n := DatabaseName(t)
			if !valid.MatchString(n) || len(n) > 63 {
				t.Errorf("DatabaseName(%q) = %q: not a valid identifier of at most 63 bytes", t.Name(), n)
			}
			if names[n] {
				t.Errorf("DatabaseName(%q) = %q was returned before", t.Name(), n)
			}
			names[n] = true
		})
	}
}

// recordingTB captures how unavailable ended the test, without ending the real one.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recordingTB) Skipf(format string, args ...any)  { r.skip = fmt.Sprintf(format, args...) }

func TestUnavailableFailsOnlyWhenRequired(t *testing.T) {
	missing := &MissingBinaryError{Binary: "initdb", Searched: []string{"PATH"}, Package: "postgresql"}
	for _, c := range []struct {
		name, ci, require string
		wantFatal         bool
	}{
		{"local", "", "", false},
		{"ci", "true", "", true},
		{"required", "", "1", true},
		{"require-other-value", "", "0", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("CI", c.ci)
			t.Setenv("SHOUWANG_REQUIRE_SERVERS", c.require)
			r := &recordingTB{TB: t}
			unavailable(r, "PostgreSQL", fmt.Errorf("start: %w", missing))
			got := r.skip
			if c.wantFatal {
				got = r.fatal
			}
			if got == "" || (r.fatal != "" && r.skip != "") {
				t.Fatalf("fatal=%q skip=%q, want only %s", r.fatal, r.skip, map[bool]string{true: "fatal", false: "skip"}[c.wantFatal])
			}
			if !strings.Contains(got, "apt-get install -y postgresql") || !strings.Contains(got, "initdb") {
				t.Errorf("message %q does not name the binary and the package to install", got)
			}
		})
	}
}
