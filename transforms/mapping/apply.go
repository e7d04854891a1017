package mapping

import (
	"strings"

	"github.com/shouwang/shouwang/schemas"
)

// Output is one canonical change made from one raw change.
type Output struct {
	// Key is the entity key (also the Kafka message key).
	Key string
	// Op is c, u, r (the entity's new version is Doc) or d (Doc holds key and version).
	Op schemas.Op
	// Doc is the entity as a JSON object: meta fields (key, version, source,
	// updated_ms) and the mapped fields. ApplyFields leaves it nil.
	Doc map[string]any
	// Fields is Doc as members sorted by name, source as a nested Fields (ApplyFields
	// only): encoded, byte for byte the same JSON as Doc.
	Fields schemas.Fields
}

// Skipped says why a raw change made no canonical change (truncate and schema events).
type Skipped struct{ Reason string }

func (s *Skipped) Error() string { return "skipped: " + s.Reason }

// Apply maps one raw change. version orders the entity's changes (the caller derives it
// from the raw record's position); position is the readable source position for
// Meta.Source. Errors: *RecordError (the record goes to the dead-letter queue) or
// *Skipped.
func (m *Mapping) Apply(env *schemas.Envelope, version int64, position string, nowMs int64) (Output, error) {
	rows := schemas.Rows{Index: m.index}
	rows.Reset()
	for j, row := range []map[string]any{env.Key, env.Before, env.After} {
		cells := [][]schemas.Cell{rows.Key, rows.Before, rows.After}[j]
		for c, i := range m.index {
			if v, ok := row[c]; ok {
				cells[i] = schemas.CellOf(v)
			}
		}
	}
	return m.ApplyRows(env, &rows, version, position, nowMs)
}

// ApplyRows is Apply of a change whose key, before and after rows were decoded into
// rows by schemas.UnmarshalEnvelopeCells with Index (env's own maps are not read):
// the same change gives the same output as through Apply.
func (m *Mapping) ApplyRows(env *schemas.Envelope, rows *schemas.Rows, version int64, position string, nowMs int64) (Output, error) {
	o, err := m.ApplyFields(env, rows, version, position, nowMs, nil)
	if err != nil {
		return o, err
	}
	o.Doc = make(map[string]any, len(o.Fields))
	for _, f := range o.Fields {
		if n, ok := f.Value.(schemas.Fields); ok {
			o.Doc[f.Name] = n.Map() // source
			continue
		}
		o.Doc[f.Name] = f.Value
	}
	o.Fields = nil
	return o, nil
}

// Meta members of every canonical document, as layout entries (negative; a field's
// entry is its index in Mapping.fields).
const (
	metaKey = -1 - iota
	metaSource
	metaUpdated
	metaVersion
)

// metaNames are the meta members by their layout entry (-1 - entry).
var metaNames = [...]string{"key", "source", "updated_ms", "version"}

// layoutOf merges the meta members into fields (sorted by name) in name order.
func layoutOf(fields []*field) []int {
	layout := make([]int, 0, len(fields)+len(metaNames))
	i := 0
	for mi, name := range metaNames {
		for i < len(fields) && fields[i].name < name {
			layout = append(layout, i)
			i++
		}
		layout = append(layout, -1-mi)
	}
	for ; i < len(fields); i++ {
		layout = append(layout, i)
	}
	return layout
}

// deleteLayout is the document of a delete: the meta members only, sorted.
var deleteLayout = []int{metaKey, metaSource, metaUpdated, metaVersion}

// ApplyFields is ApplyRows returning the document as Fields sorted by name (appended
// to dst[:0], which the caller may reuse once the output is encoded) instead of a map.
func (m *Mapping) ApplyFields(env *schemas.Envelope, rows *schemas.Rows, version int64, position string, nowMs int64, dst schemas.Fields) (Output, error) {
	switch env.Op {
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead, schemas.OpDelete:
	default:
		return Output{}, &Skipped{Reason: "op " + string(env.Op) + " has no canonical counterpart"}
	}
	key, kerr := m.entityKey(env, rows)
	if kerr != nil {
		return Output{}, kerr
	}
	meta := func(doc schemas.Fields, e int) schemas.Fields {
		switch e {
		case metaKey:
			return append(doc, schemas.Field{Name: "key", Value: key})
		case metaSource:
			return append(doc, schemas.Field{Name: "source", Value: schemas.Fields{
				{Name: "position", Value: position}, {Name: "system", Value: env.Source.System}, {Name: "table", Value: env.Source.Table}}})
		case metaUpdated:
			return append(doc, schemas.Field{Name: "updated_ms", Value: nowMs})
		default:
			return append(doc, schemas.Field{Name: "version", Value: version})
		}
	}
	if env.Op == schemas.OpDelete {
		doc := dst[:0]
		for _, e := range deleteLayout {
			doc = meta(doc, e)
		}
		return Output{Key: key, Op: env.Op, Fields: doc}, nil
	}
	row := rows.After
	var rerr *RecordError
	fail := func() *RecordError {
		if rerr == nil {
			rerr = &RecordError{Mapping: m.Name}
		}
		return rerr
	}
	for i, c := range m.columns {
		if row[m.colSlots[i]].Kind == schemas.CellAbsent {
			fail().Missing = append(fail().Missing, c)
		}
	}
	// The layout lists fields and meta members merged in name order, fields in the
	// order of m.fields: field errors come out in the same order as ever.
	doc := dst[:0]
	for _, e := range m.layout {
		if e < 0 {
			doc = meta(doc, e)
			continue
		}
		f := m.fields[e]
		v, why := f.conv(row)
		switch {
		case why != "":
			fail().Fields = append(fail().Fields, FieldError{Field: f.name, Column: strings.Join(f.from, ","), Reason: why})
		case v == nil && f.required:
			fail().Fields = append(fail().Fields, FieldError{Field: f.name, Column: strings.Join(f.from, ","), Reason: "required but empty"})
		case v != nil:
			doc = append(doc, schemas.Field{Name: f.name, Value: v})
		}
	}
	if rerr != nil {
		return Output{}, rerr
	}
	return Output{Key: key, Op: env.Op, Fields: doc}, nil
}

// entityKey joins the key columns' values, read from the change's key (or, for a
// source that sends no key map, its row).
func (m *Mapping) entityKey(env *schemas.Envelope, rows *schemas.Rows) (string, *RecordError) {
	var b strings.Builder
	b.WriteString(m.keyPrefix)
	for i, c := range m.key {
		j := m.keySlots[i]
		v := rows.Key[j]
		if v.Kind == schemas.CellAbsent {
			v = rows.After[j]
		}
		if v.Kind == schemas.CellAbsent {
			v = rows.Before[j]
		}
		s := v.Text(text)
		if v.Kind == schemas.CellAbsent || s == "" {
			return "", &RecordError{Mapping: m.Name, Fields: []FieldError{{Field: "key", Column: c, Reason: "key column empty or missing"}}}
		}
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(s)
	}
	if len(m.keyHash) == 0 {
		return b.String(), nil
	}
	parts := make([]string, 0, len(m.keyHash)+1)
	for _, p := range m.keyHash {
		parts = append(parts, strings.ReplaceAll(p, "{source}", env.Source.System))
	}
	return schemas.DeterministicID(append(parts, b.String())...), nil
}
