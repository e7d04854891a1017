package rules

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/schemas"
)

var asOf = time.Date(2024, 6, 30, 0, 0, 0, 0, time.UTC)

func yes() *bool  { b := true; return &b }
func nope() *bool { b := false; return &b }

func mkID(t testing.TB, birth string, male bool, seq int) string {
	t.Helper()
	b, err := time.Parse(time.DateOnly, birth)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ident.MakeID("510104", b, seq, male)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// setBirth moves a member's birth date and gives it a matching ID number.
func setBirth(t testing.TB, p *schemas.Person, birth string) {
	p.BirthDate = birth
	p.IDNo = mkID(t, birth, p.Sex == "男", 11)
}

func member(t testing.TB, pno, rel, sex, birth string) schemas.Person {
	return schemas.Person{Meta: schemas.Meta{Key: pno}, PersonNo: pno, HouseholdNo: "H1", IDType: "居民身份证",
		IDNo: mkID(t, birth, sex == "男", 21), Name: "成员" + pno, Sex: sex, BirthDate: birth, RelationToHead: rel,
		Health: "健康", ResidentMedicalInsurance: yes(), EmployeeMedicalInsurance: nope(), SeriousIllnessInsurance: yes(),
		ResidentPension: yes(), EmployeePension: nope(), PublicWelfareJob: nope(), MedicalAssistance: nope(), Deceased: nope(),
		DibaoStatus: "未享受低保", TekunStatus: "未享受特困供养"}
}

// cleanHousehold is a monitored household (因病, not eliminated) that passes every
// default rule at asOf.
func cleanHousehold(t testing.TB) (*schemas.Household, []schemas.Person, []schemas.AssistanceMeasure) {
	h := &schemas.Household{Meta: schemas.Meta{Key: "H1"}, HouseholdNo: "H1", RegionCode: "510104001001", VillageCode: "510104001001",
		HouseholdType: "监测户", MonitoringCategory: 2, NoLabourSupported: nope(), HeadName: "成员P1", MemberCount: 3,
		Phone: "13800138000", Risks: []string{"因病"}, IdentifiedYM: "202301", RiskEliminated: nope(),
		AnnualIncome: "33500.00", PerCapitaNetIncome: "10166.67", WageIncome: "20000.00", BusinessIncome: "10000.00",
		PropertyIncome: "500.00", TransferIncome: "3000.00", BusinessExpense: "3000.00", CompliantOutOfPocket: "5000.00",
		DibaoAmount: "0.00", TekunAmount: "0.00", ChildOutOfSchool: nope(), MemberUninsured: nope(), DangerousHouse: nope(),
		SafeDrinkingWater: yes(), HousingAreaM2: "80.00", HasElectricity: yes(), RoadHardened: yes(), DistanceToMainRoadKm: "1.20",
		FarmlandMu: "3.00", ForestLandMu: "5.00", ReturnedFarmlandMu: "1.00", OrchardMu: "0.50", GrasslandMu: "0.00", WaterSurfaceMu: "0.10",
		Measures: []string{"健康帮扶", "产业帮扶"}, DevelopmentMeasureStatus: "已实施", MonitoringContact: "王五",
		MonitoringContactPhone: "13900139000", Collector: "赵六", Relocated: nope()}
	head := member(t, "P1", "户主", "男", "1975-05-10")
	head.Health, head.LabourSkill, head.Education = "长期慢性病", "普通劳动力", "初中"
	head.WorkStatus, head.WorkPlace, head.WorkMonths, head.WorkMonthlyIncome = "县内务工", "四川省成都市武侯区", 10, "2000.00"
	h.HeadIDNo = head.IDNo
	spouse := member(t, "P2", "配偶", "女", "1977-03-02")
	spouse.LabourSkill, spouse.Education = "普通劳动力", "初中"
	child := member(t, "P3", "之女", "女", "2012-09-01")
	child.LabourSkill, child.SchoolStatus = "无劳动力", "小学"
	child.ResidentPension, child.EmployeePension = nope(), nope()
	ms := []schemas.AssistanceMeasure{
		{Meta: schemas.Meta{Key: "M1"}, HouseholdNo: "H1", Category: "健康帮扶", Item: "医疗救助", StartYM: "202302", ImplementationStatus: "已实施"},
		{Meta: schemas.Meta{Key: "M2"}, HouseholdNo: "H1", Category: "产业帮扶", Item: "种养殖补贴", Development: true, StartYM: "202302", ImplementationStatus: "已实施"},
	}
	return h, []schemas.Person{head, spouse, child}, ms
}

type mutation func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure)

