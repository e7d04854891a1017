package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// shared holds the per-test-binary servers started lazily by MariaDB and Postgres.
var shared struct {
	mainCalled atomic.Bool

	mu       sync.Mutex
	mariadb  *MariaDBServer
	mariaErr error
	postgres *PostgresServer
	pgErr    error
}

// Main runs the package's tests and then stops the shared servers, so start-up cost is
// paid once per test binary and nothing outlives it. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	shared.mainCalled.Store(true)
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func stopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	var errs []error
	if shared.mariadb != nil {
		errs = append(errs, shared.mariadb.Stop())
		shared.mariadb = nil
	}
	if shared.postgres != nil {
		errs = append(errs, shared.postgres.Stop())
		shared.postgres = nil
	}
	return errors.Join(errs...)
}

// requireServers reports whether a missing or broken server must fail the test rather
// than skip it: in CI, or when SHOUWANG_REQUIRE_SERVERS=1.
func requireServers() bool {
	return os.Getenv("CI") != "" || os.Getenv("SHOUWANG_REQUIRE_SERVERS") == "1"
}

// unavailable fails or skips t because a server could not be started.
func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	msg := fmt.Sprintf("testenv: %s unavailable: %v", what, err)
	var mb *MissingBinaryError
	if errors.As(err, &mb) {
		msg += fmt.Sprintf("\n(run: %s)", mb.InstallCommand())
	}
	if requireServers() {
		t.Fatalf("%s\n(failing because CI or SHOUWANG_REQUIRE_SERVERS=1 is set)", msg)
		return
	}
	t.Skipf("%s\n(skipping; set SHOUWANG_REQUIRE_SERVERS=1 to fail instead)", msg)
}

func requireMain(t testing.TB) {
	t.Helper()
	if !shared.mainCalled.Load() {
		t.Fatalf("testenv: shared servers need testenv.Main to stop them; add to this package's tests:\n\tfunc TestMain(m *testing.M) { testenv.Main(m) }")
	}
}

// startTimeout bounds starting a shared server from a test.
const startTimeout = 2 * time.Minute

// MariaDB returns the test binary's shared MariaDB server, starting it on first use.
// Do not Kill or Restart it (use NewMariaDB); do use your own databases
// (MariaDBDatabase). A server that cannot start skips the test (fails in CI).
func MariaDB(t testing.TB) *MariaDBServer {
	t.Helper()
	requireMain(t)
	shared.mu.Lock()
	if shared.mariadb == nil && shared.mariaErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		shared.mariadb, shared.mariaErr = StartMariaDB(ctx, MariaDBOptions{})
		cancel()
	}
	m, err := shared.mariadb, shared.mariaErr
	shared.mu.Unlock()
	if err != nil {
		unavailable(t, "MariaDB", err)
	}
	return m
}

// MariaDBDatabase returns the shared server and a fresh, empty database named after the
// test, dropped when the test ends.
func MariaDBDatabase(t testing.TB) (*MariaDBServer, string) {
	t.Helper()
	m := MariaDB(t)
	return m, mariaDatabase(t, m)
}

// NewMariaDB starts a private MariaDB server for t, stopped and removed by t.Cleanup.
// Use it for tests that Kill or Restart the server or need special options.
func NewMariaDB(t testing.TB, opts MariaDBOptions) *MariaDBServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	m, err := StartMariaDB(ctx, opts)
	if err != nil {
		unavailable(t, "MariaDB", err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Errorf("testenv: stop private MariaDB: %v", err)
		}
	})
	return m
}

// NewMariaDBDatabase is NewMariaDB plus a fresh database on it.
func NewMariaDBDatabase(t testing.TB, opts MariaDBOptions) (*MariaDBServer, string) {
	t.Helper()
	m := NewMariaDB(t, opts)
	return m, mariaDatabase(t, m)
}

func mariaDatabase(t testing.TB, m *MariaDBServer) string {
	t.Helper()
	name := DatabaseName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.DropDatabase(ctx, name); err != nil {
			// The server may have been killed by the test; a leftover database in a
			// temporary server harms nobody.
			t.Logf("testenv: cleanup: %v", err)
		}
	})
	return name
}

// Postgres returns the test binary's shared PostgreSQL server, starting it on first use.
// Do not Kill or Restart it (use NewPostgres). Replication slots are cluster-wide: name
// them after your database (PostgresDatabase) so parallel tests do not collide.
func Postgres(t testing.TB) *PostgresServer {
	t.Helper()
	requireMain(t)
	shared.mu.Lock()
	if shared.postgres == nil && shared.pgErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		shared.postgres, shared.pgErr = StartPostgres(ctx, PostgresOptions{})
		cancel()
	}
	p, err := shared.postgres, shared.pgErr
	shared.mu.Unlock()
	if err != nil {
		unavailable(t, "PostgreSQL", err)
	}
	return p
}

// PostgresDatabase returns the shared server and a fresh database named after the test,
// dropped (with its replication slots) when the test ends.
func PostgresDatabase(t testing.TB) (*PostgresServer, string) {
	t.Helper()
	p := Postgres(t)
	return p, pgDatabase(t, p)
}

// NewPostgres starts a private PostgreSQL server for t, stopped and removed by
// t.Cleanup. Use it for tests that Kill or Restart the server or need special settings.
func NewPostgres(t testing.TB, opts PostgresOptions) *PostgresServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	p, err := StartPostgres(ctx, opts)
	if err != nil {
		unavailable(t, "PostgreSQL", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("testenv: stop private PostgreSQL: %v", err)
		}
	})
	return p
}

// NewPostgresDatabase is NewPostgres plus a fresh database on it.
func NewPostgresDatabase(t testing.TB, opts PostgresOptions) (*PostgresServer, string) {
	t.Helper()
	p := NewPostgres(t, opts)
	return p, pgDatabase(t, p)
}

func pgDatabase(t testing.TB, p *PostgresServer) string {
	t.Helper()
	name := DatabaseName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.DropDatabase(ctx, name); err != nil {
			t.Logf("testenv: cleanup: %v", err)
		}
	})
	return name
}

// Kafka starts a fresh in-process Kafka cluster for t (cheap: milliseconds), closed by
// t.Cleanup. Pass WithAutoTopicCreation() if the code under test does not create topics.
func Kafka(t testing.TB, opts ...KafkaOption) *KafkaCluster {
	t.Helper()
	k, err := StartKafka(opts...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(k.Close)
	return k
}

var (
	dbCounter  atomic.Int64
	nonIdentRe = regexp.MustCompile(`[^a-z0-9_]+`)
)

// DatabaseName derives a unique, valid MySQL and PostgreSQL identifier from the test
// name (lower case, at most 63 bytes), also usable as a replication slot name.
func DatabaseName(t testing.TB) string {
	base := nonIdentRe.ReplaceAllString(strings.ToLower(t.Name()), "_")
	base = strings.Trim(base, "_")
	suffix := fmt.Sprintf("_%d", dbCounter.Add(1))
	if max := 63 - len("t_") - len(suffix); len(base) > max {
		base = base[:max]
	}
	return "t_" + base + suffix
}

// Eventually polls cond every 50ms until it holds, and fails t with what and cond's
// last state when within passes first.
func Eventually(t testing.TB, within time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s (%s)", what, within, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MetricValue is the value of the gauge or counter series name in g whose labels
// include every label/value pair given, or -1 when no such series is exported.
func MetricValue(tb testing.TB, g prometheus.Gatherer, name string, labelPairs ...string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labelPairs); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labelPairs[i] && l.GetValue() == labelPairs[i+1] {
						found = true
						break
					}
				}
				if !found {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
