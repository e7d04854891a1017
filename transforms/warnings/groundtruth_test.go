package warnings

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/gen/gentest"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/mapping"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// input is one canonical entity version as a transform worker would receive it.
type input struct {
	kind    string // household, person, fact
	key     string
	version int64
	hh      *schemas.Household
	p       *schemas.Person
	f       *schemas.DepartmentFact
}

func (e *Engine) apply(in input) ([]Event, error) {
	switch in.kind {
	case "household":
		return e.ApplyHousehold(in.key, in.version, in.hh, false)
	case "person":
		return e.ApplyPerson(in.key, in.version, in.p, false)
	}
	return e.ApplyFact(in.key, in.version, in.f, false)
}

// dataset is a generated province read back from the databases and mapped.
type dataset struct {
	cfg      gen.Config
	inputs   []input // households, persons, then facts
	manifest []gen.ManifestLine
	defects  []gen.ManifestLine
	rows     gentest.Rows
	now      time.Time
}

var shared *dataset

// generated generates gentest.RoundTripConfig into MariaDB (national tables) and
// PostgreSQL (department tables), reads every row back and maps it through the embedded
// mappings into canonical entities. It is generated once per test binary.
func generated(t *testing.T) *dataset {
	t.Helper()
	if shared != nil {
		return shared
	}
	cfg := gentest.RoundTripConfig()
	// More registry persons without medical insurance, so that some of them
	// have settlements and the insurance comparison is checked against ground truth.
	cfg.DefectRates["Q-040"] = 0.03
	m, mdb := testenv.MariaDBDatabase(t)
	p, pdb := testenv.PostgresDatabase(t)
	out := t.TempDir()
	ctx := context.Background()
	if _, err := gen.Generate(ctx, cfg, gen.Options{MySQLDSN: m.RootDSN(mdb), PGDSN: p.ConnString(pdb), OutDir: out, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	set, err := mapping.Load(mapping.Embedded, &mapping.Env{})
	if err != nil {
		t.Fatal(err)
	}
	d := &dataset{cfg: cfg, now: cfg.UpdatedAt, rows: gentest.Rows{}}
	nowMs := cfg.UpdatedAt.UnixMilli()
	mapRow := func(source, table string, keyCol string, row map[string]any, version int64) mapping.Output {
		mp, ok := set.For(source, table)
		if !ok {
			t.Fatalf("no mapping for %s.%s", source, table)
		}
		env := &schemas.Envelope{V: 1, Op: schemas.OpRead, Source: schemas.Source{System: source, Table: table},
			Key: map[string]any{keyCol: row[keyCol]}, After: row}
		o, err := mp.Apply(env, version, fmt.Sprintf("%s.%s#%d", source, table, version), nowMs)
		if err != nil {
			t.Fatalf("map %s.%s %v: %v", source, table, row[keyCol], err)
		}
		return o
	}
	decode := func(doc map[string]any, v any) {
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
	}

	db, err := gen.OpenMySQL(ctx, m.RootDSN(mdb))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tb := range []struct{ name, key string }{{"household", "hh_no"}, {"person", "person_no"}} {
		rows := queryMySQL(t, db, "SELECT * FROM "+tb.name+" ORDER BY "+tb.key)
		for i, r := range rows {
			o := mapRow("national", tb.name, tb.key, r, int64(i+1))
			in := input{kind: tb.name, key: o.Key, version: int64(i + 1)}
			if tb.name == "household" {
				in.hh = new(schemas.Household)
				decode(o.Doc, in.hh)
			} else {
				in.p = new(schemas.Person)
				decode(o.Doc, in.p)
			}
			d.inputs = append(d.inputs, in)
		}
	}

	conn, err := pgx.Connect(ctx, p.ConnString(pdb))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, ds := range gen.Datasets {
		cols := make([]string, len(ds.Columns))
		for i, c := range ds.Columns {
			cols[i] = c + "::text"
		}
		rs, err := conn.Query(ctx, fmt.Sprintf("SELECT %s FROM %s ORDER BY 1", strings.Join(cols, ","), ds.Table()))
		if err != nil {
			t.Fatal(err)
		}
		var raw []map[string]any
		text := map[string]map[string]string{}
		for rs.Next() {
			vals, err := rs.Values()
			if err != nil {
				t.Fatal(err)
			}
			row, tr := map[string]any{}, map[string]string{}
			for i, c := range ds.Columns {
				row[c] = vals[i]
				if vals[i] != nil {
					tr[c] = vals[i].(string)
				}
			}
			raw = append(raw, row)
			text[tr[ds.Columns[0]]] = tr
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		d.rows[ds.Table()] = text
		for i, r := range raw {
			o := mapRow("departments", ds.Name, ds.Columns[0], r, int64(i+1))
			f := new(schemas.DepartmentFact)
			decode(o.Doc, f)
			d.inputs = append(d.inputs, input{kind: "fact", key: o.Key, version: int64(i + 1), f: f})
		}
	}
	for _, l := range readManifest(t, out) {
		switch l.Kind {
		case "signal":
			d.manifest = append(d.manifest, l)
		case "defect":
			d.defects = append(d.defects, l)
		}
	}
	shared = d
	return d
}

func readManifest(t *testing.T, dir string) []gen.ManifestLine {
	t.Helper()
	b, err := os.ReadFile(dir + "/manifest.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var out []gen.ManifestLine
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var l gen.ManifestLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("manifest line %d: %v", i+1, err)
		}
		out = append(out, l)
	}
	return out
}

func queryMySQL(t *testing.T, db *sql.DB, q string) []map[string]any {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		r := make(map[string]any, len(cols))
		for i, c := range cols {
			if vals[i].Valid {
				r[c] = vals[i].String
			} else {
				r[c] = nil
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// seededRules are the default rules without those the generator does not seed
// (their hits would be real but absent from the manifest): see TestInpatientStay and
// TestOutpatientSpecialMonth for them.
func seededRules(t testing.TB) *Rules {
	t.Helper()
	r, err := Load(mergedFS(t, "seeded.yaml", "version: 1\ndisable: [yibao.inpatient_stay, yibao.outpatient_special_month]\n"), DefaultFile, "seeded.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ruleOf names the engine rule of a manifest signal rule.
var ruleOf = map[string]string{
	gen.SigOOP:          "yibao.oop_12m",
	gen.SigSevereDisab:  "canlian.new_severe_disability",
	gen.SigHousingCD:    "zhujian.housing_cd",
	gen.SigAssistance:   "minzheng.new_assistance_unmonitored",
	gen.SigDeath:        "gongan.death_recorded_alive",
	gen.SigDropout:      "jiaoyu.compulsory_dropout",
	gen.SigDisasterLoss: "yingji.disaster_loss",
}

// final is the open warnings and pending discrepancies after a sequence of events,
// each as "rule|kind|subject" or "department|kind|subject|field" → its event.
type final struct {
	warnings      map[string]schemas.Warning
	discrepancies map[string]schemas.Discrepancy
}

func collect(events []Event) final {
	latestW := map[string]schemas.Warning{}
	latestD := map[string]schemas.Discrepancy{}
	for _, e := range events {
		if e.Warning != nil {
			latestW[e.Key] = *e.Warning
		} else {
			latestD[e.Key] = *e.Discrepancy
		}
	}
	f := final{warnings: map[string]schemas.Warning{}, discrepancies: map[string]schemas.Discrepancy{}}
	for _, w := range latestW {
		if w.Status == schemas.WarningOpen {
			f.warnings[w.RuleID+"|"+w.SubjectKind+"|"+w.SubjectKey] = w
		}
	}
	for _, d := range latestD {
		if d.Status == schemas.DiscrepancyPending {
			f.discrepancies[d.Department+"|"+d.SubjectKind+"|"+d.SubjectKey+"|"+d.Field] = d
		}
	}
	return f
}

func run(t testing.TB, rules *Rules, store Store, now time.Time, inputs []input) []Event {
	t.Helper()
	e := New(rules, store, func() time.Time { return now })
	var all []Event
	for _, in := range inputs {
		ev, err := e.apply(in)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ev...)
	}
	return all
}

func diffSets[V any](t *testing.T, what string, got map[string]V, want map[string]string) {
	t.Helper()
	var missing, extra []string
	for k, why := range want {
		if _, ok := got[k]; !ok {
			missing = append(missing, k+" ("+why+")")
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, fmt.Sprintf("%s %+v", k, v))
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	for _, m := range missing {
		t.Errorf("%s missing: %s", what, m)
	}
	for _, x := range extra {
		t.Errorf("%s not seeded: %s", what, x)
	}
}

// TestGroundTruth: the warnings and discrepancies of the generated province equal
// what the generator seeded, no more and no fewer.
//
// Warnings: one open warning per signal line with expected=true, none for the
// expected=false near misses. Discrepancies, derived from what each seed means for
// the registry (internal/gen/dept.go, defects.go): a new certificate for a person whose
// registry health is not 残疾 (every new_severe_disability line, severe or not); a new
// 低保 or 特困 recipient the registry does not record (new_assistance_unmonitored lines
// whose record is 低保 or 特困; 临时救助 has no registry field); an appraisal C/D for a
// household recorded safe (housing_cd); a death of a person recorded alive
// (death_recorded_alive); and a settlement of a person the registry records as
// uninsured (Q-040 defects whose person has a settlement).
func TestGroundTruth(t *testing.T) {
	d := generated(t)
	events := run(t, seededRules(t), NewMemoryStore(), d.now, d.inputs)
	got := collect(events)

	wantW := map[string]string{}
	wantD := map[string]string{}
	noise := map[string]int{}
	for _, l := range d.manifest {
		subj := l.IDNo
		if l.Subject == "household" {
			subj = l.HHNo
		}
		if !*l.Expected {
			noise[l.Rule]++
		} else {
			wantW[ruleOf[l.Rule]+"|"+l.Subject+"|"+subj] = l.Rule + " " + l.Key
		}
		why := l.Rule + " " + l.Key
		switch l.Rule {
		case gen.SigSevereDisab:
			wantD["canlian|person|"+l.IDNo+"|health"] = why
		case gen.SigAssistance:
			switch d.rows["minzheng.assistance_recipient"]["MZ"+l.Key+"02"]["assistance_type"] {
			case "低保":
				wantD["minzheng|person|"+l.IDNo+"|dibao_status"] = why
			case "特困":
				wantD["minzheng|person|"+l.IDNo+"|tekun_status"] = why
			}
		case gen.SigHousingCD:
			wantD["zhujian|household|"+l.HHNo+"|dangerous_house"] = why
		case gen.SigDeath:
			wantD["gongan|person|"+l.IDNo+"|deceased"] = why
		}
	}
	// Q-040 persons (registry: no medical insurance) with a settlement.
	idOf := map[string]string{}
	for _, in := range d.inputs {
		if in.kind == "person" {
			idOf[in.key] = in.p.IDNo
		}
	}
	settled := map[string]bool{}
	for _, r := range d.rows["yibao.settlement"] {
		settled[r["id_no"]] = true
	}
	q040 := 0
	for _, l := range d.defects {
		if l.Rule == "Q-040" {
			q040++
			if id := idOf[l.Key]; settled[id] {
				wantD["yibao|person|"+id+"|medical_insurance"] = "Q-040 " + l.Key
			}
		}
	}
	diffSets(t, "warning", got.warnings, wantW)
	diffSets(t, "discrepancy", got.discrepancies, wantD)
	byRule := map[string]int{}
	for _, w := range got.warnings {
		byRule[w.RuleID]++
		if w.DueDays != 15 || w.DueAt != d.now.AddDate(0, 0, 15).UTC().Format(time.RFC3339) || len(w.FactKeys) == 0 || w.Evidence["class"] == "" {
			t.Errorf("warning %s: due %d %s, facts %v, evidence %v", w.ID, w.DueDays, w.DueAt, w.FactKeys, w.Evidence)
		}
		if w.ID != schemas.DeterministicID(w.RuleID, w.SubjectKind, w.SubjectKey, w.Period) || w.Key != w.ID {
			t.Errorf("warning %s: id is not DeterministicID(rule, subject, period)", w.ID)
		}
	}
	for rule, id := range ruleOf {
		if byRule[id] == 0 {
			t.Errorf("no %s warning: the check means nothing for %s", id, rule)
		}
	}
	byField := map[string]int{}
	for _, x := range got.discrepancies {
		byField[x.Department+"."+x.Field]++
	}
	for _, rule := range []string{gen.SigOOP, gen.SigDisasterLoss, gen.SigSevereDisab} {
		if noise[rule] == 0 {
			t.Errorf("no expected=false %s line: the near-miss check means nothing", rule)
		}
	}
	t.Logf("%d inputs, %d events; warnings %v; near misses not warned %v; discrepancies %v (Q-040 defects %d)",
		len(d.inputs), len(events), byRule, noise, byField, q040)
}

// TestReplayAndRedelivery: replaying every input into a fresh engine yields identical
// events; redelivering them to the same engine (or to one restored from a JSON
// snapshot of its store) yields none.
func TestReplayAndRedelivery(t *testing.T) {
	d := generated(t)
	rules := seededRules(t)
	store := NewMemoryStore()
	first := run(t, rules, store, d.now, d.inputs)
	second := run(t, rules, NewMemoryStore(), d.now, d.inputs)
	if len(first) == 0 || !reflect.DeepEqual(first, second) {
		t.Fatalf("replay from zero differs: %d vs %d events", len(first), len(second))
	}
	if again := run(t, rules, store, d.now.Add(time.Hour), d.inputs); len(again) != 0 {
		t.Errorf("redelivery emitted %d events, first %+v", len(again), again[0])
	}
	snap, err := json.Marshal(store)
	if err != nil {
		t.Fatal(err)
	}
	restored := NewMemoryStore()
	if err := json.Unmarshal(snap, restored); err != nil {
		t.Fatal(err)
	}
	if again := run(t, rules, restored, d.now.Add(time.Hour), d.inputs); len(again) != 0 {
		t.Errorf("redelivery after a snapshot round trip emitted %d events", len(again))
	}
	snap2, _ := json.Marshal(restored)
	if string(snap) != string(snap2) {
		t.Error("snapshot changed by a redelivery")
	}
	t.Logf("%d events; snapshot %d bytes", len(first), len(snap))
}

// TestOrderIndependence: facts before the registry, persons before households, and a
// random shuffle all end with the same open warnings and pending discrepancies.
func TestOrderIndependence(t *testing.T) {
	d := generated(t)
	rules := seededRules(t)
	want := collect(run(t, rules, NewMemoryStore(), d.now, d.inputs))
	reversed := make([]input, len(d.inputs))
	for i, in := range d.inputs {
		reversed[len(d.inputs)-1-i] = in
	}
	shuffled := append([]input(nil), d.inputs...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for name, order := range map[string][]input{"facts first": reversed, "shuffled": shuffled} {
		events := run(t, rules, NewMemoryStore(), d.now, order)
		withdrawn := 0
		for _, e := range events {
			if (e.Warning != nil && e.Warning.Status != schemas.WarningOpen) || (e.Discrepancy != nil && e.Discrepancy.Status != schemas.DiscrepancyPending) {
				withdrawn++
			}
		}
		t.Logf("%s: %d events, %d of them withdrawals of transient hits", name, len(events), withdrawn)
		got := collect(events)
		if !reflect.DeepEqual(strip(got), strip(want)) {
			t.Errorf("%s: final set differs: %d/%d warnings, %d/%d discrepancies", name, len(got.warnings), len(want.warnings), len(got.discrepancies), len(want.discrepancies))
			for k, w := range want.warnings {
				if g, ok := got.warnings[k]; !ok || !reflect.DeepEqual(stripW(g), stripW(w)) {
					t.Errorf("  %s: got %+v want %+v", k, g, w)
				}
			}
		}
	}
}

// strip drops what depends on how many times an entity was re-emitted on the way.
func strip(f final) final {
	o := final{warnings: map[string]schemas.Warning{}, discrepancies: map[string]schemas.Discrepancy{}}
	for k, w := range f.warnings {
		o.warnings[k] = stripW(w)
	}
	for k, d := range f.discrepancies {
		d.Version = 0
		o.discrepancies[k] = d
	}
	return o
}

func stripW(w schemas.Warning) schemas.Warning {
	w.Version = 0
	return w
}
