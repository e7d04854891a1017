package filedrop

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
)

// What a delivery file really is, read from its first bytes. Departments send files
// whose extension lies: a CSV saved as .xls, a legacy workbook renamed .xlsx, an
// HTML table a web system exports as "Excel", a PDF, or an XLSX cut off in transfer.
// The content decides which reader opens the file; a file that is no table at all
// is rejected saying what it is, distinct from a damaged spreadsheet.

var (
	zipMagic = []byte("PK\x03\x04")
	oleMagic = []byte{0xD0, 0xCF, 0x11, 0xE0} // the first half of the OLE2 signature: enough to tell, and a cut-off one is still a (broken) XLS
)

// notTable names binary formats that departments deliver by mistake.
var notTable = []struct {
	magic []byte
	what  string
}{
	{[]byte("%PDF"), "a PDF document"},
	{[]byte("\x89PNG"), "a PNG image"},
	{[]byte{0xFF, 0xD8, 0xFF}, "a JPEG image"},
	{[]byte("Rar!"), "a RAR archive"},
	{[]byte("7z\xBC\xAF\x27\x1C"), "a 7-Zip archive"},
	{[]byte{0x1F, 0x8B}, "a gzip archive"},
	{[]byte("{\\rtf"), "an RTF document"},
}

// sniffFormat decides the reader for a file from its first bytes, its name and the
// configured format. An error explains why the file cannot be a delivery.
func sniffFormat(name string, head []byte, size int64, configured Format) (Format, error) {
	if size == 0 {
		return "", fmt.Errorf("empty file (0 bytes): no header line")
	}
	var content Format
	switch {
	case bytes.HasPrefix(head, zipMagic):
		content = FormatXLSX
	case bytes.HasPrefix(head, oleMagic):
		content = FormatXLS
	default:
		for _, n := range notTable {
			if bytes.HasPrefix(head, n.magic) {
				return "", fmt.Errorf("not a spreadsheet or CSV file: it is %s; ask the department for the data as XLSX or CSV", n.what)
			}
		}
		if what := markup(head); what != "" {
			return "", fmt.Errorf("not a spreadsheet: the file is %s (web systems often save tables this way with an .xls name); open it in Excel or WPS and save it as XLSX, or export CSV", what)
		}
		if bytes.IndexByte(head, 0) >= 0 {
			return "", fmt.Errorf("not a spreadsheet or CSV file: it is binary data of an unknown kind (starts with % x); ask the department for the data as XLSX or CSV", head[:min(len(head), 8)])
		}
		content = FormatCSV
	}
	ext := strings.ToLower(filepath.Ext(name))
	switch configured {
	case FormatAuto:
		return content, nil
	case content:
		return content, nil
	}
	return "", fmt.Errorf("the file is %s (by its content; extension %q) but the dataset's format is %s: set format: auto, or ask for %s files", formatName(content), ext, configured, configured)
}

func formatName(f Format) string {
	switch f {
	case FormatXLSX:
		return "an XLSX workbook (or another ZIP archive)"
	case FormatXLS:
		return "a legacy Excel 97-2003 (.xls) workbook"
	}
	return "plain text (CSV)"
}

// markup recognises HTML and XML text, after an optional BOM and white space.
func markup(head []byte) string {
	h := bytes.TrimLeft(bytes.TrimPrefix(head, utf8BOM), " \t\r\n")
	if len(h) == 0 || h[0] != '<' {
		return ""
	}
	l := bytes.ToLower(h[:min(len(h), 400)])
	switch {
	case bytes.Contains(l, []byte("urn:schemas-microsoft-com:office:spreadsheet")):
		return "an Excel 2003 XML spreadsheet"
	case bytes.HasPrefix(l, []byte("<!doctype html")), bytes.HasPrefix(l, []byte("<html")),
		bytes.HasPrefix(l, []byte("<table")), bytes.Contains(l, []byte("<html")):
		return "an HTML page"
	case bytes.HasPrefix(l, []byte("<?xml")):
		return "an XML document"
	}
	return ""
}
