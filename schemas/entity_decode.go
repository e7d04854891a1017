package schemas

import (
	"fmt"
	"strconv"
)

// This file decodes canonical entity documents straight into their Go types, without
// reflection and without the map[string]any that UnmarshalEnvelope builds: a rule or a
// sink reading a canonical topic wants a *Person, not a map it must convert. It shares
// envelope_decode.go's scanner and follows encoding/json decoding into the struct
// (json.Unmarshal, or json.Decoder with UseNumber, which changes nothing for these
// types) exactly, field by field:
//
//   - field names match exactly, else case-insensitively with encoding/json's folding
//     (the first field in struct order wins a folded tie); unknown fields are skipped
//     but still checked, as json.Unmarshal without DisallowUnknownFields does (every
//     schema allows additional properties, so a newer producer's fields are ignored);
//   - null leaves a string, Decimal, int, bool or struct field unchanged and sets a
//     *bool, slice or map field to nil; a repeated struct, map or slice field is
//     decoded into the existing value (maps merged, slices reused as reflect does);
//   - a map[string]string value of null stores "" under its key;
//   - int fields take only literals strconv.ParseInt accepts.
//
// FuzzEntityEnvelope checks this against encoding/json for every entity type.

// CanonicalEntity is the set of canonical entity types (see Entities).
type CanonicalEntity interface {
	Household | Person | MonitoringEpisode | AssistanceMeasure | DepartmentFact |
		Warning | QualityIssue | Discrepancy
}

// EntityEnvelope is an Envelope of a canonical topic whose Before and After are
// decoded into the entity type T. Its JSON form is the Envelope's.
type EntityEnvelope[T CanonicalEntity] struct {
	V      int            `json:"v"`
	Op     Op             `json:"op"`
	Source Source         `json:"source"`
	Key    map[string]any `json:"key,omitempty"`
	// Before and After are nil when the envelope has no such member (or it is null).
	Before *T        `json:"before,omitempty"`
	After  *T        `json:"after,omitempty"`
	Schema SchemaRef `json:"schema"`
	DDL    string    `json:"ddl,omitempty"`
	TsMs   int64     `json:"ts_ms"`
}

// Validate checks what Envelope.Validate checks, with an entity image present
// (non-nil) where Envelope.Validate wants a non-empty map.
func (e *EntityEnvelope[T]) Validate() error {
	if e.V < 1 || e.V > EnvelopeVersion {
		return fmt.Errorf("envelope: unsupported version %d (this build reads 1..%d)", e.V, EnvelopeVersion)
	}
	if !e.Op.Valid() {
		return fmt.Errorf("envelope: field op: unknown operation %q (want c, u, d, r, t or s)", e.Op)
	}
	if e.Source.System == "" || e.Source.Table == "" {
		return fmt.Errorf("envelope: field source: system and table are required")
	}
	switch e.Op {
	case OpCreate, OpRead, OpUpdate:
		if e.After == nil {
			return fmt.Errorf("envelope: op %q needs field after", e.Op)
		}
	case OpDelete:
		if e.Before == nil && len(e.Key) == 0 {
			return fmt.Errorf("envelope: op d needs field before or key")
		}
	}
	return nil
}

