package pglogical_test

// Round trip of the synthetic generator's department tables through the connector's
// initial snapshot (issue #4): the generator writes the seven department tables into a
// private database (and the same rows as a UTF-8 CSV), the connector snapshots them,
// and the emitted r events must equal the tables, the generator's files and its
// manifest. The test lives in the external test package so it only sees the exported
// API and cannot collide with helpers other tests of the package define.

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/capture/pglogical"
	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/gen/gentest"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// TestGenRoundTripSnapshot snapshots the generator's department tables and checks the
// r events against the tables read independently with pgx, against the generator's
// UTF-8 CSV of the same rows, against Summary.DeptRows and against every signal line of
// the manifest.
func TestGenRoundTripSnapshot(t *testing.T) {
	srv, db := testenv.PostgresDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cfg := gentest.RoundTripConfig()
	out := t.TempDir()
	sum, err := gen.Generate(ctx, cfg, gen.Options{PGDSN: srv.ConnString(db), OutDir: out, Formats: []string{"csv"}, Workers: 2})
	if err != nil {
		t.Fatalf("generate into database %s: %v", db, err)
	}
	var tables []string
	var want int64
	for _, ds := range gen.Datasets {
		tables = append(tables, ds.Table())
		want += sum.DeptRows[ds.Table()]
	}

	src, err := pglogical.New(pglogical.Options{
		Name: "dept", TopicPrefix: "rt", ConnString: srv.ConnString(db),
		Slot: db, Publication: "pub_" + db[:min(len(db), 50)], Tables: tables,
		CreateSlot: true, CreatePublication: true, ChunkSize: 300,
		StatusInterval: 500 * time.Millisecond, HeartbeatInterval: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if err := src.Open(ctx, nil); err != nil {
		t.Fatalf("open: %v", err)
	}

	// Read until as many r events as the generator wrote rows; a short read would
	// block, so the context's deadline turns it into a failure naming the counts.
	events := map[string][]schemas.Envelope{} // table → r events
	var got int64
	var last capture.Position
	for got < want {
		cs, err := src.ReadN(ctx, 1000)
		if err != nil {
			t.Fatalf("ReadN after %d of %d snapshot rows: %v (per table so far: %v)", got, want, err, genRTCounts(events))
		}
		for _, c := range cs {
			if c.DeadLetter != nil {
				t.Fatalf("dead letter during the snapshot: %s (%s)", c.DeadLetter.Reason, c.DeadLetterReason)
			}
			if c.Position != nil {
				last = c.Position
			}
			if c.PositionOnly {
				continue
			}
			if c.Envelope.Op != schemas.OpRead {
				t.Fatalf("op %q during the snapshot of an idle database (table %s)", c.Envelope.Op, c.Envelope.Source.Table)
			}
			e := c.Envelope
			if !e.Source.Snapshot || e.Source.Kind != pglogical.Kind || e.Source.DB != db || e.Source.System != "dept" {
				t.Fatalf("snapshot event source = %+v, want snapshot=true kind=%s db=%s system=dept", e.Source, pglogical.Kind, db)
			}
			name := e.Source.Table
			if want := schemas.RawTopic("rt", "dept", name[strings.LastIndexByte(name, '.')+1:]); c.Topic != want {
				t.Fatalf("event of %s goes to topic %q, want %q", name, c.Topic, want)
			}
			events[name] = append(events[name], e)
			got++
		}
	}
	if last == nil {
		t.Fatal("no snapshot change carried a position")
	}
	if err := src.Ack(ctx, last); err != nil {
		t.Fatalf("ack the last snapshot position: %v", err)
	}
	// Nothing may follow: the next read finishes the snapshot and starts streaming an
	// idle database, so anything but heartbeats is a duplicate or a stray row.
	func() {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		cs, err := src.ReadN(rctx, 1000)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ReadN after the snapshot: %v", err)
		}
		for _, c := range cs {
			if !c.PositionOnly {
				t.Errorf("extra change after the snapshot: op %q table %s key %v", c.Envelope.Op, c.Envelope.Source.Table, c.Envelope.Key)
			}
		}
	}()

	conn, err := srv.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	text := gentest.Rows{}
	for _, ds := range gen.Datasets {
		table, key := ds.Table(), ds.Columns[0]
		evs := events[table]
		if n := int64(len(evs)); n != sum.DeptRows[table] {
			t.Errorf("%s: %d r events, Summary.DeptRows says %d", table, n, sum.DeptRows[table])
		}
		byKey := map[string]map[string]any{}
		for _, e := range evs {
			k, ok := e.After[key].(string)
			if !ok || k == "" {
				t.Fatalf("%s: event without a text %s: %v", table, key, e.After)
			}
			if !reflect.DeepEqual(e.Key, map[string]any{key: k}) {
				t.Errorf("%s: event key %v, want {%s: %s}", table, e.Key, key, k)
			}
			if _, dup := byKey[k]; dup {
				t.Errorf("%s: key %s emitted twice", table, k)
			}
			if len(e.After) != len(ds.Columns) {
				t.Errorf("%s %s: after has %d columns, want %d (%v)", table, k, len(e.After), len(ds.Columns), ds.Columns)
			}
			byKey[k] = e.After
		}

		// The table itself, scanned with pgx's binary types and converted the way the
		// connector documents: numeric as its text, dates as YYYY-MM-DD, integers as int64.
		rows, err := conn.Query(ctx, "SELECT "+strings.Join(ds.Columns, ", ")+" FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatalf("%s: scan: %v", table, err)
			}
			seen++
			k := vals[0].(string)
			after, ok := byKey[k]
			if !ok {
				t.Errorf("%s: row %s has no r event", table, k)
				continue
			}
			for i, col := range ds.Columns {
				w, err := genRTPGValue(vals[i])
				if err != nil {
					t.Fatalf("%s %s column %s: %v", table, k, col, err)
				}
				if g := after[col]; !reflect.DeepEqual(g, w) {
					t.Errorf("%s %s column %s: event has %#v, table has %#v", table, k, col, g, w)
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if seen != len(byKey) {
			t.Errorf("%s: table has %d rows, events %d distinct keys", table, seen, len(byKey))
		}

		// The generator's own text of the same rows (files carry values as
		// gen.CellString writes them): NULL is "", integers in decimal.
		csvRows := gentest.ReadCSV(t, filepath.Join(out, "files", ds.Department, ds.Name, ds.Name+".csv"), ds)
		if len(csvRows) != len(byKey) {
			t.Errorf("%s: generator CSV has %d rows, events %d", table, len(csvRows), len(byKey))
		}
		text[table] = map[string]map[string]string{}
		for k, after := range byKey {
			row := map[string]string{}
			for _, col := range ds.Columns {
				switch v := after[col].(type) {
				case nil:
					row[col] = ""
				case string:
					row[col] = v
				case int64:
					row[col] = strconv.FormatInt(v, 10)
				default:
					t.Fatalf("%s %s column %s: unexpected value type %T", table, k, col, v)
				}
			}
			if w, ok := csvRows[k]; !ok {
				t.Errorf("%s: event key %s is not in the generator's CSV", table, k)
			} else if !reflect.DeepEqual(row, w) {
				t.Errorf("%s %s: event %v, generator CSV %v", table, k, row, w)
			}
			text[table][k] = row
		}
	}
	if t.Failed() {
		return
	}
	gentest.CheckSignals(t, cfg, sum, text, gentest.ReadManifest(t, out))
}

func genRTCounts(ev map[string][]schemas.Envelope) map[string]int {
	m := map[string]int{}
	for k, v := range ev {
		m[k] = len(v)
	}
	return m
}

// genRTPGValue converts a value pgx decoded from the binary protocol into the form the
// connector emits for it (see decodeValue's documentation).
func genRTPGValue(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return x, nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case time.Time:
		return x.Format("2006-01-02"), nil
	case pgtype.Numeric:
		// Every department amount is numeric(12,2): PostgreSQL prints two decimals.
		if !x.Valid || x.NaN || x.InfinityModifier != pgtype.Finite {
			return nil, fmt.Errorf("numeric %+v is not a finite amount", x)
		}
		if x.Exp < -2 {
			return nil, fmt.Errorf("numeric with %d decimals in a numeric(12,2) column", -x.Exp)
		}
		c := new(big.Int).Mul(x.Int, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(x.Exp+2)), nil))
		sign := ""
		if c.Sign() < 0 {
			sign = "-"
			c.Neg(c)
		}
		q, r := new(big.Int).QuoRem(c, big.NewInt(100), new(big.Int))
		return fmt.Sprintf("%s%s.%02d", sign, q, r.Int64()), nil
	}
	return nil, fmt.Errorf("unexpected pgx type %T", v)
}
