package filedrop

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
)

// problem is one finding of a file check, for the rejection report.
type problem struct {
	Line   int64
	Column string
	Reason string
}

func (p problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d", p.Line)
	}
	if p.Column != "" {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "column %q", p.Column)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(p.Reason)
	return b.String()
}

// mapper turns file rows into normalised state rows: values in the order of the
// sorted field names, key values joined by keySep.
type mapper struct {
	fields     []string // sorted field names: the order of values in a row blob
	src        []int    // per field: index in the file row, -1 when the optional column is missing
	keyIdx     []int    // per key field: index into fields
	keyHdr     []string // per key field: its header, for messages
	opIdx      int      // file index of the op column, -1 when none
	deleteVals map[string]bool
	width      int
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
	m := &mapper{opIdx: -1, deleteVals: map[string]bool{}, width: len(header)}
	for _, v := range ds.DeleteValues {
		m.deleteVals[strings.ToUpper(v)] = true
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
				probs = append(probs, problem{Line: 1, Column: h, Reason: fmt.Sprintf("required column (field %s) missing from the header", f)})
			}
		}
		m.src = append(m.src, i)
	}
	if ds.OpColumn != "" && m.opIdx < 0 {
		probs = append(probs, problem{Line: 1, Column: ds.OpColumn, Reason: "op column missing from the header"})
	}
	for _, k := range ds.Key {
		i := sort.SearchStrings(m.fields, k)
		m.keyIdx = append(m.keyIdx, i)
		m.keyHdr = append(m.keyHdr, hdrOf[k])
	}
	return m, probs
}

// key builds the composite key of a file row. ok is false when a key value is
// missing or empty (the row cannot be identified).
func (m *mapper) key(dst []byte, fields []string) ([]byte, string, bool) {
	dst = dst[:0]
	for n, fi := range m.keyIdx {
		si := m.src[fi]
		if si < 0 || si >= len(fields) {
			return dst, m.keyHdr[n], false
		}
		v := strings.TrimSpace(fields[si])
		if v == "" {
			return dst, m.keyHdr[n], false
		}
		if n > 0 {
			dst = append(dst, keySep...)
		}
		dst = append(dst, v...)
	}
	return dst, "", true
}

// blob encodes the row's values (trimmed) in field order.
func (m *mapper) blob(dst []byte, fields []string) []byte {
	dst = dst[:0]
	for _, si := range m.src {
		v := ""
		if si >= 0 && si < len(fields) {
			v = strings.TrimSpace(fields[si])
		}
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
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
