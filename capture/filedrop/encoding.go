package filedrop

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"
)

// sniffSize is how much of a file is looked at to detect its delimiter (and, when no
// scan of the whole file is at hand, its encoding).
const sniffSize = 64 << 10

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// chooseEncoding decides the encoding of a CSV file from its lines' classification
// (see encodingStats): a UTF-8 BOM means UTF-8; a file holding both UTF-8 and
// GB18030 lines is refused as mixed, naming the line where it switches; otherwise
// any GB18030 line — or only undecodable lines — means GB18030 (what Excel on a
// Chinese Windows writes when "CSV" is chosen), else UTF-8. A configured encoding is
// used as it is, but a mixed file is refused all the same.
func chooseEncoding(configured Encoding, bom bool, st *encodingStats) (Encoding, error) {
	if st.mixed() {
		return "", st.mixedError()
	}
	switch {
	case configured != EncodingAuto:
		return configured, nil
	case bom:
		return EncodingUTF8, nil
	case st.gbLines > 0 || (st.badLines > 0 && st.utf8Lines == 0):
		return EncodingGB18030, nil
	}
	return EncodingUTF8, nil
}

// prefixStats classifies the lines of a file prefix, for callers without a scan of
// the whole file (an incomplete last line is left out unless the prefix is the file).
func prefixStats(prefix []byte, atEOF bool) *encodingStats {
	st := &encodingStats{}
	for len(prefix) > 0 {
		i := bytes.IndexByte(prefix, '\n')
		if i < 0 {
			if atEOF {
				st.classify(prefix)
			}
			break
		}
		st.classify(prefix[:i])
		prefix = prefix[i+1:]
	}
	return st
}

// decodingReader wraps r (positioned at the start of a file) so it yields UTF-8,
// detecting or applying enc with st (nil: from the first sniffSize bytes). GB18030
// bytes that do not decode become U+FFFD, which the CSV reader reports as a bad row.
func decodingReader(r io.Reader, enc Encoding, st *encodingStats) (io.Reader, Encoding, error) {
	br := bufio.NewReaderSize(r, sniffSize)
	prefix, err := br.Peek(sniffSize)
	atEOF := err == io.EOF
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return nil, enc, fmt.Errorf("read file start: %w", err)
	}
	bom := bytes.HasPrefix(prefix, utf8BOM)
	if st == nil {
		st = prefixStats(prefix, atEOF)
	}
	enc, err = chooseEncoding(enc, bom, st)
	if err != nil {
		return nil, enc, err
	}
	if bom {
		if _, err := br.Discard(len(utf8BOM)); err != nil {
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
