package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const prefix = "tp"

// open migrates a fresh database for s and returns a pool that creates s's staging
// tables on every connection.
func open(t testing.TB, p *testenv.PostgresServer, db string, s *Sink) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(p.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.AfterConnect = s.AfterConnect
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := Migrate(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

func newSink(t testing.TB, o Options) *Sink {
	t.Helper()
	if o.Name == "" {
		o.Name = "provincial"
	}
	o.TopicPrefix = prefix
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// envelope is a canonical change of ent (an entity struct) as the transforms write it.
func envelope(t testing.TB, entity string, op schemas.Op, ent any) []byte {
	t.Helper()
	b, err := json.Marshal(ent)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	e := schemas.Envelope{V: 1, Op: op, Source: schemas.Source{System: "test", Kind: "transform", Table: entity},
		Key: map[string]any{"key": doc["key"]}, Schema: schemas.SchemaRef{Name: entity, Version: 1}, TsMs: 1}
	if op == schemas.OpDelete {
		e.Before = doc
	} else {
		e.After = doc
	}
	out, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// msgs numbers messages of one partition from offset first.
type feed struct {
	t      testing.TB
	s      *Sink
	offset map[string]int64
}

func newFeed(t testing.TB, s *Sink) *feed { return &feed{t: t, s: s, offset: map[string]int64{}} }

// rec makes the next record of entity's topic (partition 0).
func (f *feed) rec(entity string, value []byte) Record {
	topic := topicOf(entity)
	m := bus.Message{Topic: topic, Key: []byte("k"), Value: value, Offset: f.offset[topic]}
	f.offset[topic]++
	return f.s.Decode(m)
}

func (f *feed) ent(entity string, op schemas.Op, ent any) Record {
	return f.rec(entity, envelope(f.t, entity, op, ent))
}

func topicOf(entity string) string {
	for _, e := range schemas.Entities() {
		if e.Name == entity {
			return e.Topic(prefix)
		}
	}
	panic(entity)
}

func person(key string, version int64, name string) *schemas.Person {
	return &schemas.Person{Meta: schemas.Meta{Key: key, Version: version, Source: schemas.SourceRef{System: "national", Table: "person", Position: "binlog.000001:4"}, UpdatedMs: 1000 * version},
		PersonNo: key, HouseholdNo: "H" + key, RegionCode: "513423101001", IDNo: "513423198503120027", Name: name,
		WorkMonthlyIncome: "1234.50", WorkMonths: 7, Deceased: new(bool)}
}

// dump is every row of table (without applied_at) as text, ordered by key.
func dump(t testing.TB, pool *pgxpool.Pool, table string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), fmt.Sprintf("SELECT to_jsonb(x) - 'applied_at' FROM fpjc.%s x ORDER BY key", table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func scalar[T any](t testing.TB, pool *pgxpool.Pool, q string, args ...any) T {
	t.Helper()
	var v T
	if err := pool.QueryRow(context.Background(), q, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

func contains(xs []string, sub string) bool {
	for _, x := range xs {
		if strings.Contains(x, sub) {
			return true
		}
	}
	return false
}
