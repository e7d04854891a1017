package gen

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/internal/region"
)

// ID order codes (the 3 digits after the birth date) give 500 slots per sex. They are
// split so that clean IDs are unique across the province by construction, without any
// coordination between villages (generation is parallel and per village):
//
//   - slots [0, nativeSlots) serve persons registered in their own county: a village's
//     slot is its index inside the county (counties with more villages than slots pair
//     village k with k+nativeSlots and split them by birth-date parity);
//   - slots [nativeSlots, 500) serve persons first registered in another county of the
//     prefecture (migrants). The village's index inside its prefecture picks one of
//     these slots and a birth-date class (days since 1900-01-01 modulo the number of
//     classes), so two villages never share a (slot, birth date) for the same origin
//     county. Within a village, villageGen.used keeps (region, date, sex) unique.
//
// The largest prefecture (成都, 3,047 villages) gives 31 classes, leaving about 12
// possible birth dates per age year and sex for a village's migrants; when none is free
// the person gets a native ID instead.
const (
	nativeSlots  = 400
	migrantSlots = 500 - nativeSlots
)

// classEpoch is day zero of the migrant birth-date classes.
var classEpoch = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

// migrantClasses returns how many birth-date classes a prefecture of n villages needs.
func migrantClasses(n int) int { return max(1, (n+migrantSlots-1)/migrantSlots) }

// villageIndex numbers every village of the region table inside its county and its
// prefecture (table order). It depends only on the table, not on which villages are
// populated, so `gen push` recomputes the same ID slots as the initial generation.
type villageIndex struct {
	countyIdx, prefIdx     map[string]int // village code → index
	countyCount, prefCount map[string]int // county (6) / prefecture (4) code → villages
}

func newVillageIndex(t *region.Table) *villageIndex {
	vs := t.Villages()
	x := &villageIndex{
		countyIdx: make(map[string]int, len(vs)), prefIdx: make(map[string]int, len(vs)),
		countyCount: map[string]int{}, prefCount: map[string]int{},
	}
	for _, v := range vs {
		x.countyIdx[v.Code] = x.countyCount[v.Code[:6]]
		x.countyCount[v.Code[:6]]++
		x.prefIdx[v.Code] = x.prefCount[v.Code[:4]]
		x.prefCount[v.Code[:4]]++
	}
	return x
}

// villagePlan is one village's share of the province.
type villagePlan struct {
	Index          int
	Village        region.Region
	CountyCode     string // 6 digits
	CountyName     string
	TownshipName   string
	CountyIdx      int // the village's index among its county's villages
	CountyVillages int
	PrefIdx        int // the village's index among its prefecture's villages
	PrefVillages   int
	Households     int
	FirstSeq       int      // first household sequence number (push appends new ones)
	Neighbours     []string // other county codes (6 digits) of the prefecture, for migrants
}

// villageRand derives the village's independent PCG stream from seed and a key, so a
// village's data does not depend on which worker generated it or in which order.
func villageRand(seed uint64, key string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(key))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// villageGen generates the households of one village.
type villageGen struct {
	cfg  *Config
	r    *rand.Rand
	plan *villagePlan
	used map[string]bool // region6+birth+sex already used in this village
}

func weighted[K comparable](r *rand.Rand, keys []K, weights []float64) K {
	var total float64
	for _, w := range weights {
		total += w
	}
	x := r.Float64() * total
	for i, w := range weights {
		if x < w {
			return keys[i]
		}
		x -= w
	}
	return keys[len(keys)-1]
}

func weightedMap(r *rand.Rand, m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // map order is random: sort for determinism
	ws := make([]float64, len(keys))
	for i, k := range keys {
		ws[i] = m[k]
	}
	return weighted(r, keys, ws)
}

func (g *villageGen) ethnicMix() map[string]float64 {
	if m, ok := g.cfg.Ethnic[g.plan.CountyCode]; ok {
		return m
	}
	if m, ok := g.cfg.Ethnic[g.plan.CountyCode[:4]]; ok {
		return m
	}
	return g.cfg.EthnicDefault
}

func (g *villageGen) between(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + g.r.IntN(hi-lo+1)
}

