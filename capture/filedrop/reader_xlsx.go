package filedrop

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/xuri/excelize/v2"
)

// xlsxReader streams the rows of one sheet with excelize's Rows iterator, so memory
// stays bounded by the row size (excelize spills large worksheet parts to temp files).
type xlsxReader struct {
	f      *excelize.File
	rows   *excelize.Rows
	sheet  string
	header []string
	line   int64
	fields []string
}

// spreadsheetOptions renders date cells the same way for XLSX and XLS files: the
// system short date (built-in format 14, what Chinese Excel shows as 2023/5/17) as
// ISO 2006-01-02, and the built-in Chinese date formats (27–36, 50–58, e.g.
// 2023年5月17日) as such rather than as raw serial numbers.
var spreadsheetOptions = excelize.Options{ShortDatePattern: "yyyy-mm-dd", LongTimePattern: "hh:mm:ss",
	CultureInfo: excelize.CultureNameZhCN}

// openXLSX opens path, checks that the header row has no merged cells and reads it.
func openXLSX(p, sheet string) (*xlsxReader, error) {
	if err := checkXLSXArchive(p); err != nil {
		return nil, err
	}
	f, err := excelize.OpenFile(p, spreadsheetOptions)
	if err != nil {
		return nil, fmt.Errorf("open XLSX (corrupt or truncated?): %w", err)
	}
	x := &xlsxReader{f: f}
	if err := x.init(p, sheet); err != nil {
		x.Close()
		return nil, err
	}
	return x, nil
}

func (x *xlsxReader) init(p, sheet string) error {
	if sheet == "" {
		list := x.f.GetSheetList()
		if len(list) == 0 {
			return errors.New("workbook has no sheet")
		}
		sheet = list[0]
	}
	x.sheet = sheet
	rows, err := x.f.Rows(sheet)
	if err != nil {
		return fmt.Errorf("sheet %q: %w", sheet, err)
	}
	x.rows = rows
	for x.rows.Next() {
		x.line++
		cols, err := x.rows.Columns()
		if err != nil {
			return fmt.Errorf("sheet %q row %d: %w", sheet, x.line, err)
		}
		if blank(cols) {
			continue
		}
		x.header = make([]string, len(cols))
		for i, c := range cols {
			x.header[i] = cleanHeader(c)
		}
		break
	}
	if err := x.rows.Error(); err != nil {
		return fmt.Errorf("sheet %q: %w", sheet, err)
	}
	if x.header == nil {
		return fmt.Errorf("empty file: sheet %q has no header row", sheet)
	}
	merged, err := mergedCellsInRow(p, sheet, int(x.line))
	if err != nil {
		return err
	}
	if len(merged) > 0 {
		return fmt.Errorf("sheet %q: merged header cells %s; unmerge them so every column has its own header", sheet, strings.Join(merged, ", "))
	}
	return nil
}

func (x *xlsxReader) Header() []string { return x.header }

func (x *xlsxReader) Describe() string { return fmt.Sprintf("XLSX, sheet %q", x.sheet) }

