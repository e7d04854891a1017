package postgres

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// benchRows is SHOUWANG_BENCH_ROWS (default 100,000 person changes).
func benchRows(b *testing.B) int {
	n := 100000
	if v := os.Getenv("SHOUWANG_BENCH_ROWS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("SHOUWANG_BENCH_ROWS=%q: want a positive number", v)
		}
	}
	return n
}

// benchPerson is a person with the fields a registry person usually has.
func benchPerson(i int, version int64) *schemas.Person {
	yes, no := true, false
	return &schemas.Person{Meta: schemas.Meta{Key: fmt.Sprintf("5134231010010%07d", i), Version: version,
		Source: schemas.SourceRef{System: "national", Table: "person", Position: fmt.Sprintf("binlog.000012:%d#%d", 4711+i, i%7)}, UpdatedMs: 1717200000000 + int64(i)},
		PersonNo: fmt.Sprintf("5134231010010%07d", i), HouseholdNo: fmt.Sprintf("H5134231010010%06d", i/4), RegionCode: "513423101001",
		IDType: "居民身份证", IDNo: "513423198503120027", Name: "张三丰", Sex: "男", BirthDate: "1985-03-12", Ethnicity: "汉族",
		RelationToHead: "户主", Education: "初中", SchoolStatus: "非在校生", Health: "健康", LabourSkill: "普通劳动力",
		WorkStatus: "务工", WorkPlace: "省内县外", WorkMonths: 10, WorkMonthlyIncome: "3200.00", EmploymentChannel: "自主",
		PublicWelfareJob: &no, ResidentMedicalInsurance: &yes, SeriousIllnessInsurance: &yes, ResidentPension: &yes,
		MedicalAssistance: &no, DibaoStatus: "未享受低保", TekunStatus: "未享受特困", Phone: "13812345678", Deceased: &no}
}

// benchSetup is a migrated database, a sink over it and n person changes of version
// v as consumed messages (one partition, offsets from 0).
func benchSetup(b *testing.B) (*Sink, *pgxpool.Pool, *testenv.PostgresServer, string) {
	p, db := testenv.PostgresDatabase(b)
	s := newSink(b, Options{Name: "bench", Entities: []string{"person"}})
	return s, open(b, p, db, s), p, db
}

func benchMessages(b *testing.B, n int, version int64) []bus.Message {
	msgs := make([]bus.Message, n)
	for i := range msgs {
		p := benchPerson(i, version)
		msgs[i] = bus.Message{Topic: topicOf("person"), Key: []byte(p.Key), Value: envelope(b, "person", schemas.OpUpdate, p), Offset: int64(i) + int64(n)*(version-1)}
	}
	return msgs
}

const benchBatch = 2000

// BenchmarkUpsert measures the sink's batched upserts of person changes against COPY
// of the same rows into an unindexed table of the same columns, same batches, same
// session:
//
//	copy_unindexed   COPY (text format) of each batch into a table with fpjc.person's
//	                 columns and no key or index, one transaction per batch
//	upsert_insert_N  Sink.Apply of each batch into the empty fpjc.person (key and three
//	                 indexes, version guard, offsets stored in the same transaction),
//	                 N lanes at once over disjoint partitions, as the sink worker runs
//	                 them (default 2)
//	upsert_update_N  the same keys again at the next version (every row rewritten)
//	decode           decoding the messages into records (the partition goroutines'
//	                 share, beside the database work)
func BenchmarkUpsert(b *testing.B) {
	n := benchRows(b)
	s, pool, _, _ := benchSetup(b)
	ctx := context.Background()
	v1, v2 := benchMessages(b, n, 1), benchMessages(b, n, 2)
	decodeAll := func(msgs []bus.Message) []Record {
		recs := make([]Record, len(msgs))
		for i, m := range msgs {
			recs[i] = s.Decode(m)
			if recs[i].Err != nil {
				b.Fatal(recs[i].Err)
			}
		}
		return recs
	}
	r1, r2 := decodeAll(v1), decodeAll(v2)
	rate := func(b *testing.B, start time.Time, rows int) {
		b.ReportMetric(float64(rows*b.N)/time.Since(start).Seconds(), "rows/s")
		b.ReportMetric(0, "ns/op")
	}
	reset := func(b *testing.B) {
		b.Helper()
		if _, err := pool.Exec(ctx, "TRUNCATE fpjc.person, fpjc.sink_offsets"); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("copy_unindexed", func(b *testing.B) {
		var texts [][]byte
		for lo := 0; lo < n; lo += benchBatch {
			var buf bytes.Buffer
			for _, r := range r1[lo:min(lo+benchBatch, n)] {
				for i, v := range r.vals {
					if i > 0 {
						buf.WriteByte('\t')
					}
					if v == nil {
						buf.WriteString(`\N`)
						continue
					}
					buf.Write(appendCopyText(nil, v.(string)))
				}
				buf.WriteString("\tfalse\t2024-06-01 00:00:00+00\n")
			}
			texts = append(texts, buf.Bytes())
		}
		var cols []string
		for _, c := range r1[0].tgt.cols {
			cols = append(cols, c.name)
		}
		copySQL := "COPY bench_copy (" + strings.Join(cols, ", ") + ", deleted, applied_at) FROM STDIN"
		var elapsed time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if _, err := pool.Exec(ctx, "DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (LIKE fpjc.person)"); err != nil {
				b.Fatal(err)
			}
			conn, err := pool.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			for _, t := range texts {
				if _, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(t), copySQL); err != nil {
					b.Fatal(err)
				}
			}
			elapsed += time.Since(start)
			conn.Release()
		}
		b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "rows/s")
		b.ReportMetric(0, "ns/op")
	})
	// lanes splits recs over partitions 0..n-1, one lane (sink worker lane) each.
	lanes := func(recs []Record, n int) [][]Record {
		out := make([][]Record, n)
		for i, r := range recs {
			r.Msg.Partition = i % n
			out[i%n] = append(out[i%n], r)
		}
		return out
	}
	apply := func(b *testing.B, parts [][]Record, before func(b *testing.B)) {
		var elapsed time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			before(b)
			b.StartTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for _, recs := range parts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for lo := 0; lo < len(recs); lo += benchBatch {
						res, err := s.Apply(ctx, pool, recs[lo:min(lo+benchBatch, len(recs))])
						if err != nil {
							b.Error(err)
							return
						}
						if res.Applied != min(benchBatch, len(recs)-lo) {
							b.Errorf("batch at %d: %+v", lo, res.Counts)
						}
					}
				}()
			}
			wg.Wait()
			elapsed += time.Since(start)
		}
		b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "rows/s")
		b.ReportMetric(0, "ns/op")
	}
	fill := func(b *testing.B) {
		reset(b)
		for lo := 0; lo < n; lo += benchBatch {
			if _, err := s.Apply(ctx, pool, r1[lo:min(lo+benchBatch, n)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, l := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("upsert_insert_%dlane", l), func(b *testing.B) { apply(b, lanes(r1, l), reset) })
		b.Run(fmt.Sprintf("upsert_update_%dlane", l), func(b *testing.B) { apply(b, lanes(r2, l), fill) })
	}
	b.Run("decode", func(b *testing.B) {
		start := time.Now()
		for i := 0; i < b.N; i++ {
			for _, m := range v1 {
				if r := s.Decode(m); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
		rate(b, start, n)
	})
}
