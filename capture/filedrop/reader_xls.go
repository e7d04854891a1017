package filedrop

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/shakinm/xlsReader/cfb"
	"github.com/shakinm/xlsReader/xls"
	"github.com/shakinm/xlsReader/xls/record"
	"github.com/xuri/excelize/v2"
)

// ErrXLSUnsupported is returned for Excel files older than Excel 97 (BIFF5 and
// earlier, a "Book" stream) and for password-protected .xls files: only unencrypted
// BIFF8 is read, so such deliveries are rejected with this message.
var ErrXLSUnsupported = errors.New("XLS older than Excel 97 (BIFF5 or earlier) or password-protected: open it in Excel or WPS and save it as XLSX or as an unprotected Excel 97-2003 workbook")

// xlsMaxBytes bounds the size of an .xls delivery read into memory. A BIFF8 sheet
// holds at most 65,536 rows × 256 columns, so real files stay well below it.
const xlsMaxBytes = 256 << 20

// BIFF8 record identifiers used by the scanner (see [MS-XLS] 2.3).
const (
	biffBOF         = 0x0809
	biffEOF         = 0x000A
	biffFilePass    = 0x002F
	biffDateMode    = 0x0022
	biffBoundSheet  = 0x0085
	biffFormat      = 0x041E
	biffXF          = 0x00E0
	biffMergedCells = 0x00E5
	biffNumber      = 0x0203
	biffRK          = 0x027E
	biffMulRK       = 0x00BD
	biffFormula     = 0x0006
	biffString      = 0x0207
	biffBoolErr     = 0x0205
)

// xlsReader reads one sheet of a legacy Excel 97-2003 workbook. The whole file is
// parsed in memory (an .xls sheet has at most 65,536 rows). Text cells come from
// github.com/shakinm/xlsReader, which decodes the shared string table (UTF-16
// strings split over CONTINUE records); numbers, formula results, merged ranges and
// the number formats come from a small record scanner of our own, because the
// library skips formula cells, decodes negative RK integers as unsigned and exposes
// neither merges nor the 1904 date system. Numbers are formatted by excelize with
// the cell's number format, so a date reads exactly as it would from an XLSX file.
type xlsReader struct {
	sheetName string
	sheet     *xls.Sheet
	header    []string
	nrows     int
	row       int // next 0-based sheet row to read
	line      int64
	fields    []string
	nums      map[uint32]xlsNum // key: row<<16 | col
	maxCol    map[uint16]int    // per row: last column holding a scanned cell
	fmt       *xlsFormatter
}

// xlsNum is a numeric (or formula result) cell found by the scanner.
type xlsNum struct {
	v    float64
	xf   uint16
	text string // formula result that is text or boolean; isText tells it apart
	// isText is set when the cell's value is text rather than a number.
	isText bool
}

// xlsGlobals is what the scanner reads from the workbook globals substream.
type xlsGlobals struct {
	date1904 bool
	sheets   []uint32       // stream offsets of the sheets' BOF records, in order
	formats  map[int]string // FORMAT records: number format index → format code
	xfs      []uint16       // per XF record: its number format index
}

// openXLS opens path, picks the sheet (first when empty) and reads the header row.
func openXLS(p, sheet string) (*xlsReader, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("open XLS: %w", err)
	}
	if st.Size() > xlsMaxBytes {
		return nil, fmt.Errorf("XLS file of %d bytes is larger than %d: deliver it as XLSX or CSV", st.Size(), xlsMaxBytes)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("open XLS: %w", err)
	}
	return newXLSReader(data, sheet)
}

