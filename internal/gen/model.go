package gen

import "time"

// Values as they appear in national exports (dictionary names, not codes): the
// front-end database carries the Chinese values, and the dict package maps them.
const (
	Yes = "是"
	No  = "否"

	TypeLifted    = "脱贫户"
	TypeMonitored = "监测户"

	RiskIllness    = "因病"
	RiskDisability = "因残"
	RiskSchooling  = "因学"
	RiskDisaster   = "因自然灾害"
	RiskAccident   = "因意外事故"
	RiskProject    = "因产业项目失败"
	RiskWork       = "因务工就业不稳"
	RiskLabour     = "缺劳动力"
	RiskHousing    = "因安全住房"
	RiskWater      = "因安全饮水"
	RiskOther      = "其他"

	HealthOK         = "健康"
	HealthChronic    = "长期慢性病"
	HealthSerious    = "大病"
	HealthDisability = "残疾"

	SkillSkilled = "技能劳动力"
	SkillNormal  = "普通劳动力"
	SkillWeak    = "弱劳动力或半劳动力"
	SkillLost    = "丧失劳动力"
	SkillNone    = "无劳动力"

	RelHead        = "户主"
	RelSpouse      = "配偶"
	RelSon         = "之子"
	RelDaughter    = "之女"
	RelDaughterInL = "之儿媳"
	RelSonInLaw    = "之女婿"
	RelGrandson    = "之孙子"
	RelGranddaught = "之孙女"
	RelFather      = "之父"
	RelMother      = "之母"
	RelSibling     = "兄弟姐妹"
	RelOther       = "其他"

	IDTypeResident = "居民身份证"
)

// Categories are the monitoring categories 1..3 (monitoring.md).
var Categories = [3]string{"脱贫不稳定户", "边缘易致贫户", "突发严重困难户"}

var riskKnown = map[string]struct{}{
	RiskIllness: {}, RiskDisability: {}, RiskSchooling: {}, RiskDisaster: {}, RiskAccident: {},
	RiskProject: {}, RiskWork: {}, RiskLabour: {}, RiskHousing: {}, RiskWater: {}, RiskOther: {},
}

// MeasureCategories lists the national measure categories in column order of the
// household table (m_industry … m_infrastructure).
var MeasureCategories = []string{
	"产业帮扶", "就业帮扶", "金融帮扶", "公益岗位帮扶", "健康帮扶", "教育帮扶", "义务教育保障",
	"住房安全保障", "饮水安全保障", "综合保障", "搬迁", "社会帮扶", "生产生活条件改善", "基础设施建设",
}

// Household is one generated household with its members and measures. Money is in
// cents (int64) so that components add up exactly; nullable numbers use -1 for NULL.
type Household struct {
	HHNo            string
	CountyName      string
	TownshipName    string
	VillageName     string
	NaturalVillage  string
	VillageCode     string
	Type            string
	Category        string // "" when not monitored
	HeadName        string
	HeadIDNo        string
	Phone           string
	NoLabour        bool
	Risks           [5]string
	DisasterSubitem string
	RiskRemark      string
	IdentifiedYM    string
	Eliminated      bool
	ElimMethod      string
	EliminatedYM    string

	Wage, Business, Property, Transfer int64 // cents
	AnnualIncome                       int64
	BusinessExpense, CompliantOOP      int64
	DibaoAmount, TekunAmount           int64

	ChildDropout, MemberUninsured, Dangerous, SafeWater bool
	HousingArea                                         int64 // centi-m²
	Electricity, RoadHardened                           bool
	RoadDistance                                        int64    // centi-km
	Land                                                [6]int64 // centi-mu, -1 = NULL
	Measures                                            []Measure
	DevStatus                                           string
	MonitorContact, MonitorPhone, Collector             string
	Relocated                                           bool
	ResettlementSite, ResettlementMode                  string

	Members []*Person
	Ethnic  string // household's main ethnic group (generation only)
	// Q105Delta is added to one component in the exported row only (injected defect).
	q105Field string
	q105Delta int64
}

// Person is one household member.
type Person struct {
	PersonNo       string
	IDType         string
	IDNo           string
	ID18           string // the true 18-digit ID (departments use it), even when IDNo is a defect
	Name           string
	Male           bool
	Birth          time.Time
	Ethnic         string
	Rel            string
	Education      string
	School         string
	NotInSchool    string
	DropoutReason  string
	Health         string
	DisType        string
	DisGrade       int // 0 none
	DisCert        string
	Skill          string
	WorkStatus     string
	WorkPlace      string
	WorkMonths     int
	WorkMonthly    int64 // cents
	Channel        string
	WelfareJob     bool
	WelfareMonths  int
	InsResMed      bool
	InsEmpMed      bool
	InsSerious     bool
	InsResPension  bool
	InsEmpPension  bool
	MedAssist      bool
	Dibao, Tekun   bool
	Phone          string
	Deceased       bool
	Deregistered   time.Time
	age            int
	idSeq          int // sequence used in the ID (unique per county slot)
	idRegion       string
	legacy15       bool
	defect         bool
	signalAttached bool
}

// Measure is one assistance measure of a household.
type Measure struct {
	ID          string
	Category    string
	Name        string
	StartYM     string
	Status      string
	Development bool
}

// Age returns the person's age in whole years at t.
func Age(birth, t time.Time) int {
	a := t.Year() - birth.Year()
	if t.Month() < birth.Month() || (t.Month() == birth.Month() && t.Day() < birth.Day()) {
		a--
	}
	return a
}
