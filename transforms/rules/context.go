package rules

import (
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/schemas"
)

// HouseholdContext is what the rules of one household see: the household, its members
// and its assistance measures as canonical entities, turned into flat views whose
// fields the rule expressions name (the JSON names of the canonical fields plus a few
// derived facts: age, ID-number checks, months since identification, …).
//
// Views hold no nil pointers, so an expression never fails on a missing value:
// unrecorded optional yes/no and number fields read as false / 0 and are listed in
// the view's `empty` list, which rules such as test.
//
// A context caches the age-dependent facts of the last Evaluate date, so one context
// must not be evaluated from several goroutines at once (the Engine itself may be).
type HouseholdContext struct {
	// Key is the household key (户编号).
	Key string
	// RegionCode is the household's 12-digit village code.
	RegionCode string

	hh       *HouseholdView
	members  []*PersonView
	measures []*MeasureView
	asOf     time.Time
}

// PersonView is one member as the rule expressions see it (`p` in a person rule, an
// element of `members`).
type PersonView struct {
	Key            string  `expr:"key"`
	IDType         string  `expr:"id_type"`
	IDNo           string  `expr:"id_no"`
	IDLen          int     `expr:"id_len"`
	IDError        string  `expr:"id_error"`
	IDBirth        string  `expr:"id_birth"`
	IDSex          string  `expr:"id_sex"`
	IDMasked       string  `expr:"id_masked"`
	Name           string  `expr:"name"`
	Sex            string  `expr:"sex"`
	BirthDate      string  `expr:"birth_date"`
	Ethnicity      string  `expr:"ethnicity"`
	RelationToHead string  `expr:"relation_to_head"`
	Education      string  `expr:"education"`
	SchoolStatus   string  `expr:"school_status"`
	NotInSchool    string  `expr:"not_in_school_reason"`
	DropoutReason  string  `expr:"dropout_reason"`
	Health         string  `expr:"health"`
	DisabilityType string  `expr:"disability_type"`
	DisGrade       string  `expr:"disability_grade"`
	CertNo         string  `expr:"disability_cert_no"`
	CertError      string  `expr:"cert_error"`
	CertType       int     `expr:"cert_type"`
	CertGrade      int     `expr:"cert_grade"`
	CertMasked     string  `expr:"cert_masked"`
	LabourSkill    string  `expr:"labour_skill"`
	WorkStatus     string  `expr:"work_status"`
	WorkPlace      string  `expr:"work_place"`
	WorkMonths     int     `expr:"work_months"`
	WorkMonthly    float64 `expr:"work_monthly_income"`
	Channel        string  `expr:"employment_channel"`
	WelfareJob     bool    `expr:"public_welfare_job"`
	WelfareMonths  int     `expr:"public_welfare_job_months"`
	ResMedical     bool    `expr:"resident_medical_insurance"`
	EmpMedical     bool    `expr:"employee_medical_insurance"`
	SeriousIll     bool    `expr:"serious_illness_insurance"`
	ResPension     bool    `expr:"resident_pension"`
	EmpPension     bool    `expr:"employee_pension"`
	MedAssist      bool    `expr:"medical_assistance"`
	DibaoStatus    string  `expr:"dibao_status"`
	TekunStatus    string  `expr:"tekun_status"`
	Phone          string  `expr:"phone"`
	PhoneMasked    string  `expr:"phone_masked"`
	Deceased       bool    `expr:"deceased"`
	CancelledDate  string  `expr:"cancelled_date"`
	// Empty lists the JSON names of optional yes/no and number fields not recorded.
	Empty []string `expr:"empty"`
	// Age is the completed years at the evaluation date, from birth_date (or the ID
	// number when no birth date was recorded); -1 when neither gives a date.
	Age int `expr:"age"`

	birth time.Time
}