// newXLSReader parses an in-memory .xls file (the fuzz test calls it directly). Any
// panic of the parsing library on a corrupt file becomes a rejection.
func newXLSReader(data []byte, sheet string) (x *xlsReader, err error) {
	defer func() {
		if r := recover(); r != nil {
			if x != nil {
				x.fmt.close()
			}
			x, err = nil, fmt.Errorf("corrupt XLS (the reader failed: %v); open and re-save it in Excel, or deliver XLSX", r)
		}
	}()
	stream, err := workbookStream(data)
	if err != nil {
		return nil, err
	}
	g, err := scanGlobals(stream)
	if err != nil {
		return nil, err
	}
	wb, err := xls.OpenReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("corrupt XLS: %w", err)
	}
	if wb.GetNumberSheets() == 0 || wb.GetNumberSheets() != len(g.sheets) {
		return nil, fmt.Errorf("corrupt XLS: the reader found %d sheets, the workbook lists %d", wb.GetNumberSheets(), len(g.sheets))
	}
	idx := 0
	if sheet != "" {
		idx = -1
		var names []string
		for i := 0; i < wb.GetNumberSheets(); i++ {
			s, err := wb.GetSheet(i)
			if err != nil {
				return nil, fmt.Errorf("corrupt XLS: sheet %d: %w", i+1, err)
			}
			names = append(names, s.GetName())
			if s.GetName() == sheet {
				idx = i
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("sheet %q not found in the XLS (sheets: %s)", sheet, strings.Join(names, ", "))
		}
	}
	s, err := wb.GetSheet(idx)
	if err != nil {
		return nil, fmt.Errorf("corrupt XLS: sheet %d: %w", idx+1, err)
	}
	x = &xlsReader{sheet: s, sheetName: s.GetName(), nrows: s.GetNumberRows()}
	nums, merges, err := scanSheet(stream, g.sheets[idx])
	if err != nil {
		return nil, fmt.Errorf("sheet %q: %w", x.sheetName, err)
	}
	x.nums, x.maxCol = nums, map[uint16]int{}
	for k := range nums {
		r, c := uint16(k>>16), int(k&0xFFFF)
		if m, ok := x.maxCol[r]; !ok || c > m {
			x.maxCol[r] = c
		}
	}
	x.fmt = &xlsFormatter{g: g}
	if err := x.readHeader(merges); err != nil {
		x.fmt.close()
		return nil, err
	}
	return x, nil
}

// readHeader reads the first non-blank row as the header and rejects merged cells in it.
func (x *xlsReader) readHeader(merges []xlsMerge) error {
	for x.row < x.nrows {
		cols, err := x.readRow()
		if err != nil {
			return err
		}
		if blank(cols) {
			continue
		}
		x.header = make([]string, len(cols))
		for i, c := range cols {
			x.header[i] = cleanHeader(c)
		}
		// Trailing empty header cells (formatted but empty) are not columns.
		for len(x.header) > 0 && x.header[len(x.header)-1] == "" {
			x.header = x.header[:len(x.header)-1]
		}
		break
	}
	if x.header == nil {
		return fmt.Errorf("empty file: sheet %q has no header row", x.sheetName)
	}
	var merged []string
	for _, m := range merges {
		if int64(m.r1)+1 <= x.line && x.line <= int64(m.r2)+1 {
			merged = append(merged, m.String())
		}
	}
	if len(merged) > 0 {
		return fmt.Errorf("sheet %q: merged header cells %s; unmerge them so every column has its own header", x.sheetName, strings.Join(merged, ", "))
	}
	return nil
}

func (x *xlsReader) Header() []string { return x.header }

func (x *xlsReader) Describe() string { return fmt.Sprintf("XLS, sheet %q", x.sheetName) }

func (x *xlsReader) Next() (row rawRow, err error) {
	defer func() {
		if r := recover(); r != nil {
			row, err = rawRow{}, fmt.Errorf("corrupt XLS: sheet %q row %d: the reader failed: %v", x.sheetName, x.line, r)
		}
	}()
	for x.row < x.nrows {
		cols, err := x.readRow()
		if err != nil {
			return rawRow{}, err
		}
		if blank(cols) {
			continue
		}
		row := rawRow{Line: x.line}
		if len(cols) > len(x.header) && !blank(cols[len(x.header):]) {
			row.Fields = cols
			row.Problem = fmt.Sprintf("has values in %d columns, header has %d", len(cols), len(x.header))
			return row, nil
		}
		for len(cols) < len(x.header) {
			cols = append(cols, "")
		}
		row.Fields = cols[:len(x.header)]
		return row, nil
	}
	return rawRow{}, io.EOF
}

