package filedrop

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
)

// xlsDataset maps every column of the testdata/*.xls fixtures.
func xlsDataset(t *testing.T) DatasetOptions {
	ds := baseDataset(t)
	ds.Columns["发证日期"] = "issued_on"
	ds.Columns["户编号"] = "household_no"
	ds.Columns["补贴"] = "subsidy"
	return ds
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("fixture %s (made by testdata/make_xls.py): %v", name, err)
	}
	return b
}

func TestXLSDeliveries(t *testing.T) {
	h := newHarness(t, xlsDataset(t))
	h.write("2024-01.xls", fixture(t, "full1.xls"))
	cs := h.delivery()
	eq(t, summary(cs), []string{
		"c 510101199001011234 after=张三/一级",
		"c 510101199202022345 after=李四/二级",
		"c 510101199303033456 after=王五/三级",
		"c 510101199404044567 after=钱七/四级",
	})
	// Sheet row numbers: row 4 of the sheet is empty.
	var lines []int64
	for _, c := range cs {
		lines = append(lines, c.Envelope.Source.Line)
	}
	if want := []int64{2, 3, 5, 6}; !equalInts(lines, want) {
		t.Fatalf("source lines %v, want %v", lines, want)
	}
	e := cs[0].Envelope
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.Source.File != "2024-01.xls" || e.Source.Kind != "filedrop" {
		t.Fatalf("source %+v", e.Source)
	}
	// Dates formatted by their number format (YYYY-MM-DD), text with leading zeros
	// intact, numbers by their format (0.00), empty cells null.
	wantAfter := []map[string]any{
		{"id_number": "510101199001011234", "name": "张三", "level": "一级", "issued_on": "2023-05-17", "household_no": "0012345", "subsidy": "1234.50"},
		{"id_number": "510101199202022345", "name": "李四", "level": "二级", "issued_on": "2020-01-02", "household_no": "0000001", "subsidy": nil},
		{"id_number": "510101199303033456", "name": "王五", "level": "三级", "issued_on": nil, "household_no": "0099999", "subsidy": "-12.34"},
		{"id_number": "510101199404044567", "name": "钱七", "level": "四级", "issued_on": "1999-12-31", "household_no": "0100000", "subsidy": "200.00"},
	}
	for i, w := range wantAfter {
		got := cs[i].Envelope.After
		for k, v := range w {
			if got[k] != v {
				t.Errorf("change %d field %s = %#v, want %#v", i, k, got[k], v)
			}
		}
		if len(got) != len(w) {
			t.Errorf("change %d after has %d fields, want %d: %v", i, len(got), len(w), got)
		}
	}

	// Second month: 李四 二级→一级, 王五 gone, 赵六 new, columns reordered.
	h.write("2024-02.xls", fixture(t, "full2.xls"))
	cs = h.delivery()
	eq(t, summary(cs), []string{
		"u 510101199202022345 before=李四/二级 after=李四/一级",
		"d 510101199303033456 before=王五/三级",
		"c 510101199505055678 after=赵六/二级",
	})
	if got := cs[2].Envelope.After["issued_on"]; got != "2024-02-29" {
		t.Fatalf("赵六 issued_on = %v, want 2024-02-29", got)
	}

	// The same file again emits nothing.
	h.write("2024-02-again.xls", fixture(t, "full2.xls"))
	h.none()
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestXLSRejections(t *testing.T) {
	h := newHarness(t, xlsDataset(t))
	for _, tc := range []struct {
		name, fixture string
		content       []byte
		want          string
	}{
		{name: "merged.xls", fixture: "merged.xls", want: `sheet "花名册": merged header cells B1:C1; unmerge them`},
		{name: "truncated.xls", fixture: "truncated.xls", want: "corrupt or truncated XLS"},
		{name: "renamed.xls", content: []byte("身份证号,姓名\n1,张三\n"), want: `column "户编号" (field household_no): required column missing`},
		{name: "page.xls", content: []byte("<html><body><table><tr><td>身份证号</td></tr></table></body></html>"), want: "not a spreadsheet: the file is an HTML page"},
		{name: "magic-only.xls", content: []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}, want: "corrupt"},
	} {
		content := tc.content
		if tc.fixture != "" {
			content = fixture(t, tc.fixture)
		}
		h.write(tc.name, content)
		h.none()
		rep := readReport(t, filepath.Join(h.ds.Inbox, "rejected", tc.name))
		if !strings.Contains(rep, tc.want) {
			t.Errorf("%s report:\n%s\nwant it to contain %q", tc.name, rep, tc.want)
		}
	}
}

