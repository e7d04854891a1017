package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/testenv"
)

// startPipeline parses yaml and runs its capture, transform and sink workers in
// this process, as `shouwang run --role all` would (checkers not started); the
// workers stop and the worker closes at the end of tb.
func startPipeline(tb testing.TB, ctx context.Context, name, yaml string) (*worker, *config.Config) {
	tb.Helper()
	cfg, err := config.Parse(name, []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w, err := newWorker(ctx, cfg, log, "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	conns, err := w.connectors()
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := w.transformers()
	if err != nil {
		tb.Fatal(err)
	}
	sinks, err := w.sinkWorkers()
	if err != nil {
		tb.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{}, 3)
	go func() { w.runCapture(rctx, conns, nil); done <- struct{}{} }()
	go func() { w.runTransforms(rctx, ts); done <- struct{}{} }()
	go func() { w.runSinks(rctx, sinks); done <- struct{}{} }()
	tb.Cleanup(func() {
		stop()
		for range 3 {
			<-done
		}
		w.Close()
	})
	return w, cfg
}

// registryEnv is a private national MariaDB filled by the generator, a private
// PostgreSQL with an empty provincial database, and the configuration of a pipeline
// between them: binlog capture of national.household and national.person (initial
// snapshot), the embedded registry mapping and the provincial sink.
type registryEnv struct {
	m    *testenv.MariaDBServer
	pg   *testenv.PostgresServer
	pool *pgxpool.Pool // on the provincial database, closed at the end of tb
	yaml string
}

// newRegistryEnv generates households households with seed into the national
// database and writes the pipeline's configuration with the topic prefix prefix and
// a binlog server ID serverIDOffset above the MariaDB server's; extra is appended to
// the configuration (e.g. a checkers section).
func newRegistryEnv(tb testing.TB, ctx context.Context, seed uint64, households int, prefix string, serverIDOffset uint32, extra string) *registryEnv {
	tb.Helper()
	m := testenv.NewMariaDB(tb, testenv.MariaDBOptions{})
	if err := m.CreateDatabase(ctx, "national"); err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	gc := gen.DefaultConfig()
	gc.Seed, gc.Households = seed, households
	if _, err := gen.Generate(ctx, gc, gen.Options{MySQLDSN: m.RootDSN("national"), OutDir: filepath.Join(dir, "gen")}); err != nil {
		tb.Fatal(err)
	}
	pg := testenv.NewPostgres(tb, testenv.PostgresOptions{})
	if err := pg.CreateDatabase(ctx, "provincial"); err != nil {
		tb.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, pg.ConnString("provincial"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	yaml := fmt.Sprintf(`kafka:
  embedded: true
  topic_prefix: %s
  partitions: 2
metrics:
  addr: 127.0.0.1:0
regions:
  province: "51"
state:
  dir: %q
sources:
  - name: national
    kind: mysqlbinlog
    mysql:
      dsn: %q
      flavor: %s
      server_id: %d
      gtid: true
      tables: [national.household, national.person]
      snapshot:
        mode: initial
pipelines:
  - name: registry
    inputs: [national.household, national.person]
    mapping: embedded
    outputs: [household, person]
monitor:
  enabled: false
sinks:
  - name: provincial
    kind: postgres
    dsn: %q
    topics: [household, person]
`, prefix, filepath.Join(dir, "state"), m.RootDSN("national"), m.Flavor(), m.ServerID()+serverIDOffset, pg.ConnString("provincial"))
	return &registryEnv{m: m, pg: pg, pool: pool, yaml: yaml + extra}
}
