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
type csvReader struct {
	f      *os.File
	r      *csv.Reader
	enc    Encoding
	delim  rune
	header []string
}

// openCSV opens a CSV file from disk.
func openCSV(path string, enc Encoding, delim rune) (*csvReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	c, err := newCSVReader(f, enc, delim)
	if err != nil {
		f.Close()
		return nil, err
	}
	c.f = f
	return c, nil
}

// newCSVReader reads the header from r and prepares to read rows.
func newCSVReader(r io.Reader, enc Encoding, delim rune) (*csvReader, error) {
	dr, enc, err := decodingReader(r, enc)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(dr, sniffSize)
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
	c := &csvReader{r: cr, enc: enc, delim: delim}
	h, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("empty file: no header line")
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
		rec, err := c.r.Read()
		if err == io.EOF {
			return rawRow{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			if pe.Line-pe.StartLine > maxRecordLines {
				return rawRow{}, fmt.Errorf("line %d: quoted field not closed for %d lines (%v); the file is truncated or its quotes are broken", pe.StartLine, pe.Line-pe.StartLine, pe.Err)
			}
			return rawRow{Line: int64(pe.StartLine), Problem: fmt.Sprintf("CSV syntax: %v", pe.Err)}, nil
		}
		if err != nil {
			return rawRow{}, fmt.Errorf("read: %w", err)
		}
		if blank(rec) {
			continue
		}
		line, _ := c.r.FieldPos(0)
		row := rawRow{Line: int64(line), Fields: rec}
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
