package warnings

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shouwang/shouwang/schemas"
)

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (e *Engine) fact(key string) (*FactRecord, error) {
	v, ok, err := e.store.Get(KindFact, key)
	if err != nil || !ok {
		return nil, err
	}
	return v.(*FactRecord), nil
}

func (e *Engine) person(key string) (*schemas.Person, error) {
	v, ok, err := e.store.Get(KindPerson, key)
	if err != nil || !ok {
		return nil, err
	}
	r := v.(*PersonRecord)
	if r.Deleted {
		return nil, nil
	}
	return r.Person, nil
}

func (e *Engine) household(key string) (*schemas.Household, error) {
	if key == "" {
		return nil, nil
	}
	v, ok, err := e.store.Get(KindHousehold, key)
	if err != nil || !ok {
		return nil, err
	}
	r := v.(*HouseholdRecord)
	if r.Deleted {
		return nil, nil
	}
	return r.Household, nil
}

func (e *Engine) keys(kind, key string) (KeyList, error) {
	if key == "" {
		return nil, nil
	}
	v, ok, err := e.store.Get(kind, key)
	if err != nil || !ok {
		return nil, err
	}
	return *v.(*KeyList), nil
}

// index adds or removes member in the sorted key list at kind/key.
func (e *Engine) index(kind, key, member string, add bool) error {
	if key == "" {
		return nil
	}
	cur, err := e.keys(kind, key)
	if err != nil {
		return err
	}
	i := sort.SearchStrings(cur, member)
	found := i < len(cur) && cur[i] == member
	switch {
	case add && !found:
		n := make(KeyList, 0, len(cur)+1)
		n = append(append(append(n, cur[:i]...), member), cur[i:]...)
		return e.store.Put(kind, key, &n)
	case !add && found:
		if len(cur) == 1 {
			return e.store.Delete(kind, key)
		}
		n := make(KeyList, 0, len(cur)-1)
		n = append(append(n, cur[:i]...), cur[i+1:]...)
		return e.store.Put(kind, key, &n)
	}
	return nil
}

// resolve finds the registry person of an ID number: the lowest person key holding it
// (duplicate ID numbers are a registry defect the supervision rules report).
func (e *Engine) resolve(id string) (*schemas.Person, string, error) {
	keys, err := e.keys(KindPersonsByID, id)
	if err != nil {
		return nil, "", err
	}
	for _, k := range keys {
		p, err := e.person(k)
		if err != nil {
			return nil, "", err
		}
		if p != nil {
			return p, k, nil
		}
	}
	return nil, "", nil
}

// item is one live fact of a unit with its registry person.
type item struct {
	fact   *schemas.DepartmentFact
	person *schemas.Person
}

func (e *Engine) liveFacts(id string) ([]*schemas.DepartmentFact, error) {
	keys, err := e.keys(KindFactsByID, id)
	if err != nil {
		return nil, err
	}
	out := make([]*schemas.DepartmentFact, 0, len(keys))
	seen := make(map[string]int, len(keys))
	for _, k := range keys {
		r, err := e.fact(k)
		if err != nil {
			return nil, err
		}
		if r == nil || r.Deleted || r.Fact == nil {
			continue
		}
		// One department record may arrive through several channels (a replicated
		// table and a file delivery): the mappings key facts per channel, because
		// versions from different channels cannot be ordered, so the same settlement
		// is two facts. Counted twice it would double every rolling sum; count it once.
		id := r.Identity
		if id == "" {
			id = recordIdentity(r.Fact)
		}
		if i, dup := seen[id]; dup {
			if r.Fact.Key < out[i].Key { // deterministic under replay and reordering
				out[i] = r.Fact
			}
			continue
		}
		seen[id] = len(out)
		out = append(out, r.Fact)
	}
	return out, nil
}

