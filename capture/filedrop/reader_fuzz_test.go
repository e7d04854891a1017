package filedrop

import (
	"bytes"
	"io"
	"testing"
)

// FuzzCSVReader feeds arbitrary bytes to the CSV reader: it must never panic, and
// every row it returns must either carry a problem or have the header's width.
func FuzzCSVReader(f *testing.F) {
	f.Add([]byte("\xEF\xBB\xBF身份证号,姓名\r\n1,张三\r\n"), byte(0))
	f.Add([]byte("a;b;c\n1;2\n\"x\";\"y\"\"\";z\n"), byte(';'))
	f.Add([]byte("\xc9\xed\xb7\xdd\xd6\xa4\xba\xc5|\xd0\xd5\xc3\xfb\n1|\xff\xfe\n"), byte('|'))
	f.Add([]byte("h\n\"unterminated\n1\n2\n"), byte(0))
	f.Add([]byte(""), byte('\t'))
	f.Fuzz(func(t *testing.T, data []byte, delim byte) {
		d := rune(0)
		switch delim {
		case ',', ';', '\t', '|':
			d = rune(delim)
		}
		r, err := newCSVReader(bytes.NewReader(data), EncodingAuto, d, 256, nil)
		if err != nil {
			return
		}
		width := len(r.Header())
		for i := 0; i < 10000; i++ {
			row, err := r.Next()
			if err != nil {
				if err == io.EOF {
					return
				}
				return
			}
			if row.Problem == "" && len(row.Fields) != width {
				t.Fatalf("row at line %d has %d fields, header %d, and no problem", row.Line, len(row.Fields), width)
			}
			if len(row.Raw) > 4096+256 {
				t.Fatalf("row at line %d kept %d raw bytes, limit 256 per line", row.Line, len(row.Raw))
			}
			if row.Line <= 0 {
				t.Fatalf("row line %d", row.Line)
			}
		}
	})
}
