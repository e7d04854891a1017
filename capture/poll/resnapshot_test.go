package poll

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

func TestRequestSnapshotPostgres(t *testing.T) {
	b, state := pgBackend(t)
	testRequestSnapshot(t, b, state)
}
func TestRequestSnapshotMariaDB(t *testing.T) {
	b, state := mariaBackend(t)
	testRequestSnapshot(t, b, state)
}

// readIDs returns the key ids of the changes with op, in order.
func readIDs(cs []capture.Change, op schemas.Op) []string {
	var ids []string
	for _, c := range cs {
		if c.Envelope.Op == op && !c.PositionOnly && c.DeadLetter == nil {
			ids = append(ids, fmt.Sprint(c.Envelope.Key["id"]))
		}
	}
	return ids
}

// testRequestSnapshot: after the initial poll and a few polled changes, a re-snapshot
// with a condition emits r for exactly the matching rows with current values (even a
// change the poll cannot see), survives a restart mid-way, and polling continues.
func testRequestSnapshot(t *testing.T, b *backend, stateDSN string) {
	ctx := context.Background()
	b.exec(t, b.seedRows(30))
	o := b.options("dept", stateDSN, prometheus.NewRegistry())
	o.Queries[0].BatchSize = 4
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	if cs, _ := readAll(t, s); len(readIDs(cs, schemas.OpCreate)) != 30 {
		t.Fatalf("initial poll: %v", ops(cs))
	}
	b.exec(t, `UPDATE person SET name = 'changed', updated_at = `+b.ago(5)+` WHERE id = 3`,
		`UPDATE person SET name = 'silent' WHERE id = 7`, // timestamp not bumped: invisible to polls
		`DELETE FROM person WHERE id = 5`,
		`INSERT INTO person VALUES (31, 'late', 1, DATE '2000-01-01', 1, `+b.ago(5)+`)`)
	due(s, false)
	if cs, _ := readAll(t, s); !slices.Equal(readIDs(cs, schemas.OpUpdate), []string{"3"}) || !slices.Equal(readIDs(cs, schemas.OpCreate), []string{"31"}) {
		t.Fatalf("polled changes: %v", ops(cs))
	}

	for _, bad := range []struct{ query, where string }{
		{"person", "id < 3; DELETE FROM person"},
		{"person", "id < 3 -- comment"},
		{"person", "no_such_column = 1"},
		{"nope", ""},
	} {
		if err := s.RequestSnapshot(bad.query, bad.where); err == nil {
			t.Errorf("RequestSnapshot(%q, %q) accepted", bad.query, bad.where)
		}
	}
	if err := s.RequestSnapshot("person", "no_such_column = 1"); !errors.Is(err, ErrBadCondition) {
		t.Errorf("unknown column: %v, want ErrBadCondition", err)
	}

	if err := s.RequestSnapshot("person", "id <= 10"); err != nil {
		t.Fatal(err)
	}
	// First the request is made durable, then the first chunk; then a crash.
	var first []capture.Change
	var saved capture.Position
	for len(readIDs(first, schemas.OpRead)) < 4 {
		cs, err := s.ReadN(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, cs...)
		saved = cs[len(cs)-1].Position
		if err := s.Ack(ctx, saved); err != nil {
			t.Fatal(err)
		}
	}
	if first[0].PositionOnly != true {
		t.Errorf("first change after the request is %+v, want a position-only change", first[0])
	}
	doc, err := parsePosition(saved)
	if err != nil || len(doc.Resnapshot) != 1 || len(doc.Resnapshot[0].Key) != 1 {
		t.Fatalf("position after the first chunk %s (%v): want the re-snapshot with a cursor", saved, err)
	}
	s.Close()

	s, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx, saved); err != nil {
		t.Fatal(err)
	}
	rest, _ := readAll(t, s)
	all := append(first, rest...)
	if got, want := readIDs(all, schemas.OpRead), []string{"1", "2", "3", "4", "6", "7", "8", "9", "10"}; !slices.Equal(got, want) {
		t.Fatalf("re-snapshot ids %v, want %v", got, want)
	}
	for _, c := range all {
		if c.Envelope.Op != schemas.OpRead {
			continue
		}
		if !c.Envelope.Source.Snapshot || c.Envelope.Before != nil || c.Topic != "pt.raw.dept.person" {
			t.Errorf("r event %s: snapshot=%v before=%v topic=%s", c.Key, c.Envelope.Source.Snapshot, c.Envelope.Before, c.Topic)
		}
		switch fmt.Sprint(c.Envelope.Key["id"]) {
		case "3":
			if c.Envelope.After["name"] != "changed" {
				t.Errorf("id 3 re-read as %v", c.Envelope.After["name"])
			}
		case "7":
			if c.Envelope.After["name"] != "silent" {
				t.Errorf("id 7 re-read as %v, want the value the poll could not see", c.Envelope.After["name"])
			}
		}
	}
	if doc, _ := parsePosition(rest[len(rest)-1].Position); len(doc.Resnapshot) != 0 {
		t.Errorf("position after the re-snapshot still lists %v", doc.Resnapshot)
	}

	// Polling continues; re-read rows are in the key store (an update is a u with the
	// re-read row as before).
	b.exec(t, `UPDATE person SET name = 'again', updated_at = `+b.ago(4)+` WHERE id = 7`)
	due(s, false)
	cs, _ := readAll(t, s)
	if got := readIDs(cs, schemas.OpUpdate); !slices.Equal(got, []string{"7"}) {
		t.Fatalf("poll after the re-snapshot: %v", ops(cs))
	}
	if cs[0].Envelope.Before["name"] != "silent" {
		t.Errorf("update before-image %v, want the re-read row", cs[0].Envelope.Before)
	}
}
