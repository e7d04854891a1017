package mysqlbinlog

import (
	"slices"
	"strings"

	"github.com/shouwang/shouwang/schemas"
)

// Rows a reload inserts are only encoded into state records, never into envelopes.
// Building a map of every such row (rowMap) and then encoding the map was most of the
// reload collapse's cost beyond reading the binlog; these encode the binlog row image
// directly, byte for byte what encoding rowMap's map gives (rawrow_test.go).

// rawKeyer builds the encoded primary key of binlog row images of one rows event.
type rawKeyer struct {
	specs []colSpec
	pk    []string
	idx   []int
}

// newRawKeyer returns nil when the table has no primary key or a key column is not
// in specs.
func newRawKeyer(specs []colSpec, pk []string) *rawKeyer {
	if len(pk) == 0 {
		return nil
	}
	k := &rawKeyer{specs: specs, pk: pk}
	for _, c := range pk {
		i := slices.IndexFunc(specs, func(s colSpec) bool { return s.name == c })
		if i < 0 {
			return nil
		}
		k.idx = append(k.idx, i)
	}
	return k
}

// key is encodeKey(keyOf(pk, rowMap(specs, raw))); false when a key value does not
// convert (the row then takes the ordinary path, which sends it to the DLQ).
func (k *rawKeyer) key(raw []any) ([]byte, bool) {
	m := make(map[string]any, len(k.idx))
	for j, i := range k.idx {
		if i >= len(raw) {
			return nil, false
		}
		v, err := binlogValue(k.specs[i], raw[i])
		if err != nil {
			return nil, false
		}
		m[k.pk[j]] = v
	}
	return encodeKey(m), true
}

// rowPlan encodes binlog row images of one column layout: the columns in name order,
// each name already escaped, and where the county columns are.
type rowPlan struct {
	specs []colSpec
	order []int    // spec indexes by column name
	names [][]byte // `"name":` in that order
	// countyRank[i] is the rank of spec i among the county columns (-1: not one).
	countyRank []int
}

func newRowPlan(specs []colSpec, countyCols []string) *rowPlan {
	p := &rowPlan{specs: specs, order: make([]int, len(specs)), countyRank: make([]int, len(specs))}
	for i := range specs {
		p.order[i] = i
		p.countyRank[i] = slices.Index(countyCols, specs[i].name)
	}
	slices.SortFunc(p.order, func(a, b int) int { return strings.Compare(specs[a].name, specs[b].name) })
	for _, i := range p.order {
		p.names = append(p.names, append(schemas.AppendJSONString(nil, specs[i].name), ':'))
	}
	return p
}

// fits reports whether p encodes rows of specs (the same columns in the same order,
// of the same types): rows events of one table share their layout.
func (p *rowPlan) fits(specs []colSpec) bool {
	if len(specs) != len(p.specs) {
		return false
	}
	if len(specs) == 0 || &specs[0] == &p.specs[0] {
		return true
	}
	for i := range specs {
		a, b := &specs[i], &p.specs[i]
		if a.name != b.name || a.kind != b.kind || a.scale != b.scale || a.charset != b.charset || !slices.Equal(a.elems, b.elems) {
			return false
		}
	}
	return true
}

// encode appends the JSON of the row image raw (len(raw) == len(p.specs)) and returns
// its county code ("" when it has none), as recEncoder does for rowMap's map.
func (p *rowPlan) encode(dst []byte, raw []any) ([]byte, string, error) {
	county, rank := "", -1
	dst = append(dst, '{')
	for j, i := range p.order {
		v, err := binlogValue(p.specs[i], raw[i])
		if err != nil {
			return dst, "", err
		}
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, p.names[j]...)
		if dst, err = appendJSONValue(dst, v); err != nil {
			return dst, "", err
		}
		if r := p.countyRank[i]; r >= 0 && (rank < 0 || r < rank) {
			if s, ok := v.(string); ok && len(s) >= 6 {
				county, rank = s[:6], r
			}
		}
	}
	return append(dst, '}'), county, nil
}