// TestXLSDatesLikeXLSX checks that a date cell reads the same from XLS and from an
// XLSX cell with the same serial number and number format.
func TestXLSDatesLikeXLSX(t *testing.T) {
	x, err := openXLS(filepath.Join("testdata", "full1.xls"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	row, err := x.Next()
	if err != nil {
		t.Fatal(err)
	}
	fromXLS := row.Fields[3]

	p := filepath.Join(t.TempDir(), "d.xlsx")
	f := excelize.NewFile()
	code := "YYYY-MM-DD"
	st, err := f.NewStyle(&excelize.Style{CustomNumFmt: &code})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetSheetRow("Sheet1", "A1", &[]any{"身份证号", "发证日期"}); err != nil {
		t.Fatal(err)
	}
	// 2023-05-17 is serial 45063 in the 1900 date system.
	if err := f.SetCellValue("Sheet1", "A2", "1"); err != nil {
		t.Fatal(err)
	}
	if err := f.SetCellFloat("Sheet1", "B2", 45063, -1, 64); err != nil {
		t.Fatal(err)
	}
	if err := f.SetCellStyle("Sheet1", "B2", "B2", st); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveAs(p); err != nil {
		t.Fatal(err)
	}
	f.Close()
	xr, err := openXLSX(p, "")
	if err != nil {
		t.Fatal(err)
	}
	defer xr.Close()
	r2, err := xr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if fromXLS != r2.Fields[1] || fromXLS != "2023-05-17" {
		t.Fatalf("date from XLS %q, from XLSX %q; want both 2023-05-17", fromXLS, r2.Fields[1])
	}
}

func TestXLSSheetByName(t *testing.T) {
	x, err := openXLS(filepath.Join("testdata", "full1.xls"), "花名册")
	if err != nil {
		t.Fatal(err)
	}
	x.Close()
	if x.Describe() != `XLS, sheet "花名册"` {
		t.Fatalf("describe %q", x.Describe())
	}
	_, err = openXLS(filepath.Join("testdata", "full1.xls"), "Sheet9")
	if err == nil || !strings.Contains(err.Error(), `sheet "Sheet9" not found in the XLS (sheets: 花名册)`) {
		t.Fatalf("missing sheet: %v", err)
	}
}

// rkInt shifts a signed integer into the 30 value bits of an RK number.
func rkInt(v int32) uint32 { return uint32(v << 2) }

func TestRKValue(t *testing.T) {
	for _, tc := range []struct {
		rk   uint32
		want float64
	}{
		{rk: 200<<2 | 2, want: 200},
		{rk: rkInt(-5) | 2, want: -5},
		{rk: rkInt(-1234) | 3, want: -12.34},
		{rk: 123450<<2 | 3, want: 1234.5},
		{rk: uint32(math.Float64bits(1.5) >> 32), want: 1.5},
		{rk: uint32(math.Float64bits(-2.5)>>32) | 1, want: -0.025},
	} {
		if got := rkValue(tc.rk); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("rkValue(%#x) = %v, want %v", tc.rk, got, tc.want)
		}
	}
}

func TestXLUnicodeString(t *testing.T) {
	wide := func(s string) []byte {
		u := []rune(s)
		b := binary.LittleEndian.AppendUint16(nil, uint16(len(u)))
		b = append(b, 1)
		for _, r := range u {
			b = binary.LittleEndian.AppendUint16(b, uint16(r))
		}
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
		ok   bool
	}{
		{"compressed", []byte{3, 0, 0, 'a', 'b', 0xE9}, "abé", true},
		{"utf16", wide("残疾等级"), "残疾等级", true},
		{"short utf16", wide("残疾等级")[:7], "残疾", false},
		{"short compressed", []byte{5, 0, 0, 'x'}, "x", false},
		{"no header", []byte{1}, "", false},
	} {
		got, ok := xlUnicodeString(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// biffRec encodes one BIFF record.
func biffRec(id uint16, data ...byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, id)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func u16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }

// formulaRec builds a FORMULA record at (r, c) with an 8-byte cached result.
func formulaRec(r, c uint16, res [8]byte) []byte {
	d := append(append(u16(r), u16(c)...), u16(15)...)
	d = append(d, res[:]...)
	d = append(d, make([]byte, 8)...) // grbit, chn, cce = 0
	return biffRec(biffFormula, d...)
}

// TestScanSheet checks the record scanner on formula results and merges, which the
// fixtures do not hold (xlwt writes no cached formula results).
func TestScanSheet(t *testing.T) {
	var num [8]byte
	binary.LittleEndian.PutUint64(num[:], math.Float64bits(42.5))
	str := [8]byte{0, 0, 0, 0, 0, 0, 0xFF, 0xFF}
	boolean := [8]byte{1, 0, 1, 0, 0, 0, 0xFF, 0xFF}
	errv := [8]byte{2, 0, 0x07, 0, 0, 0, 0xFF, 0xFF}
	var s []byte
	s = append(s, biffRec(biffBOF, 0, 6, 0x10, 0)...)
	s = append(s, formulaRec(1, 0, num)...)
	s = append(s, formulaRec(1, 1, str)...)
	s = append(s, biffRec(biffString, append([]byte{2, 0, 1}, 0x20, 0x5F, 0x09, 0x4E)...)...) // "张三" in UTF-16LE
	s = append(s, formulaRec(1, 2, boolean)...)
	s = append(s, formulaRec(1, 3, errv)...)
	s = append(s, biffRec(biffMulRK, append(append(append(u16(2), u16(4)...), append(u16(15), binary.LittleEndian.AppendUint32(nil, rkInt(-7)|2)...)...), u16(4)...)...)...)
	s = append(s, biffRec(biffMergedCells, append(u16(1), append(append(u16(0), u16(0)...), append(u16(1), u16(2)...)...)...)...)...)
	s = append(s, biffRec(biffEOF)...)

	nums, merges, err := scanSheet(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]xlsNum{
		1<<16 | 0: {v: 42.5, xf: 15},
		1<<16 | 1: {text: "张三", isText: true},
		1<<16 | 2: {text: "TRUE", isText: true},
		1<<16 | 3: {text: "#DIV/0!", isText: true},
		2<<16 | 4: {v: -7, xf: 15},
	}
	if len(nums) != len(want) {
		t.Fatalf("scanned %d cells, want %d: %v", len(nums), len(want), nums)
	}
	for k, w := range want {
		if nums[k] != w {
			t.Errorf("cell row %d col %d = %+v, want %+v", k>>16, k&0xFFFF, nums[k], w)
		}
	}
	if len(merges) != 1 || merges[0].String() != "B1:C1" {
		t.Fatalf("merges %v, want [B1:C1]", merges)
	}

	// Cut in the middle of a record: an error naming the record, no panic.
	if _, _, err := scanSheet(s[:30], 0); err == nil || !strings.Contains(err.Error(), "runs past the end") {
		t.Fatalf("truncated sheet: %v", err)
	}
}

func TestXLSOldBIFF(t *testing.T) {
	// A Workbook stream starting with a BIFF5 BOF is refused with ErrXLSUnsupported.
	s := append(biffRec(biffBOF, 0, 5, 0x05, 0), biffRec(biffEOF)...)
	if _, err := scanGlobals(s); !errors.Is(err, ErrXLSUnsupported) {
		t.Fatalf("BIFF5: %v", err)
	}
	s = append(biffRec(biffBOF, 0, 6, 0x05, 0), append(biffRec(biffFilePass, 1, 0), biffRec(biffEOF)...)...)
	if _, err := scanGlobals(s); !errors.Is(err, ErrXLSUnsupported) {
		t.Fatalf("encrypted: %v", err)
	}
}

// FuzzXLSReader feeds damaged workbooks to the XLS reader: it must never panic, and
// every row it returns must either carry a problem or have the header's width.
func FuzzXLSReader(f *testing.F) {
	for _, name := range []string{"full1.xls", "full2.xls", "merged.xls", "truncated.xls"} {
		f.Add(fixture(f, name))
	}
	f.Add([]byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1})
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := newXLSReader(data, "")
		if err != nil {
			if x != nil {
				t.Fatalf("reader %v returned with error %v", x, err)
			}
			return
		}
		defer x.Close()
		width := len(x.Header())
		for i := 0; i < 70000; i++ {
			row, err := x.Next()
			if err != nil {
				if err != io.EOF && !strings.Contains(err.Error(), "XLS") {
					t.Fatalf("error without context: %v", err)
				}
				return
			}
			if row.Problem == "" && len(row.Fields) != width {
				t.Fatalf("row at line %d has %d fields, header %d, and no problem", row.Line, len(row.Fields), width)
			}
			if row.Line <= 0 {
				t.Fatalf("row line %d", row.Line)
			}
		}
	})
}