func (g *villageGen) chance(p float64) bool { return g.r.Float64() < p }

func ym(t time.Time) string { return t.Format("200601") }

func parseYM(s string) time.Time {
	t, _ := time.Parse("200601", s)
	return t
}

// member is a planned person before attributes are drawn.
type member struct {
	rel  string
	age  int
	male bool
}

// composition plans relationships, ages and sexes consistently: spouse of the opposite
// sex, children 19–39 years younger than the head (margin inside the 18–40 rule so a
// birth-date shift cannot break it), grandchildren through a son, parents older.
func (g *villageGen) composition(size int, yi bool) []member {
	var head member
	if size == 1 {
		if g.chance(0.7) {
			head.age = g.between(60, 90)
		} else {
			head.age = g.between(30, 75)
		}
		head.male = g.chance(0.6)
	} else {
		head.age = g.between(28, 62) + g.r.IntN(20)
		head.male = g.chance(0.85)
	}
	head.rel = RelHead
	ms := []member{head}
	rem := size - 1
	if rem > 0 && g.chance(0.86) {
		a := head.age + g.between(-6, 6)
		if a < 20 {
			a = 20
		}
		ms = append(ms, member{RelSpouse, a, !head.male})
		rem--
	}
	if rem >= 2 && head.age >= 52 && g.chance(0.55) {
		son := member{RelSon, head.age - g.between(21, 36), true}
		if son.age >= 20 {
			ms = append(ms, son)
			rem--
			if rem > 0 && g.chance(0.85) {
				dil := son.age + g.between(-4, 3)
				if dil < 19 {
					dil = 19
				}
				ms = append(ms, member{RelDaughterInL, dil, false})
				rem--
			}
			for rem > 0 && son.age-19 >= 0 {
				gc := g.between(max(0, son.age-36), son.age-19)
				if g.chance(0.5) {
					ms = append(ms, member{RelGrandson, gc, true})
				} else {
					ms = append(ms, member{RelGranddaught, gc, false})
				}
				rem--
				if !yi && rem > 0 && g.chance(0.4) {
					break
				}
			}
		}
	}
	maxChildren := 5
	if yi {
		maxChildren = 8
	}
	for c := 0; rem > 0 && c < maxChildren && head.age >= 19; c++ {
		lo, hi := max(0, head.age-39), head.age-19
		m := member{age: g.between(lo, hi), male: g.chance(0.52)}
		m.rel = RelDaughter
		if m.male {
			m.rel = RelSon
		}
		ms = append(ms, m)
		rem--
	}
	for p := 0; rem > 0 && p < 2 && head.age <= 60; p++ {
		a := head.age + g.between(20, 36)
		if a > 96 {
			break
		}
		if p == 0 {
			ms = append(ms, member{RelFather, a, true})
		} else {
			ms = append(ms, member{RelMother, a + g.between(-5, 2), false})
		}
		rem--
	}
	for rem > 0 {
		if g.chance(0.7) {
			a := max(1, head.age+g.between(-10, 10))
			ms = append(ms, member{RelSibling, a, g.chance(0.5)})
		} else {
			ms = append(ms, member{RelOther, g.between(1, 80), g.chance(0.5)})
		}
		rem--
	}
	return ms
}

// birthFor draws a birth date giving exactly age at AsOf, on a free (region, date, sex)
// slot of this village and with the village's day parity (see nativeSlots).
func (g *villageGen) birthFor(age int, male bool, region6 string, parity int) (time.Time, error) {
	asOf := g.cfg.AsOf
	start := asOf.AddDate(-age-1, 0, 1)
	base := start.AddDate(0, 0, g.r.IntN(365))
	for _, d := range []int{0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -8, 9, -9, 10, -10, 11, -11, 12, -12, 13, -13, 14, -14} {
		b := base.AddDate(0, 0, d)
		if Age(b, asOf) != age || b.After(asOf) {
			continue
		}
		if parity >= 0 && b.YearDay()%2 != parity {
			continue
		}
		if g.claim(region6, b, male) {
			return b, nil
		}
	}
	return time.Time{}, fmt.Errorf("gen: village %s: no free ID slot for age %d (more persons of that age and sex than birth dates; lower households_per_village)", g.plan.Village.Code, age)
}