func dropCategory(h *schemas.Household, ms *[]schemas.AssistanceMeasure, cat string) {
	h.Measures = slices.DeleteFunc(h.Measures, func(c string) bool { return c == cat })
	*ms = slices.DeleteFunc(*ms, func(m schemas.AssistanceMeasure) bool { return m.Category == cat })
}

func addMeasure(h *schemas.Household, ms *[]schemas.AssistanceMeasure, cat, item string, dev bool) {
	if !slices.Contains(h.Measures, cat) {
		h.Measures = append(h.Measures, cat)
	}
	*ms = append(*ms, schemas.AssistanceMeasure{Meta: schemas.Meta{Key: fmt.Sprintf("M%d", len(*ms)+1)}, HouseholdNo: "H1",
		Category: cat, Item: item, Development: dev, StartYM: "202302", ImplementationStatus: "已实施"})
}

func noWork(p *schemas.Person) {
	p.WorkStatus, p.WorkPlace, p.WorkMonths, p.WorkMonthlyIncome = "", "", 0, ""
}

func eliminate(h *schemas.Household, ym string) {
	h.RiskEliminated, h.EliminatedYM, h.EliminationMethod = yes(), ym, "帮扶消除"
}

// ruleCases make the clean household fail exactly the listed rules, one case per
// catalogue situation, so every rule is shown to fire (most never appear in the
// generator's seeded defects) and not to fire on its neighbours' data.
var ruleCases = []struct {
	name string
	want []string
	mut  mutation
}{
	{"checksum", []string{"Q-003"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		id := ps[1].IDNo
		ps[1].IDNo = id[:17] + flip(id[17])
	}},
	{"17 characters", []string{"Q-004"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].IDNo = ps[1].IDNo[:17]
	}},
	{"certificate grade 8", []string{"Q-005"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].Health, ps[1].DisabilityType, ps[1].DisabilityGrade = "残疾", "肢体", "三级"
		ps[1].DisabilityCertNo = ps[1].IDNo + "48"
	}},
	{"disabled without certificate", []string{"Q-006"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].Health = "残疾"
	}},
	{"certificate but healthy", []string{"Q-007"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].DisabilityCertNo = ps[1].IDNo + "43"
	}},
	{"ID missing", []string{"Q-008"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].IDNo = ""
	}},
	{"ID placeholder", []string{"Q-008"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].IDNo = "999999" + ps[1].IDNo[6:]
	}},
	{"birth date off the ID", []string{"Q-009"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].BirthDate = "1977-03-03"
	}},
	{"two heads", []string{"Q-010"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].RelationToHead = "户主"
	}},
	{"no head", []string{"Q-010"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[0].RelationToHead = "其他"
	}},
	{"male spouse of a male head", []string{"Q-020"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].Sex = "男"
		setBirth(t, &ps[1], ps[1].BirthDate)
	}},
	{"female son", []string{"Q-021"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[2].RelationToHead = "之子"
	}},
	{"child labourer", []string{"Q-022"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[2].LabourSkill = "普通劳动力"
	}},
	{"elderly labourer", []string{"Q-023"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		setBirth(t, &ps[0], "1960-01-01")
		h.HeadIDNo = ps[0].IDNo
	}},
	{"healthy weak labourer", []string{"Q-024"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].LabourSkill = "弱劳动力或半劳动力"
	}},
	{"severe physical disability working", []string{"Q-025"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].Health, ps[1].DisabilityType, ps[1].DisabilityGrade = "残疾", "肢体", "一级"
		ps[1].DisabilityCertNo = ps[1].IDNo + "41"
	}},
	{"welfare job at 11", []string{"Q-026"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[2].PublicWelfareJob = yes()
	}},
	{"welfare job at 70", []string{"Q-026"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		setBirth(t, &ps[1], "1954-06-30")
		ps[1].LabourSkill = "弱劳动力或半劳动力"
		ps[1].PublicWelfareJob = yes()
	}},
	{"working pupil of 11", []string{"Q-027", "Q-038"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[2].WorkStatus = "县内务工"
	}},
	{"primary at 15", []string{"Q-030"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		setBirth(t, &ps[2], "2009-01-01")
	}},
	{"junior at 11", []string{"Q-031"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[2].SchoolStatus = "七年级"
	}},
	{"senior at 11", []string{"Q-032"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[2].SchoolStatus = "中职一年级"
	}},
	{"pre-school at 11", []string{"Q-033"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[2].SchoolStatus = "学前教育"
	}},
	{"19 with primary education", []string{"Q-034"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		setBirth(t, &ps[2], "2005-01-01")
		ps[2].SchoolStatus, ps[2].Education = "", "小学"
	}},
	{"education and school both", []string{"Q-035"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[2].Education = "小学"
	}},
	{"education and school neither", []string{"Q-035"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].Education = ""
	}},
	{"dropout for illness, healthy", []string{"Q-036"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].DropoutReason = "因病"
	}},
	{"child out of school unflagged", []string{"Q-037"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[2].SchoolStatus, ps[2].Education = "", "小学"
	}},
	{"working senior pupil of 17", []string{"Q-038"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		setBirth(t, &ps[2], "2007-01-01")
		ps[2].SchoolStatus, ps[2].WorkStatus, ps[2].WorkMonths = "高中二年级", "县内务工", 2
	}},
	{"no medical insurance", []string{"Q-040"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].ResidentMedicalInsurance = nope()
	}},
	{"both medical insurances", []string{"Q-041"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].EmployeeMedicalInsurance = yes()
	}},
	{"serious-illness insurance empty", []string{"Q-042"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].SeriousIllnessInsurance = nil
	}},
	{"pension empty", []string{"Q-043"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].ResidentPension, ps[1].EmployeePension = nil, nil
	}},
	{"因残 without disabled member", []string{"Q-050", "Q-072"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = append(h.Risks, "因残")
	}},
	{"因病 without out-of-pocket", []string{"Q-051"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.CompliantOutOfPocket = "0.00"
	}},
	{"因病 without ill member", []string{"Q-051"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[0].Health = "健康"
	}},
	{"缺劳动力 with two labourers of three", []string{"Q-052"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = append(h.Risks, "缺劳动力")
	}},
	{"因务工就业不稳 without work", []string{"Q-053"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = append(h.Risks, "因务工就业不稳")
		noWork(&ps[0])
	}},
	{"unsafe water, no water risk", []string{"Q-054"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.SafeDrinkingWater = nope()
	}},
	{"dangerous house, no housing risk", []string{"Q-055"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.DangerousHouse = yes()
	}},
	{"uninsured member, no illness risk or help", []string{"Q-040", "Q-056"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = []string{"因意外事故"}
		dropCategory(h, ms, "健康帮扶")
		ps[1].ResidentMedicalInsurance = nope()
	}},
	{"monitored without risk", []string{"Q-057"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = nil
	}},
	{"其他 without remark", []string{"Q-058"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = append(h.Risks, "其他")
	}},
	{"因自然灾害 without sub-item", []string{"Q-059"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = append(h.Risks, "因自然灾害")
	}},
	{"脱贫户 with dangerous house not monitored", []string{"Q-060"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.HouseholdType, h.MonitoringCategory, h.Risks, h.IdentifiedYM, h.RiskEliminated = "脱贫户", 0, nil, "", nil
		h.DangerousHouse = yes()
	}},
	{"脱贫户 with seriously ill uninsured member", []string{"Q-060"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.HouseholdType, h.MonitoringCategory, h.Risks, h.IdentifiedYM, h.RiskEliminated = "脱贫户", 0, nil, "", nil
		ps[1].Health, ps[1].SeriousIllnessInsurance, ps[1].LabourSkill = "大病", nope(), "弱劳动力或半劳动力"
	}},
	{"因病 without health help", []string{"Q-070"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		dropCategory(h, ms, "健康帮扶")
	}},
	{"因学 without education help", []string{"Q-071"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = append(h.Risks, "因学")
	}},
	{"因残 without protection", []string{"Q-072"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = append(h.Risks, "因残")
		ps[1].Health, ps[1].DisabilityType, ps[1].DisabilityGrade = "残疾", "视力", "三级"
		ps[1].DisabilityCertNo = ps[1].IDNo + "13"
	}},
	{"因安全住房 without housing help", []string{"Q-073"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = append(h.Risks, "因安全住房")
		h.DangerousHouse = yes()
	}},
	{"因安全饮水 without water help", []string{"Q-074"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = append(h.Risks, "因安全饮水")
		h.SafeDrinkingWater = nope()
	}},
	{"dropout without compulsory-education help", []string{"Q-075"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.ChildOutOfSchool = yes()
	}},
	{"no measure at all", []string{"Q-070", "Q-076", "Q-077"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Measures, *ms = nil, nil
	}},
	{"no development measure", []string{"Q-077"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		dropCategory(h, ms, "产业帮扶")
	}},
	{"only 综合保障 although able", []string{"Q-077", "Q-078"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Risks = []string{"因意外事故"}
		h.Measures, *ms = nil, nil
		addMeasure(h, ms, "综合保障", "临时救助", false)
	}},
	{"development measure not started", []string{"Q-079"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.DevelopmentMeasureStatus = "尚未实施"
	}},
	{"低保 measure without 低保 member", []string{"Q-080"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		addMeasure(h, ms, "综合保障", "低保", false)
	}},
	{"低保 member without measure", []string{"Q-080"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[1].DibaoStatus = "享受低保"
	}},
	{"employment help, nobody works", []string{"Q-081"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		addMeasure(h, ms, "就业帮扶", "就业技能培训", true)
		noWork(&ps[0])
	}},
	{"劳务输出 without outside work", []string{"Q-082"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		addMeasure(h, ms, "就业帮扶", "劳务输出", true)
	}},
	{"eliminated, employment help, no wage", []string{"Q-083"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		eliminate(h, "202312")
		addMeasure(h, ms, "就业帮扶", "就业技能培训", true)
		h.WageIncome, h.BusinessIncome = "0.00", "30000.00"
	}},
	{"eliminated after 4 months", []string{"Q-090"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		eliminate(h, "202305")
	}},
	{"no-labour household eliminated", []string{"Q-091"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		eliminate(h, "202312")
		h.NoLabourSupported = yes()
	}},
	{"帮扶消除 without measure", []string{"Q-092"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		eliminate(h, "202312")
		h.Measures, *ms = nil, nil
	}},
	{"eliminated below the threshold", []string{"Q-093"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		eliminate(h, "202312")
		h.PerCapitaNetIncome = "6000.00"
	}},
	{"eliminated without contact", []string{"Q-094"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		eliminate(h, "202312")
		h.MonitoringContactPhone = ""
	}},
	{"per-capita income too high", []string{"Q-100"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.PerCapitaNetIncome = "25000.00"
	}},
	{"wage 50 a month", []string{"Q-101"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		ps[0].WorkMonthlyIncome = "50.00"
	}},
	{"wage income 50", []string{"Q-102"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.WageIncome, h.BusinessIncome = "50.00", "29950.00"
	}},
	{"components do not add up", []string{"Q-105"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.AnnualIncome = "40000.00"
	}},
	{"landline phone", []string{"Q-110"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.Phone = "0834-3221234"
	}},
	{"farmland 150 mu", []string{"Q-112"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.FarmlandMu = "150.00"
	}},
	{"grassland empty", []string{"Q-112"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.GrasslandMu = ""
	}},
	{"main road 6.5 km away", []string{"Q-113"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.DistanceToMainRoadKm = "6.50"
	}},
	{"housing area empty", []string{"Q-114"}, func(t testing.TB, h *schemas.Household, ps []schemas.Person, ms *[]schemas.AssistanceMeasure) {
		h.HousingAreaM2 = ""
	}},
}

