package mapping

import (
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shouwang/shouwang/internal/dict"
	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/internal/region"
	"github.com/shouwang/shouwang/schemas"
)

// Env is what compiled mappings look values up in.
type Env struct {
	// Dicts holds the code dictionaries (internal/dict; nil: dict.Default()).
	Dicts *dict.Set
	// Regions is the region-code table (nil: region.Default()).
	Regions *region.Table
	// Changes maps retired region codes to current ones (nil: none).
	Changes *region.Mapper
	// Now is the clock for region changes (nil: time.Now).
	Now func() time.Time
}

func (e *Env) defaults() error {
	var err error
	if e.Dicts == nil {
		if e.Dicts, err = dict.Default(); err != nil {
			return err
		}
	}
	if e.Regions == nil {
		if e.Regions, err = region.Default(); err != nil {
			return err
		}
	}
	if e.Changes == nil {
		if e.Changes, err = region.NewMapper(e.Regions, nil); err != nil {
			return err
		}
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	return nil
}

// Mapping is one compiled mapping file.
type Mapping struct {
	Name    string
	Version int
	// Inputs are the (source, table) pairs whose raw topics the mapping reads.
	Inputs [][2]string
	Entity schemas.EntityInfo
	File   string

	key       []string
	keyPrefix string
	keyHash   []string
	fields    []*field
	columns   []string // every column a field reads, for drift detection
	index     map[string]int
	keySlots  []int
	colSlots  []int // slots of columns
	layout    []int // the document's members in name order (see layoutOf)
	ref       []byte
}

// Ref is "name@version", the mapping as the header of its outputs names it; shared,
// the caller must not modify it.
func (m *Mapping) Ref() []byte { return m.ref }

// Index maps every source column Apply reads (mapped, derived-from and key columns)
// to its cell in the rows ApplyRows takes (schemas.Rows.Index). The caller must not
// modify it.
func (m *Mapping) Index() map[string]int { return m.index }

// field is one compiled target field.
type field struct {
	name     string // JSON name in the entity
	from     []string
	required bool
	conv     func(row []schemas.Cell) (any, string) // value, or a reason
}

// FieldError is why one field of one record could not be mapped.
type FieldError struct {
	Field  string // entity field
	Column string // source column(s)
	Reason string // what is wrong; ID numbers and phones in it are masked
}

func (e FieldError) String() string {
	s := "field " + e.Field
	if e.Column != "" {
		s += " (column " + e.Column + ")"
	}
	return s + ": " + e.Reason
}

// RecordError lists every field error of one record (all of them, not the first).
type RecordError struct {
	Mapping string
	Fields  []FieldError
	// Missing lists mapped columns absent from the record (schema drift).
	Missing []string
}

func (e *RecordError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, "schema drift: mapped column(s) "+strings.Join(e.Missing, ", ")+" missing from the source row (the source table changed: update the mapping "+e.Mapping+")")
	}
	for _, f := range e.Fields {
		parts = append(parts, f.String())
	}
	return "mapping " + e.Mapping + ": " + strings.Join(parts, "; ")
}

// ErrSchemaDrift is wrapped by a RecordError that has missing columns.
var ErrSchemaDrift = errors.New("schema drift")

func (e *RecordError) Is(target error) bool { return target == ErrSchemaDrift && len(e.Missing) > 0 }