// HouseholdView is the household as the rule expressions see it (`hh`).
type HouseholdView struct {
	Key                string   `expr:"key"`
	RegionCode         string   `expr:"region_code"`
	VillageCode        string   `expr:"village_code"`
	HouseholdType      string   `expr:"household_type"`
	MonitoringCategory int      `expr:"monitoring_category"`
	Monitored          bool     `expr:"monitored"`
	NoLabourSupported  bool     `expr:"no_labour_supported"`
	HeadName           string   `expr:"head_name"`
	HeadIDNo           string   `expr:"head_id_no"`
	MemberCount        int      `expr:"member_count"`
	Phone              string   `expr:"phone"`
	PhoneMasked        string   `expr:"phone_masked"`
	Risks              []string `expr:"risks"`
	DisasterSubItem    string   `expr:"disaster_sub_item"`
	RiskRemark         string   `expr:"risk_remark"`
	IdentifiedYM       string   `expr:"identified_ym"`
	Eliminated         bool     `expr:"risk_eliminated"`
	EliminationMethod  string   `expr:"elimination_method"`
	EliminatedYM       string   `expr:"eliminated_ym"`
	// MonthsSinceIdentified is whole calendar months from identified_ym to the
	// evaluation date (-1 without identified_ym); MonthsToElimination from
	// identified_ym to eliminated_ym (-1 without either).
	MonthsSinceIdentified int `expr:"months_since_identified"`
	MonthsToElimination   int `expr:"months_to_elimination"`
	// EliminatedYear is the first four characters of eliminated_ym.
	EliminatedYear string `expr:"eliminated_year"`

	AnnualIncome       float64 `expr:"annual_income"`
	PerCapitaNetIncome float64 `expr:"per_capita_net_income"`
	WageIncome         float64 `expr:"wage_income"`
	BusinessIncome     float64 `expr:"business_income"`
	PropertyIncome     float64 `expr:"property_income"`
	TransferIncome     float64 `expr:"transfer_income"`
	BusinessExpense    float64 `expr:"business_expense"`
	OutOfPocket        float64 `expr:"compliant_out_of_pocket"`
	DibaoAmount        float64 `expr:"dibao_amount"`
	TekunAmount        float64 `expr:"tekun_amount"`

	ChildOutOfSchool bool    `expr:"child_out_of_school"`
	MemberUninsured  bool    `expr:"member_uninsured"`
	DangerousHouse   bool    `expr:"dangerous_house"`
	SafeWater        bool    `expr:"safe_drinking_water"`
	HousingArea      float64 `expr:"housing_area_m2"`
	HasElectricity   bool    `expr:"has_electricity"`
	RoadHardened     bool    `expr:"road_hardened"`
	RoadDistance     float64 `expr:"distance_to_main_road_km"`
	Farmland         float64 `expr:"farmland_mu"`
	ForestLand       float64 `expr:"forest_land_mu"`
	ReturnedFarmland float64 `expr:"returned_farmland_mu"`
	Orchard          float64 `expr:"orchard_mu"`
	Grassland        float64 `expr:"grassland_mu"`
	WaterSurface     float64 `expr:"water_surface_mu"`

	// MeasureCategories is the union of the household's 帮扶措施 columns and the
	// categories of its AssistanceMeasure entities; MeasureItems the items of the
	// entities.
	MeasureCategories []string `expr:"measure_categories"`
	MeasureItems      []string `expr:"measure_items"`
	DevStatus         string   `expr:"development_measure_status"`
	MonitoringContact string   `expr:"monitoring_contact"`
	ContactPhone      string   `expr:"monitoring_contact_phone"`
	Collector         string   `expr:"collector"`
	Relocated         bool     `expr:"relocated"`
	ResettlementSite  string   `expr:"resettlement_site"`
	ResettlementMode  string   `expr:"resettlement_mode"`
	// HeadCount is the number of members whose relation_to_head is 户主; HeadSex the
	// sex of the head when there is exactly one.
	HeadCount int    `expr:"head_count"`
	HeadSex   string `expr:"head_sex"`
	// Empty lists the JSON names of optional yes/no and number fields not recorded.
	Empty []string `expr:"empty"`

	identified, eliminated time.Time
}

