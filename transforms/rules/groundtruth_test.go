package rules

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql"

	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/mapping"
)

// groundTruthConfig is a few thousand households with defect rates raised so that
// every seeded rule occurs several times (at most one defect per household, so the
// manifest scores the engine exactly).
func groundTruthConfig() gen.Config {
	cfg := gen.DefaultConfig()
	cfg.Seed = 8
	cfg.Households = 4000
	if s := os.Getenv("RULES_GT_SEED"); s != "" { // wider local runs: RULES_GT_SEED=9 RULES_GT_HOUSEHOLDS=30000
		fmt.Sscan(s, &cfg.Seed)
	}
	if s := os.Getenv("RULES_GT_HOUSEHOLDS"); s != "" {
		fmt.Sscan(s, &cfg.Households)
	}
	for _, r := range gen.DefectRules {
		cfg.DefectRates[r] = 0.008
	}
	// Household-level defects of monitored households only: 12 % of households.
	for _, r := range []string{"Q-057", "Q-058", "Q-059", "Q-112"} {
		cfg.DefectRates[r] = 0.06
	}
	// Rules with few eligible subjects (certificate holders, pupils of two stages,
	// disabled members, children).
	cfg.DefectRates["Q-005"] = 0.15
	cfg.DefectRates["Q-006"] = 0.05
	cfg.DefectRates["Q-030"] = 0.1
	cfg.DefectRates["Q-022"] = 0.015
	return cfg
}

// canonicalData is the national tables of one generated dataset mapped to canonical
// entities, by household.
type canonicalData struct {
	households map[string]*schemas.Household
	persons    map[string][]schemas.Person
	measures   map[string][]schemas.AssistanceMeasure
	order      []string
}