// recordIdentity is what makes two facts the same department record: the fields
// with meaning, not the channel they came through (key, source, version). Every
// department mapping keeps the record's own number (settlement_no, cert_no, …) in
// Values, so two distinct records never share an identity.
func recordIdentity(f *schemas.DepartmentFact) string {
	h := sha256.New()
	put := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	put(f.Department)
	put(f.Dataset)
	put(f.FactType)
	put(f.IDNo)
	put(f.Period)
	put(f.OccurredOn)
	put(numberForm(string(f.Amount)))
	names := make([]string, 0, len(f.Values))
	for k := range f.Values {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		put(k)
		put(numberForm(f.Values[k]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// numberForm drops the trailing fraction zeros of a plain decimal ("2149.60" →
// "2149.6", "2687.00" → "2687"): channels differ there (a PostgreSQL numeric keeps its
// scale, a file delivery's decimal column is normalised by capture), the value does
// not. Anything else is returned unchanged.
func numberForm(s string) string {
	dot := strings.IndexByte(s, '.')
	if dot <= 0 {
		return s
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && i != dot && (i != 0 || c != '-') {
			return s
		}
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// evaluate re-evaluates units in sorted order and returns the changes.
func (e *Engine) evaluate(units unitSet) ([]Event, error) {
	names := make([]string, 0, len(units))
	for u := range units {
		names = append(names, u)
	}
	sort.Strings(names)
	var events []Event
	now := e.now().UTC()
	for _, u := range names {
		ws, ds, err := e.produce(u, now)
		if err != nil {
			return nil, err
		}
		ev, err := e.diff(u, ws, ds, now)
		if err != nil {
			return nil, err
		}
		events = append(events, ev...)
	}
	return events, nil
}

// produce computes what a unit should hold now.
func (e *Engine) produce(u string, now time.Time) ([]*schemas.Warning, []*schemas.Discrepancy, error) {
	kind, key := u[:1], u[2:]
	var items []item
	var hh *schemas.Household
	var subjKind string
	switch kind {
	case "p":
		subjKind = SubjectPerson
		facts, err := e.liveFacts(key)
		if err != nil || len(facts) == 0 {
			return nil, nil, err
		}
		p, _, err := e.resolve(key)
		if err != nil {
			return nil, nil, err
		}
		if p != nil {
			if hh, err = e.household(p.HouseholdNo); err != nil {
				return nil, nil, err
			}
		}
		for _, f := range facts {
			items = append(items, item{f, p})
		}
	case "h":
		subjKind = SubjectHousehold
		var err error
		if hh, err = e.household(key); err != nil || hh == nil {
			return nil, nil, err
		}
		members, err := e.keys(KindMembers, key)
		if err != nil {
			return nil, nil, err
		}
		for _, m := range members {
			p, err := e.person(m)
			if err != nil {
				return nil, nil, err
			}
			if p == nil || p.IDNo == "" {
				continue
			}
			if _, rk, err := e.resolve(p.IDNo); err != nil {
				return nil, nil, err
			} else if rk != m {
				continue // the ID number belongs to another person
			}
			facts, err := e.liveFacts(p.IDNo)
			if err != nil {
				return nil, nil, err
			}
			for _, f := range facts {
				items = append(items, item{f, p})
			}
		}
		if len(items) == 0 {
			return nil, nil, nil
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].fact.Key < items[j].fact.Key })
	var ws []*schemas.Warning
	for _, r := range e.rules.warnings {
		if r.subject == subjKind {
			ws = append(ws, e.evalRule(r, items, hh, key, now)...)
		}
	}
	var ds []*schemas.Discrepancy
	byID := map[string]bool{}
	for _, c := range e.rules.comparisons {
		if c.subject != subjKind || (subjKind == SubjectPerson && (len(items) == 0 || items[0].person == nil)) {
			continue
		}
		for _, d := range e.evalComparison(c, items, hh, key, now) {
			if !byID[d.ID] {
				byID[d.ID] = true
				ds = append(ds, d)
			}
		}
	}
	return ws, ds, nil
}

// classOf is the household's population class.
func (r *Rules) classOf(hh *schemas.Household) string {
	if hh == nil {
		return r.defaultClass
	}
	for _, c := range r.population {
		for _, m := range c.MonitoringCategories {
			if hh.MonitoringCategory == m {
				return c.Class
			}
		}
		for _, t := range c.HouseholdTypes {
			if hh.HouseholdType == t {
				return c.Class
			}
		}
	}
	return r.defaultClass
}

// thresholdFor picks the threshold for a year, class and place: the entry with the
// longest matching region prefix, the later one on a tie.
func (r *rule) thresholdFor(year int, class, region string) (threshold, bool) {
	best, bestSpec := -1, -1
	for i, t := range r.thresholds {
		if (t.fromYear != 0 && year < t.fromYear) || (t.toYear != 0 && year > t.toYear) {
			continue
		}
		if len(t.classes) > 0 && !t.classes[class] {
			continue
		}
		spec := 0
		if len(t.regions) > 0 {
			spec = -1
			for _, p := range t.regions {
				if strings.HasPrefix(region, p) && len(p) > spec {
					spec = len(p)
				}
			}
			if spec < 0 {
				continue
			}
		}
		if spec >= bestSpec {
			best, bestSpec = i, spec
		}
	}
	if best < 0 {
		return threshold{}, false
	}
	return r.thresholds[best], true
}

func subjectRegion(hh *schemas.Household, items []item) string {
	if hh != nil && hh.RegionCode != "" {
		return hh.RegionCode
	}
	for _, it := range items {
		if it.person != nil && it.person.RegionCode != "" {
			return it.person.RegionCode
		}
	}
	for _, it := range items {
		if it.fact.RegionCode != "" {
			return it.fact.RegionCode
		}
	}
	return ""
}

func monthIndex(period string) (int, bool) {
	if len(period) != 6 || !digits(period) {
		return 0, false
	}
	y, _ := strconv.Atoi(period[:4])
	m, _ := strconv.Atoi(period[4:])
	if m < 1 || m > 12 {
		return 0, false
	}
	return y*12 + m - 1, true
}

func periodOf(mi int) string { return strconv.Itoa(mi/12) + twoDigits(mi%12+1) }

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

type hit struct {
	period   string
	amount   int64
	hasAmt   bool
	thr      threshold
	keys     []string
	evidence map[string]string
	first    *schemas.DepartmentFact
}

func (e *Engine) evalRule(r *rule, items []item, hh *schemas.Household, subjKey string, now time.Time) []*schemas.Warning {
	class := e.rules.classOf(hh)
	region := subjectRegion(hh, items)
	type val struct {
		mi  int
		v   int64
		key string
		f   *schemas.DepartmentFact
	}
	var vals []val
	for _, it := range items {
		f := it.fact
		if f.Department != r.department || !r.factTypes[f.FactType] {
			continue
		}
		s := subject{fact: f, person: it.person, hh: hh, now: now, asOf: e.asOf}
		ok := true
		for _, p := range r.where {
			if !p.eval(&s) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		mi, ok := monthIndex(f.Period)
		if !ok {
			continue
		}
		var v int64
		if r.measure.kind != 0 {
			t, _, ok := s.lookup(r.measure)
			if !ok {
				continue
			}
			n, err := parseNum(t)
			if err != nil {
				continue
			}
			v = n
		}
		if vals == nil {
			vals = make([]val, 0, len(items))
		}
		vals = append(vals, val{mi, v, f.Key, f})
	}
	if len(vals) == 0 {
		return nil
	}
	var hits []hit
	if r.rolling {
		// The window sum only changes where a fact enters (its month) or leaves (its
		// month + window): evaluate there, with a sliding window over facts by month.
		sort.Slice(vals, func(i, j int) bool {
			if vals[i].mi != vals[j].mi {
				return vals[i].mi < vals[j].mi
			}
			return vals[i].key < vals[j].key
		})
		ts := make([]int, 0, 2*len(vals))
		for _, v := range vals {
			ts = append(ts, v.mi, v.mi+r.window)
		}
		sort.Ints(ts)
		prevHit := false
		var sum int64
		lo, hi := 0, 0
		for i, t := range ts {
			if i > 0 && t == ts[i-1] {
				continue
			}
			for hi < len(vals) && vals[hi].mi <= t {
				sum += vals[hi].v
				hi++
			}
			for lo < hi && vals[lo].mi <= t-r.window {
				sum -= vals[lo].v
				lo++
			}
			thr, ok := r.thresholdFor(t/12, class, region)
			h := ok && hi > lo && compare(sum, r.op, thr.value)
			if h && !prevHit {
				keys := make([]string, 0, hi-lo)
				first := vals[lo]
				for _, v := range vals[lo:hi] {
					keys = append(keys, v.key)
					if v.key < first.key {
						first = v
					}
				}
				sort.Strings(keys)
				hits = append(hits, hit{period: periodOf(t), amount: sum, hasAmt: true, thr: thr, keys: keys, first: first.f,
					evidence: map[string]string{"window": periodOf(t-r.window+1) + ".." + periodOf(t), "window_months": strconv.Itoa(r.window), "facts": strconv.Itoa(len(keys))}})
			}
			prevHit = h
		}
	} else {
		byPeriod := map[string]int{}
		for _, v := range vals {
			hasThr := r.measure.kind != 0
			var thr threshold
			if hasThr {
				var ok bool
				if thr, ok = r.thresholdFor(v.mi/12, class, region); !ok || !compare(v.v, r.op, thr.value) {
					continue
				}
			}
			p := periodOf(v.mi)
			if i, ok := byPeriod[p]; ok {
				h := &hits[i]
				h.keys = append(h.keys, v.key)
				if hasThr && v.v > h.amount {
					h.amount, h.thr = v.v, thr
				}
				continue
			}
			byPeriod[p] = len(hits)
			hits = append(hits, hit{period: p, amount: v.v, hasAmt: hasThr, thr: thr, keys: []string{v.key}, first: v.f, evidence: map[string]string{}})
		}
	}
	out := make([]*schemas.Warning, 0, len(hits))
	for _, h := range hits {
		ev := h.evidence
		ev["class"] = class
		if h.hasAmt {
			ev["measure"] = r.measure.text
			ev["amount"] = formatNum(h.amount)
			ev["threshold"] = h.thr.text
			ev["op"] = r.op
		}
		// The predicates' values of the first fact, so a reader sees why it matched.
		s := subject{fact: h.first, hh: hh, now: now, asOf: e.asOf}
		for _, it := range items {
			if it.fact == h.first {
				s.person = it.person
			}
		}
		for _, p := range r.where {
			if v, _, ok := s.lookup(p.ref); ok && p.ref.kind != refFact {
				ev[p.ref.text] = v
			}
		}
		w := &schemas.Warning{
			ID: schemas.DeterministicID(r.id, r.subject, subjKey, h.period), RuleID: r.id, Department: r.department,
			SubjectKind: r.subject, SubjectKey: subjKey, Period: h.period, DueDays: r.dueDays, Status: schemas.WarningOpen,
			Evidence: ev, FactKeys: h.keys,
		}
		if hh != nil {
			w.HouseholdNo, w.RegionCode = hh.HouseholdNo, hh.RegionCode
		} else if region != "" {
			w.RegionCode = region
		}
		out = append(out, w)
	}
	return out
}

func (e *Engine) evalComparison(c *comparison, items []item, hh *schemas.Household, subjKey string, now time.Time) []*schemas.Discrepancy {
	for _, it := range items {
		f := it.fact
		if f.Department != c.department || !c.factTypes[f.FactType] {
			continue
		}
		s := subject{fact: f, person: it.person, hh: hh, now: now, asOf: e.asOf}
		ok := true
		for _, p := range c.where {
			if !p.eval(&s) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		want := c.expect
		if c.expectFrom.kind != 0 {
			v, _, ok := s.lookup(c.expectFrom)
			if !ok {
				continue
			}
			if m, ok := c.mapping[v]; ok {
				v = m
			}
			want = v
		}
		agree := false
		var got []string
		present := false
		for _, ref := range c.registry {
			v, _, ok := s.lookup(ref)
			if ok {
				present = true
			}
			got = append(got, v)
			if ok && v == want {
				agree = true
			}
		}
		if agree || !present {
			continue
		}
		show := c.show
		if show == "" {
			show = want
		}
		d := &schemas.Discrepancy{
			ID:         schemas.DeterministicID(c.department, c.subject, subjKey, c.field),
			Department: c.department, SubjectKind: c.subject, SubjectKey: subjKey, Field: c.field,
			RegistryValue: strings.Join(got, "/"), DepartmentValue: show, Status: schemas.DiscrepancyPending, FactKey: f.Key,
		}
		if hh != nil {
			d.HouseholdNo, d.RegionCode = hh.HouseholdNo, hh.RegionCode
		} else if it.person != nil {
			d.HouseholdNo, d.RegionCode = it.person.HouseholdNo, it.person.RegionCode
		}
		return []*schemas.Discrepancy{d} // the first contradicting fact (by key) stands for the field
	}
	return nil
}

func hashOf(v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

func warningHash(w *schemas.Warning) string {
	return hashOf([]any{w.RuleID, w.Department, w.SubjectKind, w.SubjectKey, w.HouseholdNo, w.RegionCode, w.Period, w.DueDays, w.Evidence, w.FactKeys})
}

func discrepancyHash(d *schemas.Discrepancy) string {
	return hashOf([]any{d.Department, d.SubjectKind, d.SubjectKey, d.HouseholdNo, d.RegionCode, d.Field, d.RegistryValue, d.DepartmentValue, d.FactKey})
}

const rfc3339 = time.RFC3339

// diff compares a unit's new output with what it held and emits the changes.
func (e *Engine) diff(u string, ws []*schemas.Warning, ds []*schemas.Discrepancy, now time.Time) ([]Event, error) {
	var prev UnitRecord
	if v, ok, err := e.store.Get(KindUnit, u); err != nil {
		return nil, err
	} else if ok {
		prev = *v.(*UnitRecord)
	}
	var events []Event
	nowText, nowMs := now.Format(rfc3339), now.UnixMilli()
	cur := UnitRecord{}
	sort.Slice(ws, func(i, j int) bool { return ws[i].ID < ws[j].ID })
	sort.Slice(ds, func(i, j int) bool { return ds[i].ID < ds[j].ID })
	seen := map[string]bool{}
	for _, w := range ws {
		seen[w.ID] = true
		cur.Warnings = append(cur.Warnings, w.ID)
		h := warningHash(w)
		var old *WarningRecord
		if v, ok, err := e.store.Get(KindWarning, w.ID); err != nil {
			return nil, err
		} else if ok {
			old = v.(*WarningRecord)
		}
		if old != nil && old.Open && old.Hash == h {
			continue
		}
		w.Key = w.ID
		w.Source = schemas.SourceRef{System: SourceSystem, Table: w.RuleID}
		w.UpdatedMs = nowMs
		if old != nil {
			w.Version = old.Warning.Version + 1
		} else {
			w.Version = 1
		}
		if old != nil && old.Open {
			w.RaisedAt, w.DueAt = old.Warning.RaisedAt, old.Warning.DueAt // evidence grew: same deadline
		} else {
			w.RaisedAt, w.DueAt = nowText, now.AddDate(0, 0, w.DueDays).Format(rfc3339)
		}
		rec := &WarningRecord{Hash: h, Open: true, Warning: *w}
		if err := e.store.Put(KindWarning, w.ID, rec); err != nil {
			return nil, err
		}
		c := rec.Warning
		events = append(events, Event{Key: w.ID, Warning: &c})
	}
	for _, id := range prev.Warnings {
		if seen[id] {
			continue
		}
		v, ok, err := e.store.Get(KindWarning, id)
		if err != nil {
			return nil, err
		}
		if !ok || !v.(*WarningRecord).Open {
			continue
		}
		old := v.(*WarningRecord)
		w := old.Warning
		w.Version++
		w.UpdatedMs = nowMs
		w.Status = schemas.WarningDismissed
		w.Resolution = "withdrawn: the department data or the registry no longer meets rule " + w.RuleID
		if err := e.store.Put(KindWarning, id, &WarningRecord{Hash: old.Hash, Open: false, Warning: w}); err != nil {
			return nil, err
		}
		c := w
		events = append(events, Event{Key: id, Warning: &c})
	}
	seen = map[string]bool{}
	for _, d := range ds {
		seen[d.ID] = true
		cur.Discrepancies = append(cur.Discrepancies, d.ID)
		h := discrepancyHash(d)
		var old *DiscrepancyRecord
		if v, ok, err := e.store.Get(KindDiscrepancy, d.ID); err != nil {
			return nil, err
		} else if ok {
			old = v.(*DiscrepancyRecord)
		}
		if old != nil && old.Open && old.Hash == h {
			continue
		}
		d.Key = d.ID
		d.Source = schemas.SourceRef{System: SourceSystem, Table: d.Department}
		d.UpdatedMs = nowMs
		d.Version = 1
		d.DetectedAt = nowText
		if old != nil {
			d.Version = old.Discrepancy.Version + 1
			if old.Open {
				d.DetectedAt = old.Discrepancy.DetectedAt
			}
		}
		rec := &DiscrepancyRecord{Hash: h, Open: true, Discrepancy: *d}
		if err := e.store.Put(KindDiscrepancy, d.ID, rec); err != nil {
			return nil, err
		}
		c := rec.Discrepancy
		events = append(events, Event{Key: d.ID, Discrepancy: &c})
	}
	for _, id := range prev.Discrepancies {
		if seen[id] {
			continue
		}
		v, ok, err := e.store.Get(KindDiscrepancy, id)
		if err != nil {
			return nil, err
		}
		if !ok || !v.(*DiscrepancyRecord).Open {
			continue
		}
		old := v.(*DiscrepancyRecord)
		d := old.Discrepancy
		d.Version++
		d.UpdatedMs = nowMs
		d.ResolvedAt = nowText
		// The fact still there means the registry now agrees; otherwise the
		// department withdrew or changed its record.
		if fr, err := e.fact(d.FactKey); err != nil {
			return nil, err
		} else if fr != nil && !fr.Deleted {
			d.Status, d.Reason = schemas.DiscrepancyCorrected, "the registry now agrees with the department"
		} else {
			d.Status, d.Reason = schemas.DiscrepancyRejected, "the department withdrew or changed its record"
		}
		if err := e.store.Put(KindDiscrepancy, id, &DiscrepancyRecord{Hash: old.Hash, Open: false, Discrepancy: d}); err != nil {
			return nil, err
		}
		c := d
		events = append(events, Event{Key: id, Discrepancy: &c})
	}
	if len(cur.Warnings) == 0 && len(cur.Discrepancies) == 0 {
		if len(prev.Warnings) > 0 || len(prev.Discrepancies) > 0 {
			if err := e.store.Delete(KindUnit, u); err != nil {
				return nil, err
			}
		}
		return events, nil
	}
	if !equalStrings(cur.Warnings, prev.Warnings) || !equalStrings(cur.Discrepancies, prev.Discrepancies) {
		if err := e.store.Put(KindUnit, u, &cur); err != nil {
			return nil, err
		}
	}
	return events, nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
