package warnings

import (
	"time"

	"github.com/shouwang/shouwang/schemas"
)

// SourceSystem is Meta.Source.System of the warnings and discrepancies the Engine makes.
const SourceSystem = "warnings"

// Event is one emitted change: a warning or a discrepancy (exactly one is set), with its
// key (the deterministic id, also the Kafka message key).
type Event struct {
	Key         string
	Warning     *schemas.Warning
	Discrepancy *schemas.Discrepancy
}

// Engine evaluates the rules against the facts and the registry it has been given. It is
// not safe for concurrent use; run one Engine per partition of ID numbers.
type Engine struct {
	rules *Rules
	store Store
	now   func() time.Time
	asOf  time.Time
}

// SetAsOf fixes the reference date for "new" department records (within_months
// predicates), which is otherwise each fact's delivery time (its UpdatedMs). Replaying
// historical deliveries, or synthetic data dated in the past, needs the date the data
// describes; the zero time restores the default. Call it before the first Apply.
func (e *Engine) SetAsOf(t time.Time) { e.asOf = t }

// New returns an Engine over rules keeping its state in store (NewMemoryStore() when
// nil); now stamps raised/detected times and due dates (time.Now when nil).
func New(rules *Rules, store Store, now func() time.Time) *Engine {
	if store == nil {
		store = NewMemoryStore()
	}
	if now == nil {
		now = time.Now
	}
	return &Engine{rules: rules, store: store, now: now}
}

// SetRules replaces the rules (a hot reload). Existing warnings and discrepancies
// change only when their units are evaluated again: call Reevaluate for every unit.
func (e *Engine) SetRules(r *Rules) { e.rules = r }

// Reevaluate evaluates again the units of the given persons (ID numbers) and
// households and returns the changes — after SetRules, or when the evaluation date
// moved.
func (e *Engine) Reevaluate(ids, households []string) ([]Event, error) {
	units := unitSet{}
	for _, id := range ids {
		units.person(id)
	}
	for _, hh := range households {
		units.household(hh)
	}
	return e.evaluate(units)
}

// Store is the engine's state.
func (e *Engine) Store() Store { return e.store }

// unit names an evaluation unit: "p:" + ID number, or "h:" + household key.
type unitSet map[string]bool

func (u unitSet) person(id string) {
	if id != "" {
		u["p:"+id] = true
	}
}

func (u unitSet) household(hh string) {
	if hh != "" {
		u["h:"+hh] = true
	}
}

// ApplyFact applies one version of a department fact (deleted: the fact is gone). A
// version not above the stored one is ignored (no events), so redelivery and replay
// change nothing.
func (e *Engine) ApplyFact(key string, version int64, f *schemas.DepartmentFact, deleted bool) ([]Event, error) {
	old, err := e.fact(key)
	if err != nil {
		return nil, err
	}
	if old != nil && old.Version >= version {
		return nil, nil
	}
	oldID := ""
	if old != nil && !old.Deleted && old.Fact != nil {
		oldID = old.Fact.IDNo
	}
	rec := &FactRecord{Version: version, Deleted: deleted || f == nil}
	newID := ""
	if !rec.Deleted {
		c := *f
		c.Key = key
		c.Values = copyMap(f.Values)
		rec.Fact = &c
		rec.Identity = recordIdentity(&c)
		newID = c.IDNo
	}
	if err := e.store.Put(KindFact, key, rec); err != nil {
		return nil, err
	}
	if oldID != newID {
		if err := e.index(KindFactsByID, oldID, key, false); err != nil {
			return nil, err
		}
	}
	if err := e.index(KindFactsByID, newID, key, true); err != nil {
		return nil, err
	}
	units := unitSet{}
	depts := map[string]bool{}
	if old != nil && old.Fact != nil {
		depts[old.Fact.Department] = true
	}
	if rec.Fact != nil {
		depts[rec.Fact.Department] = true
	}
	person, household := false, false
	for d := range depts {
		person = person || e.rules.uses[SubjectPerson][d]
		household = household || e.rules.uses[SubjectHousehold][d]
	}
	for _, id := range []string{oldID, newID} {
		if person {
			units.person(id)
		}
		if !household {
			continue
		}
		if p, _, err := e.resolve(id); err != nil {
			return nil, err
		} else if p != nil {
			units.household(p.HouseholdNo)
		}
	}
	return e.evaluate(units)
}

// ApplyPerson applies one version of a registry person.
func (e *Engine) ApplyPerson(key string, version int64, p *schemas.Person, deleted bool) ([]Event, error) {
	v, ok, err := e.store.Get(KindPerson, key)
	if err != nil {
		return nil, err
	}
	var old *PersonRecord
	if ok {
		old = v.(*PersonRecord)
		if old.Version >= version {
			return nil, nil
		}
	}
	var oldID, oldHH string
	if old != nil && !old.Deleted && old.Person != nil {
		oldID, oldHH = old.Person.IDNo, old.Person.HouseholdNo
	}
	units := unitSet{}
	// Households the ID numbers resolve to before the change.
	incoming := ""
	if p != nil && !deleted {
		incoming = p.IDNo
	}
	for _, id := range []string{oldID, incoming} {
		if rp, _, err := e.resolve(id); err != nil {
			return nil, err
		} else if rp != nil {
			units.household(rp.HouseholdNo)
		}
	}
	rec := &PersonRecord{Version: version, Deleted: deleted || p == nil}
	var newID, newHH string
	if !rec.Deleted {
		c := *p
		c.Key = key
		rec.Person = &c
		newID, newHH = c.IDNo, c.HouseholdNo
	}
	if err := e.store.Put(KindPerson, key, rec); err != nil {
		return nil, err
	}
	if oldID != newID {
		if err := e.index(KindPersonsByID, oldID, key, false); err != nil {
			return nil, err
		}
	}
	if err := e.index(KindPersonsByID, newID, key, true); err != nil {
		return nil, err
	}
	if oldHH != newHH {
		if err := e.index(KindMembers, oldHH, key, false); err != nil {
			return nil, err
		}
	}
	if err := e.index(KindMembers, newHH, key, true); err != nil {
		return nil, err
	}
	for _, id := range []string{oldID, newID} {
		units.person(id)
		if rp, _, err := e.resolve(id); err != nil {
			return nil, err
		} else if rp != nil {
			units.household(rp.HouseholdNo)
		}
	}
	units.household(oldHH)
	units.household(newHH)
	return e.evaluate(units)
}

// ApplyHousehold applies one version of a registry household.
func (e *Engine) ApplyHousehold(key string, version int64, h *schemas.Household, deleted bool) ([]Event, error) {
	v, ok, err := e.store.Get(KindHousehold, key)
	if err != nil {
		return nil, err
	}
	if ok && v.(*HouseholdRecord).Version >= version {
		return nil, nil
	}
	rec := &HouseholdRecord{Version: version, Deleted: deleted || h == nil}
	if !rec.Deleted {
		c := *h
		c.Key = key
		rec.Household = &c
	}
	if err := e.store.Put(KindHousehold, key, rec); err != nil {
		return nil, err
	}
	units := unitSet{}
	units.household(key)
	members, err := e.keys(KindMembers, key)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		p, err := e.person(m)
		if err != nil {
			return nil, err
		}
		if p != nil {
			units.person(p.IDNo)
		}
	}
	return e.evaluate(units)
}
