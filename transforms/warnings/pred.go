package warnings

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/shouwang/shouwang/schemas"
)

// numScale is the fixed-point scale of amounts and thresholds (4 decimals), so sums of
// money are exact.
const numScale = 10000

var errNum = errors.New("not a number")

// parseNum parses a plain decimal ("12", "-3.5", "5000.00") into a scaled integer.
func parseNum(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errNum
	}
	neg := false
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		s = s[1:]
	}
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || !digits(whole) || (frac != "" && !digits(frac)) || len(frac) > 4 || len(whole) > 14 {
		return 0, errNum
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	frac += strings.Repeat("0", 4-len(frac))
	f, _ := strconv.ParseInt(frac, 10, 64)
	v := w*numScale + f
	if neg {
		v = -v
	}
	return v, nil
}

// formatNum prints a scaled integer with two decimals (more when needed).
func formatNum(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	s := fmt.Sprintf("%s%d.%04d", sign, v/numScale, v%numScale)
	for strings.HasSuffix(s, "0") && len(s)-strings.IndexByte(s, '.') > 3 {
		s = s[:len(s)-1]
	}
	return s
}

func compare(a int64, op string, b int64) bool {
	switch op {
	case ">=":
		return a >= b
	case ">":
		return a > b
	case "<=":
		return a <= b
	case "<":
		return a < b
	case "==":
		return a == b
	case "!=":
		return a != b
	}
	return false
}

type pred struct {
	ref         fieldRef
	in, notIn   map[string]bool
	contains    string
	notContains string
	empty       *bool
	op          string
	value       int64
	within      int
	missingPass bool
}

func compilePred(s predSpec, newWithin int) (*pred, error) {
	ref, err := parseRef(s.Field, false)
	if err != nil {
		return nil, err
	}
	p := &pred{ref: ref, contains: s.Contains, notContains: s.NotContains, empty: s.Empty, op: s.Op}
	n := 0
	if s.In != nil {
		p.in, n = set(s.In), n+1
	}
	if s.NotIn != nil {
		p.notIn, n = set(s.NotIn), n+1
	}
	if s.Contains != "" {
		n++
	}
	if s.NotContains != "" {
		n++
	}
	if s.Empty != nil {
		n++
	}
	if s.Op != "" {
		if !ops[s.Op] {
			return nil, fmt.Errorf("op %q is not a comparison (>=, >, <=, <, ==, !=)", s.Op)
		}
		v, err := parseNum(s.Value)
		if err != nil {
			return nil, fmt.Errorf("value %q is not a number", s.Value)
		}
		p.value, n = v, n+1
	} else if s.Value != "" {
		return nil, fmt.Errorf("value needs an op")
	}
	if s.WithinMonths != nil {
		p.within, n = *s.WithinMonths, n+1
		if p.within == 0 {
			p.within = newWithin
		}
		if p.within < 0 {
			return nil, fmt.Errorf("within_months must be positive")
		}
		if ref.kind != refFact || (ref.name != "occurred_on" && ref.name != "period") {
			return nil, fmt.Errorf("within_months applies to occurred_on or period")
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("field %s: give exactly one of in, not_in, contains, not_contains, empty, op+value, within_months", s.Field)
	}
	switch s.Missing {
	case "", "fail":
	case "pass":
		p.missingPass = true
	default:
		return nil, fmt.Errorf("missing: %q must be pass or fail", s.Missing)
	}
	return p, nil
}

// subject is what predicates and measures see: one fact with the registry person and
// household it resolved to (either may be nil).
type subject struct {
	fact   *schemas.DepartmentFact
	person *schemas.Person
	hh     *schemas.Household
	now    time.Time
	asOf   time.Time // Engine.SetAsOf, zero when unset
}

// lookup returns a reference's value as text and whether it exists (a registry field
// of a missing person or household does not).
func (s *subject) lookup(r fieldRef) (string, []string, bool) {
	f := s.fact
	switch r.kind {
	case refAmount:
		return string(f.Amount), nil, f.Amount != ""
	case refValue:
		v, ok := f.Values[r.name]
		return v, nil, ok && v != ""
	case refAge:
		a, ok := s.age()
		if !ok {
			return "", nil, false
		}
		return strconv.Itoa(a), nil, true
	case refFact:
		switch r.name {
		case "period":
			return f.Period, nil, true
		case "occurred_on":
			return f.OccurredOn, nil, true
		case "fact_type":
			return f.FactType, nil, true
		case "region_code":
			return f.RegionCode, nil, true
		case "household_no":
			return f.HouseholdNo, nil, true
		case "id_no":
			return f.IDNo, nil, true
		case "dataset":
			return f.Dataset, nil, true
		}
	case refPerson:
		if s.person == nil {
			return "", nil, false
		}
		return fieldText(reflect.ValueOf(s.person).Elem().FieldByIndex(r.index))
	case refHousehold:
		if s.hh == nil {
			return "", nil, false
		}
		return fieldText(reflect.ValueOf(s.hh).Elem().FieldByIndex(r.index))
	}
	return "", nil, false
}

// fieldText renders a registry field: *bool as true/false ("" when not recorded),
// numbers in decimal, lists as their items.
func fieldText(v reflect.Value) (string, []string, bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return "", nil, true
		}
		return fieldText(v.Elem())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), nil, true
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), nil, true
	case reflect.String:
		return v.String(), nil, true
	case reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = v.Index(i).String()
		}
		return strings.Join(items, ","), items, true
	}
	return fmt.Sprint(v.Interface()), nil, true
}

