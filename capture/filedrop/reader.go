package filedrop

import (
	"fmt"
	"path/filepath"
	"strings"
)

// rawRow is one data row as read from a file, before column mapping.
type rawRow struct {
	// Line is the row's line (CSV: first physical line of the record; XLSX and XLS: sheet row number).
	Line int64
	// Fields are the cell values in header order. They are only valid until the next
	// call to Next (readers reuse buffers).
	Fields []string
	// Problem, when not empty, makes the row a dead letter; Column names the offending
	// column when one is to blame.
	Problem string
	Column  string
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

// formatOf decides the format of path from the configured one or its extension.
func formatOf(path string, configured Format) (Format, error) {
	if configured != FormatAuto {
		return configured, nil
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv", ".txt", ".tsv":
		return FormatCSV, nil
	case ".xlsx", ".xlsm":
		return FormatXLSX, nil
	case ".xls":
		return FormatXLS, nil
	}
	return "", fmt.Errorf("unknown file extension %q: expected .csv, .txt, .xlsx or .xls (or set the dataset's format)", filepath.Ext(path))
}

// openTable opens path with the reader for its format.
func openTable(path string, ds *DatasetOptions) (tableReader, error) {
	f, err := formatOf(path, ds.Format)
	if err != nil {
		return nil, err
	}
	switch f {
	case FormatCSV:
		return openCSV(path, ds.Encoding, ds.Delimiter)
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
