package filedrop_test

// Round trip of the synthetic generator's department files through the connector
// (issue #4): every dataset is delivered three times, as UTF-8 CSV, GB18030 CSV and
// XLSX of the same rows (the first format rotating per dataset). The first delivery's
// c events must equal the generator's UTF-8 CSV read independently with encoding/csv,
// Summary.DeptRows and every signal line of the manifest; the other two deliveries
// carry identical content and must emit nothing. The test lives in the external test
// package so it only sees the exported API.
//
// The generator configuration, CSV and manifest readers and the signal checks are
// copies of those in capture/pglogical/gen_roundtrip_test.go (test files cannot share
// code across packages); keep them in step.

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/capture/filedrop"
	"github.com/shouwang/shouwang/internal/gen"
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

// TestGenRoundTripFiles delivers the generator's files of every dataset to one
// filedrop source per dataset and checks what comes out.
func TestGenRoundTripFiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := genRTConfig()
	out := t.TempDir()
	sum, err := gen.Generate(ctx, cfg, gen.Options{OutDir: out, Formats: []string{"csv", "gb18030", "xlsx"}, Workers: 2})
	if err != nil {
		t.Fatalf("generate files: %v", err)
	}
	formats := []string{".csv", ".gb18030.csv", ".xlsx"}
	text := genRTRows{}
	for i, ds := range gen.Datasets {
		// Rotate the formats so each one is the creating delivery of some dataset.
		var files []string
		for j := range formats {
			files = append(files, ds.Name+formats[(i+j)%len(formats)])
		}
		t.Run(ds.Name, func(t *testing.T) {
			text[ds.Table()] = genRTDeliver(t, ctx, out, ds, files, sum.DeptRows[ds.Table()])
		})
	}
	if t.Failed() {
		return
	}
	genRTCheckSignals(t, cfg, sum, text, genRTManifest(t, out))
}

