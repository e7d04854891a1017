package pglogical

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// pgEnv is one test's database on the shared server, with a unique slot and
// publication name (slots are cluster-wide).
type pgEnv struct {
	srv  *testenv.PostgresServer
	db   string
	name string
}

func newPG(t *testing.T) *pgEnv {
	t.Helper()
	srv, db := testenv.PostgresDatabase(t)
	return &pgEnv{srv: srv, db: db, name: db}
}

func (e *pgEnv) exec(t testing.TB, stmts ...string) {
	t.Helper()
	if err := e.srv.Exec(context.Background(), e.db, stmts...); err != nil {
		t.Fatal(err)
	}
}

func (e *pgEnv) options(tables ...string) Options {
	return Options{Name: "dept", TopicPrefix: "tp", ConnString: e.srv.ConnString(e.db), Slot: e.name, Publication: "pub_" + e.name[:min(len(e.name), 50)],
		Tables: tables, CreateSlot: true, CreatePublication: true, ChunkSize: 500,
		StatusInterval: 500 * time.Millisecond, HeartbeatInterval: 500 * time.Millisecond}
}

// scalar returns one value as text.
func (e *pgEnv) scalar(t testing.TB, q string, args ...any) string {
	t.Helper()
	conn, err := e.srv.Connect(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s *string
	if err := conn.QueryRow(context.Background(), q, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if s == nil {
		return ""
	}
	return *s
}

// tableState reads the table as key → row JSON (through the same decoder, via
// to_jsonb for a neutral comparison).
func (e *pgEnv) tableState(t testing.TB, table, key string) map[string]string {
	t.Helper()
	conn, err := e.srv.Connect(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), fmt.Sprintf(`SELECT %s::text, to_jsonb(x)::text FROM %s x`, key, table))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = normJSON(t, []byte(v))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// normJSON re-encodes a JSON object with numbers as strings-of-numbers so that
// "1.50" (numeric text) and 1.50 (jsonb number) compare equal.
func normJSON(t testing.TB, b []byte) string {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return canon(m)
}

func canon(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s=%v;", k, m[k])
	}
	return sb.String()
}

// applyEnvelopes replays envelopes into key → canonical row.
func applyEnvelopes(t testing.TB, state map[string]string, envs []*schemas.Envelope, keyCol string) {
	t.Helper()
	for _, e := range envs {
		switch e.Op {
		case schemas.OpRead, schemas.OpCreate, schemas.OpUpdate:
			b, _ := json.Marshal(e.After)
			state[fmt.Sprint(e.Key[keyCol])] = normJSON(t, b)
		case schemas.OpDelete:
			delete(state, fmt.Sprint(e.Key[keyCol]))
		case schemas.OpTruncate:
			clear(state)
		}
	}
}

// drain reads from src until stop says so or the timeout hits, acking as it goes.
func drain(t *testing.T, src *Source, timeout time.Duration, stop func(all []capture.Change) bool) []capture.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var all []capture.Change
	for !stop(all) {
		cs, err := src.ReadN(ctx, 5000)
		if err != nil {
			t.Fatalf("ReadN after %d changes: %v", len(all), err)
		}
		all = append(all, cs...)
		for i := len(cs) - 1; i >= 0; i-- {
			if cs[i].Position != nil {
				if err := src.Ack(ctx, cs[i].Position); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
	}
	return all
}

func envelopes(cs []capture.Change) []*schemas.Envelope {
	out := make([]*schemas.Envelope, 0, len(cs))
	for i := range cs {
		if cs[i].DeadLetter == nil {
			e := cs[i].Envelope
			out = append(out, &e)
		}
	}
	return out
}

func countOps(cs []capture.Change) map[schemas.Op]int {
	m := map[schemas.Op]int{}
	for _, c := range cs {
		m[c.Envelope.Op]++
	}
	return m
}

func openSource(t *testing.T, o Options, last capture.Position) *Source {
	t.Helper()
	src, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(context.Background(), last); err != nil {
		src.Close()
		t.Fatal(err)
	}
	return src
}

func lsnOf(t testing.TB, s string) pglogrepl.LSN {
	l, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