// age is the subject's age in whole years on the fact's date (occurred_on, else the
// first day of its period), from the fact's birth_date value or the registry's.
func (s *subject) age() (int, bool) {
	b := s.fact.Values["birth_date"]
	if b == "" && s.person != nil {
		b = s.person.BirthDate
	}
	birth, err := time.Parse("2006-01-02", b)
	if err != nil {
		return 0, false
	}
	at, ok := factDate(s.fact)
	if !ok {
		return 0, false
	}
	a := at.Year() - birth.Year()
	if at.Month() < birth.Month() || (at.Month() == birth.Month() && at.Day() < birth.Day()) {
		a--
	}
	return a, true
}

func factDate(f *schemas.DepartmentFact) (time.Time, bool) {
	if t, err := time.Parse("2006-01-02", f.OccurredOn); err == nil {
		return t, true
	}
	if t, err := time.Parse("200601", f.Period); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// deliveredAt is when the fact was delivered (its UpdatedMs), the reference for "new":
// a replay of the same inputs sees the same reference, unlike the wall clock. An
// engine-wide as-of date (Engine.SetAsOf) overrides it.
func (s *subject) deliveredAt() time.Time {
	if !s.asOf.IsZero() {
		return s.asOf
	}
	if s.fact.UpdatedMs > 0 {
		return time.UnixMilli(s.fact.UpdatedMs).UTC()
	}
	return s.now
}

func (p *pred) eval(s *subject) bool {
	v, items, ok := s.lookup(p.ref)
	if !ok && (p.ref.kind == refPerson || p.ref.kind == refHousehold) {
		return p.missingPass
	}
	switch {
	case p.in != nil:
		return p.in[v]
	case p.notIn != nil:
		return !p.notIn[v]
	case p.contains != "":
		return containsItem(v, items, p.contains)
	case p.notContains != "":
		return !containsItem(v, items, p.notContains)
	case p.empty != nil:
		return (v == "") == *p.empty
	case p.op != "":
		n, err := parseNum(v)
		return err == nil && compare(n, p.op, p.value)
	case p.within > 0:
		var t time.Time
		var err error
		if p.ref.name == "period" {
			t, err = time.Parse("200601", v)
		} else {
			t, err = time.Parse("2006-01-02", v)
		}
		if err != nil {
			return false
		}
		ref := s.deliveredAt()
		return !t.Before(ref.AddDate(0, -p.within, 0)) && !t.After(ref)
	}
	return false
}

func containsItem(v string, items []string, x string) bool {
	if items == nil {
		return v == x
	}
	for _, it := range items {
		if it == x {
			return true
		}
	}
	return false
}