// claim marks (region6, birth, sex) as used in this village; false if already taken.
func (g *villageGen) claim(region6 string, b time.Time, male bool) bool {
	key := region6 + b.Format("20060102") + fmt.Sprint(male)
	if g.used[key] {
		return false
	}
	g.used[key] = true
	return true
}

// migrantBirth draws a birth date giving exactly age at AsOf in the village's migrant
// birth-date class (see nativeSlots), free for (region6, sex) in this village.
func (g *villageGen) migrantBirth(age int, male bool, region6 string) (time.Time, bool) {
	asOf := g.cfg.AsOf
	start := asOf.AddDate(-age-1, 0, 1) // first day giving this age
	classes := migrantClasses(g.plan.PrefVillages)
	class := (g.plan.PrefIdx / migrantSlots) % classes
	day := int(start.Sub(classEpoch).Hours() / 24)
	first := start.AddDate(0, 0, ((class-day)%classes+classes)%classes)
	var cands []time.Time
	for b := first; Age(b, asOf) == age && !b.After(asOf); b = b.AddDate(0, 0, classes) {
		cands = append(cands, b)
	}
	if len(cands) == 0 {
		return time.Time{}, false
	}
	off := g.r.IntN(len(cands))
	for i := range cands {
		b := cands[(off+i)%len(cands)]
		if g.claim(region6, b, male) {
			return b, true
		}
	}
	return time.Time{}, false
}

// assignID gives p a valid ID for its birth date and sex, unique province-wide (see
// nativeSlots).
func (g *villageGen) assignID(p *Person, age int) error {
	if len(g.plan.Neighbours) > 0 && g.chance(g.cfg.MigrantIDShare) {
		region6 := g.plan.Neighbours[g.r.IntN(len(g.plan.Neighbours))]
		if b, ok := g.migrantBirth(age, p.Male, region6); ok {
			return g.setID(p, age, region6, b, nativeSlots+g.plan.PrefIdx%migrantSlots)
		}
		// no free date in the class: fall back to a native ID
	}
	parity := -1
	k := g.plan.CountyIdx % nativeSlots
	if g.plan.CountyIdx >= nativeSlots {
		parity = 1
	} else if g.plan.CountyIdx+nativeSlots < g.plan.CountyVillages {
		parity = 0
	}
	b, err := g.birthFor(age, p.Male, g.plan.CountyCode, parity)
	if err != nil {
		return err
	}
	return g.setID(p, age, g.plan.CountyCode, b, k)
}

func (g *villageGen) setID(p *Person, age int, region6 string, b time.Time, slot int) error {
	p.Birth = b
	p.age = age
	p.idRegion = region6
	p.idSeq = 2 * slot
	id, err := ident.MakeID(region6, b, p.idSeq, p.Male)
	if err != nil {
		return fmt.Errorf("gen: village %s: make ID for person %s: %w", g.plan.Village.Code, p.PersonNo, err)
	}
	p.IDNo, p.ID18, p.IDType = id, id, IDTypeResident
	return nil
}

var (
	provinceOut = []string{"广东省东莞市", "广东省深圳市宝安区", "浙江省宁波市", "浙江省温州市", "福建省泉州市", "江苏省苏州市", "新疆维吾尔自治区昌吉回族自治州", "重庆市渝北区"}
	provinceIn  = []string{"四川省成都市双流区", "四川省成都市郫都区", "四川省绵阳市涪城区", "四川省德阳市旌阳区", "四川省宜宾市翠屏区"}
	// channels are internal/dict employment_channel names, repeated to weight them.
	channels = []string{"自主就业", "自主就业", "自主就业", "政府组织", "政府组织", "东西部协作", "对口帮扶", "帮扶车间", "其他"}
	disTypes = []int{4, 4, 4, 1, 2, 3, 5, 6, 7} // 肢体 most common
)

