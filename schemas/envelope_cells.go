package schemas

import (
	"fmt"
	"strings"
	"unsafe"
)

// CellKind is the JSON kind of one decoded column value.
type CellKind uint8

// Cell kinds. CellAbsent (the zero Cell) means the column is not in the row.
const (
	CellAbsent CellKind = iota
	CellNull
	CellString
	CellNumber
	CellBool
	CellOther // an object or an array, decoded into V
)

// Cell is one column value of a row decoded by UnmarshalEnvelopeCells: the string, a
// number's literal or "true"/"false" in S; an object or array decoded as DecodeValue
// would in V (and a value from a map, see CellOf).
type Cell struct {
	Kind CellKind
	S    string
	V    any
}

// CellOf is the cell of a value of a decoded row map (present in the map).
func CellOf(v any) Cell {
	if v == nil {
		return Cell{Kind: CellNull}
	}
	return Cell{Kind: CellOther, V: v}
}

// Text is the cell's value as text: strings trimmed of surrounding white space,
// numbers as their literal, booleans as true/false, null and absent as "", and any
// other value as other says (the caller's rendering of a decoded value).
func (c Cell) Text(other func(any) string) string {
	switch c.Kind {
	case CellString:
		return strings.TrimSpace(c.S)
	case CellNumber, CellBool:
		return c.S
	case CellOther:
		return other(c.V)
	}
	return ""
}

// Rows receives the key, before and after rows of a change decoded by
// UnmarshalEnvelopeCells, as cells of the columns of Index (column name → cell
// index); the other columns are checked as JSON and dropped.
type Rows struct {
	Index              map[string]int
	Key, Before, After []Cell
}

// Reset sizes the three rows to len(Index) absent cells.
func (r *Rows) Reset() {
	n := len(r.Index)
	for _, row := range []*[]Cell{&r.Key, &r.Before, &r.After} {
		if cap(*row) < n {
			*row = make([]Cell, n)
		}
		*row = (*row)[:n]
		clear(*row)
	}
}

// UnmarshalEnvelopeCells is UnmarshalEnvelope for a reader of known columns: the key,
// before and after maps are not built; their members in rows.Index are decoded into
// rows (which is reset first) and the rest are checked and dropped. It accepts and
// refuses exactly what UnmarshalEnvelope does, with the same errors, and a cell holds
// what UnmarshalEnvelope's map holds for its column (CellAbsent where the map has no
// such key): the same repeated-member and null semantics, strings unescaped alike,
// numbers as the json.Number literal, objects and arrays as DecodeValue decodes them.
// The envelope's Key, Before and After are left nil.
func UnmarshalEnvelopeCells(b []byte, rows *Rows) (*Envelope, error) {
	rows.Reset()
	var e Envelope
	d := getDecoder(b)
	d.rows = rows
	err := d.decodeEnvelopeInto(&e)
	full := d.full
	putDecoder(d)
	if err != nil {
		return nil, fmt.Errorf("envelope: decode: %w", err)
	}
	if err := e.validate(full[0], full[1], full[2]); err != nil {
		return nil, err
	}
	return &e, nil
}

// cellField decodes the key, before or after map (d.off at its value) into d.rows.
func (d *decoder) cellField(field string) error {
	var row []Cell
	var full *bool
	switch field {
	case "key":
		row, full = d.rows.Key, &d.full[0]
	case "before":
		row, full = d.rows.Before, &d.full[1]
	default:
		row, full = d.rows.After, &d.full[2]
	}
	switch d.data[d.off] {
	case '{':
		if err := d.cellMembers(row, full); err != nil {
			return inField(err, field)
		}
		return nil
	case 'n':
		if err := d.null(); err != nil {
			return inField(err, field)
		}
		clear(row) // the map becomes nil
		*full = false
		return nil
	}
	return d.mismatch(field, "an object")
}

// cellMembers walks a row object (nesting level 2) into row.
func (d *decoder) cellMembers(row []Cell, full *bool) error {
	return d.fields(2, func(key []byte) error {
		*full = true
		i, ok := d.rows.Index[string(key)]
		return d.cell(row, i, ok)
	})
}

// cell decodes the member value at d.off into row[i] (or checks and drops it).
func (d *decoder) cell(row []Cell, i int, keep bool) error {
	if d.off >= len(d.data) {
		return d.eof()
	}
	switch c := d.data[d.off]; {
	case c == '"':
		s, err := d.str()
		if err == nil && keep {
			row[i] = Cell{Kind: CellString, S: d.cellText(s)}
		}
		return err
	case c == 't' || c == 'f':
		v, err := d.boolean()
		if err == nil && keep {
			row[i] = Cell{Kind: CellBool, S: "false"}
			if v {
				row[i].S = "true"
			}
		}
		return err
	case c == 'n':
		err := d.null()
		if err == nil && keep {
			row[i] = Cell{Kind: CellNull}
		}
		return err
	case c == '-' || '0' <= c && c <= '9':
		lit, err := d.number()
		if err == nil && keep {
			row[i] = Cell{Kind: CellNumber, S: d.cellText(lit)}
		}
		return err
	}
	v, err := d.value(2)
	if err == nil && keep {
		row[i] = Cell{Kind: CellOther, V: v}
	}
	return err
}

// cellText copies a cell's text into the decode's arena and returns it as a string
// viewing those bytes: one allocation for the cells of a change instead of one per
// cell. This is strings.Builder's technique: the viewed bytes are never written again
// (the arena only grows, into a fresh array when full, and is dropped after the
// decode), so the strings are as immutable as any.
func (d *decoder) cellText(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(d.arena)-len(d.arena) < len(b) {
		// Doubling from 512 bytes, but no more than the rest of the input can still
		// bring (unescaping only shrinks text; an invalid UTF-8 byte grows to three,
		// and then the arena just grows again).
		n := min(max(512, 2*cap(d.arena)), len(d.data)-d.off+64)
		d.arena = make([]byte, 0, max(n, len(b)))
	}
	off := len(d.arena)
	d.arena = append(d.arena, b...)
	return unsafe.String(&d.arena[off], len(b))
}
