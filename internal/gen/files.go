package gen

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"
)

// XLSXMaxRows is the data-row limit per XLSX part: a sheet holds at most 1,048,576 rows,
// so larger datasets continue in <name>-002.xlsx and so on.
const XLSXMaxRows = 1_000_000

// CellString formats a department value as files carry it: dates YYYY-MM-DD, money
// with two decimals, NULL as the empty string.
func CellString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case Money:
		return x.String()
	case int64:
		return strconv.FormatInt(x, 10)
	case time.Time:
		return x.Format("2006-01-02")
	}
	return fmt.Sprint(v)
}

// fileSink writes every dataset in each requested format under
// OUT/files/<department>/<dataset>/<dataset>{.csv,.gb18030.csv,.xlsx}.
type fileSink struct {
	dir   string
	sets  [numDatasets]*datasetFiles
	rec   []string
	done  bool
	first error
}

type datasetFiles struct {
	ds       Dataset
	dir      string
	closers  []io.Closer
	flushers []func() error
	csvs     []*csv.Writer
	xlsx     bool
	xf       *excelize.File
	sw       *excelize.StreamWriter
	xrows    int
	xpart    int
}

func newFileSink(out string, formats []string) (*fileSink, error) {
	s := &fileSink{dir: filepath.Join(out, "files")}
	for i, ds := range Datasets {
		d := &datasetFiles{ds: ds, dir: filepath.Join(s.dir, ds.Department, ds.Name)}
		if err := os.MkdirAll(d.dir, 0o755); err != nil {
			return nil, fmt.Errorf("gen: create %s: %w", d.dir, err)
		}
		for _, f := range formats {
			switch f {
			case "csv", "csv-bom":
				if err := d.openCSV(ds.Name+".csv", f == "csv-bom", false); err != nil {
					return nil, err
				}
			case "gb18030":
				if err := d.openCSV(ds.Name+".gb18030.csv", false, true); err != nil {
					return nil, err
				}
			case "xlsx":
				d.xlsx = true
			default:
				return nil, fmt.Errorf("gen: unknown file format %q (use csv, csv-bom, gb18030, xlsx)", f)
			}
		}
		s.sets[i] = d
	}
	return s, nil
}

func (d *datasetFiles) openCSV(name string, bom, gb bool) error {
	p := filepath.Join(d.dir, name)
	f, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("gen: create %s: %w", p, err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	var w io.Writer = bw
	var tw *transform.Writer
	if gb {
		tw = transform.NewWriter(bw, simplifiedchinese.GB18030.NewEncoder())
		w = tw
	} else if bom {
		bw.WriteString("\uFEFF")
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(d.ds.Headers); err != nil {
		return fmt.Errorf("gen: write %s: %w", p, err)
	}
	d.csvs = append(d.csvs, cw)
	d.flushers = append(d.flushers, func() error {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return fmt.Errorf("gen: write %s: %w", p, err)
		}
		if tw != nil {
			if err := tw.Close(); err != nil {
				return fmt.Errorf("gen: encode %s as GB18030: %w", p, err)
			}
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("gen: write %s: %w", p, err)
		}
		return nil
	})
	d.closers = append(d.closers, f)
	return nil
}

func (d *datasetFiles) xlsxPath() string {
	if d.xpart <= 1 {
		return filepath.Join(d.dir, d.ds.Name+".xlsx")
	}
	return filepath.Join(d.dir, fmt.Sprintf("%s-%03d.xlsx", d.ds.Name, d.xpart))
}

func (d *datasetFiles) startXLSX() error {
	d.xpart++
	d.xf = excelize.NewFile()
	sw, err := d.xf.NewStreamWriter("Sheet1")
	if err != nil {
		return fmt.Errorf("gen: xlsx stream %s: %w", d.xlsxPath(), err)
	}
	d.sw, d.xrows = sw, 0
	hdr := make([]any, len(d.ds.Headers))
	for i, h := range d.ds.Headers {
		hdr[i] = h
	}
	return sw.SetRow("A1", hdr)
}

func (d *datasetFiles) finishXLSX() error {
	if d.xf == nil {
		return nil
	}
	p := d.xlsxPath()
	if err := d.sw.Flush(); err != nil {
		return fmt.Errorf("gen: write %s: %w", p, err)
	}
	if err := d.xf.SaveAs(p); err != nil {
		return fmt.Errorf("gen: write %s: %w", p, err)
	}
	err := d.xf.Close()
	d.xf, d.sw = nil, nil
	return err
}

func (d *datasetFiles) write(rows []Row, rec []string) error {
	for _, r := range rows {
		rec = rec[:0]
		for _, v := range r {
			rec = append(rec, CellString(v))
		}
		for _, cw := range d.csvs {
			if err := cw.Write(rec); err != nil {
				return fmt.Errorf("gen: write %s CSV: %w", d.ds.Table(), err)
			}
		}
		if d.xlsx {
			if d.xf == nil || d.xrows >= XLSXMaxRows {
				if err := d.finishXLSX(); err != nil {
					return err
				}
				if err := d.startXLSX(); err != nil {
					return err
				}
			}
			cells := make([]any, len(rec))
			for i, s := range rec {
				cells[i] = s // text cells: ID numbers must not become numbers
			}
			d.xrows++
			cell, _ := excelize.CoordinatesToCellName(1, d.xrows+1)
			if err := d.sw.SetRow(cell, cells); err != nil {
				return fmt.Errorf("gen: write %s: %w", d.xlsxPath(), err)
			}
		}
	}
	return nil
}

func (s *fileSink) write(_ context.Context, v *VillageResult) error {
	for i, rows := range v.Dept {
		if len(rows) == 0 {
			continue
		}
		if err := s.sets[i].write(rows, s.rec); err != nil {
			return err
		}
	}
	return nil
}

func (s *fileSink) close(context.Context) error {
	if s.done {
		return s.first
	}
	s.done = true
	var errs []error
	for _, d := range s.sets {
		if d.xlsx && d.xf == nil && d.xpart == 0 {
			if err := d.startXLSX(); err != nil { // header-only file for empty datasets
				errs = append(errs, err)
			}
		}
		if err := d.finishXLSX(); err != nil {
			errs = append(errs, err)
		}
		for _, f := range d.flushers {
			if err := f(); err != nil {
				errs = append(errs, err)
			}
		}
		for _, c := range d.closers {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.first = errors.Join(errs...)
	return s.first
}