// Compile checks a spec against its entity type and the dictionaries and builds it.
// Every problem is reported, each with file:line.
func Compile(s *Spec, env *Env) (*Mapping, error) {
	if err := env.defaults(); err != nil {
		return nil, err
	}
	var errs []string
	addf := func(at, format string, a ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, a...)) }
	file := s.file
	if s.Mapping == "" {
		addf(file, "mapping: required (a name such as national.person)")
	}
	if s.Version < 1 {
		addf(file, "version: required, a positive integer raised on every change")
	}
	var inputs [][2]string
	switch {
	case len(s.Inputs) > 0 && (s.Source != "" || s.Table != ""):
		addf(file, "inputs excludes source and table: use one form")
	case len(s.Inputs) > 0:
		for _, in := range s.Inputs {
			src, tbl, ok := strings.Cut(in, ".")
			if !ok || src == "" || tbl == "" {
				addf(file, "inputs: %q is not <source>.<table>", in)
				continue
			}
			inputs = append(inputs, [2]string{src, tbl})
		}
	case s.Source == "" || s.Table == "":
		addf(file, "source and table: required (the raw topic <prefix>.raw.<source>.<table> this file maps)")
	default:
		inputs = [][2]string{{s.Source, s.Table}}
	}
	var info schemas.EntityInfo
	for _, e := range schemas.Entities() {
		if e.Name == s.Entity {
			info = e
		}
	}
	if info.Name == "" {
		var names []string
		for _, e := range schemas.Entities() {
			names = append(names, e.Name)
		}
		addf(file, "entity: %q is not a canonical entity (one of %s)", s.Entity, strings.Join(names, ", "))
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	if len(s.Key) == 0 {
		addf(file, "key: required: the raw key column(s) the entity key is made of")
	}
	m := &Mapping{Name: s.Mapping, Version: s.Version, Inputs: inputs, Entity: info, File: file,
		key: s.Key, keyPrefix: s.KeyPrefix, keyHash: s.KeyHash}
	if len(s.KeyHash) > 0 && s.KeyPrefix != "" {
		addf(file, "key_hash excludes key_prefix")
	}
	targets := entityFields(reflect.TypeOf(info.New()).Elem())
	names := make([]string, 0, len(s.Fields))
	for n := range s.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	m.index = map[string]int{}
	slot := func(c string) int {
		i, ok := m.index[c]
		if !ok {
			i = len(m.index)
			m.index[c] = i
		}
		return i
	}
	for _, c := range s.Key {
		m.keySlots = append(m.keySlots, slot(c))
	}
	for _, n := range names {
		// Every from column gets a cell, the empty name too (a list or map field reads
		// a row's "" member; a single-column field ignores it, see compileField).
		for _, c := range s.Fields[n].From {
			slot(c)
		}
		if c := s.Fields[n].DeriveFrom; c != "" {
			slot(c)
		}
	}
	cols := map[string]bool{}
	for _, n := range names {
		fs := s.Fields[n]
		t, ok := targets[n]
		if !ok || n == "key" || n == "version" || n == "source" || n == "updated_ms" {
			addf(s.at(n), "%s has no such field (fields: %s)", s.Entity, strings.Join(sortedKeys(targets), ", "))
			continue
		}
		f, err := compileField(n, fs, t, env, m.index)
		if err != nil {
			addf(s.at(n), "%v", err)
			continue
		}
		m.fields = append(m.fields, f)
		for _, c := range append(append([]string{}, fs.From...), fs.DeriveFrom) {
			if c != "" && !cols[c] {
				cols[c] = true
				m.columns = append(m.columns, c)
			}
		}
	}
	sort.Strings(m.columns)
	m.layout = layoutOf(m.fields)
	m.ref = []byte(m.Name + "@" + strconv.Itoa(m.Version))
	for _, c := range m.columns {
		m.colSlots = append(m.colSlots, m.index[c])
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return m, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// entityFields maps JSON names to Go types, flattening embedded structs (Meta).
func entityFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			for k, v := range entityFields(f.Type) {
				out[k] = v
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = f.Type
		}
	}
	return out
}

var (
	typeString  = reflect.TypeOf("")
	typeInt     = reflect.TypeOf(0)
	typeInt64   = reflect.TypeOf(int64(0))
	typeDecimal = reflect.TypeOf(schemas.Decimal(""))
	typeBoolPtr = reflect.TypeOf((*bool)(nil))
	typeBool    = reflect.TypeOf(false)
	typeStrings = reflect.TypeOf([]string(nil))
	typeMap     = reflect.TypeOf(map[string]string(nil))
)

// defaultType is the conversion a target field gets when the mapping names none.
func defaultType(t reflect.Type) (string, bool) {
	switch t {
	case typeString:
		return TypeText, true
	case typeInt, typeInt64:
		return TypeInt, true
	case typeDecimal:
		return TypeDecimal, true
	case typeBoolPtr, typeBool:
		return TypeBool, true
	case typeStrings:
		return TypeList, true
	case typeMap:
		return TypeMap, true
	}
	return "", false
}

// compatible says which conversions can fill which Go types.
func compatible(typ string, t reflect.Type) bool {
	switch typ {
	case TypeText, TypeDate, TypeYM, TypeIDNumber, TypePhone, TypeRegion:
		return t == typeString
	case TypeInt:
		return t == typeInt || t == typeInt64
	case TypeDecimal:
		return t == typeDecimal
	case TypeBool:
		return t == typeBoolPtr || t == typeBool
	case TypeList:
		return t == typeStrings
	case TypeMap:
		return t == typeMap
	}
	return false
}

