package mysqlbinlog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/testenv"
)

// BenchmarkCatchUp measures reading already-written binlog (rows/s) through the full
// Source path: decode, convert, envelope, key.
func BenchmarkCatchUp(b *testing.B) {
	srv, db := testenv.MariaDBDatabase(b)
	d, err := srv.Open(db)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Exec(`CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(40), income DECIMAL(12,2), village_code CHAR(12), born DATE, updated DATETIME)`); err != nil {
		b.Fatal(err)
	}
	const rows = 20000
	opts := Options{Name: "national", TopicPrefix: "sc", Host: srv.Host(), Port: srv.Port(), User: srv.ReplUser(),
		Password: srv.ReplPassword(), Flavor: srv.Flavor(), Databases: []string{db}, StateDir: b.TempDir(),
		SnapshotMode: SnapshotNever}
	opts.ServerID = serverIDs.Add(1)
	s0, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := s0.Open(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	start := s0.committed.Encode()
	s0.Close()
	for i := 0; i < rows; i += 1000 {
		var vals []string
		for j := i; j < i+1000; j++ {
			vals = append(vals, fmt.Sprintf("(%d,'姓名%d',%d.25,'510104001%03d','1980-01-02','2024-03-01 10:00:00')", j, j, j, j%1000))
		}
		if _, err := d.Exec("INSERT INTO person VALUES " + strings.Join(vals, ",")); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	total := 0
	began := time.Now()
	for n := 0; n < b.N; n++ {
		opts.ServerID = serverIDs.Add(1)
		s, err := New(opts)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if err := s.Open(ctx, start); err != nil {
			b.Fatal(err)
		}
		got := 0
		for got < rows {
			chs, err := s.ReadN(ctx, 2000)
			if err != nil {
				b.Fatal(err)
			}
			got += len(chs)
		}
		total += got
		cancel()
		s.Close()
	}
	b.ReportMetric(float64(total)/time.Since(began).Seconds(), "rows/s")
}
