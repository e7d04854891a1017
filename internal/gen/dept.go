package gen

import (
	"fmt"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shouwang/shouwang/internal/ident"
)

// Money is an amount in cents. It encodes to PostgreSQL numeric exactly and prints with
// two decimals in files.
type Money int64

// NumericValue lets pgx encode Money into numeric columns without float rounding.
func (m Money) NumericValue() (pgtype.Numeric, error) {
	return pgtype.Numeric{Int: big.NewInt(int64(m)), Exp: -2, Valid: true}, nil
}

// String formats yuan with two decimals.
func (m Money) String() string { return centsString(int64(m)) }

func centsString(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// Dataset describes one department table: where it lives in PostgreSQL, in the file
// tree (files/<Department>/<Name>/), and its columns with their Chinese headers.
type Dataset struct {
	Department string
	Name       string
	Columns    []string
	Headers    []string
}

// Table is the schema-qualified PostgreSQL table name.
func (d Dataset) Table() string { return d.Department + "." + d.Name }

// Dataset indexes into Datasets.
const (
	dsSettlement = iota
	dsDisability
	dsHousing
	dsAssistance
	dsDeath
	dsStudent
	dsDisaster
	numDatasets
)

// Datasets lists the department datasets in output order (see schemas/ddl/departments.pg.sql).
var Datasets = [numDatasets]Dataset{
	{"yibao", "settlement",
		[]string{"settlement_no", "id_no", "name", "region_code", "settle_date", "visit_type", "total_cost", "fund_paid", "serious_illness_paid", "medical_assistance_paid", "out_of_pocket", "compliant_out_of_pocket"},
		[]string{"结算流水号", "身份证号码", "姓名", "参保地区划代码", "结算日期", "就诊类型", "医疗总费用", "基本医保统筹支付", "大病保险支付", "医疗救助支付", "个人自付", "合规自付"}},
	{"canlian", "disability_cert",
		[]string{"cert_no", "id_no", "name", "region_code", "disability_type", "disability_grade", "issue_date", "status"},
		[]string{"残疾人证号", "身份证号码", "姓名", "户籍地区划代码", "残疾类别", "残疾等级", "发证日期", "证件状态"}},
	{"zhujian", "housing_appraisal",
		[]string{"appraisal_no", "head_id_no", "head_name", "village_code", "appraisal_date", "grade"},
		[]string{"鉴定编号", "户主身份证号码", "户主姓名", "村代码", "鉴定日期", "鉴定等级"}},
	{"minzheng", "assistance_recipient",
		[]string{"record_no", "id_no", "name", "region_code", "assistance_type", "start_date", "end_date", "monthly_amount"},
		[]string{"救助记录编号", "身份证号码", "姓名", "户籍地区划代码", "救助类型", "救助开始日期", "救助结束日期", "救助金额"}},
	{"gongan", "death",
		[]string{"record_no", "id_no", "name", "region_code", "death_date", "deregistered_date"},
		[]string{"记录编号", "身份证号码", "姓名", "户籍地区划代码", "死亡日期", "注销日期"}},
	{"jiaoyu", "student",
		[]string{"student_no", "id_no", "name", "region_code", "birth_date", "stage", "status", "dropout_date"},
		[]string{"学籍号", "身份证号码", "姓名", "户籍地区划代码", "出生日期", "学段年级", "学籍状态", "辍学日期"}},
	{"yingji", "disaster",
		[]string{"record_no", "head_id_no", "head_name", "village_code", "disaster_type", "disaster_date", "loss_amount"},
		[]string{"记录编号", "户主身份证号码", "户主姓名", "村代码", "灾害类型", "受灾日期", "直接经济损失"}},
}

// Row is one department record: values are string, Money, time.Time (a date), int64 or
// nil (NULL), in the dataset's column order.
type Row []any

// Signal rule names used in manifest lines.
const (
	SigOOP          = "oop_12m"
	SigSevereDisab  = "new_severe_disability"
	SigHousingCD    = "housing_cd"
	SigAssistance   = "new_assistance_unmonitored"
	SigDeath        = "death_recorded_alive"
	SigDropout      = "compulsory_dropout"
	SigDisasterLoss = "disaster_loss"
)

// deptGen produces a village's department data and signals.
type deptGen struct {
	g    *villageGen
	rows *[numDatasets][]Row
	man  *[]ManifestLine
}

func (d *deptGen) add(ds int, r Row) { d.rows[ds] = append(d.rows[ds], r) }

func (d *deptGen) signal(dept, rule string, h *Household, p *Person, expected bool, value float64) {
	e, v := expected, value
	l := ManifestLine{Kind: "signal", Department: dept, Rule: rule, HHNo: h.HHNo, VillageCode: h.VillageCode, Expected: &e, Value: &v}
	if p != nil {
		l.Subject, l.Key, l.IDNo = "person", p.PersonNo, p.ID18
	} else {
		l.Subject, l.Key, l.IDNo = "household", h.HHNo, h.Members[0].ID18
	}
	*d.man = append(*d.man, l)
}

func (d *deptGen) date(from, to time.Time) time.Time {
	days := int(to.Sub(from).Hours() / 24)
	if days <= 0 {
		return from
	}
	return from.AddDate(0, 0, d.g.r.IntN(days+1))
}

// household emits department records for h. Signals skip households carrying an
// injected registry defect, so a signal never depends on a broken registry key.
func (d *deptGen) household(h *Household, defect bool) {
	g, cfg, s := d.g, d.g.cfg, d.g.cfg.Signals
	asOf := cfg.AsOf
	recent := asOf.AddDate(0, -s.RecentMonths, 1)
	yearAgo := asOf.AddDate(-1, 0, 1)
	monitored := h.Category != ""
	for _, p := range h.Members {
		// 医保 settlements
		switch x := g.r.Float64(); {
		case !defect && x < s.OOPRate:
			total := d.settlements(h, p, s.OOPThreshold*(1.1+g.r.Float64()*1.4), true)
			d.signal("yibao", SigOOP, h, p, true, total)
			p.signalAttached = true
		case !defect && x < s.OOPRate+s.OOPNoiseRate:
			total := d.settlements(h, p, s.OOPThreshold*(0.8+g.r.Float64()*0.18), true)
			d.signal("yibao", SigOOP, h, p, false, total)
			p.signalAttached = true
		case p.Health == HealthSerious || p.Health == HealthChronic || x < s.OOPRate+s.OOPNoiseRate+s.SettlementShare:
			d.settlements(h, p, s.OOPThreshold*0.5*g.r.Float64(), false)
		}
		// 残联 certificates: the true certificate, whatever the registry says
		if p.Health == HealthDisability {
			t := typeIndex(p.DisType)
			d.add(dsDisability, Row{ident.MakeDisabilityCert(p.ID18, t, p.DisGrade), p.ID18, p.Name, h.VillageCode,
				p.DisType, int64(p.DisGrade), d.date(time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC), asOf.AddDate(-1, 0, 0)), "有效"})
		} else if !defect && !p.signalAttached && p.age >= 3 && g.r.Float64() < 2*s.SevereDisabilityRate {
			severe := g.r.IntN(2) == 0
			t := disTypes[g.r.IntN(len(disTypes))]
			gr := 1 + g.r.IntN(2)
			if !severe {
				gr += 2
			}
			d.add(dsDisability, Row{ident.MakeDisabilityCert(p.ID18, t, gr), p.ID18, p.Name, h.VillageCode,
				ident.DisabilityTypeName(t), int64(gr), d.date(recent, asOf), "有效"})
			d.signal("canlian", SigSevereDisab, h, p, severe, float64(gr))
			p.signalAttached = true
		}
		// 民政 recipients
		if p.Dibao || p.Tekun {
			typ, amt := "低保", Money(int64(g.between(300, 500))*100)
			if p.Tekun {
				typ, amt = "特困", Money(int64(g.between(750, 1000))*100)
			}
			d.add(dsAssistance, Row{"MZ" + p.PersonNo + "01", p.ID18, p.Name, h.VillageCode, typ,
				d.date(time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC), asOf.AddDate(0, -7, 0)), nil, amt})
		} else if !defect && !p.signalAttached && g.r.Float64() < s.AssistanceRate*boolF(monitored, 3, 1) {
			typ := weighted(g.r, []string{"低保", "特困", "临时救助"}, []float64{0.6, 0.1, 0.3})
			amt := Money(int64(g.between(300, 3000)) * 100)
			d.add(dsAssistance, Row{"MZ" + p.PersonNo + "02", p.ID18, p.Name, h.VillageCode, typ, d.date(recent, asOf), nil, amt})
			d.signal("minzheng", SigAssistance, h, p, !monitored, float64(amt)/100)
			p.signalAttached = true
		}
		// 公安 deaths of persons the registry has alive
		if !defect && !p.signalAttached && g.r.Float64() < s.DeathRate*boolF(p.age >= 70, 5, 0.3) {
			dd := d.date(recent, asOf)
			d.add(dsDeath, Row{"GA" + p.PersonNo, p.ID18, p.Name, h.VillageCode, dd, d.date(dd, asOf)})
			d.signal("gongan", SigDeath, h, p, true, 0)
			p.signalAttached = true
		}
		// 教育 student register
		if isStudent(p.School) {
			status, var_ := "在读", any(nil)
			if !defect && !p.signalAttached && p.age >= 6 && p.age <= 15 && g.r.Float64() < s.DropoutRate {
				status = "辍学"
				dd := d.date(recent, asOf)
				var_ = dd
				d.signal("jiaoyu", SigDropout, h, p, true, float64(p.age))
				p.signalAttached = true
			}
			d.add(dsStudent, Row{"JY" + p.PersonNo, p.ID18, p.Name, h.VillageCode, p.Birth, p.School, status, var_})
		}
	}
	head := h.Members[0]
	// 住建 appraisals
	switch x := g.r.Float64(); {
	case !defect && !h.Dangerous && x < s.HousingCDRate:
		gr := []string{"C", "D"}[g.r.IntN(2)]
		d.add(dsHousing, Row{"ZJ" + h.HHNo, head.ID18, head.Name, h.VillageCode, d.date(yearAgo, asOf), gr})
		d.signal("zhujian", SigHousingCD, h, nil, true, 0)
	case h.Dangerous || x < s.HousingCDRate+s.AppraisalShare:
		gr := []string{"A", "B"}[g.r.IntN(2)]
		if h.Dangerous {
			gr = []string{"C", "D"}[g.r.IntN(2)]
		}
		d.add(dsHousing, Row{"ZJ" + h.HHNo, head.ID18, head.Name, h.VillageCode, d.date(yearAgo, asOf), gr})
	}
	// 应急 disasters
	switch x := g.r.Float64(); {
	case h.hasRisk(RiskDisaster):
		loss := Money(int64(g.between(3000, 60000)) * 100)
		d.add(dsDisaster, Row{"YJ" + h.HHNo, head.ID18, head.Name, h.VillageCode, disasterType(h.DisasterSubitem), d.date(yearAgo.AddDate(-1, 0, 0), asOf), loss})
	case !defect && x < s.DisasterRate:
		loss := Money(int64((s.DisasterLossThreshold * (1.05 + 4*g.r.Float64())) * 100))
		d.add(dsDisaster, Row{"YJ" + h.HHNo, head.ID18, head.Name, h.VillageCode, disasterType(pick(g.r, disasterSubitems)), d.date(recent, asOf), loss})
		d.signal("yingji", SigDisasterLoss, h, nil, true, float64(loss)/100)
	case !defect && x < s.DisasterRate+s.DisasterNoiseRate:
		loss := Money(int64((s.DisasterLossThreshold * (0.1 + 0.8*g.r.Float64())) * 100))
		d.add(dsDisaster, Row{"YJ" + h.HHNo, head.ID18, head.Name, h.VillageCode, disasterType(pick(g.r, disasterSubitems)), d.date(recent, asOf), loss})
		d.signal("yingji", SigDisasterLoss, h, nil, false, float64(loss)/100)
	}
}