// TestXLSCyclicChains makes every sector of a fixture point to itself in the FAT:
// each such file must be refused (the XLS library alone would loop appending
// sectors until memory runs out).
func TestXLSCyclicChains(t *testing.T) {
	orig := fixture(t, "full1.xls")
	le := binary.LittleEndian
	fatOff := (int(le.Uint32(orig[0x4C:])) + 1) * 512
	nSectors := len(orig)/512 - 1
	loops := 0
	for sid := 0; sid < nSectors; sid++ {
		d := append([]byte(nil), orig...)
		entry := d[fatOff+4*sid:]
		if v := le.Uint32(entry); v >= 0xFFFFFFFD {
			continue // free, FAT or DIFAT sector: not part of a stream chain
		}
		le.PutUint32(entry, uint32(sid))
		x, err := newXLSReader(d, "")
		if err == nil {
			x.Close()
			t.Errorf("sector %d pointing to itself: accepted", sid)
			continue
		}
		if strings.Contains(err.Error(), "loops") {
			loops++
		}
	}
	if loops == 0 {
		t.Fatal("no cyclic chain was reported as looping")
	}
	// The directory chain looping is named as such.
	d := append([]byte(nil), orig...)
	dir := le.Uint32(d[0x30:])
	le.PutUint32(d[fatOff+4*int(dir):], dir)
	if _, err := newXLSReader(d, ""); err == nil || !strings.Contains(err.Error(), "directory chain loops") {
		t.Fatalf("directory chain loop: %v", err)
	}
}
