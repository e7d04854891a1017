package pglogical

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// resnapRows returns the ids (as strings) of the re-snapshot r events in cs, in order.
func resnapIDs(cs []capture.Change) []string {
	var ids []string
	for _, c := range cs {
		if c.Envelope.Op == schemas.OpRead && c.Envelope.Source.Snapshot && !c.PositionOnly {
			ids = append(ids, fmt.Sprint(c.Envelope.Key["id"]))
		}
	}
	return ids
}

func hasOp(cs []capture.Change, op schemas.Op, id string) bool {
	return slices.ContainsFunc(cs, func(c capture.Change) bool {
		return c.Envelope.Op == op && fmt.Sprint(c.Envelope.Key["id"]) == id
	})
}

// lastPosition returns the last non-nil position in cs.
func lastPosition(cs []capture.Change) capture.Position {
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].Position != nil {
			return cs[i].Position
		}
	}
	return nil
}

// TestRequestSnapshot: after the initial load and streamed changes, a re-snapshot with
// a condition emits r events for exactly the matching rows with their current values,
// in chunks, while streaming continues; the request survives a restart mid-way; bad
// requests are refused.
func TestRequestSnapshot(t *testing.T) {
	e := newPG(t)
	e.exec(t, accountsDDL)
	seedAccounts(t, e, 30)
	e.exec(t, `CREATE TABLE public.nokey (a int, b text)`, `ALTER TABLE public.nokey REPLICA IDENTITY FULL`)
	o := e.options("public.accounts", "public.nokey")
	o.ChunkSize = 4
	src := openSource(t, o, nil)
	defer func() { src.Close() }()
	drain(t, src, 60*time.Second, func(all []capture.Change) bool { return len(resnapIDs(all)) >= 30 })

	e.exec(t, `UPDATE accounts SET name = 'changed' WHERE id = 3`, `DELETE FROM accounts WHERE id = 5`, `INSERT INTO accounts VALUES (31, 'late', 1, '2020-01-01', '{}', true)`)
	drain(t, src, 60*time.Second, func(all []capture.Change) bool { return hasOp(all, schemas.OpCreate, "31") })

	for _, bad := range []struct{ table, where string }{
		{"public.accounts", "id < 3; DROP TABLE accounts"},
		{"public.accounts", "id < 3 -- comment"},
		{"public.accounts", "no_such_column = 1"},
		{"public.nope", ""},
	} {
		if err := src.RequestSnapshot(bad.table, bad.where); err == nil {
			t.Errorf("RequestSnapshot(%q, %q) accepted", bad.table, bad.where)
		}
	}
	if err := src.RequestSnapshot("public.accounts", "no_such_column = 1"); !errors.Is(err, ErrBadCondition) {
		t.Errorf("unknown column: got %v, want ErrBadCondition", err)
	}

	if err := src.RequestSnapshot("public.nokey", ""); err == nil || !strings.Contains(err.Error(), "no primary key") {
		t.Errorf("keyless table: %v, want a refusal naming the missing primary key", err)
	}
	if err := src.RequestSnapshot("accounts", "id <= 10"); err != nil { // the topic's table name
		t.Fatal(err)
	}
	e.exec(t, `UPDATE accounts SET name = 'during' WHERE id = 20`)
	// Read until the first chunk only, then "crash" with the position saved so far.
	first := drain(t, src, 60*time.Second, func(all []capture.Change) bool { return len(resnapIDs(all)) >= 4 })
	saved := lastPosition(first)
	p, _, err := DecodePosition(saved)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Resnapshot) != 1 || p.Resnapshot[0].Where != "id <= 10" || len(p.Resnapshot[0].Cursor) != 1 {
		t.Fatalf("position after the first chunk: %s, want the re-snapshot with a cursor", saved)
	}
	got := resnapIDs(first)
	if want := []string{"1", "2", "3", "4"}; !slices.Equal(got, want) {
		t.Fatalf("first chunk ids %v, want %v", got, want)
	}
	for _, c := range first {
		if c.Envelope.Op == schemas.OpRead && fmt.Sprint(c.Envelope.Key["id"]) == "3" && c.Envelope.After["name"] != "changed" {
			t.Errorf("id 3 re-read with name %v, want the current value", c.Envelope.After["name"])
		}
	}
	src.Close()

	src = openSource(t, o, saved)
	rest := drain(t, src, 60*time.Second, func(all []capture.Change) bool {
		return hasOp(all, schemas.OpRead, "10")
	})
	e.exec(t, `INSERT INTO accounts VALUES (32, 'after', 1, '2020-01-01', '{}', true)`)
	rest = append(rest, drain(t, src, 60*time.Second, func(all []capture.Change) bool { return hasOp(all, schemas.OpCreate, "32") })...)
	got = append(got, resnapIDs(rest)...)
	if want := []string{"1", "2", "3", "4", "6", "7", "8", "9", "10"}; !slices.Equal(got, want) {
		t.Fatalf("re-snapshot ids %v, want %v (matching rows only, 5 deleted)", got, want)
	}
	if !hasOp(first, schemas.OpUpdate, "20") && !hasOp(rest, schemas.OpUpdate, "20") {
		t.Error("the update made during the re-snapshot was not streamed")
	}
	// Versions: every re-snapshot row sorts below the change streamed after it.
	var rLSN, cLSN string
	for _, c := range rest {
		switch {
		case c.Envelope.Op == schemas.OpRead && rLSN == "":
			rLSN = c.Envelope.Source.LSN
		case c.Envelope.Op == schemas.OpCreate && fmt.Sprint(c.Envelope.Key["id"]) == "32":
			cLSN = c.Envelope.Source.LSN
		}
	}
	if lsnOf(t, rLSN) >= lsnOf(t, cLSN) {
		t.Errorf("re-snapshot row lsn %s not below the later streamed change's %s", rLSN, cLSN)
	}
	p, _, err = DecodePosition(lastPosition(rest))
	if err != nil || len(p.Resnapshot) != 0 {
		t.Errorf("position after the re-snapshot still lists %v (%v)", p.Resnapshot, err)
	}
}
