package filedrop

import (
	"bytes"
	"io"
)

// lineLimiter bounds the memory one CSV row can take: a physical line longer than
// max bytes is cut after max+1 bytes (the rest, up to the next newline, is skipped)
// and remembered with its full length, so the row it belongs to becomes a dead
// letter naming the length, and the next line is read as usual. A cut inside a
// quoted field gets its quote closed, so the cut cannot swallow the lines after it.
type lineLimiter struct {
	r    io.Reader
	max  int
	line int64 // current physical line, 1-based
	n    int   // bytes of the current line so far
	quo  bool  // inside a quoted field at the current point
	skip bool  // skipping the rest of a cut line
	cuts map[int64]int64
	pend []byte // bytes to hand out before reading more (an injected quote)
	buf  []byte
}

func newLineLimiter(r io.Reader, max int) *lineLimiter {
	return &lineLimiter{r: r, max: max, line: 1, cuts: map[int64]int64{}, buf: make([]byte, 64<<10)}
}

// cut returns the full length of physical line n when it was cut.
func (l *lineLimiter) cut(n int64) (int64, bool) {
	v, ok := l.cuts[n]
	return v, ok
}

// forget drops what is known of lines before n (rows already read).
func (l *lineLimiter) forget(n int64) {
	for k := range l.cuts {
		if k < n {
			delete(l.cuts, k)
		}
	}
}

func (l *lineLimiter) Read(p []byte) (int, error) {
	if len(l.pend) > 0 {
		n := copy(p, l.pend)
		l.pend = l.pend[n:]
		return n, nil
	}
	for {
		m, err := l.r.Read(l.buf[:min(len(l.buf), len(p))])
		out := 0
		for _, c := range l.buf[:m] {
			if c == '\n' {
				if l.skip {
					l.cuts[l.line] = int64(l.n)
				}
				l.skip = false
				l.line++
				l.n = 0 // a quoted field spanning lines stays open (quo) across it
				p[out] = c
				out++
				continue
			}
			l.n++
			if l.skip {
				continue
			}
			if l.n > l.max+1 {
				l.skip = true
				if l.quo {
					l.quo = false
					l.pend = append(l.pend[:0], '"')
				}
				continue
			}
			if c == '"' {
				l.quo = !l.quo
			}
			p[out] = c
			out++
		}
		if len(l.pend) > 0 && out < len(p) {
			n := copy(p[out:], l.pend)
			l.pend = l.pend[n:]
			out += n
		}
		if err == io.EOF && l.skip {
			l.cuts[l.line] = int64(l.n)
			l.skip = false
		}
		if out > 0 || err != nil {
			return out, err
		}
	}
}

// recordTap keeps the bytes a CSV parser consumed since its last record, so the raw
// text of each record (exactly as delivered, quotes included) can go into its dead
// letter. It sits below the parser's buffered reader: offsets are the parser's
// InputOffset values.
type recordTap struct {
	r    io.Reader
	base int64 // stream offset of buf[0]
	buf  []byte
}

func (t *recordTap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.buf = append(t.buf, p[:n]...)
	return n, err
}

// record returns the raw bytes between stream offsets from and to, and forgets
// everything before to.
func (t *recordTap) record(from, to int64) []byte {
	var out []byte
	if from >= t.base && to >= from && to-t.base <= int64(len(t.buf)) {
		out = bytes.Clone(t.buf[from-t.base : to-t.base])
	}
	if drop := to - t.base; drop > 0 && drop <= int64(len(t.buf)) {
		t.buf = append(t.buf[:0], t.buf[drop:]...)
		t.base = to
	}
	return out
}
