package mysqlbinlog

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/testenv"
)

// BenchmarkReloadCollapse measures one weekly truncate-mode push of household, person
// and measure read from the binlog with the reload collapse, against reading the same
// binlog without it (every row passes through as t/c). Reported:
//
//   - emitted/true: changes emitted by the collapse / true changes in the push
//     manifest (issue #3 goal ≤ 1.01);
//   - x_passthrough: collapse time / plain read time of the same binlog (goal ≤ 1.5);
//   - rows/s of the collapsed read, and the Go heap in use after it.
//
// Size: SHOUWANG_RELOAD_BENCH_HOUSEHOLDS households (default 2000; about 3.5 persons
// and 0.6 measures per household, so 2,000,000 gives ≈ 7 M reloaded rows) with
// SHOUWANG_RELOAD_BENCH_CHANGE_RATE true changes (default 0.01). Every iteration
// reopens at the position before the push, which also rolls the reload state back.
//
//	SHOUWANG_RELOAD_BENCH_HOUSEHOLDS=2000000 go test ./capture/mysqlbinlog/ -run '^$' -bench ReloadCollapse -benchtime 1x -timeout 3h
func BenchmarkReloadCollapse(b *testing.B) {
	households := 2000
	if v := os.Getenv("SHOUWANG_RELOAD_BENCH_HOUSEHOLDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("SHOUWANG_RELOAD_BENCH_HOUSEHOLDS=%q: want a positive integer", v)
		}
		households = n
	}
	rate := 0.01
	if v := os.Getenv("SHOUWANG_RELOAD_BENCH_CHANGE_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 1 {
			b.Fatalf("SHOUWANG_RELOAD_BENCH_CHANGE_RATE=%q: want 0..1", v)
		}
		rate = f
	}
	// SHOUWANG_RELOAD_BENCH_CPUPROFILE=FILE profiles the collapsed read alone.
	cpuProfile := os.Getenv("SHOUWANG_RELOAD_BENCH_CPUPROFILE")
	srv := testenv.NewMariaDB(b, testenv.MariaDBOptions{BufferPool: "1G"})
	ctx := context.Background()
	db := "reload"
	if err := srv.CreateDatabase(ctx, db); err != nil {
		b.Fatal(err)
	}
	d, err := srv.Open(db)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	cfg := gen.DefaultConfig()
	cfg.Households = households
	cfg.Push.ChangeRate = rate
	cfg.Push.NewHouseholdRate = rate / 5
	cfg.Push.SpreadDuration = 0
	if _, err := gen.Generate(ctx, cfg, gen.Options{MySQLDSN: srv.RootDSN(db)}); err != nil {
		b.Fatal(err)
	}
	opts := Options{Name: "national", TopicPrefix: "sc", Host: srv.Host(), Port: srv.Port(), User: srv.ReplUser(),
		Password: srv.ReplPassword(), Flavor: srv.Flavor(), Databases: []string{db}, StateDir: b.TempDir(),
		ChunkSize: 5000, HeartbeatInterval: time.Second,
		Reload:     ReloadOptions{Detect: DetectPushLog, QuietPeriod: time.Second},
		MassDelete: MassDeleteOptions{MaxShare: 0.5, MaxCountyShare: 1}}
	for _, t := range reloadTables {
		opts.Reload.Tables = append(opts.Reload.Tables, db+"."+t)
	}
	// Seed the reload state with the initial snapshot (not timed).
	opts.ServerID = serverIDs.Add(1)
	s, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Open(ctx, nil); err != nil {
		b.Fatal(err)
	}
	_, start := benchRead(b, s, headPos(b, d))
	s.Close()

	dir := b.TempDir()
	if _, err := gen.Push(ctx, cfg, gen.PushOptions{Week: 1, MySQLDSN: srv.RootDSN(db), OutDir: dir, Mode: gen.PushTruncate}); err != nil {
		b.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(dir, "push-week-1.manifest.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	trueChanges := bytes.Count(manifest, []byte("\n"))
	head := headPos(b, d)
	var reloaded int
	for _, t := range reloadTables {
		var n int
		if err := d.QueryRow("SELECT COUNT(*) FROM " + t).Scan(&n); err != nil {
			b.Fatal(err)
		}
		reloaded += n
	}

	plain := opts
	plain.Reload, plain.StateDir = ReloadOptions{}, b.TempDir()
	b.ResetTimer()
	var collapse, through time.Duration
	emitted := 0
	var heap uint64
	for i := 0; i < b.N; i++ {
		for _, o := range []Options{opts, plain} {
			o.ServerID = serverIDs.Add(1)
			src, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			collapsing := len(o.Reload.Tables) > 0
			if collapsing && cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					b.Fatal(err)
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					b.Fatal(err)
				}
			}
			began := time.Now()
			if err := src.Open(ctx, start.Encode()); err != nil {
				b.Fatal(err)
			}
			n, _ := benchRead(b, src, head)
			took := time.Since(began)
			if collapsing && cpuProfile != "" {
				pprof.StopCPUProfile()
			}
			if collapsing {
				collapse += took
				emitted = n
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				heap = max(heap, ms.HeapInuse)
			} else {
				through += took
			}
			src.Close()
		}
	}
	b.StopTimer()
	// push_log's own six row changes pass through untouched.
	b.ReportMetric(float64(emitted-6)/float64(trueChanges), "emitted/true")
	b.ReportMetric(collapse.Seconds()/through.Seconds(), "x_passthrough")
	b.ReportMetric(float64(reloaded*b.N)/collapse.Seconds(), "rows/s")
	b.ReportMetric(float64(heap)/(1<<20), "heap_MiB")
}

// benchRead reads until caught up with head and counts the changes that would be
// produced (row changes and dead letters, not position-only ones).
func benchRead(b *testing.B, s *Source, head binlogPos) (int, Position) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	n := 0
	for {
		chs, err := s.ReadN(ctx, 2000)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range chs {
			if !c.PositionOnly {
				n++
			}
			if c.Position == nil {
				continue
			}
			p, _, err := DecodePosition(c.Position)
			if err != nil {
				b.Fatal(err)
			}
			if (binlogPos{p.File, p.Pos}).compare(head) >= 0 && len(p.Snapshot) == 0 {
				return n, p
			}
		}
	}
}
