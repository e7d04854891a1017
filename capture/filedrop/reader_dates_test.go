package filedrop

import (
	"path/filepath"
	"testing"

	"github.com/xuri/excelize/v2"
)

// Date cells in the formats Chinese Excel writes by default read as dates, not as the
// US short date or a raw serial number.
func TestXLSXBuiltinDateFormats(t *testing.T) {
	cases := []struct {
		numFmt int
		want   string
	}{
		{14, "2023-05-17"},       // system short date (shown as 2023/5/17 in Chinese Excel)
		{22, "2023-05-17 12:00"}, // short date + time
		{31, "2023年5月17日"},       // built-in Chinese long date
		{57, "2023年5月"},          // built-in Chinese year-month
		{0, "45063.5"},           // General: a number stays a number
		{2, "45063.50"},          // 0.00
	}
	p := filepath.Join(t.TempDir(), "dates.xlsx")
	f := excelize.NewFile()
	if err := f.SetSheetRow("Sheet1", "A1", &[]any{"编号", "日期"}); err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		row := i + 2
		a, _ := excelize.CoordinatesToCellName(1, row)
		b, _ := excelize.CoordinatesToCellName(2, row)
		st, err := f.NewStyle(&excelize.Style{NumFmt: c.numFmt})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.SetCellValue("Sheet1", a, i); err != nil {
			t.Fatal(err)
		}
		if err := f.SetCellFloat("Sheet1", b, 45063.5, -1, 64); err != nil {
			t.Fatal(err)
		}
		if err := f.SetCellStyle("Sheet1", b, b, st); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.SaveAs(p); err != nil {
		t.Fatal(err)
	}
	f.Close()
	x, err := openXLSX(p, "")
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	for _, c := range cases {
		row, err := x.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got := row.Fields[1]; got != c.want {
			t.Errorf("number format %d: read %q, want %q", c.numFmt, got, c.want)
		}
	}
}
