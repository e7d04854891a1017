package gen

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/shouwang/shouwang/internal/ident"
)

// DefectRules lists the supervision rules (quality-rules.md) the generator can violate on
// purpose. Each injected defect yields exactly one manifest line; at most one defect is
// injected per household, so defects never interact and a rule engine can be scored
// exactly against the manifest.
var DefectRules = []string{
	"Q-003", "Q-004", "Q-005", "Q-006", "Q-007", "Q-008", "Q-009", "Q-010",
	"Q-020", "Q-021", "Q-022", "Q-023", "Q-030", "Q-040", "Q-041",
	"Q-057", "Q-058", "Q-059", "Q-105", "Q-110", "Q-112", "Q-113",
}

// ManifestLine is one line of manifest.jsonl (ground truth of an injected defect, a
// department signal, or a push change).
type ManifestLine struct {
	Kind        string   `json:"kind"`
	Rule        string   `json:"rule,omitempty"`
	Department  string   `json:"department,omitempty"`
	Subject     string   `json:"subject,omitempty"`
	Key         string   `json:"key,omitempty"`
	IDNo        string   `json:"id_no,omitempty"`
	HHNo        string   `json:"hh_no,omitempty"`
	VillageCode string   `json:"village_code,omitempty"`
	Field       string   `json:"field,omitempty"`
	Expected    *bool    `json:"expected,omitempty"`
	Value       *float64 `json:"value,omitempty"`
	Note        string   `json:"note,omitempty"`
	Week        int      `json:"week,omitempty"`
	Table       string   `json:"table,omitempty"`
	Op          string   `json:"op,omitempty"`
	Fields      []string `json:"fields,omitempty"`
}

// injector applies defects to a clean household.
type injector struct {
	cfg *Config
	r   *rand.Rand
	g   *villageGen
}

func (in *injector) rate(rule string) float64 { return in.cfg.DefectRates[rule] }

// inject tries each rule in turn; the first rule that fires on an eligible subject of
// the household wins. Persons are drawn independently with the rule's rate.
func (in *injector) inject(h *Household) []ManifestLine {
	for _, rule := range DefectRules {
		rate := in.rate(rule)
		if rate <= 0 {
			continue
		}
		if line, ok := in.try(h, rule, rate); ok {
			line.Kind, line.Rule, line.HHNo, line.VillageCode = "defect", rule, h.HHNo, h.VillageCode
			return []ManifestLine{line}
		}
	}
	return nil
}

func personLine(p *Person, field string) ManifestLine {
	return ManifestLine{Subject: "person", Key: p.PersonNo, Field: field}
}

func hhLine(h *Household, field string) ManifestLine {
	return ManifestLine{Subject: "household", Key: h.HHNo, Field: field}
}

func (in *injector) hit(rate float64) bool { return in.r.Float64() < rate }

// firstPerson draws each eligible member with probability rate and returns the first hit.
func (in *injector) firstPerson(h *Household, rate float64, ok func(p *Person) bool) *Person {
	for _, p := range h.Members {
		if ok(p) && in.hit(rate) {
			return p
		}
	}
	return nil
}

func (in *injector) setID(h *Household, p *Person, id string) {
	p.IDNo = id
	p.defect = true
	if p.Rel == RelHead {
		h.HeadIDNo = id
	}
}

