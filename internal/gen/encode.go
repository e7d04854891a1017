package gen

import (
	"strconv"
	"strings"
	"time"

	"github.com/shouwang/shouwang/internal/ident"
)

// Column lists of the national tables, in DDL order (schemas/ddl/national.mysql.sql);
// LOAD DATA names them explicitly so a reordered DDL cannot shift values.
var (
	HouseholdColumns = []string{"hh_no", "county_name", "township_name", "village_name", "natural_village", "village_code",
		"household_type", "category", "head_name", "head_id_no", "size", "phone", "no_labour_protected",
		"risk1", "risk2", "risk3", "risk4", "risk5", "disaster_subitem", "risk_remark", "identified_ym",
		"risk_eliminated", "elimination_method", "eliminated_ym", "annual_income", "per_capita_income",
		"wage_income", "business_income", "property_income", "transfer_income", "business_expense",
		"compliant_oop_expense", "dibao_amount", "tekun_amount", "child_dropout", "member_uninsured",
		"dangerous_house", "safe_water", "housing_area", "electricity", "road_hardened", "road_distance_km",
		"farmland_mu", "forest_mu", "returned_farmland_mu", "orchard_mu", "grassland_mu", "water_surface_mu",
		"m_industry", "m_employment", "m_finance", "m_welfare_job", "m_health", "m_education", "m_compulsory_edu",
		"m_housing", "m_water", "m_social_protection", "m_relocation", "m_social_aid", "m_living_conditions",
		"m_infrastructure", "dev_measure_status", "monitor_contact", "monitor_contact_phone", "collector",
		"relocated", "resettlement_site", "resettlement_mode", "updated_at"}
	PersonColumns = []string{"person_no", "hh_no", "id_type", "id_no", "name", "sex", "birth_date", "ethnic",
		"relationship", "education", "school_status", "not_in_school_reason", "dropout_reason", "health",
		"disability_type", "disability_grade", "disability_cert_no", "labour_skill", "work_status", "work_place",
		"work_months", "work_monthly_income", "employment_channel", "welfare_job", "welfare_job_months",
		"ins_resident_medical", "ins_employee_medical", "ins_serious_illness", "ins_resident_pension",
		"ins_employee_pension", "medical_assistance", "dibao", "tekun", "phone", "deceased", "deregistered_date",
		"updated_at"}
	MeasureColumns = []string{"measure_id", "hh_no", "category", "name", "start_ym", "status", "development", "updated_at"}
)

// tsv appends fields in MySQL LOAD DATA's default format: tab-separated, newline-ended,
// backslash escapes, \N for NULL.
type tsv struct{ b []byte }

func (t *tsv) sep() {
	if n := len(t.b); n > 0 && t.b[n-1] != '\n' {
		t.b = append(t.b, '\t')
	}
}

func (t *tsv) null() { t.sep(); t.b = append(t.b, '\\', 'N') }

func (t *tsv) str(s string) {
	t.sep()
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\t':
			t.b = append(t.b, '\\', 't')
		case '\n':
			t.b = append(t.b, '\\', 'n')
		case '\\':
			t.b = append(t.b, '\\', '\\')
		default:
			t.b = append(t.b, c)
		}
	}
}

// opt writes s, or NULL when empty.
func (t *tsv) opt(s string) {
	if s == "" {
		t.null()
		return
	}
	t.str(s)
}

func (t *tsv) int(v int64) { t.sep(); t.b = strconv.AppendInt(t.b, v, 10) }

func (t *tsv) cents(v int64) {
	if v < 0 {
		t.null()
		return
	}
	t.sep()
	t.b = append(t.b, centsString(v)...)
}

func (t *tsv) flag(v bool) {
	if v {
		t.str(Yes)
	} else {
		t.str(No)
	}
}

func (t *tsv) date(v time.Time) {
	if v.IsZero() {
		t.null()
		return
	}
	t.sep()
	t.b = v.AppendFormat(t.b, "2006-01-02")
}

func (t *tsv) end() { t.b = append(t.b, '\n') }