// readRow returns the cell texts of the next sheet row and advances the line.
func (x *xlsReader) readRow() ([]string, error) {
	r := x.row
	x.row++
	x.line = int64(r) + 1
	rw, err := x.sheet.GetRow(r)
	if err != nil {
		return nil, fmt.Errorf("sheet %q row %d: %w", x.sheetName, x.line, err)
	}
	cells := rw.GetCols()
	x.fields = x.fields[:0]
	for c, cell := range cells {
		v := ""
		switch cell.(type) {
		case *record.LabelSSt, *record.LabelBIFF8, *record.LabelBIFF5:
			v = cell.GetString()
		default:
			if n, ok := x.nums[uint32(r)<<16|uint32(c)]; ok {
				if v, err = x.fmt.format(n); err != nil {
					return nil, fmt.Errorf("sheet %q cell %s: %w", x.sheetName, cellName(c, r), err)
				}
			}
		}
		x.fields = append(x.fields, v)
	}
	// Cells the library skips (formulas) may lie past its last column.
	last, ok := x.maxCol[uint16(r)]
	if !ok {
		last = -1
	}
	for c := len(cells); c <= last; c++ {
		n, ok := x.nums[uint32(r)<<16|uint32(c)]
		if !ok {
			continue
		}
		for len(x.fields) < c {
			x.fields = append(x.fields, "")
		}
		v, err := x.fmt.format(n)
		if err != nil {
			return nil, fmt.Errorf("sheet %q cell %s: %w", x.sheetName, cellName(c, r), err)
		}
		x.fields = append(x.fields, v)
	}
	return x.fields, nil
}

func (x *xlsReader) Close() error { return x.fmt.close() }

// cellName names a 0-based cell like Excel does ("B3").
func cellName(col, row int) string {
	n, err := excelize.CoordinatesToCellName(col+1, row+1)
	if err != nil {
		return fmt.Sprintf("R%dC%d", row+1, col+1)
	}
	return n
}

// xlsMerge is one merged range (0-based, inclusive).
type xlsMerge struct{ r1, r2, c1, c2 int }

func (m xlsMerge) String() string {
	return cellName(m.c1, m.r1) + ":" + cellName(m.c2, m.r2)
}

// workbookStream extracts the BIFF8 "Workbook" stream from the compound file.
func workbookStream(data []byte) ([]byte, error) {
	if len(data) < 8 || !bytes.Equal(data[:8], []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}) {
		return nil, errors.New("corrupt XLS: not an OLE2 compound file (an XLSX or CSV renamed to .xls?)")
	}
	if err := checkCFBChains(data); err != nil {
		return nil, err
	}
	c, err := cfb.OpenReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("corrupt or truncated XLS: %w", err)
	}
	var book, root *cfb.Directory
	for _, d := range c.GetDirs() {
		switch d.Name() {
		case "Workbook":
			book = d
		case "Book":
			return nil, ErrXLSUnsupported
		case "Root Entry":
			root = d
		}
	}
	if book == nil || root == nil {
		return nil, errors.New("corrupt XLS: no Workbook stream in the compound file (not an Excel file?)")
	}
	r, err := c.OpenObject(book, root)
	if err != nil {
		return nil, fmt.Errorf("corrupt or truncated XLS: %w", err)
	}
	stream, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("corrupt or truncated XLS: %w", err)
	}
	if size := int(book.GetStreamSize()); size <= len(stream) {
		stream = stream[:size]
	} else {
		return nil, fmt.Errorf("corrupt or truncated XLS: Workbook stream has %d of %d bytes", len(stream), size)
	}
	return stream, nil
}

// biffRecords walks the records from off until an EOF record (included) or the end
// of the stream; f returns false to stop early.
func biffRecords(stream []byte, off int, f func(id uint16, data []byte, at int) bool) error {
	for off+4 <= len(stream) {
		id := binary.LittleEndian.Uint16(stream[off:])
		n := int(binary.LittleEndian.Uint16(stream[off+2:]))
		if off+4+n > len(stream) {
			return fmt.Errorf("corrupt or truncated XLS: record 0x%04X at byte %d runs past the end of the stream", id, off)
		}
		if !f(id, stream[off+4:off+4+n], off) || id == biffEOF {
			return nil
		}
		off += 4 + n
	}
	return fmt.Errorf("corrupt or truncated XLS: no EOF record before byte %d", len(stream))
}

