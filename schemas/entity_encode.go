package schemas

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// AppendEntityJSON appends the JSON of *v exactly as json.Marshal(v) writes it (field
// order, omitempty, HTML escaping, map keys sorted; "null" for a nil v), from the
// entity's field table without reflection. The monitor's state writes every record it
// touches with it; FuzzEntityEnvelope compares it with encoding/json on every entity it
// decodes.
func AppendEntityJSON[T CanonicalEntity](dst []byte, v *T) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	return entityCodecOf[T]().appendObject(dst, v)
}

// appendObject appends v's members in field order.
func (c *entityCodec[T]) appendObject(b []byte, v *T) []byte {
	b = append(b, '{')
	first := true
	for i := range c.fields {
		f := &c.fields[i]
		if c.omit[i] && f.empty(v) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, c.names[i]...)
		b = f.enc(b, v)
	}
	return append(b, '}')
}

// encoding reads the member names' encodings and omitempty from T's json tags (once,
// when the table is built); a field the table has and T has not is a programming error.
func (c *entityCodec[T]) encoding() {
	omit := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct && f.Tag.Get("json") == "" {
				walk(f.Type)
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || (opts != "" && opts != "omitempty") {
				// The encoder writes named members with omitempty at most; teach it
				// before tagging an entity field otherwise.
				panic("schemas: entity field " + t.String() + "." + f.Name + " has a json tag the entity encoder does not follow: " + string(f.Tag))
			}
			omit[name] = opts == "omitempty"
		}
	}
	walk(reflect.TypeFor[T]())
	for _, f := range c.fields {
		o, ok := omit[f.name]
		if !ok {
			panic("schemas: entity field " + f.name + " is not a json field of " + reflect.TypeFor[T]().String())
		}
		c.omit = append(c.omit, o)
		c.names = append(c.names, append(AppendJSONString(nil, f.name), ':'))
	}
}

// appendSourceRef appends a SourceRef as encoding/json writes it.
func appendSourceRef(b []byte, s *SourceRef) []byte {
	b = append(b, `{"system":`...)
	b = AppendJSONString(b, s.System)
	if s.Table != "" {
		b = append(b, `,"table":`...)
		b = AppendJSONString(b, s.Table)
	}
	if s.Position != "" {
		b = append(b, `,"position":`...)
		b = AppendJSONString(b, s.Position)
	}
	return append(b, '}')
}

func appendOptBool(b []byte, p *bool) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	return strconv.AppendBool(b, *p)
}

// AppendJSONStrings appends l as json.Marshal writes a []string ("null" for nil).
func AppendJSONStrings(b []byte, l []string) []byte {
	if l == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, s)
	}
	return append(b, ']')
}

func appendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, k)
		b = append(b, ':')
		b = AppendJSONString(b, m[k])
	}
	return append(b, '}')
}