// genRTDeliver runs one dataset's source over its files, delivered one after another,
// and returns the first delivery's rows as text (key → column → value, NULL as "").
func genRTDeliver(t *testing.T, ctx context.Context, out string, ds gen.Dataset, files []string, wantRows int64) map[string]map[string]string {
	dir := t.TempDir()
	cols := map[string]string{}
	for j, h := range ds.Headers {
		cols[h] = ds.Columns[j]
	}
	opts := filedrop.DatasetOptions{
		Name: ds.Name, Department: ds.Department,
		Inbox: filepath.Join(dir, "inbox"), StateDir: filepath.Join(dir, "state"),
		Delivery: filedrop.DeliveryFull, Key: []string{ds.Columns[0]}, Columns: cols,
	}
	src, err := filedrop.New(filedrop.Config{System: "dept", TopicPrefix: "rt", Dataset: opts, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	genDir := filepath.Join(out, "files", ds.Department, ds.Name)
	want := genRTReadCSV(t, filepath.Join(genDir, ds.Name+".csv"), ds)
	if int64(len(want)) != wantRows {
		t.Errorf("generator CSV has %d rows, Summary.DeptRows says %d", len(want), wantRows)
	}

	// First delivery: every row is new.
	genRTDrop(t, genDir, opts.Inbox, files[0])
	got := map[string]map[string]string{}
	var end bool
	for !end {
		cs, err := src.ReadN(ctx, 500)
		if err != nil {
			t.Fatalf("%s: ReadN after %d changes: %v", files[0], len(got), err)
		}
		for _, c := range cs {
			if c.DeadLetter != nil {
				t.Fatalf("%s: dead letter: %s", files[0], c.DeadLetter.Reason)
			}
			e := c.Envelope
			if e.Op != schemas.OpCreate || e.Before != nil {
				t.Fatalf("%s: op %q (before %v) in the first delivery, want only c", files[0], e.Op, e.Before)
			}
			if e.Source.Kind != filedrop.Kind || e.Source.DB != ds.Department || e.Source.Table != ds.Name || e.Source.File != files[0] {
				t.Fatalf("%s: event source %+v", files[0], e.Source)
			}
			if c.Topic != schemas.RawTopic("rt", "dept", ds.Name) {
				t.Fatalf("%s: topic %q", files[0], c.Topic)
			}
			k, _ := e.After[ds.Columns[0]].(string)
			if !reflect.DeepEqual(e.Key, map[string]any{ds.Columns[0]: k}) || k == "" {
				t.Fatalf("%s: key %v, after's %s %q", files[0], e.Key, ds.Columns[0], k)
			}
			if _, dup := got[k]; dup {
				t.Errorf("%s: key %s created twice", files[0], k)
			}
			row := map[string]string{}
			for f, v := range e.After {
				switch v := v.(type) {
				case nil:
					row[f] = ""
				case string:
					row[f] = v
				default:
					t.Fatalf("%s %s field %s: value of type %T, want text", files[0], k, f, v)
				}
			}
			got[k] = row
			var p struct {
				End bool `json:"end"`
			}
			if err := json.Unmarshal(c.Position, &p); err != nil {
				t.Fatalf("%s: position %s: %v", files[0], c.Position, err)
			}
			if p.End {
				end = true
				if err := src.Ack(ctx, c.Position); err != nil {
					t.Fatalf("%s: ack the last change: %v", files[0], err)
				}
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d c events, generator CSV has %d rows", files[0], len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: row %s has no c event", files[0], k)
		} else if !reflect.DeepEqual(g, w) {
			t.Errorf("%s %s: event %v, generator CSV %v", files[0], k, g, w)
		}
	}
	genRTWaitArchived(t, ctx, src, opts, files[0])

	// The same rows in the other formats: nothing changed, so nothing may be emitted.
	for _, f := range files[1:] {
		genRTDrop(t, genDir, opts.Inbox, f)
		genRTWaitArchived(t, ctx, src, opts, f)
	}
	for _, d := range []string{"rejected", "held"} {
		if es, _ := os.ReadDir(filepath.Join(opts.Inbox, d)); len(es) > 0 {
			t.Errorf("%s/ is not empty: %v", d, es)
		}
	}
	return got
}

// genRTDrop delivers a file the way a careful sender does: written under a dot name
// the connector ignores, then renamed into the inbox.
func genRTDrop(t *testing.T, from, inbox, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(from, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(inbox, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(inbox, "."+name)
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(inbox, name)); err != nil {
		t.Fatal(err)
	}
}

// genRTWaitArchived reads the source until name has left the inbox for the archive
// (a delivery without changes is committed inside ReadN, which then keeps polling the
// inbox, so the read is cancelled once the file shows up in the archive). Any change
// read on the way fails the test, as does a rejected or held file.
func genRTWaitArchived(t *testing.T, ctx context.Context, src *filedrop.Source, opts filedrop.DatasetOptions, name string) {
	t.Helper()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		cs  []capture.Change
		err error
	}
	done := make(chan result, 1)
	go func() {
		cs, err := src.ReadN(rctx, 500)
		done <- result{cs, err}
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if r.err == nil && len(r.cs) > 0 {
				e := r.cs[0].Envelope
				t.Fatalf("%s: %d changes where none were due, first: op %q key %v before %v after %v", name, len(r.cs), e.Op, e.Key, e.Before, e.After)
			}
			t.Fatalf("%s: ReadN ended before the file was archived: %v", name, r.err)
		case <-tick.C:
		}
		for _, d := range []string{"rejected", "held"} {
			if _, err := os.Stat(filepath.Join(opts.Inbox, d, name)); err == nil {
				report, _ := os.ReadFile(filepath.Join(opts.Inbox, d, name+".report.txt"))
				cancel()
				<-done
				t.Fatalf("%s was moved to %s/: %s", name, d, report)
			}
		}
		_, inInbox := os.Stat(filepath.Join(opts.Inbox, name))
		_, inArchive := os.Stat(filepath.Join(opts.Inbox, "archive", name))
		if errors.Is(inInbox, os.ErrNotExist) && inArchive == nil {
			cancel()
			r := <-done
			if len(r.cs) > 0 {
				t.Fatalf("%s: %d changes where none were due (first op %q key %v)", name, len(r.cs), r.cs[0].Envelope.Op, r.cs[0].Envelope.Key)
			}
			if !errors.Is(r.err, context.Canceled) {
				t.Fatalf("%s: ReadN after the file was archived: %v", name, r.err)
			}
			return
		}
	}
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