func flip(c byte) string {
	const s = "0123456789X"
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return string(s[(i+1)%len(s)])
		}
	}
	return "0"
}

func ruleSet(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		if !slices.Contains(out, f.RuleID) {
			out = append(out, f.RuleID)
		}
	}
	sort.Strings(out)
	return out
}

func TestCleanHouseholdPassesEveryRule(t *testing.T) {
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	h, ps, ms := cleanHousehold(t)
	if fs := e.Evaluate(NewHouseholdContext(h, ps, ms), asOf); len(fs) != 0 {
		for _, f := range fs {
			t.Errorf("%s %s %s: %s %s", f.RuleID, f.SubjectKind, f.SubjectKey, f.Detail(), f.Err)
		}
	}
}

// TestEveryRuleFires runs each case and checks the findings are exactly the listed
// rules, and that every rule of the default set has a case.
func TestEveryRuleFires(t *testing.T) {
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, c := range ruleCases {
		t.Run(c.name, func(t *testing.T) {
			h, ps, ms := cleanHousehold(t)
			c.mut(t, h, ps, &ms)
			fs := e.Evaluate(NewHouseholdContext(h, ps, ms), asOf)
			for _, f := range fs {
				if f.Err != "" {
					t.Errorf("%s: evaluation error %s", f.RuleID, f.Err)
				}
			}
			if got := ruleSet(fs); !slices.Equal(got, c.want) {
				var details []string
				for _, f := range fs {
					details = append(details, f.RuleID+" "+f.SubjectKey+": "+f.Detail())
				}
				t.Errorf("rules %v, want %v\n%v", got, c.want, details)
			}
		})
		for _, r := range c.want {
			covered[r] = true
		}
	}
	for _, id := range e.RuleIDs() {
		if !covered[id] {
			t.Errorf("rule %s has no case in ruleCases", id)
		}
	}
	if n := len(e.RuleIDs()); n < 45 {
		t.Errorf("only %d rules in the default set", n)
	}
}

// TestTitle: a loaded rule's title comes from its file; an unknown id has none.
func TestTitle(t *testing.T) {
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Title("Q-004"); got != "certificate number length is not 18, 20 or 22" {
		t.Errorf("Title(Q-004) = %q", got)
	}
	if got := e.Title("Q-999"); got != "" {
		t.Errorf("Title(Q-999) = %q, want empty", got)
	}
}