// loadCanonical reads the national tables back from MariaDB and maps every row with
// the embedded national mappings, as the transform worker does with captured rows.
func loadCanonical(t testing.TB, dsn string) *canonicalData {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	set, err := mapping.Load(mapping.Embedded, &mapping.Env{})
	if err != nil {
		t.Fatal(err)
	}
	cd := &canonicalData{households: map[string]*schemas.Household{}, persons: map[string][]schemas.Person{},
		measures: map[string][]schemas.AssistanceMeasure{}}
	var version int64
	each := func(table, keyCol string, into func(doc []byte) error) {
		m, ok := set.For("national", table)
		if !ok {
			t.Fatalf("no embedded mapping for national.%s", table)
		}
		rows, err := db.Query("SELECT * FROM `" + table + "` ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			after := make(map[string]any, len(cols))
			for i, c := range cols {
				if vals[i].Valid {
					after[c] = vals[i].String
				} else {
					after[c] = nil
				}
			}
			version++
			env := &schemas.Envelope{V: 1, Op: schemas.OpRead,
				Source: schemas.Source{System: "national", Kind: "mysqlbinlog", DB: "national", Table: table, Snapshot: true},
				Key:    map[string]any{keyCol: after[keyCol]}, After: after, Schema: schemas.SchemaRef{Name: "national." + table, Version: 1}}
			out, err := m.Apply(env, version, fmt.Sprintf("%s#%d", table, version), 1)
			if err != nil {
				t.Errorf("map national.%s %v: %v", table, after[keyCol], err)
				continue
			}
			b, err := json.Marshal(out.Doc)
			if err != nil {
				t.Fatal(err)
			}
			if err := into(b); err != nil {
				t.Fatalf("decode canonical %s: %v", table, err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	each("household", "hh_no", func(b []byte) error {
		h := new(schemas.Household)
		if err := json.Unmarshal(b, h); err != nil {
			return err
		}
		cd.households[h.Key] = h
		cd.order = append(cd.order, h.Key)
		return nil
	})
	each("person", "person_no", func(b []byte) error {
		var p schemas.Person
		if err := json.Unmarshal(b, &p); err != nil {
			return err
		}
		cd.persons[p.HouseholdNo] = append(cd.persons[p.HouseholdNo], p)
		return nil
	})
	each("measure", "measure_id", func(b []byte) error {
		var m schemas.AssistanceMeasure
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		cd.measures[m.HouseholdNo] = append(cd.measures[m.HouseholdNo], m)
		return nil
	})
	return cd
}

func (cd *canonicalData) contexts() []*HouseholdContext {
	out := make([]*HouseholdContext, 0, len(cd.order))
	for _, k := range cd.order {
		out = append(out, NewHouseholdContext(cd.households[k], cd.persons[k], cd.measures[k]))
	}
	return out
}

func readDefects(t testing.TB, dir string) []gen.ManifestLine {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []gen.ManifestLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l gen.ManifestLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if l.Kind == "defect" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// generate writes a dataset into a private MariaDB and returns its DSN and manifest.
func generate(t testing.TB, cfg gen.Config) (string, []gen.ManifestLine) {
	t.Helper()
	srv, dbName := testenv.MariaDBDatabase(t)
	dsn := srv.RootDSN(dbName)
	dir := t.TempDir()
	if _, err := gen.Generate(context.Background(), cfg, gen.Options{MySQLDSN: dsn, OutDir: dir, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	return dsn, readDefects(t, dir)
}

// Collateral findings: a seeded defect that by its nature also breaks another rule of
// the catalogue. Such a finding on the defect's household is correct, not a false
// positive; any other finding on a defect household fails the test.
var collateral = map[[2]string]string{
	{"Q-057", "Q-054"}: "Q-057 empties the risks of a household whose unsafe water was its 因安全饮水 risk",
	{"Q-057", "Q-055"}: "Q-057 empties the risks of a household whose dangerous house was its 因安全住房 risk",
	{"Q-040", "Q-056"}: "an uninsured member in a monitored household without illness risk or health help is Q-056 by definition",
	{"Q-022", "Q-052"}: "a child recorded as 普通劳动力 in a 缺劳动力 household raises the able share (Q-052)",
	{"Q-023", "Q-052"}: "an elderly member recorded as 普通劳动力 in a 缺劳动力 household raises the able share (Q-052)",
	{"Q-022", "Q-077"}: "a child recorded as 普通劳动力 gives the household working capacity (Q-077)",
	{"Q-023", "Q-077"}: "an elderly member recorded as 普通劳动力 gives the household working capacity (Q-077)",
	{"Q-022", "Q-078"}: "a child recorded as 普通劳动力 in a household with only 综合保障 (Q-078)",
	{"Q-023", "Q-078"}: "an elderly member recorded as 普通劳动力 in a household with only 综合保障 (Q-078)",
}

// generatorGap is a way internal/gen's clean data violates a catalogue rule on its
// own (a gap of the generator, not of the rule). The rule stays as the catalogue
// says; its findings are excused from the precision check only where explains holds
// for the household, so any other false positive of the rule still fails.
type generatorGap struct {
	why      string
	explains func(hc *HouseholdContext, cfg gen.Config) bool
}

// works says whether a member has work records (务工), and with welfare also whether
// a public-welfare job counts.
func works(p *PersonView, welfare bool) bool {
	switch p.WorkStatus {
	case "省外务工", "省内县外务工", "县内务工":
		return true
	}
	return p.WorkMonths > 0 || (welfare && p.WelfareJob)
}

func hasRisk(hc *HouseholdContext, r string) bool { return contains(hc.hh.Risks, r) }

// workerRedrawn: villageGen.risks supports 因务工就业不稳 by a working member, then a
// later 因病/因残 risk re-draws a member's health with setHealth → setSkill, which
// clears that member's work (務工 records).
func workerRedrawn(hc *HouseholdContext, _ gen.Config) bool {
	if !hasRisk(hc, "因务工就业不稳") || !(hasRisk(hc, "因病") || hasRisk(hc, "因残")) {
		return false
	}
	for _, p := range hc.members {
		if works(p, false) {
			return false
		}
	}
	return true
}

// employmentWithoutWorker: measures() adds 就业帮扶 (就业技能培训 or 外出务工补贴, the
// items it uses for 因务工就业不稳 only) whether or not the worker that supported the
// risk still works after workerRedrawn, so nobody works (a seeded Q-057 may have
// erased the risks since, hence the signature is the items, not the risks).
func employmentWithoutWorker(hc *HouseholdContext, _ gen.Config) bool {
	for _, m := range hc.measures {
		if (m.Category == "就业帮扶" || m.Category == "公益岗位帮扶") && m.Item != "就业技能培训" && m.Item != "外出务工补贴" {
			return false
		}
	}
	for _, p := range hc.members {
		if works(p, true) {
			return false
		}
	}
	return true
}

var generatorGaps = map[string][]generatorGap{
	"Q-053": {{"因务工就业不稳 chosen for a working member whose work a later 因病/因残 risk cleared", workerRedrawn}},
	"Q-081": {{"就业帮扶 added for 因务工就业不稳 after a later 因病/因残 risk cleared the only work", employmentWithoutWorker}},
	// Each failing Q-083 clause must be explained: the employment clause by
	// employmentWithoutWorker, the industry clause by income()'s net-business
	// fallback drawing 0 (business income and expense 0: measures() adds 产业帮扶
	// without any tie to business income); the transfer clause never is.
	"Q-083": {{"eliminated: 就业帮扶 without wage (work cleared) or 产业帮扶 with the 0-yuan business fallback",
		func(hc *HouseholdContext, cfg gen.Config) bool {
			h := hc.hh
			if (contains(h.MeasureItems, "低保") || contains(h.MeasureItems, "特困供养") || contains(h.MeasureItems, "残疾人补贴")) && h.TransferIncome <= 0 {
				return false
			}
			if contains(h.MeasureCategories, "就业帮扶") && h.WageIncome <= 0 && !employmentWithoutWorker(hc, cfg) {
				return false
			}
			if contains(h.MeasureCategories, "产业帮扶") && h.BusinessIncome <= 0 && !(h.BusinessIncome == 0 && h.BusinessExpense == 0) {
				return false
			}
			return true
		}}},
	// measures() maps risks to measures, but 其他 and 因意外事故 have none, and a
	// household whose members are all 弱劳动力/丧失/无劳动力 without being a whole
	// no-labour household gets neither 综合保障 nor a development measure.
	"Q-076": {{"no measure for a monitored household with only 其他/因意外事故 risks and no 普通/技能劳动力", noMeasureGap}},
	"Q-092": {{"帮扶消除 without a measure: only 其他/因意外事故 risks and no 普通/技能劳动力", noMeasureGap}},
	// income() floors scaled monthly wages at 1,500 yuan, and when wage, transfer
	// (低保 of non-monitored households included) and property income already exceed
	// the target, the net business income it would balance with is negative and is
	// replaced by a random 0–999 yuan: the per-capita net income then overshoots
	// IncomeMaxPerCapita.
	"Q-100": {{"net business income is the generator's 0–999 yuan fallback and the total overshoots IncomeMaxPerCapita",
		func(hc *HouseholdContext, cfg gen.Config) bool {
			h := hc.hh
			return h.PerCapitaNetIncome > cfg.IncomeMaxPerCapita && h.BusinessIncome-h.BusinessExpense < 1000
		}}},
	// villageGen.person sets 大病保险 only with resident medical insurance
	// (InsSerious = InsResMed), so a 大病 member on employee insurance has none; the
	// catalogue's Q-060 flags such a member of a non-monitored 脱贫户.
	"Q-060": {{"the only Q-060 fact is a 大病 member on employee insurance, whom the generator gives no 大病保险",
		func(hc *HouseholdContext, cfg gen.Config) bool {
			h := hc.hh
			if h.DangerousHouse || !h.SafeWater || h.ChildOutOfSchool {
				return false
			}
			hit := false
			for _, p := range hc.members {
				if p.Age >= 6 && p.Age <= 15 && p.SchoolStatus == "" {
					return false
				}
				// The generator's 大病保险 is its resident insurance before any
				// seeded change: missing for members on employee
				// insurance.
				if p.Health == "大病" && !p.SeriousIll {
					if p.ResMedical && !p.EmpMedical {
						return false
					}
					hit = true
				}
			}
			return hit
		}}},
}

func noMeasureGap(hc *HouseholdContext, _ gen.Config) bool {
	h := hc.hh
	if len(h.MeasureCategories) > 0 || h.NoLabourSupported {
		return false
	}
	for _, r := range h.Risks {
		// 因自然灾害 without a sub-item is a seeded Q-059 defect added after measures.
		if r != "其他" && r != "因意外事故" && !(r == "因自然灾害" && h.DisasterSubItem == "") {
			return false
		}
	}
	for _, p := range hc.members {
		// Clean able members are 16–59 (setSkill); an older or younger 普通劳动力 is a
		// seeded defect added after measures.
		if (p.LabourSkill == "普通劳动力" || p.LabourSkill == "技能劳动力") && p.Age >= 16 && p.Age < 60 {
			return false
		}
	}
	return true
}

func gapExplains(rule string, hc *HouseholdContext, cfg gen.Config) string {
	for _, g := range generatorGaps[rule] {
		if g.explains(hc, cfg) {
			return g.why
		}
	}
	return ""
}

// TestGroundTruth generates a dataset with seeded defects, reads the national tables
// back from MariaDB, maps them with the embedded national mappings, evaluates every
// rule per household and scores the findings against the manifest: every seeded
// defect is found by its rule (recall 100 %), and no rule fires on a household
// without a seeded defect (precision 100 %), nor on a defect household except where
// the defect implies it (collateral above).
func TestGroundTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a dataset in MariaDB")
	}
	cfg := groundTruthConfig()
	dsn, defects := generate(t, cfg)
	cd := loadCanonical(t, dsn)
	eng, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	implemented := map[string]bool{}
	for _, id := range eng.RuleIDs() {
		implemented[id] = true
	}

	type subj struct{ rule, kind, key string }
	expected := map[subj]gen.ManifestLine{}
	defectHH := map[string]string{} // household → seeded rule
	seeded := map[string]int{}
	for _, l := range defects {
		defectHH[l.HHNo] = l.Rule
		if !implemented[l.Rule] {
			t.Errorf("seeded rule %s is not implemented", l.Rule)
			continue
		}
		if l.Rule == "Q-004" && l.Note == "legacy 15-digit ID" {
			// Mapping gap, not a rule gap: national.person maps id_no as id_number,
			// which upgrades a valid 15-digit number to its 18-digit form (DESIGN:
			// normalise 15→18 before any comparison), so the canonical person no
			// longer shows the length. Detecting it needs the raw length carried
			// into the canonical entity.
			seeded["Q-004 (legacy 15, not visible)"]++
			continue
		}
		expected[subj{l.Rule, l.Subject, l.Key}] = l
		seeded[l.Rule]++
	}
	for _, r := range gen.DefectRules {
		if seeded[r] < 3 {
			t.Errorf("only %d seeded %s defects: raise its rate so the check means something", seeded[r], r)
		}
	}

	found := map[subj]bool{}
	falsePos := map[string][]string{}
	collat := map[string]int{}
	errs := 0
	findings := 0
	for _, hc := range cd.contexts() {
		for _, f := range eng.Evaluate(hc, cfg.AsOf) {
			if f.Err != "" {
				errs++
				if errs <= 5 {
					t.Errorf("rule %s on %s %s: evaluation error %s", f.RuleID, f.SubjectKind, f.SubjectKey, f.Err)
				}
				continue
			}
			findings++
			s := subj{f.RuleID, f.SubjectKind, f.SubjectKey}
			if _, ok := expected[s]; ok {
				found[s] = true
				continue
			}
			seededRule, isDefectHH := defectHH[hc.Key]
			switch {
			case isDefectHH && seededRule == f.RuleID:
				// e.g. a legacy 15-digit Q-004 defect excluded above can't fire; any
				// other finding of the seeded rule on another subject is wrong.
				falsePos[f.RuleID] = append(falsePos[f.RuleID], fmt.Sprintf("%s %s (household seeded %s on another subject)", f.SubjectKind, f.SubjectKey, seededRule))
			case isDefectHH && collateral[[2]string{seededRule, f.RuleID}] != "":
				collat[seededRule+"→"+f.RuleID]++
			case gapExplains(f.RuleID, hc, cfg) != "":
				collat["gap "+f.RuleID]++
			default:
				where := "clean household"
				if isDefectHH {
					where = "household seeded " + seededRule
				}
				falsePos[f.RuleID] = append(falsePos[f.RuleID], fmt.Sprintf("%s %s (%s): %s", f.SubjectKind, f.SubjectKey, where, f.Detail()))
			}
		}
	}
	var missed []string
	for s, l := range expected {
		if !found[s] {
			missed = append(missed, fmt.Sprintf("%s %s %s (field %s %s)", s.rule, s.kind, s.key, l.Field, l.Note))
		}
	}
	sort.Strings(missed)
	for _, m := range missed {
		t.Errorf("seeded defect not found: %s", m)
	}
	rulesFP := make([]string, 0, len(falsePos))
	for r := range falsePos {
		rulesFP = append(rulesFP, r)
	}
	sort.Strings(rulesFP)
	for _, r := range rulesFP {
		list := falsePos[r]
		show := list
		if len(show) > 5 {
			show = show[:5]
		}
		t.Errorf("rule %s: %d findings not in the manifest, e.g.\n  %s", r, len(list), strings.Join(show, "\n  "))
	}
	var keys []string
	for k := range seeded {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, seeded[k])
	}
	t.Logf("%d households, %d defects seeded (%s), %d findings, %d rules; recall %d/%d; collateral %v",
		len(cd.order), len(defects), strings.TrimSpace(b.String()), findings, len(implemented), len(found), len(expected), collat)
}
