package filedrop

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"strings"
)

// rawRow is one data row as read from a file, before column mapping.
type rawRow struct {
	// Line is the row's line (CSV: first physical line of the record; XLSX and XLS: sheet row number).
	Line int64
	// Fields are the cell values in header order. They are only valid until the next
	// call to Next (readers reuse buffers).
	Fields []string
	// Raw is the row as delivered (CSV: the record's text; spreadsheets: the cells
	// written as one CSV line), kept for the dead letter of a bad row. It may be nil.
	Raw []byte
	// Problem, when not empty, makes the row a dead letter; Column names the offending
	// column when one is to blame.
	Problem string
	Column  string
}

// raw returns the row as delivered, rendering spreadsheet cells as a CSV line.
func (r *rawRow) raw() []byte {
	if r.Raw != nil {
		return r.Raw
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(r.Fields)
	w.Flush()
	return bytes.TrimRight(b.Bytes(), "\n")
}

// tableReader reads the header and then the data rows of one delivery file. Next
// returns io.EOF at the end; any other error concerns the whole file, which is then
// rejected.
type tableReader interface {
	Header() []string
	Next() (rawRow, error)
	// Describe says how the file was read (encoding, delimiter), for error messages.
	Describe() string
	Close() error
}

// openTable opens path with the reader its content calls for (see sniffFormat).
func openTable(path string, ds *DatasetOptions, scan *fileScan) (tableReader, error) {
	f, err := sniffFormat(path, scan.head, scan.size, ds.Format)
	if err != nil {
		return nil, err
	}
	switch f {
	case FormatCSV:
		return openCSV(path, ds.Encoding, ds.Delimiter, ds.MaxRowBytes, &scan.enc)
	case FormatXLSX:
		return openXLSX(path, ds.Sheet)
	case FormatXLS:
		return openXLS(path, ds.Sheet)
	}
	return nil, fmt.Errorf("format %q not supported", f)
}

// cleanHeader trims spaces (including the full-width space U+3000 Chinese tools
// produce) and a stray BOM from a header cell.
func cleanHeader(h string) string {
	return strings.TrimSpace(strings.Trim(strings.TrimSpace(h), "\ufeff\u3000"))
}