// MeasureView is one assistance measure (an element of `measures`).
type MeasureView struct {
	Key            string  `expr:"key"`
	PersonNo       string  `expr:"person_no"`
	Category       string  `expr:"category"`
	Item           string  `expr:"item"`
	Development    bool    `expr:"development"`
	Implementation string  `expr:"implementation_status"`
	StartYM        string  `expr:"start_ym"`
	EndYM          string  `expr:"end_ym"`
	Amount         float64 `expr:"amount"`
}

// relationHead is the 与户主关系 label of the head (the mapping translates codes and
// aliases to it); rules compare with labels as data, this one is needed to derive
// head_count and head_sex.
const relationHead = "户主"

// NewHouseholdContext builds the rule context of one household. persons and measures
// are the household's members and measures (entities of other households are the
// caller's mistake and are not filtered). The entities are not retained.
func NewHouseholdContext(h *schemas.Household, persons []schemas.Person, measures []schemas.AssistanceMeasure) *HouseholdContext {
	hc := &HouseholdContext{Key: h.Key, RegionCode: h.RegionCode}
	if hc.Key == "" {
		hc.Key = h.HouseholdNo
	}
	hv := &HouseholdView{
		Key: hc.Key, RegionCode: h.RegionCode, VillageCode: h.VillageCode, HouseholdType: h.HouseholdType,
		MonitoringCategory: h.MonitoringCategory, Monitored: h.MonitoringCategory > 0,
		HeadName: h.HeadName, HeadIDNo: h.HeadIDNo, MemberCount: h.MemberCount, Phone: h.Phone,
		PhoneMasked: ident.MaskPhone(h.Phone), Risks: h.Risks, DisasterSubItem: h.DisasterSubItem,
		RiskRemark: h.RiskRemark, IdentifiedYM: h.IdentifiedYM, EliminationMethod: h.EliminationMethod,
		EliminatedYM: h.EliminatedYM, DevStatus: h.DevelopmentMeasureStatus,
		MonitoringContact: h.MonitoringContact, ContactPhone: h.MonitoringContactPhone, Collector: h.Collector,
		ResettlementSite: h.ResettlementSite, ResettlementMode: h.ResettlementMode,
		MonthsSinceIdentified: -1, MonthsToElimination: -1,
	}
	if hv.Risks == nil {
		hv.Risks = []string{}
	}
	e := &hv.Empty
	flag(e, "no_labour_supported", h.NoLabourSupported, &hv.NoLabourSupported)
	flag(e, "risk_eliminated", h.RiskEliminated, &hv.Eliminated)
	flag(e, "child_out_of_school", h.ChildOutOfSchool, &hv.ChildOutOfSchool)
	flag(e, "member_uninsured", h.MemberUninsured, &hv.MemberUninsured)
	flag(e, "dangerous_house", h.DangerousHouse, &hv.DangerousHouse)
	flag(e, "safe_drinking_water", h.SafeDrinkingWater, &hv.SafeWater)
	flag(e, "has_electricity", h.HasElectricity, &hv.HasElectricity)
	flag(e, "road_hardened", h.RoadHardened, &hv.RoadHardened)
	flag(e, "relocated", h.Relocated, &hv.Relocated)
	num(e, "annual_income", h.AnnualIncome, &hv.AnnualIncome)
	num(e, "per_capita_net_income", h.PerCapitaNetIncome, &hv.PerCapitaNetIncome)
	num(e, "wage_income", h.WageIncome, &hv.WageIncome)
	num(e, "business_income", h.BusinessIncome, &hv.BusinessIncome)
	num(e, "property_income", h.PropertyIncome, &hv.PropertyIncome)
	num(e, "transfer_income", h.TransferIncome, &hv.TransferIncome)
	num(e, "business_expense", h.BusinessExpense, &hv.BusinessExpense)
	num(e, "compliant_out_of_pocket", h.CompliantOutOfPocket, &hv.OutOfPocket)
	num(e, "dibao_amount", h.DibaoAmount, &hv.DibaoAmount)
	num(e, "tekun_amount", h.TekunAmount, &hv.TekunAmount)
	num(e, "housing_area_m2", h.HousingAreaM2, &hv.HousingArea)
	num(e, "distance_to_main_road_km", h.DistanceToMainRoadKm, &hv.RoadDistance)
	num(e, "farmland_mu", h.FarmlandMu, &hv.Farmland)
	num(e, "forest_land_mu", h.ForestLandMu, &hv.ForestLand)
	num(e, "returned_farmland_mu", h.ReturnedFarmlandMu, &hv.ReturnedFarmland)
	num(e, "orchard_mu", h.OrchardMu, &hv.Orchard)
	num(e, "grassland_mu", h.GrasslandMu, &hv.Grassland)
	num(e, "water_surface_mu", h.WaterSurfaceMu, &hv.WaterSurface)
	if *e == nil {
		*e = []string{}
	}
	if t, err := time.Parse("200601", h.IdentifiedYM); err == nil {
		hv.identified = t
	}
	if t, err := time.Parse("200601", h.EliminatedYM); err == nil {
		hv.eliminated = t
		hv.EliminatedYear = h.EliminatedYM[:4]
		if !hv.identified.IsZero() {
			hv.MonthsToElimination = months(hv.identified, t)
		}
	}
	cats := append([]string{}, h.Measures...)
	items := []string{}
	for i := range measures {
		m := &measures[i]
		mv := &MeasureView{Key: m.Key, PersonNo: m.PersonNo, Category: m.Category, Item: m.Item,
			Development: m.Development, Implementation: m.ImplementationStatus, StartYM: m.StartYM, EndYM: m.EndYM}
		mv.Amount, _ = parseDecimal(m.Amount)
		hc.measures = append(hc.measures, mv)
		if !contains(cats, m.Category) {
			cats = append(cats, m.Category)
		}
		if m.Item != "" && !contains(items, m.Item) {
			items = append(items, m.Item)
		}
	}
	hv.MeasureCategories, hv.MeasureItems = cats, items
	for i := range persons {
		pv := newPersonView(&persons[i])
		if pv.RelationToHead == relationHead {
			hv.HeadCount++
			hv.HeadSex = pv.Sex
		}
		hc.members = append(hc.members, pv)
	}
	if hv.HeadCount != 1 {
		hv.HeadSex = ""
	}
	if hc.members == nil {
		hc.members = []*PersonView{}
	}
	if hc.measures == nil {
		hc.measures = []*MeasureView{}
	}
	hc.hh = hv
	return hc
}

