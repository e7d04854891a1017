package filedrop

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// fileScan is what one pass over a delivery file learns before it is parsed: its
// checksum (re-delivery detection), its first bytes (what the file really is,
// whatever its extension says) and, per physical line, which encoding the line is
// in (a CSV whose encoding switches part-way is rejected naming the line).
type fileScan struct {
	sha  string
	size int64
	head []byte
	enc  encodingStats
}

// headSize is how much of a file is kept for format sniffing.
const headSize = 512

// classifyCap bounds how much of one physical line is kept to classify it.
const classifyCap = 64 << 10

// encodingStats classifies the physical lines of a text file by encoding: lines that
// are plain ASCII say nothing; a line that is valid UTF-8 with Chinese characters is
// UTF-8; a line that is not valid UTF-8 but decodes as GB18030 without error into
// Chinese characters is GB18030; other invalid lines are garbage (bad bytes).
type encodingStats struct {
	lines         int64
	utf8Lines     int64 // valid UTF-8 with at least two Han characters
	gbLines       int64 // invalid UTF-8, clean GB18030 with Han characters
	badLines      int64 // invalid UTF-8 and not clean GB18030
	firstUTF8     int64
	firstGB       int64
	firstBad      int64
	switchLine    int64 // first line whose encoding differs from the first non-ASCII line's
	switchFrom    Encoding
	switchTo      Encoding
	firstNonASCII Encoding
}

// mixed reports whether the file holds both UTF-8 and GB18030 lines.
func (e *encodingStats) mixed() bool { return e.utf8Lines > 0 && e.gbLines > 0 }

// mixedError describes a mixed-encoding file for its rejection report.
func (e *encodingStats) mixedError() error {
	return fmt.Errorf("mixed encoding: the file switches from %s to %s at line %d (%d lines are UTF-8, %d are GB18030; first UTF-8 line %d, first GB18030 line %d); re-save the whole file in one encoding (UTF-8 is preferred) and deliver it again",
		e.switchFrom, e.switchTo, e.switchLine, e.utf8Lines, e.gbLines, e.firstUTF8, e.firstGB)
}

func (e *encodingStats) classify(line []byte) {
	e.lines++
	ascii := true
	for _, c := range line {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return
	}
	var class Encoding
	if utf8.Valid(line) {
		if hanCount(line, 2) < 2 {
			return // accented Latin text or a stray symbol: no evidence either way
		}
		e.utf8Lines++
		if e.firstUTF8 == 0 {
			e.firstUTF8 = e.lines
		}
		class = EncodingUTF8
	} else {
		dec, err := simplifiedchinese.GB18030.NewDecoder().Bytes(line)
		if err != nil || bytes.ContainsRune(dec, utf8.RuneError) || hanCount(dec, 1) == 0 {
			e.badLines++
			if e.firstBad == 0 {
				e.firstBad = e.lines
			}
			return
		}
		e.gbLines++
		if e.firstGB == 0 {
			e.firstGB = e.lines
		}
		class = EncodingGB18030
	}
	switch {
	case e.firstNonASCII == "":
		e.firstNonASCII = class
	case class != e.firstNonASCII && e.switchLine == 0:
		e.switchLine, e.switchFrom, e.switchTo = e.lines, e.firstNonASCII, class
	}
}

// hanCount counts Han characters in UTF-8 text, stopping at limit.
func hanCount(b []byte, limit int) int {
	n := 0
	for len(b) > 0 && n < limit {
		r, size := utf8.DecodeRune(b)
		if unicode.Is(unicode.Han, r) {
			n++
		}
		b = b[size:]
	}
	return n
}

// scanFile hashes path and, unless it is a ZIP or OLE2 container (XLSX, XLS),
// classifies its lines by encoding.
func scanFile(path string) (fileScan, error) {
	var fs fileScan
	f, err := os.Open(path)
	if err != nil {
		return fs, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var line []byte
	lineLen := 0
	text := true
	for {
		n, err := f.Read(buf)
		chunk := buf[:n]
		h.Write(chunk)
		if len(fs.head) < headSize {
			fs.head = append(fs.head, chunk[:min(n, headSize-len(fs.head))]...)
		}
		if fs.size == 0 && (bytes.HasPrefix(chunk, zipMagic) || bytes.HasPrefix(chunk, oleMagic)) {
			text = false
		}
		fs.size += int64(n)
		for text && len(chunk) > 0 {
			i := bytes.IndexByte(chunk, '\n')
			part := chunk
			if i >= 0 {
				part = chunk[:i]
			}
			if room := classifyCap - lineLen; room > 0 {
				line = append(line, part[:min(len(part), room)]...)
			}
			lineLen += len(part)
			if i < 0 {
				break
			}
			fs.enc.classify(wholeRunes(line, lineLen > len(line)))
			line, lineLen = line[:0], 0
			chunk = chunk[i+1:]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fs, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if text && lineLen > 0 {
		fs.enc.classify(wholeRunes(line, lineLen > len(line)))
	}
	fs.sha = hex.EncodeToString(h.Sum(nil))
	return fs, nil
}

// wholeRunes drops a character cut in half at the end of a line prefix kept for
// classification (cut is true when the line was longer than the prefix).
func wholeRunes(b []byte, cut bool) []byte {
	if !cut {
		return b
	}
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size > 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return b
}