func (x *xlsxReader) Next() (rawRow, error) {
	for x.rows.Next() {
		x.line++
		cols, err := x.rows.Columns()
		if err != nil {
			return rawRow{}, fmt.Errorf("sheet %q row %d: %w", x.sheet, x.line, err)
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
		// Excelize drops empty trailing cells: pad to the header width.
		x.fields = append(x.fields[:0], cols...)
		for len(x.fields) < len(x.header) {
			x.fields = append(x.fields, "")
		}
		row.Fields = x.fields[:len(x.header)]
		return row, nil
	}
	if err := x.rows.Error(); err != nil {
		return rawRow{}, fmt.Errorf("sheet %q after row %d: %w", x.sheet, x.line, err)
	}
	return rawRow{}, io.EOF
}

func (x *xlsxReader) Close() error {
	var errs []error
	if x.rows != nil {
		errs = append(errs, x.rows.Close())
	}
	errs = append(errs, x.f.Close())
	return errors.Join(errs...)
}

// mergedCellsInRow lists the merged ranges of sheet that touch row. excelize's
// GetMergeCells would load the whole worksheet into memory, so the worksheet part is
// scanned as bytes for <mergeCell ref="..."/> instead.
func mergedCellsInRow(p, sheet string, row int) ([]string, error) {
	zr, err := zip.OpenReader(p)
	if err != nil {
		return nil, fmt.Errorf("open XLSX as zip: %w", err)
	}
	defer zr.Close()
	part, err := sheetPart(&zr.Reader, sheet)
	if err != nil {
		return nil, err
	}
	var zf *zip.File
	for _, f := range zr.File {
		if f.Name == part {
			zf = f
		}
	}
	if zf == nil {
		return nil, fmt.Errorf("sheet %q: worksheet part %s missing from the XLSX", sheet, part)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("sheet %q: open %s: %w", sheet, part, err)
	}
	defer rc.Close()
	refs, err := scanMergeRefs(rc)
	if err != nil {
		return nil, fmt.Errorf("sheet %q: read %s: %w", sheet, part, err)
	}
	var out []string
	for _, ref := range refs {
		a, b, ok := strings.Cut(ref, ":")
		if !ok {
			b = a
		}
		_, r1, err1 := excelize.CellNameToCoordinates(a)
		_, r2, err2 := excelize.CellNameToCoordinates(b)
		if err1 != nil || err2 != nil {
			continue
		}
		if r1 <= row && row <= r2 {
			out = append(out, ref)
		}
	}
	return out, nil
}

// scanMergeRefs finds the ref attributes of mergeCell elements in a worksheet XML
// stream without parsing the (possibly huge) sheetData.
func scanMergeRefs(r io.Reader) ([]string, error) {
	const tag = "mergeCell "
	var refs []string
	buf := make([]byte, 0, 256<<10)
	chunk := make([]byte, 128<<10)
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for {
			i := bytes.Index(buf, []byte(tag))
			if i < 0 {
				break
			}
			end := bytes.IndexByte(buf[i:], '>')
			if end < 0 {
				break // element continues in the next chunk
			}
			el := buf[i : i+end]
			if j := bytes.Index(el, []byte(`ref="`)); j >= 0 {
				rest := el[j+5:]
				if k := bytes.IndexByte(rest, '"'); k >= 0 {
					refs = append(refs, string(rest[:k]))
				}
			}
			buf = buf[i+end:]
		}
		// Keep only a tail that may hold the start of a split tag or element.
		if len(buf) > 512 {
			if i := bytes.LastIndex(buf, []byte("<")); i >= 0 && len(buf)-i < 512 {
				buf = append(buf[:0], buf[i:]...)
			} else {
				buf = append(buf[:0], buf[len(buf)-len(tag):]...)
			}
		}
		if err == io.EOF {
			return refs, nil
		}
		if err != nil {
			return refs, err
		}
	}
}

// sheetPart resolves a sheet name to its worksheet part through workbook.xml and its
// relationships.
func sheetPart(zr *zip.Reader, sheet string) (string, error) {
	var wb struct {
		Sheets []struct {
			Name string `xml:"name,attr"`
			RID  string `xml:"http://schemas.openxmlformats.org/officeDocument/2006/relationships id,attr"`
		} `xml:"sheets>sheet"`
	}
	var rels struct {
		Rel []struct {
			ID     string `xml:"Id,attr"`
			Target string `xml:"Target,attr"`
		} `xml:"Relationship"`
	}
	if err := readZipXML(zr, "xl/workbook.xml", &wb); err != nil {
		return "", err
	}
	if err := readZipXML(zr, "xl/_rels/workbook.xml.rels", &rels); err != nil {
		return "", err
	}
	for _, s := range wb.Sheets {
		if s.Name != sheet {
			continue
		}
		for _, r := range rels.Rel {
			if r.ID == s.RID {
				if strings.HasPrefix(r.Target, "/") {
					return strings.TrimPrefix(r.Target, "/"), nil
				}
				return path.Join("xl", r.Target), nil
			}
		}
	}
	return "", fmt.Errorf("sheet %q not found in workbook.xml", sheet)
}

func readZipXML(zr *zip.Reader, name string, v any) error {
	for _, f := range zr.File {
		if f.Name != name {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("open %s: %w", name, err)
		}
		defer rc.Close()
		if err := xml.NewDecoder(rc).Decode(v); err != nil {
			return fmt.Errorf("parse %s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("%s missing from the XLSX", name)
}

// checkXLSXArchive tells a damaged XLSX (the ZIP archive cannot be read: usually a
// transfer cut off) from a ZIP archive that is no workbook at all.
func checkXLSXArchive(p string) error {
	zr, err := zip.OpenReader(p)
	if err != nil {
		return fmt.Errorf("corrupt or truncated XLSX: the ZIP archive inside cannot be read (%v); the transfer was probably cut off: ask for the file again", err)
	}
	defer zr.Close()
	var word, ppt bool
	for _, f := range zr.File {
		switch {
		case f.Name == "xl/workbook.xml":
			return nil
		case strings.HasPrefix(f.Name, "word/"):
			word = true
		case strings.HasPrefix(f.Name, "ppt/"):
			ppt = true
		}
	}
	what := "a ZIP archive of other files"
	switch {
	case word:
		what = "a Word document (.docx)"
	case ppt:
		what = "a PowerPoint presentation (.pptx)"
	}
	return fmt.Errorf("not a spreadsheet: the file is %s, not an XLSX workbook (it has no xl/workbook.xml); ask the department for the data as XLSX or CSV", what)
}
