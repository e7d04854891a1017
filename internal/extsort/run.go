package extsort

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// ErrCorrupt is wrapped by the errors of a run file that does not read back as it
// was written (bad checksum, truncated, not a run file).
var ErrCorrupt = errors.New("corrupt sort run")

// MaxRecordBytes is the largest record Add accepts; a run claiming a longer record is
// corrupt.
const MaxRecordBytes = 1 << 30

const runMagic = "extsort1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// runWriter writes one run file.
type runWriter struct {
	s    *Sorter
	f    *os.File
	w    *bufio.Writer
	n    uint64
	hdr  [binary.MaxVarintLen64 + 4]byte
	done bool
}

func (s *Sorter) createRun() (*runWriter, error) {
	f, err := os.CreateTemp(s.opts.Dir, s.opts.Pattern)
	if err != nil {
		return nil, fmt.Errorf("extsort: create run: %w", err)
	}
	s.opened()
	w := &runWriter{s: s, f: f, w: bufio.NewWriterSize(f, s.bufBytes)}
	if _, err := w.w.WriteString(runMagic); err != nil {
		w.abort()
		return nil, fmt.Errorf("extsort: write %s: %w", f.Name(), err)
	}
	return w, nil
}

func (w *runWriter) write(rec []byte) error {
	n := binary.PutUvarint(w.hdr[:], uint64(len(rec))+1)
	if _, err := w.w.Write(w.hdr[:n]); err != nil {
		return fmt.Errorf("extsort: write %s: %w", w.f.Name(), err)
	}
	if _, err := w.w.Write(rec); err != nil {
		return fmt.Errorf("extsort: write %s: %w", w.f.Name(), err)
	}
	binary.LittleEndian.PutUint32(w.hdr[:4], crc32.Checksum(rec, castagnoli))
	if _, err := w.w.Write(w.hdr[:4]); err != nil {
		return fmt.Errorf("extsort: write %s: %w", w.f.Name(), err)
	}
	w.n++
	return nil
}

// finish writes the trailer and closes the file, returning its name.
func (w *runWriter) finish() (string, error) {
	var t [9]byte
	binary.LittleEndian.PutUint64(t[1:], w.n)
	_, err := w.w.Write(t[:])
	if err == nil {
		err = w.w.Flush()
	}
	w.done = true
	w.s.closed()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(w.f.Name())
		return "", fmt.Errorf("extsort: write %s: %w", w.f.Name(), err)
	}
	return w.f.Name(), nil
}

// abort closes and removes an unfinished run.
func (w *runWriter) abort() {
	if w.done {
		return
	}
	w.done = true
	w.s.closed()
	w.f.Close()
	os.Remove(w.f.Name())
}

// runReader reads one run file; it is a Stream of keyed records.
type runReader struct {
	s    *Sorter
	f    *os.File
	r    *bufio.Reader
	name string
	off  int64 // of the next record
	n    uint64
	buf  []byte
	open bool
	end  bool
}

// keyed is a record with its key.
type keyed struct {
	rec, key []byte
}

func (s *Sorter) openRun(name string) (*runReader, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("extsort: open run: %w", err)
	}
	s.opened()
	r := &runReader{s: s, f: f, r: bufio.NewReaderSize(f, s.bufBytes), name: name, open: true}
	var m [len(runMagic)]byte
	if _, err := io.ReadFull(r.r, m[:]); err != nil || string(m[:]) != runMagic {
		r.Close()
		return nil, fmt.Errorf("extsort: read %s: not a sort run (no header): %w", name, ErrCorrupt)
	}
	r.off = int64(len(runMagic))
	return r, nil
}

func (r *runReader) corrupt(what string) error {
	return fmt.Errorf("extsort: read %s: record %d at byte %d: %s: %w", r.name, r.n, r.off, what, ErrCorrupt)
}

// Next returns the next record and its key; they stay valid until the next call.
func (r *runReader) Next() (keyed, bool, error) {
	if r.end {
		return keyed{}, false, nil
	}
	l, err := binary.ReadUvarint(r.r)
	if err != nil {
		return keyed{}, false, r.corrupt("truncated (no trailer)")
	}
	if l == 0 {
		var t [8]byte
		if _, err := io.ReadFull(r.r, t[:]); err != nil {
			return keyed{}, false, r.corrupt("truncated trailer")
		}
		if c := binary.LittleEndian.Uint64(t[:]); c != r.n {
			return keyed{}, false, r.corrupt(fmt.Sprintf("trailer counts %d records", c))
		}
		if _, err := r.r.ReadByte(); err != io.EOF {
			return keyed{}, false, r.corrupt("data after the trailer")
		}
		r.end = true
		return keyed{}, false, nil
	}
	l--
	if l > MaxRecordBytes {
		return keyed{}, false, r.corrupt(fmt.Sprintf("length %d", l))
	}
	n := int(l) + 4
	var b []byte
	if n <= r.r.Size() {
		// The record is read in place: it stays in the buffer until the next read.
		if b, err = r.r.Peek(n); err == nil {
			r.r.Discard(n)
		}
	} else {
		if cap(r.buf) < n {
			r.buf = make([]byte, n)
		}
		b = r.buf[:n]
		_, err = io.ReadFull(r.r, b)
	}
	if err != nil {
		return keyed{}, false, r.corrupt("truncated record")
	}
	rec := b[:l:l]
	if crc32.Checksum(rec, castagnoli) != binary.LittleEndian.Uint32(b[l:]) {
		return keyed{}, false, r.corrupt("checksum mismatch")
	}
	r.off += int64(uvarintLen(l+1) + n)
	r.n++
	key, err := r.s.key(rec)
	if err != nil {
		return keyed{}, false, fmt.Errorf("extsort: read %s: record %d: %w", r.name, r.n-1, err)
	}
	return keyed{rec: rec, key: key}, true, nil
}

// Close closes the file (it is removed by the sorter).
func (r *runReader) Close() error {
	if !r.open {
		return nil
	}
	r.open = false
	r.s.closed()
	return r.f.Close()
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
