package gen

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkGenerateVillages measures pure generation (households, persons, defects,
// department rows, TSV encoding) on one core.
func BenchmarkGenerateVillages(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Households = 20000
	var persons int
	start := time.Now()
	for i := 0; i < b.N; i++ {
		persons = 0
		collect(b, cfg, func(h *Household, _ []ManifestLine) { persons += len(h.Members) })
	}
	s := time.Since(start).Seconds()
	b.ReportMetric(float64(cfg.Households*b.N)/s, "households/s")
	b.ReportMetric(float64(persons*b.N)/s, "persons/s")
}

// BenchmarkGenerateMemory runs the whole pipeline for 50k households into files and
// reports the peak heap, sampled every 5 ms: memory must not grow with the province.
func BenchmarkGenerateMemory(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Households = 50000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var peak uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		sum, err := Generate(context.Background(), cfg, Options{OutDir: b.TempDir(), Formats: []string{"csv", "gb18030"}})
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(sum.Persons), "persons")
	}
}