// scanGlobals reads the globals substream: version, encryption, date system, sheet
// offsets and number formats.
func scanGlobals(stream []byte) (*xlsGlobals, error) {
	g := &xlsGlobals{formats: map[int]string{}}
	var problem error
	first := true
	err := biffRecords(stream, 0, func(id uint16, d []byte, at int) bool {
		if first {
			first = false
			if id != biffBOF || len(d) < 4 {
				problem = errors.New("corrupt XLS: the Workbook stream does not start with a BOF record")
				return false
			}
			if v := binary.LittleEndian.Uint16(d); v != 0x0600 {
				problem = ErrXLSUnsupported
				return false
			}
			return true
		}
		switch id {
		case biffFilePass:
			problem = ErrXLSUnsupported
			return false
		case biffDateMode:
			g.date1904 = len(d) >= 2 && binary.LittleEndian.Uint16(d) == 1
		case biffBoundSheet:
			// Only worksheets (type byte 0) are sheets the library lists as well.
			if len(d) < 6 {
				problem = fmt.Errorf("corrupt XLS: short BOUNDSHEET record at byte %d", at)
				return false
			}
			g.sheets = append(g.sheets, binary.LittleEndian.Uint32(d))
		case biffFormat:
			if len(d) < 5 {
				problem = fmt.Errorf("corrupt XLS: short FORMAT record at byte %d", at)
				return false
			}
			s, _ := xlUnicodeString(d[2:])
			g.formats[int(binary.LittleEndian.Uint16(d))] = s
		case biffXF:
			if len(d) < 4 {
				problem = fmt.Errorf("corrupt XLS: short XF record at byte %d", at)
				return false
			}
			g.xfs = append(g.xfs, binary.LittleEndian.Uint16(d[2:]))
		}
		return true
	})
	if problem != nil {
		return nil, problem
	}
	if err != nil {
		return nil, err
	}
	if len(g.sheets) == 0 {
		return nil, errors.New("corrupt XLS: the workbook lists no sheet")
	}
	return g, nil
}

// xlUnicodeString decodes a BIFF8 XLUnicodeString (cch, flags, compressed Latin-1 or
// UTF-16LE characters); it returns what fits in d.
func xlUnicodeString(d []byte) (string, bool) {
	if len(d) < 3 {
		return "", false
	}
	n := int(binary.LittleEndian.Uint16(d))
	wide := d[2]&1 == 1
	d = d[3:]
	if !wide {
		ok := len(d) >= n
		if !ok {
			n = len(d)
		}
		r := make([]rune, n)
		for i := 0; i < n; i++ {
			r[i] = rune(d[i])
		}
		return string(r), ok
	}
	ok := len(d) >= 2*n
	if !ok {
		n = len(d) / 2
	}
	u := make([]uint16, n)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(d[2*i:])
	}
	return string(utf16.Decode(u)), ok
}

// rkValue decodes an RK number (signed 30-bit integer or truncated double, maybe
// divided by 100).
func rkValue(rk uint32) float64 {
	var v float64
	if rk&2 != 0 {
		v = float64(int32(rk) >> 2)
	} else {
		v = math.Float64frombits(uint64(rk&^3) << 32)
	}
	if rk&1 != 0 {
		v /= 100
	}
	return v
}

// scanSheet reads the numeric cells, formula results and merged ranges of the sheet
// whose BOF record is at off.
func scanSheet(stream []byte, off uint32) (map[uint32]xlsNum, []xlsMerge, error) {
	if int(off)+4 > len(stream) || binary.LittleEndian.Uint16(stream[off:]) != biffBOF {
		return nil, nil, fmt.Errorf("corrupt XLS: no sheet BOF record at byte %d", off)
	}
	nums := map[uint32]xlsNum{}
	var merges []xlsMerge
	var problem error
	pendingString := uint32(0) // key of a formula waiting for its STRING record
	hasPending := false
	put := func(d []byte, n xlsNum) {
		r, c := binary.LittleEndian.Uint16(d), binary.LittleEndian.Uint16(d[2:])
		nums[uint32(r)<<16|uint32(c)] = n
	}
	err := biffRecords(stream, int(off), func(id uint16, d []byte, at int) bool {
		short := func(min int) bool {
			if len(d) < min {
				problem = fmt.Errorf("corrupt XLS: short record 0x%04X at byte %d", id, at)
				return true
			}
			return false
		}
		switch id {
		case biffNumber:
			if short(14) {
				return false
			}
			put(d, xlsNum{v: math.Float64frombits(binary.LittleEndian.Uint64(d[6:])), xf: binary.LittleEndian.Uint16(d[4:])})
		case biffRK:
			if short(10) {
				return false
			}
			put(d, xlsNum{v: rkValue(binary.LittleEndian.Uint32(d[6:])), xf: binary.LittleEndian.Uint16(d[4:])})
		case biffMulRK:
			if short(6) || (len(d)-6)%6 != 0 {
				problem = fmt.Errorf("corrupt XLS: bad MULRK record at byte %d", at)
				return false
			}
			r, c := binary.LittleEndian.Uint16(d), int(binary.LittleEndian.Uint16(d[2:]))
			for i := 4; i+6 <= len(d)-2; i += 6 {
				nums[uint32(r)<<16|uint32(c&0xFFFF)] = xlsNum{v: rkValue(binary.LittleEndian.Uint32(d[i+2:])), xf: binary.LittleEndian.Uint16(d[i:])}
				c++
			}
		case biffFormula:
			if short(20) {
				return false
			}
			xf := binary.LittleEndian.Uint16(d[4:])
			res := d[6:14]
			key := uint32(binary.LittleEndian.Uint16(d))<<16 | uint32(binary.LittleEndian.Uint16(d[2:]))
			if binary.LittleEndian.Uint16(res[6:]) != 0xFFFF {
				nums[key] = xlsNum{v: math.Float64frombits(binary.LittleEndian.Uint64(res)), xf: xf}
				return true
			}
			switch res[0] {
			case 0: // text: in the STRING record that follows
				pendingString, hasPending = key, true
			case 1:
				t := "FALSE"
				if res[2] != 0 {
					t = "TRUE"
				}
				nums[key] = xlsNum{text: t, isText: true}
			case 2:
				nums[key] = xlsNum{text: biffErrorText(res[2]), isText: true}
			case 3:
				nums[key] = xlsNum{isText: true}
			}
		case biffString:
			if hasPending {
				s, _ := xlUnicodeString(d)
				nums[pendingString] = xlsNum{text: s, isText: true}
				hasPending = false
			}
		case biffMergedCells:
			if short(2) {
				return false
			}
			n := int(binary.LittleEndian.Uint16(d))
			for i := 0; i < n && 2+8*i+8 <= len(d); i++ {
				e := d[2+8*i:]
				merges = append(merges, xlsMerge{
					r1: int(binary.LittleEndian.Uint16(e)), r2: int(binary.LittleEndian.Uint16(e[2:])),
					c1: int(binary.LittleEndian.Uint16(e[4:])), c2: int(binary.LittleEndian.Uint16(e[6:])),
				})
			}
		}
		return true
	})
	if problem != nil {
		return nil, nil, problem
	}
	if err != nil {
		return nil, nil, err
	}
	return nums, merges, nil
}