func newPersonView(p *schemas.Person) *PersonView {
	v := &PersonView{
		Key: p.Key, IDType: p.IDType, IDNo: p.IDNo, IDLen: utf8.RuneCountInString(p.IDNo), IDMasked: ident.MaskID(p.IDNo),
		Name: p.Name, Sex: p.Sex, BirthDate: p.BirthDate, Ethnicity: p.Ethnicity, RelationToHead: p.RelationToHead,
		Education: p.Education, SchoolStatus: p.SchoolStatus, NotInSchool: p.NotInSchoolReason,
		DropoutReason: p.DropoutReason, Health: p.Health, DisabilityType: p.DisabilityType,
		DisGrade: p.DisabilityGrade, CertNo: p.DisabilityCertNo, CertMasked: ident.MaskID(p.DisabilityCertNo),
		LabourSkill: p.LabourSkill, WorkStatus: p.WorkStatus, WorkPlace: p.WorkPlace, WorkMonths: p.WorkMonths,
		Channel: p.EmploymentChannel, WelfareMonths: p.PublicWelfareJobMonths, DibaoStatus: p.DibaoStatus,
		TekunStatus: p.TekunStatus, Phone: p.Phone, PhoneMasked: ident.MaskPhone(p.Phone),
		CancelledDate: p.CancelledDate, Age: -1,
	}
	if v.Key == "" {
		v.Key = p.PersonNo
	}
	e := &v.Empty
	num(e, "work_monthly_income", p.WorkMonthlyIncome, &v.WorkMonthly)
	flag(e, "public_welfare_job", p.PublicWelfareJob, &v.WelfareJob)
	flag(e, "resident_medical_insurance", p.ResidentMedicalInsurance, &v.ResMedical)
	flag(e, "employee_medical_insurance", p.EmployeeMedicalInsurance, &v.EmpMedical)
	flag(e, "serious_illness_insurance", p.SeriousIllnessInsurance, &v.SeriousIll)
	flag(e, "resident_pension", p.ResidentPension, &v.ResPension)
	flag(e, "employee_pension", p.EmployeePension, &v.EmpPension)
	flag(e, "medical_assistance", p.MedicalAssistance, &v.MedAssist)
	flag(e, "deceased", p.Deceased, &v.Deceased)
	if *e == nil {
		*e = []string{}
	}
	if p.IDNo == "" {
		v.IDError = "empty"
	} else if id, err := ident.ParseID(p.IDNo); err != nil {
		v.IDError = idErrorKind(err)
	} else {
		v.IDBirth = id.Birth.Format(time.DateOnly)
		v.IDSex = "女"
		if id.Male {
			v.IDSex = "男"
		}
		v.birth = id.Birth
	}
	if t, err := time.Parse(time.DateOnly, p.BirthDate); err == nil {
		v.birth = t
	}
	if p.DisabilityCertNo != "" {
		if c, err := ident.ParseDisabilityCert(p.DisabilityCertNo); err != nil {
			v.CertError = idErrorKind(err)
		} else {
			v.CertType, v.CertGrade = c.Type, c.Grade
		}
	}
	return v
}