func compileField(name string, fs FieldSpec, t reflect.Type, env *Env, index map[string]int) (*field, error) {
	typ := fs.Type
	if typ == "" {
		if fs.Dict != "" && t == typeInt {
			typ = TypeInt
		} else if d, ok := defaultType(t); ok {
			typ = d
		} else {
			return nil, fmt.Errorf("type %s cannot be mapped", t)
		}
	}
	if !types[typ] {
		return nil, fmt.Errorf("type %q is not known (one of text, int, decimal, bool, date, ym, id_number, phone, region, list, map)", typ)
	}
	if !compatible(typ, t) && !(fs.Dict != "" && t == typeInt) {
		return nil, fmt.Errorf("type %s cannot fill this field (a Go %s)", typ, t)
	}
	switch fs.Invalid {
	case "", "dlq", "keep", "empty":
	default:
		return nil, fmt.Errorf("invalid: %q is not one of dlq, keep, empty", fs.Invalid)
	}
	if fs.Const == nil && len(fs.From) == 0 && fs.Derive == "" && fs.Default == nil {
		return nil, errors.New("needs from (a column), const, derive or default")
	}
	if fs.Const != nil && (len(fs.From) > 0 || fs.Derive != "") {
		return nil, errors.New("const excludes from and derive")
	}
	if len(fs.From) > 1 && typ != TypeList && typ != TypeMap {
		return nil, fmt.Errorf("from lists %d columns: only list and map fields take several", len(fs.From))
	}
	var scale *big.Rat
	if fs.Scale != "" {
		r, ok := new(big.Rat).SetString(fs.Scale)
		if !ok || typ != TypeDecimal {
			return nil, fmt.Errorf("scale %q: a number, for decimal fields only", fs.Scale)
		}
		scale = r
	}
	var d *dict.Dict
	if fs.Dict != "" {
		var err error
		if d, err = env.Dicts.Get(fs.Dict); err != nil {
			return nil, fmt.Errorf("dict %q: %v (dictionaries: %s)", fs.Dict, err, strings.Join(env.Dicts.Fields(), ", "))
		}
		switch fs.To {
		case "", "name", "code":
		default:
			return nil, fmt.Errorf("to: %q is not name or code", fs.To)
		}
	}
	var derive func(string) (string, bool)
	switch fs.Derive {
	case "":
	case "sex_from_id":
		derive = func(id string) (string, bool) {
			p, err := ident.ParseID(ident.Normalize(id))
			if err != nil {
				return "", false
			}
			if p.Male {
				return "男", true
			}
			return "女", true
		}
	case "birth_date_from_id":
		derive = func(id string) (string, bool) {
			p, err := ident.ParseID(ident.Normalize(id))
			if err != nil {
				return "", false
			}
			return p.Birth.Format("2006-01-02"), true
		}
	default:
		return nil, fmt.Errorf("derive: %q is not known (sex_from_id, birth_date_from_id)", fs.Derive)
	}
	if derive != nil && fs.DeriveFrom == "" {
		return nil, errors.New("derive needs derive_from (the ID-number column)")
	}
	if len(fs.Labels) > 0 {
		if typ != TypeList {
			return nil, errors.New("labels: for list fields only")
		}
		for _, c := range fs.From {
			if fs.Labels[c] == "" {
				return nil, fmt.Errorf("labels: column %s has no label", c)
			}
		}
	}
	if fs.Required && fs.Default != nil {
		return nil, errors.New("required and default exclude each other")
	}

	one := converter(typ, scale, env)
	if d != nil {
		toCode := fs.To == "code" || (fs.To == "" && t == typeInt)
		inner := one
		one = func(s string) (any, string) {
			e, ok := d.Normalize(s)
			if !ok {
				return nil, fmt.Sprintf("%q is not in dictionary %s (codes %s)", s, fs.Dict, strings.Join(d.Codes(), ", "))
			}
			v := e.Name
			if toCode {
				v = e.Code
			}
			return inner(v)
		}
	}
	invalid := fs.Invalid
	f := &field{name: name, from: fs.From, required: fs.Required}
	keepAs := func(s string) any { // the value passed on under invalid: keep
		switch typ {
		case TypeIDNumber, TypePhone:
			return ident.Normalize(s)
		case TypeText, TypeDate, TypeYM, TypeRegion:
			return s
		}
		return nil
	}
	var constVal any
	if fs.Const != nil {
		v, why := one(*fs.Const)
		if why != "" {
			return nil, fmt.Errorf("const %q: %s", *fs.Const, why)
		}
		constVal = v
	}
	var defVal any
	if fs.Default != nil {
		v, why := one(*fs.Default)
		if why != "" {
			return nil, fmt.Errorf("default %q: %s", *fs.Default, why)
		}
		defVal = v
	}
	switch {
	case fs.Const != nil:
		f.conv = func([]schemas.Cell) (any, string) { return constVal, "" }
	case typ == TypeList:
		slots := slotsOf(index, fs.From)
		f.conv = func(row []schemas.Cell) (any, string) {
			var out []any // []any and map[string]any: what the envelope encoder writes
			for j, c := range fs.From {
				s := row[slots[j]].Text(text)
				if s == "" {
					continue
				}
				if l, ok := fs.Labels[c]; ok {
					s = l
				}
				v, why := one(s)
				if why != "" {
					if invalid == "keep" {
						out = append(out, s)
						continue
					}
					if invalid == "empty" {
						continue
					}
					return nil, why
				}
				out = append(out, v)
			}
			if len(out) == 0 {
				return defVal, ""
			}
			return out, ""
		}
	case typ == TypeMap:
		slots := slotsOf(index, fs.From)
		f.conv = func(row []schemas.Cell) (any, string) {
			out := make(map[string]any, len(fs.From))
			for j, c := range fs.From {
				if s := row[slots[j]].Text(text); s != "" {
					out[c] = s
				}
			}
			if len(out) == 0 {
				return defVal, ""
			}
			return out, ""
		}
	default:
		col, deriveCol := -1, -1
		if len(fs.From) == 1 && fs.From[0] != "" {
			col = index[fs.From[0]]
		}
		if fs.DeriveFrom != "" {
			deriveCol = index[fs.DeriveFrom]
		}
		f.conv = func(row []schemas.Cell) (any, string) {
			s := ""
			if col >= 0 {
				s = row[col].Text(text)
			}
			if s == "" && derive != nil {
				if v, ok := derive(row[deriveCol].Text(text)); ok {
					s = v
				}
			}
			if s == "" {
				return defVal, ""
			}
			v, why := one(s)
			if why == "" {
				return v, ""
			}
			switch invalid {
			case "keep":
				if k := keepAs(s); k != nil {
					return k, ""
				}
			case "empty":
				return nil, ""
			}
			return nil, why
		}
	}
	return f, nil
}

