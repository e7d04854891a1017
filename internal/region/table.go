package region

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Region is one row of the division table.
type Region struct {
	// Code is the 12-digit NBS code.
	Code string
	// Name is the official Chinese name (e.g. 成都市, 市辖区, 某某村民委员会).
	Name string
	// Level is the region's own level, as derived from its code.
	Level Level
	// Parent is the code of the parent region; "" for a province. It may skip a level
	// for cities without counties (东莞, 中山, 儋州, 嘉峪关): see Table.
	Parent string
}

// Table is an immutable, validated set of regions. It is safe for concurrent use.
//
// NBS quirk handled here: cities without counties (不设区的地级市, e.g. 东莞市 441900000000)
// have townships directly below the city, and the public compilation repeats such a
// unit one level lower with itself as parent ("441900000000,东莞市,3,441900000000"); the
// same happens for 金门县, which has no subdivisions at all. Such self-parent rows are
// accepted as stand-ins: the region keeps its own level, and it also counts as the
// parent level for its children (a township below 东莞 has the city as parent) and as
// its own ancestor at the stand-in levels (Ancestor(东莞 village, County) is 东莞市).
type Table struct {
	name     string
	regions  []Region // sorted by code
	byCode   map[string]int32
	children map[string][]int32 // parent code -> indices, sorted by code
	byLevel  [6][]Region
	standIn  map[string]Level // code -> deepest level the region stands in for
}

//go:embed data/sichuan-divisions-2023.csv
var sichuanCSV []byte

var defaultTable = sync.OnceValues(func() (*Table, error) {
	return LoadCSV(bytes.NewReader(sichuanCSV), "embedded sichuan-divisions-2023.csv")
})

// Default returns the embedded Sichuan 2023 table (NBS cut-off 2023-06-30), parsed once
// and shared. An error means the embedded file is broken, i.e. a build problem.
func Default() (*Table, error) { return defaultTable() }

// maxProblems bounds how many problems one load reports, so that a wholly wrong file
// gives a readable error instead of thousands of lines.
const maxProblems = 20

// LoadFile reads a division table from a .csv or .csv.gz file (see LoadCSV).
func LoadFile(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("regions: open table: %w", err)
	}
	defer f.Close()
	var r io.Reader = bufio.NewReaderSize(f, 1<<16)
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("regions %s: not a gzip file (%w); give a .csv or a gzip-compressed .csv.gz", path, err)
		}
		defer gz.Close()
		r = gz
	}
	return LoadCSV(r, path)
}

type row struct {
	Region
	line   int
	placeh bool // self-parent stand-in row
}

// problems collects load errors up to maxProblems.
type problems struct {
	name string
	errs []error
	more int
}

func (p *problems) add(line int, format string, args ...any) {
	if len(p.errs) >= maxProblems {
		p.more++
		return
	}
	p.errs = append(p.errs, fmt.Errorf("regions %s:%d: %s", p.name, line, fmt.Sprintf(format, args...)))
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	if p.more > 0 {
		p.errs = append(p.errs, fmt.Errorf("regions %s: %d more problems not shown; nothing was loaded", p.name, p.more))
	}
	return errors.Join(p.errs...)
}

// errLine is the line a CSV error refers to (0 when unknown). FieldPos must not be
// called after a failed Read.
func errLine(err error) int {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Line
	}
	return 0
}

