package gen

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/internal/region"
	"github.com/shouwang/shouwang/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// collect generates cfg in memory and returns every household with its defect lines.
func collect(t testing.TB, cfg Config, f func(h *Household, lines []ManifestLine)) {
	t.Helper()
	tab, err := region.Default()
	if err != nil {
		t.Fatal(err)
	}
	plans, err := plan(&cfg, tab)
	if err != nil {
		t.Fatal(err)
	}
	for i := range plans {
		if _, err := generateVillage(&cfg, &plans[i], f); err != nil {
			t.Fatal(err)
		}
	}
}

var mobileRe = regexp.MustCompile(`^1[3-9]\d{9}$`)

// TestCleanRecords checks that households without an injected defect break none of the
// rules the generator injects, and that IDs are valid, unique and agree with the person.
func TestCleanRecords(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Households = 4000
	ids := map[string]string{}
	clean := 0
	collect(t, cfg, func(h *Household, lines []ManifestLine) {
		for _, p := range h.Members {
			if prev, dup := ids[p.ID18]; dup {
				t.Errorf("ID %s of %s duplicates %s", ident.MaskID(p.ID18), p.PersonNo, prev)
			}
			ids[p.ID18] = p.PersonNo
		}
		if len(lines) > 0 {
			return
		}
		clean++
		heads := 0
		var head *Person
		for _, p := range h.Members {
			if p.Rel == RelHead {
				heads++
				head = p
			}
		}
		if heads != 1 {
			t.Fatalf("%s: %d heads (Q-010)", h.HHNo, heads)
		}
		if h.HeadIDNo != head.IDNo || !mobileRe.MatchString(h.Phone) {
			t.Errorf("%s: head ID or phone %q wrong", h.HHNo, h.Phone)
		}
		for _, p := range h.Members {
			id, err := ident.ParseID(p.IDNo)
			if err != nil {
				t.Fatalf("%s: invalid ID: %v", p.PersonNo, err)
			}
			if !id.Birth.Equal(p.Birth) || id.Male != p.Male || p.ID18 != p.IDNo {
				t.Errorf("%s: ID disagrees with birth/sex (Q-009)", p.PersonNo)
			}
			if p.DisCert != "" {
				if _, err := ident.ParseDisabilityCert(p.DisCert); err != nil || p.Health != HealthDisability {
					t.Errorf("%s: certificate %v / health %s (Q-005/Q-007)", p.PersonNo, err, p.Health)
				}
			} else if p.Health == HealthDisability {
				t.Errorf("%s: disabled without certificate (Q-006)", p.PersonNo)
			}
			a := Age(p.Birth, cfg.AsOf)
			gap := Age(head.Birth, cfg.AsOf) - a
			switch p.Rel {
			case RelSpouse:
				if p.Male == head.Male {
					t.Errorf("%s: spouse of the same sex (Q-020)", p.PersonNo)
				}
			case RelSon, RelDaughter:
				if p.Male != (p.Rel == RelSon) || gap < 18 || gap > 40 {
					t.Errorf("%s: %s male=%v gap %d", p.PersonNo, p.Rel, p.Male, gap)
				}
			case RelGrandson, RelGranddaught:
				if p.Male != (p.Rel == RelGrandson) || gap < 36 {
					t.Errorf("%s: %s male=%v gap %d", p.PersonNo, p.Rel, p.Male, gap)
				}
			case RelFather, RelMother:
				if p.Male != (p.Rel == RelFather) || gap > -18 {
					t.Errorf("%s: %s male=%v gap %d", p.PersonNo, p.Rel, p.Male, gap)
				}
			case RelDaughterInL:
				if p.Male {
					t.Errorf("%s: male 之儿媳 (Q-021)", p.PersonNo)
				}
			}
			if a < 16 && p.Skill != SkillNone {
				t.Errorf("%s: age %d skill %s (Q-022)", p.PersonNo, a, p.Skill)
			}
			if a >= 60 && (p.Skill == SkillNormal || p.Skill == SkillSkilled) {
				t.Errorf("%s: age %d skill %s (Q-023)", p.PersonNo, a, p.Skill)
			}
			if p.School == "小学" && (a < 6 || a > 14) {
				t.Errorf("%s: primary pupil aged %d (Q-030)", p.PersonNo, a)
			}
			if p.InsResMed == p.InsEmpMed {
				t.Errorf("%s: medical insurance resident=%v employee=%v (Q-040/Q-041)", p.PersonNo, p.InsResMed, p.InsEmpMed)
			}
			if (p.Education == "") == (p.School == "") {
				t.Errorf("%s: education %q and school %q (Q-035)", p.PersonNo, p.Education, p.School)
			}
		}
		if h.Category != "" {
			if h.Risks[0] == "" {
				t.Errorf("%s: monitored without risk (Q-057)", h.HHNo)
			}
			if h.hasRisk(RiskOther) && h.RiskRemark == "" {
				t.Errorf("%s: 其他 without remark (Q-058)", h.HHNo)
			}
			if h.hasRisk(RiskDisaster) && h.DisasterSubitem == "" {
				t.Errorf("%s: disaster without sub-item (Q-059)", h.HHNo)
			}
		}
		if h.q105Field != "" || h.Wage+h.Business+h.Property+h.Transfer != h.AnnualIncome {
			t.Errorf("%s: components do not add up (Q-105)", h.HHNo)
		}
		for i, l := range h.Land {
			if l < 0 || l > int64(landMax[i])*100 {
				t.Errorf("%s: %s = %d (Q-112)", h.HHNo, landCols[i], l)
			}
		}
		if h.RoadDistance > 500 {
			t.Errorf("%s: road distance %d (Q-113)", h.HHNo, h.RoadDistance)
		}
		pc := float64(h.PerCapita()) / 100
		if pc < cfg.IncomeMinPerCapita*0.9 || pc > cfg.IncomeMaxPerCapita*1.3 {
			t.Errorf("%s: per-capita income %.2f out of range", h.HHNo, pc)
		}
	})
	if clean < 3000 {
		t.Fatalf("only %d clean households of %d", clean, cfg.Households)
	}
}

