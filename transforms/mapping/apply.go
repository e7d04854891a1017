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
	// updated_ms) and the mapped fields.
	Doc map[string]any
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
	switch env.Op {
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead, schemas.OpDelete:
	default:
		return Output{}, &Skipped{Reason: "op " + string(env.Op) + " has no canonical counterpart"}
	}
	key, kerr := m.entityKey(env, rows)
	if kerr != nil {
		return Output{}, kerr
	}
	meta := func(doc map[string]any) {
		doc["key"] = key
		doc["version"] = version
		doc["source"] = map[string]any{"system": env.Source.System, "table": env.Source.Table, "position": position}
		doc["updated_ms"] = nowMs
	}
	if env.Op == schemas.OpDelete {
		doc := make(map[string]any, 4)
		meta(doc)
		return Output{Key: key, Op: schemas.OpDelete, Doc: doc}, nil
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
	doc := make(map[string]any, len(m.fields)+4)
	for _, f := range m.fields {
		v, why := f.conv(row)
		if why != "" {
			fail().Fields = append(fail().Fields, FieldError{Field: f.name, Column: strings.Join(f.from, ","), Reason: why})
			continue
		}
		if v == nil {
			if f.required {
				fail().Fields = append(fail().Fields, FieldError{Field: f.name, Column: strings.Join(f.from, ","), Reason: "required but empty"})
			}
			continue
		}
		doc[f.name] = v
	}
	if rerr != nil {
		return Output{}, rerr
	}
	meta(doc)
	return Output{Key: key, Op: env.Op, Doc: doc}, nil
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
