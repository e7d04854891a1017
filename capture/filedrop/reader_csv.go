package filedrop

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// maxRecordLines is how many physical lines one quoted CSV field may span before the
// file is considered broken (an unbalanced quote would otherwise swallow the rest of
// the file into one "row", and a full delivery would turn those rows into deletes).
const maxRecordLines = 10

// csvReader reads CSV in UTF-8 or GB18030 with a configured or sniffed delimiter.
// Below the parser, a lineLimiter cuts physical lines longer than the row limit (so
// one endless line cannot exhaust memory) and a recordTap keeps each record's raw
// text for its dead letter.
type csvReader struct {
	f      *os.File
	r      *csv.Reader
	lim    *lineLimiter
	tap    *recordTap
	enc    Encoding
	delim  rune
	maxRow int
	header []string
}

// openCSV opens a CSV file from disk; st is the file's line classification (nil:
// detect the encoding from the first bytes).
func openCSV(path string, enc Encoding, delim rune, maxRow int, st *encodingStats) (*csvReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	c, err := newCSVReader(f, enc, delim, maxRow, st)
	if err != nil {
		f.Close()
		return nil, err
	}
	c.f = f
	return c, nil
}

// newCSVReader reads the header from r and prepares to read rows.
func newCSVReader(r io.Reader, enc Encoding, delim rune, maxRow int, st *encodingStats) (*csvReader, error) {
	dr, enc, err := decodingReader(r, enc, st)
	if err != nil {
		return nil, err
	}
	if maxRow <= 0 {
		maxRow = defaultMaxRowBytes
	}
	lim := newLineLimiter(dr, maxRow)
	tap := &recordTap{r: lim}
	br := bufio.NewReaderSize(tap, sniffSize)
	if delim == 0 {
		prefix, err := br.Peek(sniffSize)
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return nil, fmt.Errorf("read header: %w", err)
		}
		delim = sniffDelimiter(string(prefix))
		if delim == 0 {
			delim = ','
		}
	}
	cr := csv.NewReader(br)
	cr.Comma = delim
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	c := &csvReader{r: cr, lim: lim, tap: tap, enc: enc, delim: delim, maxRow: maxRow}
	h, err := cr.Read()
	tap.record(0, cr.InputOffset())
	if err == io.EOF {
		return nil, errors.New("empty file: no header line")
	}
	if n, cut := lim.cut(1); cut {
		return nil, fmt.Errorf("header line is %d bytes long, more than the row limit %d: not a delivery of this dataset?", n, maxRow)
	}
	if err != nil {
		return nil, fmt.Errorf("header line: %w", err)
	}
	c.header = make([]string, len(h))
	for i, v := range h {
		if !utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError) {
			return nil, fmt.Errorf("header column %d: invalid %s byte sequence; check the file's encoding", i+1, enc)
		}
		c.header[i] = cleanHeader(v)
	}
	return c, nil
}

func (c *csvReader) Header() []string { return c.header }

func (c *csvReader) Describe() string {
	return fmt.Sprintf("CSV, encoding %s, delimiter %q", c.enc, c.delim)
}

func (c *csvReader) Next() (rawRow, error) {
	for {
		start := c.r.InputOffset()
		rec, err := c.r.Read()
		raw := c.tap.record(start, c.r.InputOffset())
		if err == io.EOF {
			return rawRow{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			if pe.Line-pe.StartLine > maxRecordLines {
				return rawRow{}, fmt.Errorf("line %d: quoted field not closed for %d lines (%v); the file is truncated or its quotes are broken", pe.StartLine, pe.Line-pe.StartLine, pe.Err)
			}
			row := rawRow{Line: int64(pe.StartLine), Raw: raw, Fields: c.lenient(raw),
				Problem: fmt.Sprintf("CSV syntax: %v", pe.Err)}
			c.checkCut(&row, int64(pe.StartLine), int64(pe.Line))
			return row, nil
		}
		if err != nil {
			return rawRow{}, fmt.Errorf("read: %w", err)
		}
		if blank(rec) {
			continue
		}
		line, _ := c.r.FieldPos(0)
		last, _ := c.r.FieldPos(len(rec) - 1)
		row := rawRow{Line: int64(line), Fields: rec, Raw: raw}
		if c.checkCut(&row, int64(line), int64(last)) {
			return row, nil
		}
		if len(rec) != len(c.header) {
			row.Problem = fmt.Sprintf("has %d fields, header has %d", len(rec), len(c.header))
			return row, nil
		}
		for i, v := range rec {
			if c.enc == EncodingGB18030 {
				if strings.ContainsRune(v, utf8.RuneError) {
					row.Problem, row.Column = "invalid GB18030 byte sequence", c.header[i]
					break
				}
			} else if !utf8.ValidString(v) {
				row.Problem, row.Column = "invalid UTF-8 byte sequence", c.header[i]
				break
			}
		}
		return row, nil
	}
}

// checkCut marks row as too long when one of its physical lines was cut.
func (c *csvReader) checkCut(row *rawRow, from, to int64) bool {
	for l := from; l <= to; l++ {
		if n, ok := c.lim.cut(l); ok {
			row.Problem = fmt.Sprintf("line %d is %d bytes long, more than the row limit of %d bytes (limits.max_row_bytes)", l, n, c.maxRow)
			row.Column = ""
			c.lim.forget(to + 1)
			return true
		}
	}
	return false
}

// lenient re-reads a record that broke the CSV syntax with lazy quoting, to learn
// what its fields probably are (the key of the row, so that its previous version is
// kept rather than deleted).
func (c *csvReader) lenient(raw []byte) []string {
	r := csv.NewReader(strings.NewReader(string(raw)))
	r.Comma = c.delim
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	rec, err := r.Read()
	if err != nil {
		return nil
	}
	return rec
}

func (c *csvReader) Close() error {
	if c.f != nil {
		return c.f.Close()
	}
	return nil
}

// blank reports whether every field is empty (a trailing ",,," line Excel leaves).
func blank(rec []string) bool {
	for _, v := range rec {
		if strings.TrimSpace(v) != "" {
			return false
		}
	}
	return true
}