func disasterType(sub string) string {
	if sub == "" {
		return disasterSubitems[0]
	}
	return sub
}

func isStudent(s string) bool {
	switch s {
	case "", "学龄前儿童", "学前教育":
		return false
	}
	return true
}

func typeIndex(name string) int {
	for t := 1; t <= 7; t++ {
		if ident.DisabilityTypeName(t) == name {
			return t
		}
	}
	return 7
}

// settlements writes settlements of p within the 12 months before AsOf whose in-scope
// out-of-pocket sums to about target yuan, and returns the exact sum. Signal persons get
// inpatient stays; ordinary persons small outpatient visits (outpatient special-illness
// amounts stay below the 500-a-month rule).
func (d *deptGen) settlements(h *Household, p *Person, target float64, big bool) float64 {
	g := d.g
	n := 1 + g.r.IntN(4)
	if big {
		n = 2 + g.r.IntN(4)
	}
	from := g.cfg.AsOf.AddDate(-1, 0, 1)
	remaining := int64(target * 100)
	var sum int64
	for i := 0; i < n; i++ {
		c := remaining / int64(n-i)
		if i < n-1 {
			c = c * int64(80+g.r.IntN(41)) / 100
		}
		remaining -= c
		visit := "门诊"
		if big {
			visit = "住院"
		} else if p.Health == HealthChronic && g.r.IntN(2) == 0 {
			visit = "门诊慢特病"
			if c > 12000 {
				c = 12000
			}
		}
		oop := c * 100 / 80
		total := oop * 100 / 30
		serious, assist := int64(0), int64(0)
		if big {
			serious, assist = total/10, total/20
		}
		fund := total - oop - serious - assist
		d.add(dsSettlement, Row{fmt.Sprintf("YB%s%02d", p.PersonNo, i+1), p.ID18, p.Name, h.VillageCode,
			d.date(from, g.cfg.AsOf), visit, Money(total), Money(fund), Money(serious), Money(assist), Money(oop), Money(c)})
		sum += c
	}
	return float64(sum) / 100
}
