package filedrop

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"
)

// sniffSize is how much of a file is looked at to detect its encoding and delimiter.
const sniffSize = 64 << 10

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// detectEncoding decides the encoding of a CSV prefix: BOM first, then whether the
// prefix is valid UTF-8 (a GB18030 Chinese text is almost never valid UTF-8), else
// GB18030. It returns the encoding and the number of BOM bytes to skip.
func detectEncoding(prefix []byte, atEOF bool) (Encoding, int) {
	if bytes.HasPrefix(prefix, utf8BOM) {
		return EncodingUTF8, len(utf8BOM)
	}
	p := prefix
	if !atEOF {
		// The prefix may end inside a multi-byte character: drop an incomplete tail.
		for i := 0; i < utf8.UTFMax && len(p) > 0; i++ {
			r, size := utf8.DecodeLastRune(p)
			if r != utf8.RuneError || size > 1 {
				break
			}
			p = p[:len(p)-1]
		}
	}
	if utf8.Valid(p) {
		return EncodingUTF8, 0
	}
	return EncodingGB18030, 0
}

// decodingReader wraps r (positioned at the start of a file) so it yields UTF-8,
// detecting or applying enc. GB18030 bytes that do not decode become U+FFFD, which the
// CSV reader reports as a bad row.
func decodingReader(r io.Reader, enc Encoding) (io.Reader, Encoding, error) {
	br := bufio.NewReaderSize(r, sniffSize)
	prefix, err := br.Peek(sniffSize)
	atEOF := err == io.EOF
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return nil, enc, fmt.Errorf("read file start: %w", err)
	}
	detected, bom := detectEncoding(prefix, atEOF)
	if enc == EncodingAuto {
		enc = detected
	}
	if bom > 0 {
		if _, err := br.Discard(bom); err != nil {
			return nil, enc, fmt.Errorf("skip BOM: %w", err)
		}
	}
	if enc == EncodingGB18030 {
		return transform.NewReader(br, simplifiedchinese.GB18030.NewDecoder()), enc, nil
	}
	return br, enc, nil
}

// delimiterCandidates are the delimiters departments use, in preference order.
var delimiterCandidates = []rune{',', ';', '\t', '|'}

// sniffDelimiter picks the candidate occurring most often outside quotes in the header
// line. It returns 0 when none occurs (a one-column file or an unknown delimiter).
func sniffDelimiter(header string) rune {
	counts := map[rune]int{}
	inQuote := false
	for _, r := range header {
		switch {
		case r == '"':
			inQuote = !inQuote
		case r == '\n':
			if !inQuote {
				goto done
			}
		case !inQuote:
			counts[r]++
		}
	}
done:
	best, bestN := rune(0), 0
	for _, c := range delimiterCandidates {
		if counts[c] > bestN {
			best, bestN = c, counts[c]
		}
	}
	return best
}