// slotsOf is the cells of columns.
func slotsOf(index map[string]int, columns []string) []int {
	out := make([]int, len(columns))
	for i, c := range columns {
		out[i] = index[c]
	}
	return out
}

// converter returns the conversion of one non-empty text value.
func converter(typ string, scale *big.Rat, env *Env) func(string) (any, string) {
	switch typ {
	case TypeText, TypeList, TypeMap:
		return func(s string) (any, string) { return s, "" }
	case TypeInt:
		return func(s string) (any, string) {
			n, err := parseInt(s)
			if err != nil {
				return nil, fmt.Sprintf("%q is not a whole number", s)
			}
			return n, ""
		}
	case TypeDecimal:
		return func(s string) (any, string) {
			d, err := parseDecimal(s, scale)
			if err != nil {
				return nil, fmt.Sprintf("%q is not a decimal amount", s)
			}
			return d, ""
		}
	case TypeBool:
		return func(s string) (any, string) {
			b, err := parseBool(s)
			if err != nil {
				return nil, fmt.Sprintf("%q is not a yes/no value (是/否)", s)
			}
			return b, ""
		}
	case TypeDate:
		return func(s string) (any, string) {
			d, err := parseDate(s)
			if err != nil {
				return nil, fmt.Sprintf("%q is not a date (YYYY-MM-DD, YYYY/M/D, YYYYMMDD, 2024年5月9日 or an Excel serial)", s)
			}
			return d, ""
		}
	case TypeYM:
		return func(s string) (any, string) {
			d, err := parseYM(s)
			if err != nil {
				return nil, fmt.Sprintf("%q is not a year and month (YYYYMM, YYYY-MM, 2024年5月)", s)
			}
			return d, ""
		}
	case TypeIDNumber:
		return func(s string) (any, string) {
			id, err := ident.ParseID(ident.Normalize(s))
			if err != nil {
				return nil, "invalid ID number " + ident.MaskID(s) + ": " + err.Error()
			}
			return id.Number, ""
		}
	case TypePhone:
		return func(s string) (any, string) {
			p := ident.Normalize(s)
			p = strings.TrimPrefix(strings.TrimPrefix(p, "+86"), "86-")
			p = strings.ReplaceAll(p, "-", "")
			if err := ident.ValidMobile(p); err != nil {
				return nil, "invalid phone " + ident.MaskPhone(s) + ": " + err.Error()
			}
			return p, ""
		}
	case TypeRegion:
		return func(s string) (any, string) {
			code, ok := env.Changes.Map(s, env.Now())
			if !ok {
				return nil, fmt.Sprintf("region code %q is not in the region table %s", s, env.Regions.Name())
			}
			if _, known := env.Regions.Get(code); !known {
				return nil, fmt.Sprintf("region code %q maps to %q, which is not in the region table %s", s, code, env.Regions.Name())
			}
			return code, ""
		}
	}
	return nil
}