// LoadCSV reads and validates a division table. The first line must be a header naming
// the columns code, name, level and parent_code (any order; other columns are ignored).
// name is used in error messages (a file name). Every row is checked: 12-digit code,
// level 1–5 matching the code's zero padding, no duplicate code, parent present with
// the level above and a code that is a prefix of the child's. On any problem nothing is
// loaded; up to 20 problems are returned together, each naming name:line.
func LoadCSV(r io.Reader, name string) (*Table, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	hdr, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("regions %s: empty file; want a header line code,name,level,parent_code", name)
	}
	if err != nil {
		return nil, fmt.Errorf("regions %s: read header: %w", name, err)
	}
	col := map[string]int{"code": -1, "name": -1, "level": -1, "parent_code": -1}
	for i, h := range hdr {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if _, ok := col[h]; ok {
			col[h] = i
		}
	}
	for _, c := range []string{"code", "name", "level", "parent_code"} {
		if col[c] < 0 {
			return nil, fmt.Errorf("regions %s:1: header %q lacks column %q; the first line must name code,name,level,parent_code", name, strings.Join(hdr, ","), c)
		}
	}
	need := max(col["code"], col["name"], col["level"], col["parent_code"]) + 1

	p := &problems{name: name}
	rows := make([]row, 0, 1024)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			p.add(errLine(err), "malformed CSV: %v; fix the quoting", err)
			break
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < need {
			p.add(line, "%d columns, want at least %d (code,name,level,parent_code)", len(rec), need)
			continue
		}
		code := strings.TrimSpace(rec[col["code"]])
		rw := row{line: line}
		rw.Code = code
		rw.Name = strings.TrimSpace(rec[col["name"]])
		rw.Parent = strings.TrimSpace(rec[col["parent_code"]])
		lv, err := strconv.Atoi(strings.TrimSpace(rec[col["level"]]))
		if err != nil || !Level(lv).Valid() {
			p.add(line, "code %s: level %q is not 1–5 (1 province … 5 village)", code, rec[col["level"]])
			continue
		}
		rw.Level = Level(lv)
		own, err := LevelOf(code)
		if err != nil {
			p.add(line, "%v; codes are 12 digits, upper levels padded with zeros", err)
			continue
		}
		if rw.Name == "" {
			p.add(line, "code %s: empty name", code)
		}
		switch {
		case rw.Level > Province && rw.Parent == code:
			// Stand-in row for a unit without subdivisions (see Table).
			rw.placeh = true
		case own != rw.Level:
			p.add(line, "code %s: level column says %d (%s) but the code's zero padding says %d (%s); fix the level or the code",
				code, rw.Level, rw.Level, own, own)
			continue
		case rw.Level == Province && rw.Parent != "":
			p.add(line, "code %s: a province has no parent, but parent_code is %q; leave it empty", code, rw.Parent)
			continue
		case rw.Level > Province && rw.Parent == "":
			p.add(line, "code %s: %s without parent_code; give the code of its %s", code, rw.Level, rw.Level-1)
			continue
		}
		rows = append(rows, rw)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("regions %s: no rows after the header; nothing loaded", name)
	}

	t := &Table{
		name:     name,
		byCode:   make(map[string]int32, len(rows)),
		children: make(map[string][]int32),
		standIn:  make(map[string]Level),
	}
	firstLine := make(map[string]int, len(rows))
	t.regions = make([]Region, 0, len(rows))
	for _, rw := range rows {
		if rw.placeh {
			continue
		}
		if l0, dup := firstLine[rw.Code]; dup {
			p.add(rw.line, "code %s: duplicate of line %d; each code must appear once", rw.Code, l0)
			continue
		}
		firstLine[rw.Code] = rw.line
		t.regions = append(t.regions, rw.Region)
	}
	slices.SortFunc(t.regions, func(a, b Region) int { return strings.Compare(a.Code, b.Code) })
	for i, r := range t.regions {
		t.byCode[r.Code] = int32(i)
	}
	// Stand-in rows: the code must exist as a real region and the stand-in levels must
	// continue it one level at a time.
	placeLine := map[string]map[Level]int{}
	for _, rw := range rows {
		if !rw.placeh {
			continue
		}
		i, ok := t.byCode[rw.Code]
		if !ok {
			p.add(rw.line, "code %s: row names itself as parent (a stand-in for a unit without subdivisions) but the unit has no row of its own; add it or fix parent_code", rw.Code)
			continue
		}
		if placeLine[rw.Code] == nil {
			placeLine[rw.Code] = map[Level]int{}
		}
		if l0, dup := placeLine[rw.Code][rw.Level]; dup {
			p.add(rw.line, "code %s: duplicate of line %d; each code must appear once per level", rw.Code, l0)
			continue
		}
		if rw.Level <= t.regions[i].Level {
			p.add(rw.line, "code %s: duplicate of line %d (level %d); each code must appear once", rw.Code, firstLine[rw.Code], t.regions[i].Level)
			continue
		}
		placeLine[rw.Code][rw.Level] = rw.line
	}
	for code, lv := range placeLine {
		base := t.regions[t.byCode[code]].Level
		deep := base
		for deep+1 <= Village {
			if _, ok := lv[deep+1]; !ok {
				break
			}
			deep++
		}
		if len(lv) != int(deep-base) {
			for l, line := range lv {
				if l > deep {
					p.add(line, "code %s: stand-in row at level %d skips level %d; stand-ins must follow the unit's own level %d one level at a time", code, l, deep+1, base)
				}
			}
			continue
		}
		t.standIn[code] = deep
	}
	for _, rw := range rows {
		if rw.placeh || rw.Level == Province || firstLine[rw.Code] != rw.line {
			continue
		}
		pi, ok := t.byCode[rw.Parent]
		if !ok {
			p.add(rw.line, "code %s (%s): parent %s not found; add the parent row or fix parent_code", rw.Code, rw.Name, rw.Parent)
			continue
		}
		par := t.regions[pi]
		want := rw.Level - 1
		if par.Level != want && (par.Level > want || t.standIn[par.Code] < want) {
			p.add(rw.line, "code %s (%s): parent %s is a %s, want a %s; fix parent_code or the level", rw.Code, rw.Name, par.Code, par.Level, want)
			continue
		}
		if !strings.HasPrefix(rw.Code, par.Code[:sigDigits[par.Level]]) {
			p.add(rw.line, "code %s (%s): does not start with its parent's digits %s; fix parent_code or the code", rw.Code, rw.Name, par.Code[:sigDigits[par.Level]])
			continue
		}
		t.children[rw.Parent] = append(t.children[rw.Parent], t.byCode[rw.Code])
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	for _, ch := range t.children {
		slices.Sort(ch) // indices into the code-sorted slice: sorted by code
	}
	for _, r := range t.regions {
		t.byLevel[r.Level] = append(t.byLevel[r.Level], r)
	}
	return t, nil
}