// UnmarshalEntityEnvelope decodes and validates one envelope of a canonical topic,
// with Before and After decoded into T. It decodes as encoding/json decoding into an
// EntityEnvelope[T] would (Key keeps json.Number values), and refuses bytes after the
// envelope other than whitespace, like UnmarshalEnvelope. Errors start with
// "envelope: decode: " and name the field ("after.household_no") and byte offset (a
// *DecodeError), or are Validate's. The schema name is not checked against T.
func UnmarshalEntityEnvelope[T CanonicalEntity](b []byte) (*EntityEnvelope[T], error) {
	var e EntityEnvelope[T]
	if err := decodeEntityEnvelope(b, &e); err != nil {
		return nil, fmt.Errorf("envelope: decode: %w", err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// DecodeEntity decodes one entity document into v as json.Unmarshal(b, v) would: v
// is filled, not reset; a top-level null leaves it unchanged; any other non-object
// is an error; trailing non-whitespace is an error. Errors are *DecodeError naming
// the field.
func DecodeEntity[T CanonicalEntity](b []byte, v *T) error {
	d := getDecoder(b)
	defer putDecoder(d)
	d.skipSpace()
	if d.off >= len(d.data) {
		return d.eof()
	}
	var err error
	switch d.data[d.off] {
	case '{':
		err = entityCodecOf[T]().object(d, v, 1)
	case 'n':
		err = d.null()
	default:
		err = d.mismatch("", "an object")
	}
	if err != nil {
		return err
	}
	return d.end()
}

// decodeEntityEnvelope decodes b into e; see decodeEnvelope.
func decodeEntityEnvelope[T CanonicalEntity](b []byte, e *EntityEnvelope[T]) error {
	d := getDecoder(b)
	defer putDecoder(d)
	d.skipSpace()
	if d.off >= len(d.data) {
		return d.eof()
	}
	var err error
	switch d.data[d.off] {
	case '{':
		err = entityEnvelopeMembers(d, e, entityCodecOf[T]())
	case 'n':
		err = d.null()
	default:
		err = d.mismatch("", "an object")
	}
	if err != nil {
		return err
	}
	return d.end()
}

// entityEnvelopeMembers is decoder.envelope with typed images; the cases follow
// envelopeFields.
func entityEnvelopeMembers[T CanonicalEntity](d *decoder, e *EntityEnvelope[T], c *entityCodec[T]) error {
	return d.fields(1, func(key []byte) error {
		switch d.field(key, envelopeFields, envelopeFolded) {
		case 0:
			return d.intField(&e.V, "v")
		case 1:
			return d.opField(&e.Op)
		case 2:
			return d.structField("source", "an object (source)", func() error { return d.source(&e.Source) })
		case 3:
			return d.mapField(&e.Key, "key", &d.key)
		case 4:
			return prefixField(c.ptr(d, &e.Before, 1), "before")
		case 5:
			return prefixField(c.ptr(d, &e.After, 1), "after")
		case 6:
			return d.structField("schema", "an object (schema)", func() error { return d.schemaRef(&e.Schema) })
		case 7:
			return d.stringField(&e.DDL, "ddl", false)
		case 8:
			return d.int64Field(&e.TsMs, "ts_ms")
		}
		return d.skip(1)
	})
}

// prefixField puts the envelope member in front of the field an entity error names.
func prefixField(err error, member string) error {
	if de, ok := err.(*DecodeError); ok {
		if de.Field == "" {
			de.Field = member
		} else {
			de.Field = member + "." + de.Field
		}
	}
	return err
}

// entityField decodes the value at d.off into one field of *T; depth is the nesting
// around the value. Errors need not name the field (the caller adds it).
type entityField[T any] struct {
	name string
	dec  func(d *decoder, v *T, depth int) error
	// enc appends the field's value as encoding/json writes it; empty says whether
	// omitempty leaves it out (see entity_encode.go).
	enc   func(b []byte, v *T) []byte
	empty func(v *T) bool
}

// entityCodec is the field table of one entity type.
type entityCodec[T any] struct {
	fields []entityField[T]
	// names[i] is `"name":` of fields[i], omit[i] its omitempty (from T's json tags).
	names  [][]byte
	omit   []bool
	exact  map[string]int
	folded map[string]int // first field in order wins, as in encoding/json
}

func newEntityCodec[T any](meta func(*T) *Meta, fields ...entityField[T]) *entityCodec[T] {
	all := append([]entityField[T]{
		fStr("key", func(v *T) *string { return &meta(v).Key }),
		fInt64("version", func(v *T) *int64 { return &meta(v).Version }),
		{"source", func(d *decoder, v *T, depth int) error { return d.sourceRefField(&meta(v).Source, depth) },
			func(b []byte, v *T) []byte { return appendSourceRef(b, &meta(v).Source) }, func(*T) bool { return false }},
		fInt64("updated_ms", func(v *T) *int64 { return &meta(v).UpdatedMs }),
	}, fields...)
	c := &entityCodec[T]{fields: all, exact: map[string]int{}, folded: map[string]int{}}
	c.encoding()
	for i, f := range all {
		if _, dup := c.exact[f.name]; dup {
			panic("schemas: duplicate entity field " + f.name)
		}
		c.exact[f.name] = i
		k := string(appendFolded(nil, []byte(f.name)))
		if _, ok := c.folded[k]; !ok {
			c.folded[k] = i
		}
	}
	return c
}

// lookup finds key's field: first the one after the previous field (encoders write
// fields in struct order), then by exact name, then case-insensitively; -1 if unknown.
func (c *entityCodec[T]) lookup(d *decoder, key []byte, next int) int {
	if next < len(c.fields) && c.fields[next].name == string(key) {
		return next
	}
	if i, ok := c.exact[string(key)]; ok {
		return i
	}
	d.fold = appendFolded(d.fold[:0], key)
	if i, ok := c.folded[string(d.fold)]; ok {
		return i
	}
	return -1
}

// object decodes the members of the object at d.off ('{', opening nesting level
// depth) into v.
func (c *entityCodec[T]) object(d *decoder, v *T, depth int) error {
	next := 0
	return d.fields(depth, func(key []byte) error {
		i := c.lookup(d, key, next)
		if i < 0 {
			return d.skip(depth)
		}
		next = i + 1
		return inField(c.fields[i].dec(d, v, depth), c.fields[i].name)
	})
}

// ptr decodes an entity image into *dst (allocated if nil, else filled, as
// encoding/json does); null sets it to nil. depth encloses the value.
func (c *entityCodec[T]) ptr(d *decoder, dst **T, depth int) error {
	switch d.data[d.off] {
	case '{':
		if *dst == nil {
			*dst = new(T)
		}
		return c.object(d, *dst, depth+1)
	case 'n':
		if err := d.null(); err != nil {
			return err
		}
		*dst = nil
		return nil
	}
	return d.mismatch("", "an object")
}

// Field constructors by Go type.

func fStr[T any](name string, p func(*T) *string) entityField[T] {
	return entityField[T]{name,
		func(d *decoder, v *T, _ int) error { return d.stringField(p(v), "", false) },
		func(b []byte, v *T) []byte { return AppendJSONString(b, *p(v)) },
		func(v *T) bool { return *p(v) == "" }}
}

// fName is fStr for values drawn from a small set (codes, states, departments),
// which the decoder interns.
func fName[T any](name string, p func(*T) *string) entityField[T] {
	return entityField[T]{name,
		func(d *decoder, v *T, _ int) error { return d.stringField(p(v), "", true) },
		func(b []byte, v *T) []byte { return AppendJSONString(b, *p(v)) },
		func(v *T) bool { return *p(v) == "" }}
}

func fDec[T any](name string, p func(*T) *Decimal) entityField[T] {
	return entityField[T]{name,
		func(d *decoder, v *T, _ int) error {
			return d.stringField((*string)(p(v)), "", false)
		},
		func(b []byte, v *T) []byte { return AppendJSONString(b, string(*p(v))) },
		func(v *T) bool { return *p(v) == "" }}
}

func fInt[T any](name string, p func(*T) *int) entityField[T] {
	return entityField[T]{name,
		func(d *decoder, v *T, _ int) error { return d.intField(p(v), "") },
		func(b []byte, v *T) []byte { return strconv.AppendInt(b, int64(*p(v)), 10) },
		func(v *T) bool { return *p(v) == 0 }}
}

func fInt64[T any](name string, p func(*T) *int64) entityField[T] {
	return entityField[T]{name,
		func(d *decoder, v *T, _ int) error { return d.int64Field(p(v), "") },
		func(b []byte, v *T) []byte { return strconv.AppendInt(b, *p(v), 10) },
		func(v *T) bool { return *p(v) == 0 }}
}

func fBool[T any](name string, p func(*T) *bool) entityField[T] {
	return entityField[T]{name,
		func(d *decoder, v *T, _ int) error { return d.boolField(p(v), "") },
		func(b []byte, v *T) []byte { return strconv.AppendBool(b, *p(v)) },
		func(v *T) bool { return !*p(v) }}
}

func fOptBool[T any](name string, p func(*T) **bool) entityField[T] {
	return entityField[T]{name,
		func(d *decoder, v *T, _ int) error { return d.optBoolField(p(v)) },
		func(b []byte, v *T) []byte { return appendOptBool(b, *p(v)) },
		func(v *T) bool { return *p(v) == nil }}
}

func fStrs[T any](name string, p func(*T) *[]string) entityField[T] {
	return entityField[T]{name,
		func(d *decoder, v *T, depth int) error { return d.stringsField(p(v), depth) },
		func(b []byte, v *T) []byte { return AppendJSONStrings(b, *p(v)) },
		func(v *T) bool { return len(*p(v)) == 0 }}
}

func fStrMap[T any](name string, p func(*T) *map[string]string) entityField[T] {
	return entityField[T]{name,
		func(d *decoder, v *T, depth int) error { return d.stringMapField(p(v), depth) },
		func(b []byte, v *T) []byte { return appendStringMap(b, *p(v)) },
		func(v *T) bool { return len(*p(v)) == 0 }}
}

// optBoolField decodes a *bool: true or false is stored (into the existing bool if
// there is one, as encoding/json does), null sets the pointer to nil.
func (d *decoder) optBoolField(dst **bool) error {
	switch d.data[d.off] {
	case 't', 'f':
		b, err := d.boolean()
		if err != nil {
			return err
		}
		if *dst == nil {
			*dst = new(bool)
		}
		**dst = b
		return nil
	case 'n':
		if err := d.null(); err != nil {
			return err
		}
		*dst = nil
		return nil
	}
	return d.mismatch("", "a bool")
}

// stringsField decodes a []string as reflect-based encoding/json does: the existing
// slice is reused (elements beyond its length but within its capacity are
// uncovered, not zeroed, and a null element leaves the element there unchanged), an
// empty array gives an empty non-nil slice, and null sets the slice to nil. depth
// encloses the array.
func (d *decoder) stringsField(dst *[]string, depth int) error {
	switch d.data[d.off] {
	case '[':
	case 'n':
		if err := d.null(); err != nil {
			return err
		}
		*dst = nil
		return nil
	default:
		return d.mismatch("", "an array of strings")
	}
	if depth+1 > maxDecodeDepth {
		return d.tooDeep()
	}
	d.off++ // '['
	d.skipSpace()
	s := *dst
	i := 0
	if d.off < len(d.data) && d.data[d.off] == ']' {
		d.off++
	} else {
		for {
			if d.off >= len(d.data) {
				return d.eof()
			}
			if i >= cap(s) {
				s = append(s[:cap(s)], "")[:len(s)] // grow, as reflect.Value.Grow
			}
			if i >= len(s) {
				s = s[:i+1]
			}
			switch d.data[d.off] {
			case '"':
				b, err := d.str()
				if err != nil {
					return err
				}
				s[i] = string(b)
			case 'n':
				if err := d.null(); err != nil {
					return err
				}
			default:
				return d.mismatch("", "a string (array element)")
			}
			i++
			*dst = s
			d.skipSpace()
			if d.off >= len(d.data) {
				return d.eof()
			}
			if d.data[d.off] == ',' {
				d.off++
				d.skipSpace()
				continue
			}
			if d.data[d.off] == ']' {
				d.off++
				break
			}
			return d.syntax("after array element")
		}
	}
	if i < len(s) {
		s = s[:i]
	}
	if i == 0 {
		s = []string{}
	}
	*dst = s
	return nil
}

// stringMapField decodes a map[string]string, merged into the existing map; a null
// value stores "" (encoding/json decodes into a zeroed element), null as the whole
// value sets the map to nil. depth encloses the object.
func (d *decoder) stringMapField(dst *map[string]string, depth int) error {
	switch d.data[d.off] {
	case '{':
	case 'n':
		if err := d.null(); err != nil {
			return err
		}
		*dst = nil
		return nil
	default:
		return d.mismatch("", "an object of strings")
	}
	if *dst == nil {
		*dst = map[string]string{}
	}
	m := *dst
	return d.fields(depth+1, func(key []byte) error {
		k := d.intern(key)
		switch d.data[d.off] {
		case '"':
			b, err := d.str()
			if err != nil {
				return err
			}
			m[k] = string(b)
			return nil
		case 'n':
			if err := d.null(); err != nil {
				return err
			}
			m[k] = ""
			return nil
		}
		return d.mismatch("", "a string (object member)")
	})
}

// SourceRef field names as their json tags spell them, and case-folded.
var (
	sourceRefFields = []string{"system", "table", "position"}
	sourceRefFolded = foldAll(sourceRefFields)
)

// sourceRefField decodes a SourceRef into the existing struct; null leaves it
// unchanged. depth encloses the object.
func (d *decoder) sourceRefField(s *SourceRef, depth int) error {
	switch d.data[d.off] {
	case '{':
	case 'n':
		return d.null()
	default:
		return d.mismatch("", "an object (source)")
	}
	return d.fields(depth+1, func(key []byte) error {
		switch d.field(key, sourceRefFields, sourceRefFolded) {
		case 0:
			return inField(d.stringField(&s.System, "", true), "source.system")
		case 1:
			return inField(d.stringField(&s.Table, "", true), "source.table")
		case 2:
			return inField(d.stringField(&s.Position, "", false), "source.position")
		}
		return d.skip(depth + 1)
	})
}

// entityCodecOf returns the field table of T.
func entityCodecOf[T CanonicalEntity]() *entityCodec[T] {
	var c any
	switch any((*T)(nil)).(type) {
	case *Household:
		c = householdCodec
	case *Person:
		c = personCodec
	case *MonitoringEpisode:
		c = episodeCodec
	case *AssistanceMeasure:
		c = measureCodec
	case *DepartmentFact:
		c = departmentFactCodec
	case *Warning:
		c = warningCodec
	case *QualityIssue:
		c = qualityIssueCodec
	case *Discrepancy:
		c = discrepancyCodec
	}
	return c.(*entityCodec[T])
}

// The field tables, in struct order (TestEntityCodecsMatchTypes compares them with
// the types' json tags and kinds).

var householdCodec = newEntityCodec(func(v *Household) *Meta { return &v.Meta },
	fStr("household_no", func(v *Household) *string { return &v.HouseholdNo }),
	fName("region_code", func(v *Household) *string { return &v.RegionCode }),
	fName("village_code", func(v *Household) *string { return &v.VillageCode }),
	fName("county_name", func(v *Household) *string { return &v.CountyName }),
	fName("township_name", func(v *Household) *string { return &v.TownshipName }),
	fName("village_name", func(v *Household) *string { return &v.VillageName }),
	fName("natural_village", func(v *Household) *string { return &v.NaturalVillage }),
	fName("household_type", func(v *Household) *string { return &v.HouseholdType }),
	fInt("monitoring_category", func(v *Household) *int { return &v.MonitoringCategory }),
	fOptBool("no_labour_supported", func(v *Household) **bool { return &v.NoLabourSupported }),
	fStr("head_name", func(v *Household) *string { return &v.HeadName }),
	fStr("head_id_no", func(v *Household) *string { return &v.HeadIDNo }),
	fInt("member_count", func(v *Household) *int { return &v.MemberCount }),
	fStr("phone", func(v *Household) *string { return &v.Phone }),
	fStrs("risks", func(v *Household) *[]string { return &v.Risks }),
	fName("disaster_sub_item", func(v *Household) *string { return &v.DisasterSubItem }),
	fStr("risk_remark", func(v *Household) *string { return &v.RiskRemark }),
	fName("identified_ym", func(v *Household) *string { return &v.IdentifiedYM }),
	fOptBool("risk_eliminated", func(v *Household) **bool { return &v.RiskEliminated }),
	fName("elimination_method", func(v *Household) *string { return &v.EliminationMethod }),
	fName("eliminated_ym", func(v *Household) *string { return &v.EliminatedYM }),
	fDec("annual_income", func(v *Household) *Decimal { return &v.AnnualIncome }),
	fDec("per_capita_net_income", func(v *Household) *Decimal { return &v.PerCapitaNetIncome }),
	fDec("wage_income", func(v *Household) *Decimal { return &v.WageIncome }),
	fDec("business_income", func(v *Household) *Decimal { return &v.BusinessIncome }),
	fDec("property_income", func(v *Household) *Decimal { return &v.PropertyIncome }),
	fDec("transfer_income", func(v *Household) *Decimal { return &v.TransferIncome }),
	fDec("business_expense", func(v *Household) *Decimal { return &v.BusinessExpense }),
	fDec("compliant_out_of_pocket", func(v *Household) *Decimal { return &v.CompliantOutOfPocket }),
	fDec("dibao_amount", func(v *Household) *Decimal { return &v.DibaoAmount }),
	fDec("tekun_amount", func(v *Household) *Decimal { return &v.TekunAmount }),
	fOptBool("child_out_of_school", func(v *Household) **bool { return &v.ChildOutOfSchool }),
	fOptBool("member_uninsured", func(v *Household) **bool { return &v.MemberUninsured }),
	fOptBool("dangerous_house", func(v *Household) **bool { return &v.DangerousHouse }),
	fOptBool("safe_drinking_water", func(v *Household) **bool { return &v.SafeDrinkingWater }),
	fDec("housing_area_m2", func(v *Household) *Decimal { return &v.HousingAreaM2 }),
	fOptBool("has_electricity", func(v *Household) **bool { return &v.HasElectricity }),
	fOptBool("road_hardened", func(v *Household) **bool { return &v.RoadHardened }),
	fDec("distance_to_main_road_km", func(v *Household) *Decimal { return &v.DistanceToMainRoadKm }),
	fDec("farmland_mu", func(v *Household) *Decimal { return &v.FarmlandMu }),
	fDec("forest_land_mu", func(v *Household) *Decimal { return &v.ForestLandMu }),
	fDec("returned_farmland_mu", func(v *Household) *Decimal { return &v.ReturnedFarmlandMu }),
	fDec("orchard_mu", func(v *Household) *Decimal { return &v.OrchardMu }),
	fDec("grassland_mu", func(v *Household) *Decimal { return &v.GrasslandMu }),
	fDec("water_surface_mu", func(v *Household) *Decimal { return &v.WaterSurfaceMu }),
	fStrs("measures", func(v *Household) *[]string { return &v.Measures }),
	fName("development_measure_status", func(v *Household) *string { return &v.DevelopmentMeasureStatus }),
	fStr("monitoring_contact", func(v *Household) *string { return &v.MonitoringContact }),
	fStr("monitoring_contact_phone", func(v *Household) *string { return &v.MonitoringContactPhone }),
	fStr("collector", func(v *Household) *string { return &v.Collector }),
	fOptBool("relocated", func(v *Household) **bool { return &v.Relocated }),
	fStr("resettlement_site", func(v *Household) *string { return &v.ResettlementSite }),
	fName("resettlement_mode", func(v *Household) *string { return &v.ResettlementMode }),
)

var personCodec = newEntityCodec(func(v *Person) *Meta { return &v.Meta },
	fStr("person_no", func(v *Person) *string { return &v.PersonNo }),
	fStr("household_no", func(v *Person) *string { return &v.HouseholdNo }),
	fName("region_code", func(v *Person) *string { return &v.RegionCode }),
	fName("id_type", func(v *Person) *string { return &v.IDType }),
	fStr("id_no", func(v *Person) *string { return &v.IDNo }),
	fStr("name", func(v *Person) *string { return &v.Name }),
	fName("sex", func(v *Person) *string { return &v.Sex }),
	fStr("birth_date", func(v *Person) *string { return &v.BirthDate }),
	fName("ethnicity", func(v *Person) *string { return &v.Ethnicity }),
	fName("relation_to_head", func(v *Person) *string { return &v.RelationToHead }),
	fName("education", func(v *Person) *string { return &v.Education }),
	fName("school_status", func(v *Person) *string { return &v.SchoolStatus }),
	fName("not_in_school_reason", func(v *Person) *string { return &v.NotInSchoolReason }),
	fName("dropout_reason", func(v *Person) *string { return &v.DropoutReason }),
	fName("health", func(v *Person) *string { return &v.Health }),
	fName("disability_type", func(v *Person) *string { return &v.DisabilityType }),
	fName("disability_grade", func(v *Person) *string { return &v.DisabilityGrade }),
	fStr("disability_cert_no", func(v *Person) *string { return &v.DisabilityCertNo }),
	fName("labour_skill", func(v *Person) *string { return &v.LabourSkill }),
	fName("work_status", func(v *Person) *string { return &v.WorkStatus }),
	fStr("work_place", func(v *Person) *string { return &v.WorkPlace }),
	fInt("work_months", func(v *Person) *int { return &v.WorkMonths }),
	fDec("work_monthly_income", func(v *Person) *Decimal { return &v.WorkMonthlyIncome }),
	fName("employment_channel", func(v *Person) *string { return &v.EmploymentChannel }),
	fOptBool("public_welfare_job", func(v *Person) **bool { return &v.PublicWelfareJob }),
	fInt("public_welfare_job_months", func(v *Person) *int { return &v.PublicWelfareJobMonths }),
	fOptBool("resident_medical_insurance", func(v *Person) **bool { return &v.ResidentMedicalInsurance }),
	fOptBool("employee_medical_insurance", func(v *Person) **bool { return &v.EmployeeMedicalInsurance }),
	fOptBool("serious_illness_insurance", func(v *Person) **bool { return &v.SeriousIllnessInsurance }),
	fOptBool("resident_pension", func(v *Person) **bool { return &v.ResidentPension }),
	fOptBool("employee_pension", func(v *Person) **bool { return &v.EmployeePension }),
	fOptBool("medical_assistance", func(v *Person) **bool { return &v.MedicalAssistance }),
	fName("dibao_status", func(v *Person) *string { return &v.DibaoStatus }),
	fName("tekun_status", func(v *Person) *string { return &v.TekunStatus }),
	fStr("phone", func(v *Person) *string { return &v.Phone }),
	fOptBool("deceased", func(v *Person) **bool { return &v.Deceased }),
	fStr("cancelled_date", func(v *Person) *string { return &v.CancelledDate }),
)

var episodeCodec = newEntityCodec(func(v *MonitoringEpisode) *Meta { return &v.Meta },
	fStr("household_no", func(v *MonitoringEpisode) *string { return &v.HouseholdNo }),
	fName("region_code", func(v *MonitoringEpisode) *string { return &v.RegionCode }),
	fName("identified_ym", func(v *MonitoringEpisode) *string { return &v.IdentifiedYM }),
	fInt("category", func(v *MonitoringEpisode) *int { return &v.Category }),
	fName("channel", func(v *MonitoringEpisode) *string { return &v.Channel }),
	fStrs("risks", func(v *MonitoringEpisode) *[]string { return &v.Risks }),
	fName("disaster_sub_item", func(v *MonitoringEpisode) *string { return &v.DisasterSubItem }),
	fBool("eliminated", func(v *MonitoringEpisode) *bool { return &v.Eliminated }),
	fName("elimination_method", func(v *MonitoringEpisode) *string { return &v.EliminationMethod }),
	fName("eliminated_ym", func(v *MonitoringEpisode) *string { return &v.EliminatedYM }),
	fName("status", func(v *MonitoringEpisode) *string { return &v.Status }),
)

var measureCodec = newEntityCodec(func(v *AssistanceMeasure) *Meta { return &v.Meta },
	fStr("household_no", func(v *AssistanceMeasure) *string { return &v.HouseholdNo }),
	fStr("person_no", func(v *AssistanceMeasure) *string { return &v.PersonNo }),
	fName("region_code", func(v *AssistanceMeasure) *string { return &v.RegionCode }),
	fName("category", func(v *AssistanceMeasure) *string { return &v.Category }),
	fName("item", func(v *AssistanceMeasure) *string { return &v.Item }),
	fBool("development", func(v *AssistanceMeasure) *bool { return &v.Development }),
	fName("implementation_status", func(v *AssistanceMeasure) *string { return &v.ImplementationStatus }),
	fName("start_ym", func(v *AssistanceMeasure) *string { return &v.StartYM }),
	fName("end_ym", func(v *AssistanceMeasure) *string { return &v.EndYM }),
	fDec("amount", func(v *AssistanceMeasure) *Decimal { return &v.Amount }),
	fStr("note", func(v *AssistanceMeasure) *string { return &v.Note }),
)

var departmentFactCodec = newEntityCodec(func(v *DepartmentFact) *Meta { return &v.Meta },
	fName("department", func(v *DepartmentFact) *string { return &v.Department }),
	fName("dataset", func(v *DepartmentFact) *string { return &v.Dataset }),
	fName("fact_type", func(v *DepartmentFact) *string { return &v.FactType }),
	fStr("id_no", func(v *DepartmentFact) *string { return &v.IDNo }),
	fStr("household_no", func(v *DepartmentFact) *string { return &v.HouseholdNo }),
	fName("region_code", func(v *DepartmentFact) *string { return &v.RegionCode }),
	fName("period", func(v *DepartmentFact) *string { return &v.Period }),
	fName("occurred_on", func(v *DepartmentFact) *string { return &v.OccurredOn }),
	fDec("amount", func(v *DepartmentFact) *Decimal { return &v.Amount }),
	fStrMap("values", func(v *DepartmentFact) *map[string]string { return &v.Values }),
)

var warningCodec = newEntityCodec(func(v *Warning) *Meta { return &v.Meta },
	fStr("id", func(v *Warning) *string { return &v.ID }),
	fName("rule_id", func(v *Warning) *string { return &v.RuleID }),
	fName("department", func(v *Warning) *string { return &v.Department }),
	fName("subject_kind", func(v *Warning) *string { return &v.SubjectKind }),
	fStr("subject_key", func(v *Warning) *string { return &v.SubjectKey }),
	fStr("household_no", func(v *Warning) *string { return &v.HouseholdNo }),
	fName("region_code", func(v *Warning) *string { return &v.RegionCode }),
	fName("period", func(v *Warning) *string { return &v.Period }),
	fStr("raised_at", func(v *Warning) *string { return &v.RaisedAt }),
	fInt("due_days", func(v *Warning) *int { return &v.DueDays }),
	fStr("due_at", func(v *Warning) *string { return &v.DueAt }),
	fName("status", func(v *Warning) *string { return &v.Status }),
	fStr("resolution", func(v *Warning) *string { return &v.Resolution }),
	fStrMap("evidence", func(v *Warning) *map[string]string { return &v.Evidence }),
	fStrs("fact_keys", func(v *Warning) *[]string { return &v.FactKeys }),
)

var qualityIssueCodec = newEntityCodec(func(v *QualityIssue) *Meta { return &v.Meta },
	fStr("id", func(v *QualityIssue) *string { return &v.ID }),
	fName("rule_id", func(v *QualityIssue) *string { return &v.RuleID }),
	fName("subject_kind", func(v *QualityIssue) *string { return &v.SubjectKind }),
	fStr("subject_key", func(v *QualityIssue) *string { return &v.SubjectKey }),
	fName("region_code", func(v *QualityIssue) *string { return &v.RegionCode }),
	fName("severity", func(v *QualityIssue) *string { return &v.Severity }),
	fName("status", func(v *QualityIssue) *string { return &v.Status }),
	fStr("detail", func(v *QualityIssue) *string { return &v.Detail }),
	fStr("first_seen", func(v *QualityIssue) *string { return &v.FirstSeen }),
	fStr("last_seen", func(v *QualityIssue) *string { return &v.LastSeen }),
	fStr("closed_at", func(v *QualityIssue) *string { return &v.ClosedAt }),
)

var discrepancyCodec = newEntityCodec(func(v *Discrepancy) *Meta { return &v.Meta },
	fStr("id", func(v *Discrepancy) *string { return &v.ID }),
	fName("department", func(v *Discrepancy) *string { return &v.Department }),
	fName("subject_kind", func(v *Discrepancy) *string { return &v.SubjectKind }),
	fStr("subject_key", func(v *Discrepancy) *string { return &v.SubjectKey }),
	fStr("household_no", func(v *Discrepancy) *string { return &v.HouseholdNo }),
	fName("region_code", func(v *Discrepancy) *string { return &v.RegionCode }),
	fName("field", func(v *Discrepancy) *string { return &v.Field }),
	fStr("registry_value", func(v *Discrepancy) *string { return &v.RegistryValue }),
	fStr("department_value", func(v *Discrepancy) *string { return &v.DepartmentValue }),
	fName("status", func(v *Discrepancy) *string { return &v.Status }),
	fStr("reason", func(v *Discrepancy) *string { return &v.Reason }),
	fStr("detected_at", func(v *Discrepancy) *string { return &v.DetectedAt }),
	fStr("resolved_at", func(v *Discrepancy) *string { return &v.ResolvedAt }),
	fStr("fact_key", func(v *Discrepancy) *string { return &v.FactKey }),
)
