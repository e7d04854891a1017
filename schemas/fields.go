package schemas

import (
	"encoding/json"
	"strings"
)

// Field is one member of a Fields object.
type Field struct {
	Name  string
	Value any
}

// Fields is a JSON object given as its members in order, for a producer that knows
// its documents' layout and so need not build a map per document (nor sort its keys
// when encoding it). With names sorted and unique, its encoding is byte for byte that
// of Map() (json.Marshal sorts map keys); otherwise the members are written in the
// given order.
type Fields []Field

// Get returns the value of the member named name.
func (f Fields) Get(name string) (any, bool) {
	for i := range f {
		if f[i].Name == name {
			return f[i].Value, true
		}
	}
	return nil, false
}

// Set replaces the value of the member named name and reports whether there is one.
func (f Fields) Set(name string, v any) bool {
	for i := range f {
		if f[i].Name == name {
			f[i].Value = v
			return true
		}
	}
	return false
}

// Map returns the members as a map (a later member of a repeated name wins, as in a
// JSON decoder). Nested Fields values stay Fields, encoded in their own order.
func (f Fields) Map() map[string]any {
	if f == nil {
		return nil
	}
	m := make(map[string]any, len(f))
	for _, x := range f {
		m[x.Name] = x.Value
	}
	return m
}

// sortedUnique reports whether the names are strictly increasing, the order
// json.Marshal gives a map's keys.
func (f Fields) sortedUnique() bool {
	for i := 1; i < len(f); i++ {
		if strings.Compare(f[i-1].Name, f[i].Name) >= 0 {
			return false
		}
	}
	return true
}

// MarshalJSON writes the members in order, each value as json.Marshal would.
func (f Fields) MarshalJSON() ([]byte, error) {
	if f == nil {
		return []byte("null"), nil
	}
	enc := encoderPool.Get().(*envEncoder)
	defer encoderPool.Put(enc)
	b, err := enc.appendFields(nil, f, 1)
	if err != nil {
		return json.Marshal(f.Map()) // its error, in encoding/json's words
	}
	return b, nil
}

// appendFields encodes an ordered object.
func (enc *envEncoder) appendFields(b []byte, f Fields, depth int) ([]byte, error) {
	b = append(b, '{')
	var err error
	for i := range f {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, f[i].Name)
		b = append(b, ':')
		if b, err = enc.appendValue(b, f[i].Value, depth); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

// MarshalEnvelopeFields encodes e with row as its after (op c, u, r) or before (op d)
// row in place of e's own map there: byte for byte e.Marshal() with that map set to
// row.Map(). When row's names are sorted and unique (json.Marshal's key order) no map
// is built; other rows are encoded through the map.
func MarshalEnvelopeFields(e *Envelope, row Fields) ([]byte, error) {
	c := *e
	if !row.sortedUnique() {
		c.setRow(row.Map())
		return marshalEnvelope(&c, nil)
	}
	c.setRow(nil)
	return marshalEnvelope(&c, row)
}

// setRow sets the map a row document takes: after, or before for a delete.
func (e *Envelope) setRow(m map[string]any) {
	if e.Op == OpDelete {
		e.Before = m
	} else {
		e.After = m
	}
}