// appendHousehold appends h's row (with any injected Q-105 delta).
func appendHousehold(b []byte, h *Household, updated time.Time) []byte {
	t := tsv{b}
	t.str(h.HHNo)
	t.str(h.CountyName)
	t.str(h.TownshipName)
	t.str(h.VillageName)
	t.opt(h.NaturalVillage)
	t.str(h.VillageCode)
	t.str(h.Type)
	t.opt(h.Category)
	t.str(h.HeadName)
	t.opt(h.HeadIDNo)
	t.int(int64(len(h.Members)))
	t.opt(h.Phone)
	t.flag(h.NoLabour)
	for _, r := range h.Risks {
		t.opt(r)
	}
	t.opt(h.DisasterSubitem)
	t.opt(h.RiskRemark)
	t.opt(h.IdentifiedYM)
	if h.Category != "" {
		t.flag(h.Eliminated)
	} else {
		t.null()
	}
	t.opt(h.ElimMethod)
	t.opt(h.EliminatedYM)
	comp := [4]int64{h.Wage, h.Business, h.Property, h.Transfer}
	for i, f := range []string{"wage_income", "business_income", "property_income", "transfer_income"} {
		if f == h.q105Field {
			if comp[i]+h.q105Delta >= 0 {
				comp[i] += h.q105Delta
			} else {
				comp[i] -= h.q105Delta // a negative component is another defect: go up instead
			}
		}
	}
	t.cents(h.AnnualIncome)
	t.cents(h.PerCapita())
	for _, c := range comp {
		t.cents(c)
	}
	t.cents(h.BusinessExpense)
	t.cents(h.CompliantOOP)
	t.cents(h.DibaoAmount)
	t.cents(h.TekunAmount)
	t.flag(h.ChildDropout)
	t.flag(h.MemberUninsured)
	t.flag(h.Dangerous)
	t.flag(h.SafeWater)
	t.cents(h.HousingArea)
	t.flag(h.Electricity)
	t.flag(h.RoadHardened)
	t.cents(h.RoadDistance)
	for _, l := range h.Land {
		t.cents(l)
	}
	for _, cat := range MeasureCategories {
		var names []string
		for _, m := range h.Measures {
			if m.Category == cat {
				names = append(names, m.Name)
			}
		}
		t.opt(strings.Join(names, ","))
	}
	t.opt(h.DevStatus)
	t.opt(h.MonitorContact)
	t.opt(h.MonitorPhone)
	t.opt(h.Collector)
	t.flag(h.Relocated)
	t.opt(h.ResettlementSite)
	t.opt(h.ResettlementMode)
	t.sep()
	t.b = updated.AppendFormat(t.b, "2006-01-02 15:04:05")
	t.end()
	return t.b
}

func sexName(male bool) string {
	if male {
		return "男"
	}
	return "女"
}

func appendPerson(b []byte, h *Household, p *Person, updated time.Time) []byte {
	t := tsv{b}
	t.str(p.PersonNo)
	t.str(h.HHNo)
	t.str(p.IDType)
	t.opt(p.IDNo)
	t.str(p.Name)
	t.str(sexName(p.Male))
	t.date(p.Birth)
	t.opt(p.Ethnic)
	t.str(p.Rel)
	t.opt(p.Education)
	t.opt(p.School)
	t.opt(p.NotInSchool)
	t.opt(p.DropoutReason)
	t.opt(p.Health)
	t.opt(p.DisType)
	t.opt(ident.DisabilityGradeName(p.DisGrade))
	t.opt(p.DisCert)
	t.opt(p.Skill)
	t.opt(p.WorkStatus)
	t.opt(p.WorkPlace)
	if p.WorkMonths > 0 {
		t.int(int64(p.WorkMonths))
		t.cents(p.WorkMonthly)
	} else {
		t.null()
		t.null()
	}
	t.opt(p.Channel)
	t.flag(p.WelfareJob)
	if p.WelfareJob {
		t.int(int64(p.WelfareMonths))
	} else {
		t.null()
	}
	t.flag(p.InsResMed)
	t.flag(p.InsEmpMed)
	t.flag(p.InsSerious)
	t.flag(p.InsResPension)
	t.flag(p.InsEmpPension)
	t.flag(p.MedAssist)
	t.flag(p.Dibao)
	t.flag(p.Tekun)
	t.opt(p.Phone)
	t.flag(p.Deceased)
	t.date(p.Deregistered)
	t.sep()
	t.b = updated.AppendFormat(t.b, "2006-01-02 15:04:05")
	t.end()
	return t.b
}

func appendMeasure(b []byte, h *Household, m *Measure, updated time.Time) []byte {
	t := tsv{b}
	t.str(m.ID)
	t.str(h.HHNo)
	t.str(m.Category)
	t.str(m.Name)
	t.opt(m.StartYM)
	t.opt(m.Status)
	t.flag(m.Development)
	t.sep()
	t.b = updated.AppendFormat(t.b, "2006-01-02 15:04:05")
	t.end()
	return t.b
}