// Name returns the name the table was loaded under (file name), for messages.
func (t *Table) Name() string { return t.name }

// Len returns the number of distinct regions.
func (t *Table) Len() int { return len(t.regions) }

// Get returns the region with the given 12-digit code.
func (t *Table) Get(code string) (Region, bool) {
	i, ok := t.byCode[code]
	if !ok {
		return Region{}, false
	}
	return t.regions[i], true
}

// Regions returns the regions of one level sorted by code. The slice is a copy the
// caller may keep or modify.
func (t *Table) Regions(level Level) []Region {
	if !level.Valid() {
		return nil
	}
	return slices.Clone(t.byLevel[level])
}

// Villages returns all villages sorted by code (a copy).
func (t *Table) Villages() []Region { return t.Regions(Village) }

// Counties returns all counties sorted by code (a copy).
func (t *Table) Counties() []Region { return t.Regions(County) }

// Children returns the direct children of code sorted by code, i.e. the regions whose
// parent_code is code (for 东莞 these are townships).
func (t *Table) Children(code string) []Region {
	idx := t.children[code]
	out := make([]Region, len(idx))
	for i, j := range idx {
		out[i] = t.regions[j]
	}
	return out
}

// Path returns the chain from the province down to code itself, or nil if code is not
// in the table.
func (t *Table) Path(code string) []Region {
	r, ok := t.Get(code)
	if !ok {
		return nil
	}
	path := make([]Region, 0, int(r.Level))
	for {
		path = append(path, r)
		if r.Parent == "" {
			break
		}
		if r, ok = t.Get(r.Parent); !ok {
			break // cannot happen in a validated table
		}
	}
	slices.Reverse(path)
	return path
}

// Ancestor returns the region at level on code's path (code itself when level is its
// own level). For cities without counties the city stands in for the county level. It
// returns false when code is unknown or level is below code's level.
func (t *Table) Ancestor(code string, level Level) (Region, bool) {
	if !level.Valid() {
		return Region{}, false
	}
	for _, r := range t.Path(code) {
		if r.Level == level || (r.Level < level && t.standIn[r.Code] >= level) {
			return r, true
		}
	}
	return Region{}, false
}
