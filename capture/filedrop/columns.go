package filedrop

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// problem is one finding of a file check, for the report. Column is the header as
// the department wrote it (e.g. 结算流水号), Field the configured field name.
type problem struct {
	Line   int64
	Column string
	Field  string
	Reason string
}

func (p problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d", p.Line)
	}
	if p.Column != "" || p.Field != "" {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(columnName(p.Column, p.Field))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(p.Reason)
	return b.String()
}

// columnName names a column by its header and field: `column "结算流水号" (field
// settlement_no)`.
func columnName(header, field string) string {
	switch {
	case header != "" && field != "" && header != field:
		return fmt.Sprintf("column %q (field %s)", header, field)
	case header != "":
		return fmt.Sprintf("column %q", header)
	}
	return fmt.Sprintf("field %s", field)
}

// mapper turns file rows into normalised state rows: values in the order of the
// sorted field names, in their types' canonical form, key values joined by keySep.
type mapper struct {
	fields     []string     // sorted field names: the order of values in a row blob
	src        []int        // per field: index in the file row, -1 when the optional column is missing
	types      []ColumnType // per field
	hdr        []string     // per field: its header, for messages
	keyIdx     []int        // per key field: index into fields
	opIdx      int          // file index of the op column, -1 when none
	deleteVals map[string]bool
	summary    map[string]bool
	header     []string // the file's header
	width      int
	maxField   int
	maxRow     int
	vals       []string // normalised values of the current row
}

// keySep joins composite key values; it cannot occur in CSV text a department types.
const keySep = "\x1f"

// newMapper checks the header against the configured columns. Every problem is
// returned so the rejection report lists all of them at once.
func newMapper(ds *DatasetOptions, header []string) (*mapper, []problem) {
	var probs []problem
	fieldOf := ds.Columns
	ignore := map[string]bool{}
	for _, h := range ds.Ignore {
		ignore[h] = true
	}
	optional := map[string]bool{}
	for _, f := range ds.Optional {
		optional[f] = true
	}
	m := &mapper{opIdx: -1, deleteVals: map[string]bool{}, summary: map[string]bool{}, header: header, width: len(header),
		maxField: ds.MaxFieldBytes, maxRow: ds.MaxRowBytes}
	for _, v := range ds.DeleteValues {
		m.deleteVals[strings.ToUpper(v)] = true
	}
	for _, v := range ds.SummaryLabels {
		m.summary[strings.ReplaceAll(v, " ", "")] = true
	}
	pos := map[string]int{}
	for i, h := range header {
		if _, dup := pos[h]; dup {
			probs = append(probs, problem{Line: 1, Column: h, Reason: "header appears twice"})
			continue
		}
		pos[h] = i
		switch {
		case h == ds.OpColumn && ds.OpColumn != "":
			m.opIdx = i
		case fieldOf[h] != "" || ignore[h]:
		case h == "":
			probs = append(probs, problem{Line: 1, Reason: fmt.Sprintf("column %d has an empty header", i+1)})
		default:
			probs = append(probs, problem{Line: 1, Column: h, Reason: "unknown column: map it in columns or list it in ignore"})
		}
	}
	hdrOf := map[string]string{}
	for h, f := range fieldOf {
		m.fields = append(m.fields, f)
		hdrOf[f] = h
	}
	sort.Strings(m.fields)
	for _, f := range m.fields {
		h := hdrOf[f]
		i, ok := pos[h]
		if !ok {
			i = -1
			if !optional[f] {
				probs = append(probs, problem{Line: 1, Column: h, Field: f, Reason: "required column missing from the header"})
			}
		}
		m.src = append(m.src, i)
		m.types = append(m.types, ds.Types[f])
		m.hdr = append(m.hdr, h)
	}
	if ds.OpColumn != "" && m.opIdx < 0 {
		probs = append(probs, problem{Line: 1, Column: ds.OpColumn, Reason: "op column missing from the header"})
	}
	for _, k := range ds.Key {
		m.keyIdx = append(m.keyIdx, sort.SearchStrings(m.fields, k))
	}
	m.vals = make([]string, len(m.fields))
	return m, probs
}