// biffErrorText names a BIFF error code the way Excel displays it.
func biffErrorText(code byte) string {
	switch code {
	case 0x00:
		return "#NULL!"
	case 0x07:
		return "#DIV/0!"
	case 0x0F:
		return "#VALUE!"
	case 0x17:
		return "#REF!"
	case 0x1D:
		return "#NAME?"
	case 0x24:
		return "#NUM!"
	case 0x2A:
		return "#N/A"
	}
	return "#ERR" + strconv.Itoa(int(code))
}

// xlsFormatter formats numbers with their cell's number format through a scratch
// excelize workbook, so dates and decimals read the same as in the XLSX path.
type xlsFormatter struct {
	g      *xlsGlobals
	f      *excelize.File
	styles map[uint16]int // XF index → excelize style
}

const xlsScratchSheet = "Sheet1"

func (x *xlsFormatter) format(n xlsNum) (string, error) {
	if n.isText {
		return n.text, nil
	}
	v := n.v
	if x.g.date1904 {
		v += 1462 // the 1904 system counts from 1904-01-01; excelize formats 1900-based serials
	}
	fmtIdx := 0
	if int(n.xf) < len(x.g.xfs) {
		fmtIdx = int(x.g.xfs[n.xf])
	}
	if x.f == nil {
		x.f = excelize.NewFile(spreadsheetOptions)
		x.styles = map[uint16]int{}
	}
	style, ok := x.styles[n.xf]
	if !ok && fmtIdx != 0 {
		st := &excelize.Style{NumFmt: fmtIdx}
		if code, custom := x.g.formats[fmtIdx]; custom {
			st = &excelize.Style{CustomNumFmt: &code}
		}
		id, err := x.f.NewStyle(st)
		if err != nil {
			return "", fmt.Errorf("number format %d: %w", fmtIdx, err)
		}
		style = id
		x.styles[n.xf] = style
	}
	if err := x.f.SetCellFloat(xlsScratchSheet, "A1", v, -1, 64); err != nil {
		return "", fmt.Errorf("format number: %w", err)
	}
	if err := x.f.SetCellStyle(xlsScratchSheet, "A1", "A1", style); err != nil {
		return "", fmt.Errorf("format number: %w", err)
	}
	s, err := x.f.GetCellValue(xlsScratchSheet, "A1")
	if err != nil {
		return "", fmt.Errorf("format number: %w", err)
	}
	return s, nil
}

func (x *xlsFormatter) close() error {
	if x == nil || x.f == nil {
		return nil
	}
	err := x.f.Close()
	x.f = nil
	return err
}
