package pglogical

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// rowChange finishes one row envelope: the key from keyCols (taken from after, else
// before), the Kafka key, the topic; a decoding failure turns it into a dead letter
// that keeps the partial envelope as payload.
func (s *Source) rowChange(keyCols []string, env schemas.Envelope, bad error, raw []byte) capture.Change {
	row := env.After
	if row == nil {
		row = env.Before
	}
	key := make(map[string]any, len(keyCols))
	for _, k := range keyCols {
		if v, ok := row[k]; ok {
			key[k] = v
		}
	}
	env.Key = key
	kb, err := schemas.MarshalMap(key)
	if err != nil {
		kb = []byte(fmt.Sprint(key))
	}
	ch := capture.Change{Topic: s.topic(env.Source.Table), Key: kb, Envelope: env}
	reason := "bad_value"
	if bad == nil && s.o.MaxRowBytes > 0 && jsonBound(env.Before)+jsonBound(env.After) > s.o.MaxRowBytes {
		if b, err := json.Marshal(env); err == nil && len(b) > s.o.MaxRowBytes {
			bad = fmt.Errorf("row of %d bytes exceeds max_row_bytes %d", len(b), s.o.MaxRowBytes)
			reason, raw = "oversized", kb // the key, not the row: the DLQ stays bounded too
		}
	}
	if bad != nil {
		var ve *valueError
		if errors.As(bad, &ve) {
			reason = ve.Reason
		}
		if raw == nil {
			raw, _ = json.Marshal(env)
		}
		ch.DeadLetter = &schemas.DLQRecord{
			Reason:   fmt.Sprintf("pglogical %s: table %s op %s key %s lsn %s: %v", s.o.Name, env.Source.Table, env.Op, kb, env.Source.LSN, bad),
			Source:   s.o.Name,
			Position: env.Source.LSN,
			Key:      string(kb),
			Payload:  raw,
		}
		ch.DeadLetterReason = reason
	}
	return ch
}

// jsonBound is an upper bound of the JSON size of a decoded row (every string
// character escaped as \u00XX), so that only rows that may be oversized are encoded
// to measure them.
func jsonBound(row map[string]any) int {
	n := 2
	for k, v := range row {
		n += 6*len(k) + 4
		switch x := v.(type) {
		case string:
			n += 6*len(x) + 2
		case json.RawMessage:
			n += len(x)
		case json.Number:
			n += len(x)
		case []byte:
			n += 6*len(x) + 2
		default:
			n += 64
		}
	}
	return n
}

// relation is the stream's view of one table, from its latest relation message.
type relation struct {
	table   *table // nil: not a configured table (publication covers more)
	name    string
	cols    []column
	keyCols []string
}

// sameColumns reports whether two column sets have the same names and types in order.
func sameColumns(a, b []column) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].OID != b[i].OID {
			return false
		}
	}
	return true
}

// describeColumns renders a column set for schema-change events.
func describeColumns(table string, cols []column) string {
	out := "relation " + table + " columns:"
	for i, c := range cols {
		if i > 0 {
			out += ","
		}
		out += fmt.Sprintf(" %s oid=%d", c.Name, c.OID)
		if c.Key {
			out += " key"
		}
	}
	return out
}

// decodeTuple turns a tuple into column → value. Unchanged TOASTed values ('u') are
// taken from fill when it has them and are otherwise left out of the map (a missing
// column means "unchanged"). With keyOnly, columns that are not part of the replica
// identity are skipped (a 'K' old tuple sends them as NULL).
func decodeTuple(rel *relation, tup *pglogrepl.TupleData, fill map[string]any, keyOnly bool) (map[string]any, error) {
	if tup == nil {
		return nil, nil
	}
	if len(tup.Columns) > len(rel.cols) {
		return nil, fmt.Errorf("tuple has %d columns, relation %s has %d (relation message missing?)", len(tup.Columns), rel.name, len(rel.cols))
	}
	row := make(map[string]any, len(tup.Columns))
	var first error
	for i, c := range tup.Columns {
		col := rel.cols[i]
		if keyOnly && !col.Key {
			continue
		}
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
			row[col.Name] = nil
		case pglogrepl.TupleDataTypeToast:
			if v, ok := fill[col.Name]; ok {
				row[col.Name] = v
			}
		case pglogrepl.TupleDataTypeText:
			v, err := decodeValue(col.OID, c.Data)
			if err != nil {
				if ve, ok := err.(*valueError); ok {
					ve.Column = col.Name
				}
				if first == nil {
					first = err
				}
				row[col.Name] = nil
				continue
			}
			row[col.Name] = v
		default:
			if first == nil {
				first = &valueError{Column: col.Name, OID: col.OID, Reason: "bad_value", Err: fmt.Errorf("unexpected tuple format %q", c.DataType)}
			}
		}
	}
	return row, first
}

// rawTuple renders a tuple's text values for a dead letter's payload.
func rawTuple(rel *relation, tup *pglogrepl.TupleData) []byte {
	var out []byte
	if tup == nil {
		return out
	}
	for i, c := range tup.Columns {
		if i < len(rel.cols) {
			out = append(out, rel.cols[i].Name...)
		}
		out = append(out, '=')
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
			out = append(out, "NULL"...)
		case pglogrepl.TupleDataTypeToast:
			out = append(out, "(unchanged toast)"...)
		default:
			out = append(out, c.Data...)
		}
		out = append(out, '\n')
	}
	return out
}