// normalize checks the row's sizes and turns its values into their canonical forms
// (m.vals). A problem names the offending column.
func (m *mapper) normalize(fields []string) *problem {
	total := 0
	for i, v := range fields {
		total += len(v) + 1
		if len(v) > m.maxField {
			p := &problem{Reason: fmt.Sprintf("value of %d bytes is longer than the field limit of %d bytes (limits.max_field_bytes)", len(v), m.maxField)}
			if i < len(m.header) {
				p.Column = m.header[i]
			}
			for fi, si := range m.src {
				if si == i {
					p.Field = m.fields[fi]
				}
			}
			return p
		}
	}
	if total > m.maxRow {
		return &problem{Reason: fmt.Sprintf("row of %d bytes is longer than the row limit of %d bytes (limits.max_row_bytes)", total, m.maxRow)}
	}
	for fi, si := range m.src {
		v := ""
		if si >= 0 && si < len(fields) {
			v = strings.TrimSpace(fields[si])
		}
		n, err := normalizeValue(m.types[fi], v)
		if err != nil {
			return &problem{Column: m.hdr[fi], Field: m.fields[fi], Reason: err.Error()}
		}
		m.vals[fi] = n
	}
	return nil
}

// key builds the composite key from the normalised values. ok is false when a key
// value is empty (the row cannot be identified); column then names it.
func (m *mapper) key(dst []byte) ([]byte, *problem, bool) {
	dst = dst[:0]
	for n, fi := range m.keyIdx {
		v := m.vals[fi]
		if v == "" {
			return dst, &problem{Column: m.hdr[fi], Field: m.fields[fi], Reason: "key value empty"}, false
		}
		if n > 0 {
			dst = append(dst, keySep...)
		}
		dst = append(dst, v...)
	}
	return dst, nil, true
}

// blob encodes the normalised values in field order.
func (m *mapper) blob(dst []byte) []byte {
	dst = dst[:0]
	for _, v := range m.vals {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// typeMap returns the declared types by field (text fields left out), as the state
// trailer records them.
func (m *mapper) typeMap() map[string]ColumnType {
	out := map[string]ColumnType{}
	for fi, t := range m.types {
		if t != "" && t != TypeText {
			out[m.fields[fi]] = t
		}
	}
	return out
}

// summaryRow reports whether a row is a totals row at a sheet's foot: one of its
// cells is a summary label (合计 …) and every key cell is empty or such a label.
func (m *mapper) summaryRow(fields []string) bool {
	label := func(v string) bool { return m.summary[strings.ReplaceAll(strings.TrimSpace(v), " ", "")] }
	for _, fi := range m.keyIdx {
		if si := m.src[fi]; si >= 0 && si < len(fields) && strings.TrimSpace(fields[si]) != "" && !label(fields[si]) {
			return false
		}
	}
	for _, v := range fields {
		if label(v) {
			return true
		}
	}
	return false
}

// candidateKeys returns the keys a bad row may have: its key read at the header's
// positions, and — when the row has too many or too few fields (an unquoted
// delimiter or a lost cell) — also read at the positions counted from the row's end,
// which are right when the shift happened before the key columns. Only keys whose
// values are readable (valid text, non-empty, of their type) are returned.
func (m *mapper) candidateKeys(fields []string) [][]byte {
	var out [][]byte
	try := func(shift int) {
		var k []byte
		for n, fi := range m.keyIdx {
			si := m.src[fi] + shift
			if m.src[fi] < 0 || si < 0 || si >= len(fields) {
				return
			}
			v := strings.TrimSpace(fields[si])
			if v == "" || !utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError) || len(v) > m.maxField {
				return
			}
			nv, err := normalizeValue(m.types[fi], v)
			if err != nil || nv == "" {
				return
			}
			if n > 0 {
				k = append(k, keySep...)
			}
			k = append(k, nv...)
		}
		for _, o := range out {
			if bytes.Equal(o, k) {
				return
			}
		}
		out = append(out, k)
	}
	try(0)
	if d := len(fields) - m.width; d != 0 {
		try(d)
	}
	return out
}

// op returns the row's operation in an incremental delivery.
func (m *mapper) op(fields []string) byte {
	if m.opIdx >= 0 && m.opIdx < len(fields) && m.deleteVals[strings.ToUpper(strings.TrimSpace(fields[m.opIdx]))] {
		return opDelete
	}
	return opUpsert
}

// decodeBlob turns a row blob back into a field map; empty values become null,
// because departments leave a cell empty when they have no value.
func decodeBlob(fields []string, blob []byte) (map[string]any, error) {
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		n, w := binary.Uvarint(blob)
		if w <= 0 || uint64(len(blob)-w) < n {
			return nil, fmt.Errorf("corrupt row blob at field %s", f)
		}
		v := blob[w : w+int(n)]
		blob = blob[w+int(n):]
		if len(v) == 0 {
			out[f] = nil
		} else {
			out[f] = string(v)
		}
	}
	return out, nil
}

// keyMap splits a composite key into the key field map of the envelope.
func keyMap(keyFields []string, key string) map[string]any {
	parts := strings.Split(key, keySep)
	out := make(map[string]any, len(keyFields))
	for i, f := range keyFields {
		if i < len(parts) {
			out[f] = parts[i]
		}
	}
	return out
}
