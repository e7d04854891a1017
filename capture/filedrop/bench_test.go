package filedrop

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writeBenchCSV writes a delivery of n rows; shift changes every 10th row's level and
// drops every 50th row, so a diff against shift 0 has updates, deletes and creates.
func writeBenchCSV(b *testing.B, path string, n, shift int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("身份证号,姓名,残疾等级,地址,电话\n")
	for i := 0; i < n; i++ {
		if shift > 0 && i%50 == 7 {
			continue
		}
		level := i % 4
		if shift > 0 && i%10 == 3 {
			level = (level + shift) % 4
		}
		id := i*7919%n + shift*n*(boolInt(shift > 0 && i%50 == 8))
		fmt.Fprintf(w, "51010119%010d,姓名%d,%d级,四川省成都市锦江区某街道%d号,138%08d\n", id, i, level, i%997, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// BenchmarkParseDiff measures parse + external sort + merge-join of a full delivery
// against the previous state (FILEDROP_BENCH_ROWS rows, default 1,000,000), with a
// 32 MiB sort buffer so the run-file path is exercised. It reports rows/s and the
// peak heap in use sampled during the run.
func BenchmarkParseDiff(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("FILEDROP_BENCH_ROWS")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	ds := DatasetOptions{
		Name: "bench", Inbox: filepath.Join(dir, "inbox"), StateDir: filepath.Join(dir, "state"),
		Delivery: DeliveryFull, Key: []string{"id_number"},
		Columns:         map[string]string{"身份证号": "id_number", "姓名": "name", "残疾等级": "level", "地址": "address", "电话": "phone"},
		SortBufferBytes: 32 << 20,
	}
	ds = ds.withDefaults()
	for _, d := range []string{ds.Inbox, ds.StateDir} {
		os.MkdirAll(d, 0o755)
	}
	tmp := filepath.Join(dir, "tmp")
	os.MkdirAll(tmp, 0o755)
	ctx := context.Background()
	first := filepath.Join(ds.Inbox, "first.csv")
	second := filepath.Join(ds.Inbox, "second.csv")
	writeBenchCSV(b, first, n, 0)
	writeBenchCSV(b, second, n, 1)
	d, err := prepare(ctx, &ds, tmp, first, benchScan(b, first), false, defaultScrub)
	if err != nil || d.outcome != outcomeReady {
		b.Fatalf("baseline: %v %v %v", err, d.reason, d.problems)
	}
	d.spoolF.Close()
	if err := os.Rename(d.newStatePath, statePath(ds.StateDir, ds.Name)); err != nil {
		b.Fatal(err)
	}

	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	scan2 := benchScan(b, second)
	runtime.GC()
	b.ResetTimer()
	var rows int64
	for i := 0; i < b.N; i++ {
		d, err := prepare(ctx, &ds, tmp, second, scan2, true, defaultScrub)
		if err != nil || d.outcome != outcomeReady {
			b.Fatalf("diff: %v %v", err, d.reason)
		}
		rows += d.rows
		if i == 0 {
			b.Logf("rows %d: creates %d updates %d deletes %d unchanged %d", d.rows, d.creates, d.updates, d.deletes, d.unchanged)
		}
		d.spoolF.Close()
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
}

func benchScan(b *testing.B, path string) *fileScan {
	b.Helper()
	fs, err := scanFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return &fs
}
