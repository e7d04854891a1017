// Package gentest holds test support shared by the packages that check their output
// against the synthetic generator's ground truth (internal/gen): a generator
// configuration in which every department signal fires, readers for the generated CSV
// files and manifest, and the check that every manifest signal's department record is
// among what a connector delivered.
package gentest

import (
	"bufio"
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

	"github.com/shouwang/shouwang/internal/gen"
)

// RoundTripConfig is a few hundred households with signal rates raised far above the
// defaults, so that every signal rule fires several times in a small dataset.
func RoundTripConfig() gen.Config {
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

// ReadCSV reads a generator CSV with encoding/csv: key (first column) → column → text.
func ReadCSV(t testing.TB, path string, ds gen.Dataset) map[string]map[string]string {
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

// ReadManifest reads the signal lines of OUT/manifest.jsonl.
func ReadManifest(t testing.TB, out string) []gen.ManifestLine {
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

// Rows is department data as text: table → key (first column) → column → value,
// NULL as "" (the form gen.CellString gives files).
type Rows map[string]map[string]map[string]string

// parseCents parses a two-decimal amount ("123.45") into cents.
func parseCents(s string) (int64, error) {
	whole, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 2 {
		return 0, fmt.Errorf("amount %q does not have two decimals", s)
	}
	return strconv.ParseInt(whole+frac, 10, 64)
}

// CheckSignals checks that each manifest signal line's department record is among
// the captured rows, shaped the way internal/gen/dept.go writes that signal, and that
// the signal counts match the summary. Messages name person and household numbers,
// never ID numbers.
func CheckSignals(t testing.TB, cfg gen.Config, sum *gen.Summary, rows Rows, lines []gen.ManifestLine) {
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
		c, err := parseCents(s)
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
			t.Errorf("no expected %s signal in the manifest: raise its rate in RoundTripConfig so the check means something", k)
		}
	}
	t.Logf("checked %d signal lines: %v", len(lines), counts)
}