func (in *injector) try(h *Household, rule string, rate float64) (ManifestLine, bool) {
	any := func(*Person) bool { return true }
	monitored := h.Category != ""
	switch rule {
	case "Q-003":
		if p := in.firstPerson(h, rate, any); p != nil {
			c := p.ID18[17]
			wrong := "0123456789X"[in.r.IntN(11)]
			for wrong == c {
				wrong = "0123456789X"[in.r.IntN(11)]
			}
			in.setID(h, p, p.ID18[:17]+string(wrong))
			return personLine(p, "id_no"), true
		}
	case "Q-004":
		if p := in.firstPerson(h, rate, any); p != nil {
			l := personLine(p, "id_no")
			if p.Birth.Year() < 1980 && in.r.IntN(2) == 0 {
				// legacy 15-digit number: 6 region + yymmdd + 3 order digits
				in.setID(h, p, p.ID18[:6]+p.ID18[8:17])
				p.legacy15 = true
				l.Note = "legacy 15-digit ID"
			} else if in.r.IntN(2) == 0 {
				in.setID(h, p, p.ID18[:17])
				l.Note = "17 characters"
			} else {
				in.setID(h, p, p.ID18+fmt.Sprint(in.r.IntN(10)))
				l.Note = "19 characters"
			}
			return l, true
		}
	case "Q-005":
		if p := in.firstPerson(h, rate, func(p *Person) bool { return p.DisCert != "" }); p != nil {
			switch in.r.IntN(3) {
			case 0:
				p.DisCert = p.ID18 + "8" + p.DisCert[19:]
			case 1:
				p.DisCert = p.DisCert[:19] + "5"
			default:
				p.DisCert = p.ID18[:17] + flipCheck(p.ID18[17]) + p.DisCert[18:]
			}
			p.defect = true
			return personLine(p, "disability_cert_no"), true
		}
	case "Q-006":
		if p := in.firstPerson(h, rate, func(p *Person) bool { return p.Health == HealthDisability }); p != nil {
			p.DisCert = ""
			p.defect = true
			return personLine(p, "disability_cert_no"), true
		}
	case "Q-007":
		if p := in.firstPerson(h, rate, func(p *Person) bool { return p.Health == HealthOK && p.age >= 16 && p.age < 60 }); p != nil {
			t, gr := 4, 3+in.r.IntN(2)
			p.DisType, p.DisGrade = ident.DisabilityTypeName(t), gr
			p.DisCert = ident.MakeDisabilityCert(p.ID18, t, gr)
			p.defect = true
			return personLine(p, "health"), true
		}
	case "Q-008":
		if p := in.firstPerson(h, rate, any); p != nil {
			if in.r.IntN(2) == 0 {
				in.setID(h, p, "")
			} else {
				in.setID(h, p, "999999"+p.ID18[6:])
			}
			return personLine(p, "id_no"), true
		}
	case "Q-009":
		if p := in.firstPerson(h, rate, func(p *Person) bool { return p.Birth.Day() <= 27 }); p != nil {
			// move the recorded birth date within the same month (same age class at AsOf is
			// not guaranteed by day changes, so only move towards the 28th, after AsOf's day 30)
			b := p.Birth.AddDate(0, 0, 1)
			if Age(b, in.cfg.AsOf) != p.age {
				return ManifestLine{}, false
			}
			p.Birth = b
			p.defect = true
			return personLine(p, "birth_date"), true
		}
	case "Q-010":
		if in.hit(rate) && len(h.Members) >= 2 {
			if in.r.IntN(2) == 0 {
				h.Members[0].Rel = RelOther
				h.Members[0].defect = true
				return hhLine(h, "relationship"), true
			}
			last := h.Members[len(h.Members)-1]
			if last.Rel == RelSpouse {
				return ManifestLine{}, false
			}
			last.Rel = RelHead
			last.defect = true
			return hhLine(h, "relationship"), true
		}
	case "Q-020":
		if len(h.Members) >= 2 && h.Members[1].Rel == RelSpouse && in.hit(rate) {
			s := h.Members[1]
			male := !s.Male
			key := s.idRegion + s.Birth.Format("20060102") + fmt.Sprint(male)
			if in.g.used[key] {
				return ManifestLine{}, false
			}
			in.g.used[key] = true
			id, err := ident.MakeID(s.idRegion, s.Birth, s.idSeq, male)
			if err != nil {
				return ManifestLine{}, false
			}
			s.Male = male
			s.ID18, s.IDNo = id, id
			if s.DisCert != "" {
				s.DisCert = id + s.DisCert[18:]
			}
			s.defect = true
			return personLine(s, "sex"), true
		}
	case "Q-021":
		swap := map[string]string{RelSon: RelDaughter, RelDaughter: RelSon, RelFather: RelMother, RelMother: RelFather}
		if p := in.firstPerson(h, rate, func(p *Person) bool { _, ok := swap[p.Rel]; return ok }); p != nil {
			p.Rel = swap[p.Rel]
			p.defect = true
			return personLine(p, "relationship"), true
		}
	case "Q-022":
		if p := in.firstPerson(h, rate, func(p *Person) bool { return p.age < 16 }); p != nil {
			p.Skill = SkillNormal
			p.defect = true
			return personLine(p, "labour_skill"), true
		}
	case "Q-023":
		if p := in.firstPerson(h, rate, func(p *Person) bool { return p.age >= 60 }); p != nil {
			p.Skill = SkillNormal
			p.defect = true
			return personLine(p, "labour_skill"), true
		}
	case "Q-030":
		if p := in.firstPerson(h, rate, func(p *Person) bool { return p.School == "学前教育" || p.School == "高中一年级" }); p != nil {
			p.School = "小学"
			p.defect = true
			return personLine(p, "school_status"), true
		}
	case "Q-040":
		if p := in.firstPerson(h, rate, any); p != nil {
			p.InsResMed, p.InsEmpMed = false, false
			p.defect = true
			return personLine(p, "ins_resident_medical"), true
		}
	case "Q-041":
		if p := in.firstPerson(h, rate, any); p != nil {
			p.InsResMed, p.InsEmpMed = true, true
			p.defect = true
			return personLine(p, "ins_employee_medical"), true
		}
	case "Q-057":
		if monitored && in.hit(rate) {
			h.Risks = [5]string{}
			h.DisasterSubitem, h.RiskRemark = "", ""
			return hhLine(h, "risk1"), true
		}
	case "Q-058":
		if monitored && in.hit(rate) {
			if !h.hasRisk(RiskOther) {
				i := slices.Index(h.Risks[:], "")
				if i < 0 {
					return ManifestLine{}, false
				}
				h.Risks[i] = RiskOther
			}
			h.RiskRemark = ""
			return hhLine(h, "risk_remark"), true
		}
	case "Q-059":
		if monitored && in.hit(rate) {
			if !h.hasRisk(RiskDisaster) {
				i := slices.Index(h.Risks[:], "")
				if i < 0 {
					return ManifestLine{}, false
				}
				h.Risks[i] = RiskDisaster
			}
			h.DisasterSubitem = ""
			return hhLine(h, "disaster_subitem"), true
		}
	case "Q-105":
		if in.hit(rate) {
			fields := []string{"wage_income", "business_income", "property_income", "transfer_income"}
			h.q105Field = fields[in.r.IntN(len(fields))]
			h.q105Delta = max(h.AnnualIncome/10, 50000) // ≥ 10 % and ≥ 500 yuan
			if in.r.IntN(2) == 0 {
				h.q105Delta = -h.q105Delta
			}
			return hhLine(h, h.q105Field), true
		}
	case "Q-110":
		if in.hit(rate) {
			bad := []string{"1234567890", "0834-" + h.Phone[4:11], h.Phone + "1", "12" + h.Phone[2:], h.Phone[:10]}
			h.Phone = bad[in.r.IntN(len(bad))]
			return hhLine(h, "phone"), true
		}
	case "Q-112":
		if monitored && in.hit(rate) {
			i := in.r.IntN(6)
			if in.r.IntN(3) == 0 {
				h.Land[i] = -1
			} else {
				h.Land[i] = int64(landMax[i]+1+in.r.IntN(100)) * 100
			}
			return hhLine(h, landCols[i]), true
		}
	case "Q-113":
		if in.hit(rate) {
			h.RoadDistance = int64(510 + in.r.IntN(2500))
			return hhLine(h, "road_distance_km"), true
		}
	}
	return ManifestLine{}, false
}

var landCols = []string{"farmland_mu", "forest_mu", "returned_farmland_mu", "orchard_mu", "grassland_mu", "water_surface_mu"}
var landMax = []int{100, 200, 200, 200, 100, 100}

func flipCheck(c byte) string {
	s := "0123456789X"
	i := strings.IndexByte(s, c)
	return string(s[(i+1)%len(s)])
}
