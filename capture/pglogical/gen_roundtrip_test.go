package pglogical_test

// Round trip of the synthetic generator's department tables through the connector's
// initial snapshot (issue #4): the generator writes the seven department tables into a
// private database (and the same rows as a UTF-8 CSV), the connector snapshots them,
// and the emitted r events must equal the tables, the generator's files and its
// manifest. The test lives in the external test package so it only sees the exported
// API and cannot collide with helpers other tests of the package define.

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
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
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// genRTConfig is a few hundred households with signal rates raised far above the
// defaults, so that every signal rule fires several times in a small dataset.
func genRTConfig() gen.Config {
	cfg := gen.DefaultConfig()
	cfg.Seed = 4
	cfg.Households = 400
	s := &cfg.Signals
	s.OOPRate, s.OOPNoiseRate = 0.02, 0.01
	s.SevereDisabilityRate = 0.02
	s.HousingCDRate = 0.03
	s.AssistanceRate = 0.02
	s.DeathRate = 0.02
	s.DropoutRate = 0.08
	s.DisasterRate, s.DisasterNoiseRate = 0.03, 0.02
	return cfg
}

// TestGenRoundTripSnapshot snapshots the generator's department tables and checks the
// r events against the tables read independently with pgx, against the generator's
// UTF-8 CSV of the same rows, against Summary.DeptRows and against every signal line of
// the manifest.
func TestGenRoundTripSnapshot(t *testing.T) {
	srv, db := testenv.PostgresDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cfg := genRTConfig()
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

	text := genRTRows{}
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
		csvRows := genRTReadCSV(t, filepath.Join(out, "files", ds.Department, ds.Name, ds.Name+".csv"), ds)
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
	genRTCheckSignals(t, cfg, sum, text, genRTManifest(t, out))
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

// genRTReadCSV reads a generator CSV with encoding/csv: key (first column) → column → text.
func genRTReadCSV(t *testing.T, path string, ds gen.Dataset) map[string]map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	hdr, err := r.Read()
	if err != nil {
		t.Fatalf("%s: header: %v", path, err)
	}
	if !reflect.DeepEqual(hdr, ds.Headers) {
		t.Fatalf("%s: header %v, want %v", path, hdr, ds.Headers)
	}
	out := map[string]map[string]string{}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		row := map[string]string{}
		for i, col := range ds.Columns {
			row[col] = rec[i]
		}
		if _, dup := out[rec[0]]; dup {
			t.Fatalf("%s: key %s twice", path, rec[0])
		}
		out[rec[0]] = row
	}
	return out
}