// schoolFor returns the in-school status for age, or "" when not in school.
func (g *villageGen) schoolFor(age int) string {
	switch {
	case age < 3:
		return "学龄前儿童"
	case age <= 5:
		if g.chance(0.75) {
			return "学前教育"
		}
		return "学龄前儿童"
	case age <= 11:
		return "小学"
	case age == 12:
		return "七年级"
	case age == 13:
		return "八年级"
	case age == 14:
		return "九年级"
	case age == 15:
		if g.chance(0.5) {
			return "九年级"
		}
		return "高中一年级"
	case age == 16:
		if g.chance(0.75) {
			return "高中二年级"
		}
	case age == 17:
		if g.chance(0.6) {
			return "高中三年级"
		}
	case age <= 21:
		if g.chance(0.25) {
			if g.chance(0.6) {
				return "高职高专"
			}
			return "本科"
		}
	}
	return ""
}

func (g *villageGen) educationFor(age int) string {
	switch {
	case age >= 60:
		return weighted(g.r, []string{"文盲或半文盲", "小学", "初中"}, []float64{0.4, 0.45, 0.15})
	case age >= 35:
		return weighted(g.r, []string{"小学", "初中", "高中", "中专"}, []float64{0.35, 0.5, 0.1, 0.05})
	default:
		return weighted(g.r, []string{"初中", "高中", "中专", "大专", "本科及以上"}, []float64{0.55, 0.2, 0.1, 0.1, 0.05})
	}
}

// setHealth sets health and derived skill consistently (Q-022..Q-025).
func (g *villageGen) setHealth(p *Person, health string) {
	p.Health = health
	p.DisType, p.DisGrade, p.DisCert = "", 0, ""
	if health == HealthDisability {
		t := disTypes[g.r.IntN(len(disTypes))]
		p.DisGrade = g.between(1, 4)
		p.DisType = ident.DisabilityTypeName(t)
		p.DisCert = ident.MakeDisabilityCert(p.ID18, t, p.DisGrade)
	}
	g.setSkill(p)
}

func (g *villageGen) setSkill(p *Person) {
	a := p.age
	switch {
	case a < 16 || p.School != "":
		p.Skill = SkillNone
	case a >= 60:
		p.Skill = weighted(g.r, []string{SkillWeak, SkillLost, SkillNone}, []float64{0.6, 0.2, 0.2})
	case p.Health == HealthOK:
		p.Skill = weighted(g.r, []string{SkillNormal, SkillSkilled}, []float64{0.7, 0.3})
	case p.Health == HealthChronic:
		p.Skill = weighted(g.r, []string{SkillNormal, SkillWeak}, []float64{0.5, 0.5})
	case p.Health == HealthSerious:
		p.Skill = weighted(g.r, []string{SkillWeak, SkillLost}, []float64{0.5, 0.5})
	case p.DisGrade <= 2:
		p.Skill = weighted(g.r, []string{SkillLost, SkillNone}, []float64{0.6, 0.4})
	default:
		p.Skill = weighted(g.r, []string{SkillWeak, SkillNormal}, []float64{0.6, 0.4})
	}
	p.WorkStatus, p.WorkPlace, p.WorkMonths, p.WorkMonthly, p.Channel = "", "", 0, 0, ""
	if p.Skill == SkillNormal || p.Skill == SkillSkilled {
		if g.chance(0.72) {
			switch weighted(g.r, []int{0, 1, 2}, []float64{0.45, 0.25, 0.3}) {
			case 0:
				p.WorkStatus, p.WorkPlace = "省外务工", pick(g.r, provinceOut)
			case 1:
				p.WorkStatus, p.WorkPlace = "省内县外务工", pick(g.r, provinceIn)
			default:
				p.WorkStatus, p.WorkPlace = "县内务工", "四川省"+g.plan.CountyName
			}
			p.WorkMonths = g.between(3, 12)
			p.WorkMonthly = int64(g.between(2500, 7500)) * 100
			p.Channel = pick(g.r, channels)
		}
	}
}