// idErrorKind names an ident error for expressions: length, chars, placeholder,
// birth_date, checksum, cert_code or invalid.
func idErrorKind(err error) string {
	switch {
	case errors.Is(err, ident.ErrLength):
		return "length"
	case errors.Is(err, ident.ErrChars):
		return "chars"
	case errors.Is(err, ident.ErrPlaceholder):
		return "placeholder"
	case errors.Is(err, ident.ErrBirthDate):
		return "birth_date"
	case errors.Is(err, ident.ErrChecksum):
		return "checksum"
	case errors.Is(err, ident.ErrCertCode):
		return "cert_code"
	}
	return "invalid"
}

// at updates the date-dependent facts for asOf.
func (hc *HouseholdContext) at(asOf time.Time) {
	y, m, d := asOf.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if day.Equal(hc.asOf) {
		return
	}
	hc.asOf = day
	for _, p := range hc.members {
		p.Age = -1
		if !p.birth.IsZero() && !p.birth.After(day) {
			p.Age = ident.AgeAt(ident.ID{Birth: p.birth}, day)
		}
	}
	hc.hh.MonthsSinceIdentified = -1
	if !hc.hh.identified.IsZero() {
		hc.hh.MonthsSinceIdentified = months(hc.hh.identified, day)
	}
}

// months is the number of calendar months from a's month to b's month.
func months(a, b time.Time) int {
	return (b.Year()-a.Year())*12 + int(b.Month()) - int(a.Month())
}

func flag(empty *[]string, name string, v *bool, dst *bool) {
	if v == nil {
		*empty = append(*empty, name)
		return
	}
	*dst = *v
}

func num(empty *[]string, name string, d schemas.Decimal, dst *float64) {
	f, ok := parseDecimal(d)
	if !ok {
		*empty = append(*empty, name)
		return
	}
	*dst = f
}

// parseDecimal reads a canonical Decimal; "" (not recorded) and malformed values give
// false. float64 is exact enough for the comparisons rules make (amounts below 10^13
// with two decimals).
func parseDecimal(d schemas.Decimal) (float64, bool) {
	if d == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(d), 64)
	return f, err == nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