// TestDefectsDetectable checks that each manifest line's subject really breaks its rule.
func TestDefectsDetectable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Households = 6000
	for r := range cfg.DefectRates {
		cfg.DefectRates[r] = 0.01
	}
	seen := map[string]int{}
	collect(t, cfg, func(h *Household, lines []ManifestLine) {
		for _, l := range lines {
			seen[l.Rule]++
			var p *Person
			for _, m := range h.Members {
				if m.PersonNo == l.Key {
					p = m
				}
			}
			if l.Subject == "person" && p == nil {
				t.Fatalf("%s: person %s not in household %s", l.Rule, l.Key, h.HHNo)
			}
			ok := true
			switch l.Rule {
			case "Q-003":
				_, err := ident.ParseID(p.IDNo)
				ok = len(p.IDNo) == 18 && err != nil
			case "Q-004":
				n := len(p.IDNo)
				ok = n != 18 && n != 20 && n != 22
			case "Q-005":
				_, err := ident.ParseDisabilityCert(p.DisCert)
				ok = err != nil
			case "Q-006":
				ok = p.Health == HealthDisability && p.DisCert == ""
			case "Q-007":
				ok = p.Health != HealthDisability && p.DisCert != ""
			case "Q-008":
				ok = p.IDNo == "" || strings.HasPrefix(p.IDNo, "999999")
			case "Q-009":
				id, err := ident.ParseID(p.IDNo)
				ok = err == nil && (!id.Birth.Equal(p.Birth) || id.Male != p.Male)
			case "Q-020":
				ok = h.Members[0].Male == p.Male && p.Rel == RelSpouse
			case "Q-021":
				ok = (p.Rel == RelSon || p.Rel == RelFather) != p.Male
			case "Q-110":
				ok = !mobileRe.MatchString(h.Phone)
			case "Q-113":
				ok = h.RoadDistance > 500
			}
			if !ok {
				t.Errorf("%s on %s: defect not visible", l.Rule, l.Key)
			}
		}
	})
	for _, r := range DefectRules {
		if seen[r] == 0 {
			t.Errorf("rule %s never injected at rate 0.01 over %d households", r, cfg.Households)
		}
	}
}

// TestDefectRate checks the realised per-person rate of the first rule (no ordering bias).
func TestDefectRate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Households = 8000
	for r := range cfg.DefectRates {
		cfg.DefectRates[r] = 0
	}
	cfg.DefectRates["Q-003"] = 0.02
	cfg.DefectRates["Q-113"] = 0.02
	var persons, households, q003, q113 int
	collect(t, cfg, func(h *Household, lines []ManifestLine) {
		households++
		persons += len(h.Members)
		for _, l := range lines {
			switch l.Rule {
			case "Q-003":
				q003++
			case "Q-113":
				q113++
			}
		}
	})
	r3 := float64(q003) / float64(persons)
	if r3 < 0.016 || r3 > 0.024 {
		t.Errorf("Q-003 rate %.4f over %d persons, want 0.02 ± 0.004", r3, persons)
	}
	// Q-113 applies to households not already given Q-003 (one defect per household).
	r113 := float64(q113) / float64(households)
	if r113 < 0.012 || r113 > 0.024 {
		t.Errorf("Q-113 rate %.4f over %d households, want about 0.02·(1−P(Q-003))", r113, households)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"households", func(c *Config) { c.Households = 0 }, "households"},
		{"rule", func(c *Config) { c.DefectRates["Q-999"] = 0.1 }, "defect_rates.Q-999"},
		{"rate", func(c *Config) { c.DefectRates["Q-003"] = 2 }, "defect_rates.Q-003"},
		{"risk", func(c *Config) { c.RiskWeights["因穷"] = 1 }, "risk_weights.因穷"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

func FuzzTSVRoundTrip(f *testing.F) {
	f.Add("a", "b\tc", `d\e`)
	f.Add("", "x\ny", `\N`)
	f.Fuzz(func(t *testing.T, a, b, c string) {
		r := row{nil, nil, nil, nil}
		r.set(0, "key"+a)
		r.set(1, b)
		r.set(3, c)
		got := parseTSVRow(r.appendTSV(nil))
		if len(got) != len(r) {
			t.Fatalf("got %d fields, want %d", len(got), len(r))
		}
		for i := range r {
			if (r[i] == nil) != (got[i] == nil) || r[i] != nil && *r[i] != *got[i] {
				t.Fatalf("field %d: %v != %v", i, fmtp(r[i]), fmtp(got[i]))
			}
		}
	})
}

func fmtp(s *string) string {
	if s == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *s)
}

func FuzzParseCents(f *testing.F) {
	f.Add(int64(12345))
	f.Add(int64(-5))
	f.Fuzz(func(t *testing.T, c int64) {
		if c < -1e15 || c > 1e15 {
			return
		}
		if got := parseCents(centsString(c)); got != c {
			t.Fatalf("parseCents(%s) = %d, want %d", centsString(c), got, c)
		}
	})
}