func (g *villageGen) person(h *Household, m member, idx int, surname string) (*Person, error) {
	p := &Person{PersonNo: fmt.Sprintf("%s%02d", h.HHNo, idx+1), Male: m.male, Rel: m.rel, Ethnic: h.Ethnic}
	if m.rel == RelSpouse || m.rel == RelDaughterInL || m.rel == RelSonInLaw || m.rel == RelOther {
		if g.chance(0.05) {
			p.Ethnic = "汉族"
		}
		surname = ""
	}
	if m.rel == RelFather && h.Ethnic != "藏族" {
		// keep surname
	} else if m.rel == RelMother {
		surname = ""
	}
	p.Name = personName(g.r, p.Ethnic, p.Male, surname)
	if err := g.assignID(p, m.age); err != nil {
		return nil, err
	}
	p.School = g.schoolFor(p.age)
	if p.School == "" {
		p.Education = g.educationFor(p.age)
	}
	health := HealthOK
	switch x := g.r.Float64(); {
	case x < g.cfg.DisabledShare*boolF(p.age >= 50, 2, 0.5):
		health = HealthDisability
	case x < g.cfg.DisabledShare*boolF(p.age >= 50, 2, 0.5)+g.cfg.SeriousShare && p.age >= 18:
		health = HealthSerious
	case p.age >= 60 && x < 0.5+g.cfg.ChronicShareElderly && x >= 0.5:
		health = HealthChronic
	case p.age >= 30 && p.age < 60 && x > 1-g.cfg.ChronicShareAdult:
		health = HealthChronic
	}
	g.setHealth(p, health)
	p.InsResMed = g.chance(0.97)
	p.InsEmpMed = !p.InsResMed
	p.InsSerious = p.InsResMed
	if p.age >= 16 && p.School == "" {
		if g.chance(0.9) {
			p.InsResPension = true
		} else if g.chance(0.5) {
			p.InsEmpPension = true
		}
	}
	if p.age >= 16 && g.chance(0.5) {
		p.Phone = validMobile(g.r)
	}
	return p, nil
}

func boolF(c bool, a, b float64) float64 {
	if c {
		return a
	}
	return b
}

// household generates one clean household (no defects).
func (g *villageGen) household(seq int) (*Household, error) {
	cfg := g.cfg
	h := &Household{
		HHNo:         fmt.Sprintf("%s%05d", g.plan.Village.Code, seq),
		CountyName:   g.plan.CountyName,
		TownshipName: g.plan.TownshipName,
		VillageName:  g.plan.Village.Name,
		VillageCode:  g.plan.Village.Code,
	}
	h.NaturalVillage = fmt.Sprintf("%d组", g.between(1, 12))
	h.Ethnic = weightedMap(g.r, g.ethnicMix())
	yi := h.Ethnic == "彝族"
	sw := cfg.SizeWeights
	if yi {
		sw = cfg.SizeWeightsYi
	}
	sizes := make([]int, len(sw))
	for i := range sizes {
		sizes[i] = i
	}
	size := weighted(g.r, sizes, sw)
	if size < 1 {
		size = 1
	}
	comp := g.composition(size, yi)
	surname := ""
	for i, m := range comp {
		s := surname
		if m.rel == RelHead || m.rel == RelSibling {
			s = ""
			if i > 0 {
				s = surname
			}
		}
		p, err := g.person(h, m, i, s)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			surname = familyName(h.Ethnic, p.Name)
		}
		h.Members = append(h.Members, p)
	}
	head := h.Members[0]
	h.HeadName, h.HeadIDNo = head.Name, head.IDNo
	// Monitoring status.
	if g.chance(cfg.MonitoredShare) {
		c := weighted(g.r, []int{0, 1, 2}, cfg.CategoryWeights[:])
		h.Category = Categories[c]
		h.Type = TypeMonitored
		if c == 0 {
			h.Type = TypeLifted
		}
	} else {
		h.Type = TypeLifted
	}
	if h.Category != "" {
		g.risks(h)
	}
	h.NoLabour = true
	for _, p := range h.Members {
		if p.Skill != SkillLost && p.Skill != SkillNone {
			h.NoLabour = false
		}
	}
	if h.Category != "" {
		// identified between 2021-01 and one month before AsOf
		months := monthsBetween(time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC), cfg.AsOf) - 1
		idt := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, g.r.IntN(max(1, months)), 0)
		h.IdentifiedYM = ym(idt)
		h.Eliminated = false
		if !h.NoLabour && g.chance(cfg.EliminatedShare) && monthsBetween(idt, cfg.AsOf) >= 7 {
			h.Eliminated = true
			span := monthsBetween(idt, cfg.AsOf) - 6
			h.EliminatedYM = ym(idt.AddDate(0, 6+g.r.IntN(max(1, span)), 0))
			h.ElimMethod = weighted(g.r, []string{"帮扶消除", "自然消除"}, []float64{0.8, 0.2})
		}
		h.MonitorContact = personName(g.r, "汉族", g.chance(0.6), "")
		h.MonitorPhone = validMobile(g.r)
	}
	h.Collector = personName(g.r, "汉族", g.chance(0.5), "")
	g.facts(h)
	g.measures(h)
	g.income(h)
	if head.Phone != "" {
		h.Phone = head.Phone
	} else {
		h.Phone = validMobile(g.r)
	}
	if g.chance(cfg.RelocatedShare) {
		h.Relocated = true
		h.ResettlementSite = strings.TrimSuffix(strings.TrimSuffix(g.plan.TownshipName, "镇"), "乡") + pick(g.r, []string{"幸福", "新村", "阳光", "和谐"}) + "安置点"
		h.ResettlementMode = weighted(g.r, []string{"集中", "分散"}, []float64{0.8, 0.2})
	}
	return h, nil
}

