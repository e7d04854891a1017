package consistency

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/xuri/excelize/v2"
)

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// kindLabels are the Chinese names of the kinds of difference.
var kindLabels = map[string]string{"missing": "源端有、目标端无", "extra": "目标端有、源端无", "moved": "两端区划不同"}

// WriteXLSX writes the report as a workbook with Chinese headers: 地区总数 (every
// region of every indicator) and 差异明细 (every differing key).
func (r *Report) WriteXLSX(w io.Writer) error {
	f, bold, write, err := newWorkbook()
	if err != nil {
		return err
	}
	defer f.Close()
	const totals, details = "地区总数", "差异明细"
	if err := f.SetSheetName("Sheet1", totals); err != nil {
		return err
	}
	if _, err := f.NewSheet(details); err != nil {
		return err
	}
	status := func(mismatch bool) string {
		if mismatch {
			return "不一致"
		}
		return "一致"
	}
	if err := write(totals, 1, "核查", "指标", "区划代码", "区划名称", "源端（"+r.Source+"）", "目标端（"+r.Sink+"）", "差值", "结果", "差异键数", "在途变更"); err != nil {
		return err
	}
	if err := write(details, 1, "核查", "指标", "区划代码", "区划名称", "键", "差异", "源端区划", "目标端区划"); err != nil {
		return err
	}
	if err := f.SetRowStyle(totals, 1, 1, bold); err != nil {
		return err
	}
	if err := f.SetRowStyle(details, 1, 1, bold); err != nil {
		return err
	}
	tr, dr := 2, 2
	for _, ind := range r.Indicators {
		for _, g := range ind.Regions {
			if err := write(totals, tr, r.Checker, ind.Label, g.Code, g.Name, g.Source, g.Sink, g.Sink-g.Source, status(g.Mismatch), len(g.Diffs), g.InFlight); err != nil {
				return err
			}
			tr++
			for _, d := range g.Diffs {
				if err := write(details, dr, r.Checker, ind.Label, g.Code, g.Name, d.Key, kindLabels[d.Kind], d.SourceRegion, d.SinkRegion); err != nil {
					return err
				}
				dr++
			}
		}
		if err := write(totals, tr, r.Checker, ind.Label, "合计", "", ind.Source, ind.Sink, ind.Sink-ind.Source, status(ind.Mismatch), "", ""); err != nil {
			return err
		}
		if err := f.SetRowStyle(totals, tr, tr, bold); err != nil {
			return err
		}
		tr++
	}
	for _, s := range []string{totals, details} {
		if err := f.SetColWidth(s, "A", "J", 16); err != nil {
			return err
		}
	}
	if err := f.Write(w); err != nil {
		return fmt.Errorf("write the workbook: %w", err)
	}
	return nil
}

// newWorkbook is a new workbook with a bold style and a function writing one row of
// cells from column A.
func newWorkbook() (f *excelize.File, bold int, write func(sheet string, row int, vals ...any) error, err error) {
	f = excelize.NewFile()
	if bold, err = f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}}); err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	write = func(sheet string, row int, vals ...any) error {
		cell, err := excelize.CoordinatesToCellName(1, row)
		if err != nil {
			return err
		}
		return f.SetSheetRow(sheet, cell, &vals)
	}
	return f, bold, write, nil
}