// genRTManifest reads the signal lines of OUT/manifest.jsonl.
func genRTManifest(t *testing.T, out string) []gen.ManifestLine {
	t.Helper()
	f, err := os.Open(filepath.Join(out, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []gen.ManifestLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var l gen.ManifestLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("manifest.jsonl line %d: %v", n, err)
		}
		if l.Kind == "signal" {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// genRTRows is department data as text: table → key (first column) → column → value,
// NULL as "" (the form gen.CellString gives files).
type genRTRows map[string]map[string]map[string]string

// genRTCents parses a two-decimal amount ("123.45") into cents.
func genRTCents(s string) (int64, error) {
	whole, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 2 {
		return 0, fmt.Errorf("amount %q does not have two decimals", s)
	}
	return strconv.ParseInt(whole+frac, 10, 64)
}

// genRTCheckSignals checks that each manifest signal line's department record is among
// the captured rows, shaped the way internal/gen/dept.go writes that signal, and that
// the signal counts match the summary. Messages name person and household numbers,
// never ID numbers.
func genRTCheckSignals(t *testing.T, cfg gen.Config, sum *gen.Summary, rows genRTRows, lines []gen.ManifestLine) {
	t.Helper()
	asOf := cfg.AsOf.Format("2006-01-02")
	recent := cfg.AsOf.AddDate(0, -cfg.Signals.RecentMonths, 1).Format("2006-01-02")
	yearAgo := cfg.AsOf.AddDate(-1, 0, 1).Format("2006-01-02")
	byID := func(table, col string) map[string][]map[string]string {
		m := map[string][]map[string]string{}
		for _, r := range rows[table] {
			m[r[col]] = append(m[r[col]], r)
		}
		return m
	}
	settlements := byID("yibao.settlement", "id_no")
	certs := byID("canlian.disability_cert", "id_no")
	cents := func(l gen.ManifestLine) int64 { return int64(math.Round(*l.Value * 100)) }
	amount := func(who, s string) int64 {
		c, err := genRTCents(s)
		if err != nil {
			t.Errorf("%s: %v", who, err)
		}
		return c
	}
	inRange := func(who, what, d, from, to string) {
		if d < from || d > to {
			t.Errorf("%s: %s %s outside %s..%s", who, what, d, from, to)
		}
	}
	// record returns the row a signal points at, checking ID and village.
	record := func(l gen.ManifestLine, table, key, idCol, villageCol string) map[string]string {
		r := rows[table][key]
		if r == nil {
			t.Errorf("%s/%s %s: no %s record %s", l.Department, l.Rule, l.Key, table, key)
			return nil
		}
		if r[idCol] != l.IDNo || r[villageCol] != l.VillageCode {
			t.Errorf("%s/%s %s: record %s has another ID number or village (%s) than the manifest (%s)", l.Department, l.Rule, l.Key, key, r[villageCol], l.VillageCode)
		}
		return r
	}

	counts := map[string]gen.SignalCount{}
	for _, l := range lines {
		if l.Expected == nil || l.Value == nil || l.IDNo == "" {
			t.Errorf("signal line %s/%s %s lacks expected, value or id_no", l.Department, l.Rule, l.Key)
			continue
		}
		k := l.Department + "/" + l.Rule
		c := counts[k]
		if *l.Expected {
			c.Expected++
		} else {
			c.Noise++
		}
		counts[k] = c
		who := k + " " + l.Key
		switch l.Rule {
		case gen.SigOOP:
			ss := settlements[l.IDNo]
			if len(ss) < 2 {
				t.Errorf("%s: %d settlements, the generator writes 2 to 5 inpatient stays", who, len(ss))
				continue
			}
			var total int64
			for _, s := range ss {
				if !strings.HasPrefix(s["settlement_no"], "YB"+l.Key) || s["visit_type"] != "住院" || s["region_code"] != l.VillageCode {
					t.Errorf("%s: settlement %s is not an inpatient stay of this person (%s, %s)", who, s["settlement_no"], s["visit_type"], s["region_code"])
				}
				inRange(who, "settle_date", s["settle_date"], yearAgo, asOf)
				total += amount(who, s["compliant_out_of_pocket"])
			}
			if total != cents(l) {
				t.Errorf("%s: compliant out-of-pocket sums to %d cents, manifest value %.2f", who, total, *l.Value)
			}
			if over := total > int64(math.Round(cfg.Signals.OOPThreshold*100)); over != *l.Expected {
				t.Errorf("%s: sum %d cents over the threshold = %v, expected = %v", who, total, over, *l.Expected)
			}
		case gen.SigSevereDisab:
			cs := certs[l.IDNo]
			if len(cs) != 1 {
				t.Errorf("%s: %d disability certificates, want the one new certificate", who, len(cs))
				continue
			}
			c := cs[0]
			if c["region_code"] != l.VillageCode || c["status"] != "有效" {
				t.Errorf("%s: certificate %s region %s status %s", who, c["cert_no"], c["region_code"], c["status"])
			}
			grade, err := strconv.Atoi(c["disability_grade"])
			if err != nil || grade != int(*l.Value) {
				t.Errorf("%s: certificate grade %q, manifest value %v", who, c["disability_grade"], *l.Value)
			}
			if severe := grade == 1 || grade == 2; severe != *l.Expected {
				t.Errorf("%s: grade %d severe = %v, expected = %v", who, grade, severe, *l.Expected)
			}
			inRange(who, "issue_date", c["issue_date"], recent, asOf)
		case gen.SigHousingCD:
			if r := record(l, "zhujian.housing_appraisal", "ZJ"+l.HHNo, "head_id_no", "village_code"); r != nil {
				if g := r["grade"]; g != "C" && g != "D" {
					t.Errorf("%s: appraisal grade %q, want C or D", who, g)
				}
				inRange(who, "appraisal_date", r["appraisal_date"], yearAgo, asOf)
			}
		case gen.SigAssistance:
			if r := record(l, "minzheng.assistance_recipient", "MZ"+l.Key+"02", "id_no", "region_code"); r != nil {
				switch r["assistance_type"] {
				case "低保", "特困", "临时救助":
				default:
					t.Errorf("%s: assistance type %q", who, r["assistance_type"])
				}
				if a := amount(who, r["monthly_amount"]); a != cents(l) {
					t.Errorf("%s: amount %d cents, manifest value %.2f", who, a, *l.Value)
				}
				inRange(who, "start_date", r["start_date"], recent, asOf)
				if r["end_date"] != "" {
					t.Errorf("%s: new assistance has end_date %s", who, r["end_date"])
				}
			}
		case gen.SigDeath:
			if r := record(l, "gongan.death", "GA"+l.Key, "id_no", "region_code"); r != nil {
				inRange(who, "death_date", r["death_date"], recent, asOf)
				inRange(who, "deregistered_date", r["deregistered_date"], r["death_date"], asOf)
			}
		case gen.SigDropout:
			if r := record(l, "jiaoyu.student", "JY"+l.Key, "id_no", "region_code"); r != nil {
				if r["status"] != "辍学" {
					t.Errorf("%s: student status %q, want 辍学", who, r["status"])
				}
				inRange(who, "dropout_date", r["dropout_date"], recent, asOf)
			}
		case gen.SigDisasterLoss:
			if r := record(l, "yingji.disaster", "YJ"+l.HHNo, "head_id_no", "village_code"); r != nil {
				loss := amount(who, r["loss_amount"])
				if loss != cents(l) {
					t.Errorf("%s: loss %d cents, manifest value %.2f", who, loss, *l.Value)
				}
				if major := loss >= int64(math.Round(cfg.Signals.DisasterLossThreshold*100)); major != *l.Expected {
					t.Errorf("%s: loss %d cents major = %v, expected = %v", who, loss, major, *l.Expected)
				}
				inRange(who, "disaster_date", r["disaster_date"], recent, asOf)
			}
		default:
			t.Errorf("%s: signal rule unknown to this test; add its check", who)
		}
	}
	if !reflect.DeepEqual(counts, sum.Signals) {
		t.Errorf("manifest signal counts %v, summary %v", counts, sum.Signals)
	}
	for _, k := range []string{"yibao/" + gen.SigOOP, "canlian/" + gen.SigSevereDisab, "zhujian/" + gen.SigHousingCD,
		"minzheng/" + gen.SigAssistance, "gongan/" + gen.SigDeath, "jiaoyu/" + gen.SigDropout, "yingji/" + gen.SigDisasterLoss} {
		if counts[k].Expected == 0 {
			t.Errorf("no expected %s signal in the manifest: raise its rate in genRTConfig so the check means something", k)
		}
	}
	t.Logf("checked %d signal lines: %v", len(lines), counts)
}