func monthsBetween(a, b time.Time) int {
	return (b.Year()-a.Year())*12 + int(b.Month()) - int(a.Month())
}

// disasterSubitems are internal/dict disaster_subitem names (the national sub-items of
// 因自然灾害); 应急 records use the same names so that both sides normalise alike.
var disasterSubitems = []string{"洪涝", "干旱", "地震", "滑坡泥石流", "冰雹", "风灾", "低温冷冻和雪灾", "森林草原火灾"}
var otherRemarks = []string{"家庭主要劳动力死亡", "家庭成员服刑", "婚丧支出大", "赡养负担重"}

// risks chooses risk types and makes the household facts support them (Q-050..Q-059).
func (g *villageGen) risks(h *Household) {
	n := 1
	if g.chance(g.cfg.SecondRiskShare) {
		n = 2
	}
	var chosen []string
	for tries := 0; len(chosen) < n && tries < 10; tries++ {
		rk := weightedMap(g.r, g.cfg.RiskWeights)
		if slices.Contains(chosen, rk) || !g.supportRisk(h, rk) {
			continue
		}
		chosen = append(chosen, rk)
	}
	if len(chosen) == 0 {
		chosen = []string{RiskAccident}
	}
	copy(h.Risks[:], chosen)
}

func (g *villageGen) able(p *Person) bool { return p.Skill == SkillNormal || p.Skill == SkillSkilled }

func (g *villageGen) supportRisk(h *Household, rk string) bool {
	switch rk {
	case RiskIllness:
		for _, p := range h.Members {
			if p.Health == HealthChronic || p.Health == HealthSerious {
				return true
			}
		}
		p := g.adult(h)
		if p == nil || p.Health == HealthDisability {
			return false
		}
		g.setHealth(p, weighted(g.r, []string{HealthSerious, HealthChronic}, []float64{0.5, 0.5}))
	case RiskDisability:
		for _, p := range h.Members {
			if p.Health == HealthDisability {
				return true
			}
		}
		p := h.Members[g.r.IntN(len(h.Members))]
		if p.Health != HealthOK {
			return false
		}
		g.setHealth(p, HealthDisability)
	case RiskSchooling:
		for _, p := range h.Members {
			if strings.HasPrefix(p.School, "高") || p.School == "本科" {
				return true
			}
		}
		return false
	case RiskDisaster:
		h.DisasterSubitem = pick(g.r, disasterSubitems)
	case RiskOther:
		h.RiskRemark = pick(g.r, otherRemarks)
	case RiskWork:
		for _, p := range h.Members {
			if p.WorkStatus != "" {
				return true
			}
		}
		return false
	case RiskLabour:
		able := 0
		for _, p := range h.Members {
			if g.able(p) {
				able++
			}
		}
		lim := len(h.Members) / 4
		if len(h.Members) >= 4 {
			lim = len(h.Members) / 2
		}
		return able <= lim
	}
	return true
}

