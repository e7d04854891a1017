package poll

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// backend is one kind of department database with a person table and a view over it.
type backend struct {
	driver   Driver
	dsn      string
	db       *sql.DB
	relation string
	// ago renders "now minus sec seconds" by the database clock.
	ago      func(sec int) string
	seedRows func(n int) string
	badRow   []string // statements inserting row id 1000 with an unconvertible value
}

func pgBackend(t *testing.T) (*backend, string) {
	pg, db := testenv.PostgresDatabase(t)
	_, stateDB := testenv.PostgresDatabase(t)
	conn, err := sql.Open("pgx", pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	b := &backend{driver: DriverPostgres, dsn: pg.ConnString(db), db: conn, relation: "public.v_person",
		ago: func(sec int) string { return fmt.Sprintf("LOCALTIMESTAMP - interval '%d seconds'", sec) },
		seedRows: func(n int) string {
			return fmt.Sprintf(`INSERT INTO person SELECT g, concat('n', g), g * 1.5, DATE '2000-01-01' + g, g, LOCALTIMESTAMP - interval '60 seconds'
				FROM generate_series(1, %d) g`, n)
		},
		badRow: []string{`INSERT INTO person VALUES (1000, 'bad', 1, DATE '2000-01-01', 'NaN', LOCALTIMESTAMP - interval '5 seconds')`},
	}
	b.exec(t, `CREATE TABLE person (id bigint PRIMARY KEY, name varchar(50), amount numeric(10,2), birth date, score float8, updated_at timestamp(6) NOT NULL)`,
		`CREATE VIEW v_person AS SELECT * FROM person`)
	return b, pg.ConnString(stateDB)
}

func mariaBackend(t *testing.T) (*backend, string) {
	m, db := testenv.MariaDBDatabase(t)
	pg, stateDB := testenv.PostgresDatabase(t)
	conn, err := sql.Open("mysql", m.RootDSN(db))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetMaxOpenConns(4)
	t.Cleanup(func() { conn.Close() })
	b := &backend{driver: DriverMySQL, dsn: m.RootDSN(db), db: conn, relation: "v_person",
		ago: func(sec int) string { return fmt.Sprintf("NOW(6) - INTERVAL %d SECOND", sec) },
		seedRows: func(n int) string {
			return fmt.Sprintf(`INSERT INTO person SELECT g, CONCAT('n', g), g * 1.5, DATE '2000-01-01' + INTERVAL g DAY, g, NOW(6) - INTERVAL 60 SECOND
				FROM (WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %d) SELECT g FROM s) AS gen`, n)
		},
		// sql_mode without NO_ZERO_DATE lets a department store 0000-00-00.
		badRow: []string{`SET SESSION sql_mode = ''`,
			`INSERT INTO person VALUES (1000, 'bad', 1, '0000-00-00', 1, NOW(6) - INTERVAL 5 SECOND)`},
	}
	b.exec(t, `CREATE TABLE person (id bigint PRIMARY KEY, name varchar(50), amount decimal(10,2), birth date, score double, updated_at datetime(6) NOT NULL) CHARSET utf8mb4`,
		`CREATE VIEW v_person AS SELECT * FROM person`)
	return b, pg.ConnString(stateDB)
}

func (b *backend) exec(t *testing.T, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := b.db.Conn(ctx) // one connection, so session settings apply to the next statements
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func (b *backend) options(name, stateDSN string, reg prometheus.Registerer) Options {
	return Options{Name: name, TopicPrefix: "pt", Driver: b.driver, DSN: b.dsn, StateDSN: stateDSN, Registerer: reg,
		Queries: []QueryOptions{{Name: "person", Relation: b.relation, Key: []string{"id"}, Mode: ModeTimestamp, Column: "updated_at",
			Interval: time.Hour, BatchSize: 100, SafetyLag: time.Second,
			DeleteDetection: DeleteDetection{Enabled: true, Interval: time.Hour, MaxDeleteShare: 0.3}}}}
}

// readAll drives s like the runner does (ReadN, then Ack of the batch's position) until
// nothing is due; onIdle ends the wait instead of a timer.
func readAll(t *testing.T, s *Source) (all []capture.Change, batches int) {
	t.Helper()
	for {
		ctx, cancel := context.WithCancel(context.Background())
		s.onIdle = cancel
		cs, err := s.ReadN(ctx, 1000)
		cancel()
		if errors.Is(err, context.Canceled) {
			return all, batches
		}
		if err != nil {
			t.Fatal(err)
		}
		batches++
		all = append(all, cs...)
		var pos capture.Position
		for _, c := range cs {
			if c.Position != nil {
				pos = c.Position
			}
		}
		if pos == nil {
			t.Fatal("a batch without a position")
		}
		if err := s.Ack(context.Background(), pos); err != nil {
			t.Fatal(err)
		}
	}
}

func due(s *Source, scan bool) {
	for _, q := range s.qs {
		q.nextPoll = time.Time{}
		if scan {
			q.nextScan = time.Time{}
		}
	}
}

func ops(cs []capture.Change) map[string]int {
	m := map[string]int{}
	for _, c := range cs {
		if c.DeadLetter != nil {
			m["dlq"]++
			continue
		}
		m[string(c.Envelope.Op)]++
	}
	return m
}

func TestPollPostgres(t *testing.T) { b, state := pgBackend(t); testPoll(t, b, state) }
func TestPollMariaDB(t *testing.T)  { b, state := mariaBackend(t); testPoll(t, b, state) }

func testPoll(t *testing.T, b *backend, stateDSN string) {
	ctx := context.Background()
	// 250 rows sharing one timestamp, read 100 at a time: ties across batch boundaries.
	b.exec(t, b.seedRows(250))
	reg := prometheus.NewRegistry()
	s, err := New(b.options("dept", stateDSN, reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	cs, batches := readAll(t, s)
	if got := ops(cs); got["c"] != 250 || len(cs) != 250 {
		t.Fatalf("initial poll: %v, want 250 creates", got)
	}
	if batches < 3 {
		t.Fatalf("initial poll took %d batches, want >= 3 with batch size 100", batches)
	}
	ids := map[string]bool{}
	for _, c := range cs {
		ids[string(c.Key)] = true
		if c.Topic != "pt.raw.dept.person" || c.Envelope.Source.Kind != "poll" {
			t.Fatalf("change %s: topic %s kind %s", c.Key, c.Topic, c.Envelope.Source.Kind)
		}
	}
	if len(ids) != 250 || !ids[`{"id":250}`] || !ids[`{"id":1}`] {
		t.Fatalf("initial poll: %d distinct keys", len(ids))
	}
	first := cs[0].Envelope
	if first.After["amount"] != "1.50" || first.After["birth"] != "2000-01-02" || first.After["name"] != "n1" {
		t.Fatalf("converted row = %v", first.After)
	}
	if err := first.Validate(); err != nil {
		t.Fatal(err)
	}

	// Nothing changed: a forced poll emits nothing.
	due(s, false)
	if cs, _ := readAll(t, s); len(cs) != 0 {
		t.Fatalf("re-poll emitted %d changes", len(cs))
	}

	// Updates bump the timestamp → u with before.
	b.exec(t, fmt.Sprintf(`UPDATE person SET name = 'changed', updated_at = %s WHERE id IN (5, 6, 7)`, b.ago(10)))
	due(s, false)
	cs, _ = readAll(t, s)
	if got := ops(cs); got["u"] != 3 || len(cs) != 3 {
		t.Fatalf("after update: %v", got)
	}
	for _, c := range cs {
		if !strings.HasPrefix(fmt.Sprint(c.Envelope.Before["name"]), "n") || c.Envelope.After["name"] != "changed" {
			t.Fatalf("update %s: before %v after %v", c.Key, c.Envelope.Before, c.Envelope.After)
		}
	}

	// A bad value becomes a dead letter and the stream continues.
	b.exec(t, b.badRow...)
	b.exec(t, fmt.Sprintf(`INSERT INTO person VALUES (1001, 'good', 2.5, DATE '2001-01-01', 3, %s)`, b.ago(4)))
	due(s, false)
	cs, _ = readAll(t, s)
	if got := ops(cs); got["dlq"] != 1 || got["c"] != 1 {
		for _, c := range cs {
			t.Logf("%s %v %+v", c.Key, c.Envelope.After, c.DeadLetter)
		}
		t.Fatalf("after bad row: %v", got)
	}
	for _, c := range cs {
		if c.DeadLetter != nil && (!strings.Contains(c.DeadLetter.Reason, "1000") || c.DeadLetterReason == "") {
			t.Fatalf("dead letter = %+v (%s)", c.DeadLetter, c.DeadLetterReason)
		}
	}

	// Deletes are found by the key-set comparison, with the stored row as before.
	b.exec(t, `DELETE FROM person WHERE id IN (10, 11)`)
	due(s, true)
	cs, _ = readAll(t, s)
	if got := ops(cs); got["d"] != 2 || len(cs) != 2 {
		t.Fatalf("after delete: %v", got)
	}
	for _, c := range cs {
		if c.Envelope.Before["name"] != "n10" && c.Envelope.Before["name"] != "n11" {
			t.Fatalf("delete before = %v", c.Envelope.Before)
		}
	}
	due(s, true)
	if cs, _ := readAll(t, s); len(cs) != 0 {
		t.Fatalf("second scan emitted %v", ops(cs))
	}

	// Mass delete: held, nothing emitted, counted.
	b.exec(t, `DELETE FROM person WHERE id > 100 AND id < 1000`)
	due(s, true)
	if cs, _ := readAll(t, s); len(cs) != 0 {
		t.Fatalf("mass delete emitted %v", ops(cs))
	}
	if got := counter(t, reg, "shouwang_poll_deletes_held_total"); got != 1 {
		t.Fatalf("held counter = %v", got)
	}
	if got := counter(t, reg, "shouwang_poll_rows_total"); got < 255 {
		t.Fatalf("rows counter = %v", got)
	}
}

// TestLateCommitWithinSafetyLag: a transaction stamps its row, another row with a newer
// stamp commits first and is polled, then the first commits (within the lag): with the
// safety lag it is read; without, the watermark has passed it and it is missed.
func TestLateCommitPostgres(t *testing.T) { testLateCommit(t, pgBackend) }
func TestLateCommitMariaDB(t *testing.T)  { testLateCommit(t, mariaBackend) }

func testLateCommit(t *testing.T, mk func(*testing.T) (*backend, string)) {
	for _, lag := range []time.Duration{2 * time.Second, -1} {
		t.Run(fmt.Sprintf("lag=%v", lag), func(t *testing.T) {
			b, state := mk(t)
			ctx := context.Background()
			o := b.options("late", state, nil)
			o.Queries[0].SafetyLag, o.Queries[0].Interval = lag, 50*time.Millisecond
			s, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Open(ctx, nil); err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			tx, err := b.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO person VALUES (1, 'late', 1, DATE '2000-01-01', 1, %s)`, b.ago(0))); err != nil {
				t.Fatal(err)
			}
			// Make sure the committed row's stamp is strictly newer.
			var later string
			if b.driver == DriverMySQL {
				later = "NOW(6) + INTERVAL 100000 MICROSECOND"
			} else {
				later = "clock_timestamp()::timestamp + interval '100 milliseconds'"
			}
			b.exec(t, fmt.Sprintf(`INSERT INTO person VALUES (2, 'early', 1, DATE '2000-01-01', 1, %s)`, later))

			seen := map[string]bool{}
			poll := func() {
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				cs, err := s.ReadN(ctx, 100)
				if errors.Is(err, context.DeadlineExceeded) {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range cs {
					seen[string(c.Key)] = true
				}
				if err := s.Ack(ctx, cs[len(cs)-1].Position); err != nil {
					t.Fatal(err)
				}
			}
			poll() // without a lag this reads row 2 and moves the watermark past row 1
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for !seen[`{"id":2}`] && time.Now().Before(deadline) {
				poll()
			}
			poll()
			if !seen[`{"id":2}`] {
				t.Fatal("row 2 never read")
			}
			if lag > 0 && !seen[`{"id":1}`] {
				t.Fatal("the late-committing row was missed despite the safety lag")
			}
			if lag < 0 && seen[`{"id":1}`] {
				t.Fatal("without a safety lag the late row was still read: the test does not exercise the race")
			}
		})
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestOversizedRowKeepsPreviousVersion: a row that grows over max_row_bytes goes to the
// DLQ as oversized (key and length, not the row); its key's previous version stays:
// no update, and the delete scan, which still finds the key in the view, emits no
// delete. Once the row shrinks again it is an ordinary update.
func TestOversizedRowKeepsPreviousVersion(t *testing.T) {
	b, state := pgBackend(t)
	b.exec(t, `DROP VIEW v_person`, `ALTER TABLE person ALTER COLUMN name TYPE text`,
		`CREATE VIEW v_person AS SELECT * FROM person`, b.seedRows(10))
	o := b.options("big", state, prometheus.NewRegistry())
	o.MaxRowBytes = 2048
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cs, _ := readAll(t, s); ops(cs)["c"] != 10 {
		t.Fatalf("first poll: %v", ops(cs))
	}
	b.exec(t, `UPDATE person SET name = repeat('x', 3000), updated_at = LOCALTIMESTAMP - interval '5 seconds' WHERE id = 5`)
	due(s, true)
	cs, _ := readAll(t, s)
	if got := ops(cs); got["dlq"] != 1 || got["u"] != 0 || got["d"] != 0 {
		t.Fatalf("oversized row: %v, want only one dead letter", got)
	}
	for _, c := range cs {
		if c.DeadLetter != nil && (c.DeadLetterReason != "oversized" || !strings.Contains(c.DeadLetter.Reason, "exceeds max_row_bytes 2048") || len(c.DeadLetter.Payload) > 64) {
			t.Fatalf("dead letter %q (%s), payload %d bytes", c.DeadLetter.Reason, c.DeadLetterReason, len(c.DeadLetter.Payload))
		}
	}
	b.exec(t, `UPDATE person SET name = 'short again', updated_at = LOCALTIMESTAMP - interval '4 seconds' WHERE id = 5`)
	due(s, true)
	cs, _ = readAll(t, s)
	if got := ops(cs); got["u"] != 1 || len(cs) == 0 {
		t.Fatalf("shrunk row: %v, want one update", got)
	}
	for _, c := range cs {
		if c.Envelope.Op == schemas.OpUpdate && c.Envelope.Before["name"] != "n5" {
			t.Fatalf("update before = %v, want the version before the oversized one", c.Envelope.Before)
		}
	}
}