func (g *villageGen) adult(h *Household) *Person {
	var c []*Person
	for _, p := range h.Members {
		if p.age >= 18 {
			c = append(c, p)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[g.r.IntN(len(c))]
}

func (h *Household) hasRisk(rk string) bool { return slices.Contains(h.Risks[:], rk) }

// facts draws housing, land and three-guarantee facts consistent with the risks.
func (g *villageGen) facts(h *Household) {
	open := !h.Eliminated && h.Category != ""
	h.Dangerous = open && h.hasRisk(RiskHousing)
	h.SafeWater = !(open && h.hasRisk(RiskWater))
	h.HousingArea = int64(g.between(40, 160))*100 + int64(g.r.IntN(100))
	h.Electricity = true
	h.RoadHardened = g.chance(0.9)
	h.RoadDistance = int64(g.r.IntN(300))
	pasture := strings.HasPrefix(h.VillageCode, "5132") || strings.HasPrefix(h.VillageCode, "5133")
	h.Land[0] = int64(g.between(30, 800))
	h.Land[1] = int64(g.r.IntN(3000))
	h.Land[2] = int64(g.r.IntN(500))
	h.Land[3] = int64(g.r.IntN(300))
	if pasture {
		h.Land[4] = int64(g.r.IntN(8000))
	}
	h.Land[5] = int64(g.r.IntN(50))
	if h.hasRisk(RiskIllness) {
		h.CompliantOOP = int64(g.between(1500, 25000)) * 100
	} else {
		h.CompliantOOP = int64(g.r.IntN(800)) * 100
	}
}

type measureSpec struct{ cat, name string }

// measures records assistance consistent with risks and facts (Q-070..Q-083).
func (g *villageGen) measures(h *Household) {
	var ms []measureSpec
	add := func(cat, name string) {
		for _, m := range ms {
			if m.cat == cat && m.name == name {
				return
			}
		}
		ms = append(ms, measureSpec{cat, name})
	}
	anyAble, outside := false, false
	for _, p := range h.Members {
		if g.able(p) {
			anyAble = true
		}
		if p.WorkStatus == "省外务工" || p.WorkStatus == "省内县外务工" {
			outside = true
		}
	}
	monitored := h.Category != ""
	if monitored {
		for _, rk := range h.Risks {
			switch rk {
			case RiskIllness:
				add("健康帮扶", "医疗救助")
			case RiskSchooling:
				add("教育帮扶", "雨露计划")
			case RiskDisability:
				add("综合保障", "残疾人补贴")
			case RiskHousing:
				add("住房安全保障", "农村危房改造")
			case RiskWater:
				add("饮水安全保障", "农村饮水安全工程")
			case RiskDisaster:
				add("社会帮扶", "救灾救助")
			case RiskWork:
				if outside {
					add("就业帮扶", "外出务工补贴")
				} else {
					add("就业帮扶", "就业技能培训")
				}
			case RiskProject:
				add("产业帮扶", "产业奖补")
			}
		}
	}
	// Social protection for households that cannot work or carry heavy burdens.
	if h.NoLabour || (monitored && (h.hasRisk(RiskLabour) || h.hasRisk(RiskDisability))) || (!monitored && g.chance(0.05)) {
		if len(h.Members) == 1 && h.Members[0].age >= 60 && h.NoLabour {
			h.Members[0].Tekun = true
			h.TekunAmount = int64(g.between(9000, 12000)) * 100
			add("综合保障", "特困供养")
		} else {
			for _, p := range h.Members {
				p.Dibao = true
			}
			h.DibaoAmount = int64(len(h.Members)) * int64(g.between(3000, 5000)) * 100
			add("综合保障", "低保")
		}
	}
	if anyAble && (monitored || g.chance(0.3)) {
		switch g.r.IntN(3) {
		case 0:
			add("产业帮扶", "种养殖补贴")
		case 1:
			if outside {
				add("就业帮扶", "劳务输出")
			} else {
				add("产业帮扶", "产业奖补")
			}
		default:
			add("金融帮扶", "小额信贷")
		}
		if monitored && g.chance(0.15) {
			for _, p := range h.Members {
				if p.age >= 18 && p.age < 65 && p.WorkStatus == "" && p.Skill != SkillLost && p.Skill != SkillNone {
					p.WelfareJob, p.WelfareMonths = true, g.between(6, 12)
					add("公益岗位帮扶", "乡村公益性岗位")
					break
				}
			}
		}
	}
	if monitored && h.hasRisk(RiskIllness) {
		for _, p := range h.Members {
			if p.Health == HealthSerious || p.Health == HealthChronic {
				p.MedAssist = true
			}
		}
	}
	start := time.Date(2016+g.r.IntN(5), time.Month(1+g.r.IntN(12)), 1, 0, 0, 0, 0, time.UTC)
	if monitored {
		start = parseYM(h.IdentifiedYM).AddDate(0, g.r.IntN(2), 0)
		if start.After(g.cfg.AsOf) {
			start = parseYM(h.IdentifiedYM)
		}
	}
	for i, m := range ms {
		dev := m.cat == "产业帮扶" || m.cat == "就业帮扶" || m.cat == "金融帮扶" || m.cat == "公益岗位帮扶"
		h.Measures = append(h.Measures, Measure{
			ID: fmt.Sprintf("%sM%02d", h.HHNo, i+1), Category: m.cat, Name: m.name,
			StartYM: ym(start), Status: "已实施", Development: dev,
		})
		if dev {
			h.DevStatus = "已实施"
		}
	}
}

// income draws the income components so they add up exactly and the net per
// capita lands in the band of the household's status around the threshold.
func (g *villageGen) income(h *Household) {
	cfg := g.cfg
	t := cfg.Threshold
	var lo, hi float64
	switch {
	case h.Category == "":
		lo, hi = 1.3*t, 2.7*t
	case h.Eliminated:
		lo, hi = 1.1*t, 2.2*t
	case h.Category == Categories[2]:
		lo, hi = 1.05*t, 1.8*t
	default:
		lo, hi = 0.62*t, 0.99*t
	}
	lo, hi = math.Max(lo, cfg.IncomeMinPerCapita), math.Min(hi, cfg.IncomeMaxPerCapita)
	if hi < lo {
		hi = lo
	}
	size := int64(len(h.Members))
	target := int64((lo + g.r.Float64()*(hi-lo)) * 100 * float64(size))
	var wage, transfer int64
	for _, p := range h.Members {
		if p.InsResPension && p.age >= 60 {
			transfer += int64(g.between(1500, 2400)) * 100
		}
		if p.WelfareJob {
			wage += int64(p.WelfareMonths) * 60000
		}
	}
	transfer += h.DibaoAmount + h.TekunAmount
	property := int64(g.r.IntN(500)) * 100
	// Scale work down if wages alone exceed the target (keep ≥ 1,500/month).
	var work int64
	for _, p := range h.Members {
		work += int64(p.WorkMonths) * p.WorkMonthly
	}
	if room := target - wage - transfer - property; work > room && work > 0 {
		f := math.Max(float64(room)/float64(work), 0)
		for _, p := range h.Members {
			if p.WorkMonths > 0 {
				m := int64(float64(p.WorkMonthly)*f) / 100 * 100
				p.WorkMonthly = max(m, 150000)
			}
		}
		work = 0
		for _, p := range h.Members {
			work += int64(p.WorkMonths) * p.WorkMonthly
		}
	}
	wage += work
	netBusiness := target - wage - transfer - property
	if netBusiness < 0 {
		netBusiness = int64(g.r.IntN(1000)) * 100
	}
	expense := netBusiness * int64(g.between(20, 45)) / 100
	h.Wage, h.Transfer, h.Property = wage, transfer, property
	h.Business = netBusiness + expense
	h.BusinessExpense = expense
	h.AnnualIncome = h.Wage + h.Business + h.Property + h.Transfer
}

// PerCapita is the net income per person in cents: (annual − business expense) / size.
func (h *Household) PerCapita() int64 {
	if len(h.Members) == 0 {
		return 0
	}
	n := int64(len(h.Members))
	v := h.AnnualIncome - h.BusinessExpense
	return (v + n/2) / n
}
