package filedrop

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// Row operations inside a delivery, before diffing.
const (
	opUpsert byte = 'u' // a row present in the delivery
	opDelete byte = 'd' // an incremental row marked deleted by the op column
	opKeep   byte = 'k' // a bad row whose key is known: keep the previous value
)

// entry is one delivery row on its way through the sort. Key and Blob are only valid
// until the next call of the iterator that produced it.
type entry struct {
	Key  []byte
	Line int64
	Op   byte
	Blob []byte
}

// appendEntry encodes e as a sort record: key, line, op, blob.
func appendEntry(dst []byte, key []byte, line int64, op byte, blob []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(line))
	dst = append(dst, op)
	dst = binary.AppendUvarint(dst, uint64(len(blob)))
	return append(dst, blob...)
}

// sorter is an external merge sort of delivery rows by key: rows accumulate in one
// arena up to a byte budget, are sorted and spilled as a run file; iterate merges the
// runs. Memory stays bounded by the budget whatever the delivery size.
type sorter struct {
	dir    string
	budget int
	arena  []byte
	refs   []ref
	runs   []string
	rows   int64
}

type ref struct{ off, n, kOff, kLen uint32 }

func newSorter(dir string, budget int) *sorter {
	return &sorter{dir: dir, budget: budget}
}

// add appends one row.
func (s *sorter) add(key []byte, line int64, op byte, blob []byte) error {
	if s.arena == nil {
		// Allocate the budget once: append's doubling would overshoot it.
		s.arena = make([]byte, 0, s.budget)
		s.refs = make([]ref, 0, s.budget/64)
	}
	if len(s.arena)+len(key)+len(blob)+32 > s.budget && len(s.refs) > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	off := len(s.arena)
	s.arena = appendEntry(s.arena, key, line, op, blob)
	kOff := off + uvarintLen(uint64(len(key)))
	s.refs = append(s.refs, ref{off: uint32(off), n: uint32(len(s.arena) - off), kOff: uint32(kOff), kLen: uint32(len(key))})
	s.rows++
	return nil
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

func (s *sorter) sortRefs() {
	a := s.arena
	slices.SortStableFunc(s.refs, func(x, y ref) int {
		return bytes.Compare(a[x.kOff:x.kOff+x.kLen], a[y.kOff:y.kOff+y.kLen])
	})
}

// spill sorts the buffered rows and writes them as one run file.
func (s *sorter) spill() error {
	s.sortRefs()
	name := filepath.Join(s.dir, fmt.Sprintf("run-%06d", len(s.runs)))
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("create sort run: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, r := range s.refs {
		if _, err := w.Write(s.arena[r.off : r.off+r.n]); err != nil {
			f.Close()
			return fmt.Errorf("write sort run %s: %w", name, err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write sort run %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close sort run %s: %w", name, err)
	}
	s.runs = append(s.runs, name)
	s.arena = s.arena[:0]
	s.refs = s.refs[:0]
	return nil
}

// iterator yields entries in key order; rows with equal keys keep their input order
// (runs are merged stably by run index), so duplicates are reported deterministically.
type iterator interface {
	next() (entry, bool, error)
	close() error
}

// iterate finishes the input and returns the sorted stream.
func (s *sorter) iterate() (iterator, error) {
	if len(s.runs) == 0 {
		s.sortRefs()
		return &memIter{s: s}, nil
	}
	if len(s.refs) > 0 {
		if err := s.spill(); err != nil {
			return nil, err
		}
	}
	s.arena = nil
	m := &mergeIter{}
	for i, name := range s.runs {
		f, err := os.Open(name)
		if err != nil {
			m.close()
			return nil, fmt.Errorf("open sort run: %w", err)
		}
		r := &runReader{f: f, r: bufio.NewReaderSize(f, 256<<10), idx: i}
		m.readers = append(m.readers, r)
		ok, err := r.advance()
		if err != nil {
			m.close()
			return nil, err
		}
		if ok {
			m.h = append(m.h, r)
		}
	}
	heap.Init(&m.h)
	return m, nil
}

// cleanup removes the run files.
func (s *sorter) cleanup() {
	for _, r := range s.runs {
		os.Remove(r)
	}
	s.runs = nil
}

type memIter struct {
	s *sorter
	i int
}

func (m *memIter) next() (entry, bool, error) {
	if m.i >= len(m.s.refs) {
		return entry{}, false, nil
	}
	r := m.s.refs[m.i]
	m.i++
	e, _, err := decodeEntry(m.s.arena[r.off : r.off+r.n])
	return e, err == nil, err
}

func (m *memIter) close() error { return nil }

// decodeEntry decodes one sort record from b, returning the bytes consumed.
func decodeEntry(b []byte) (entry, int, error) {
	var e entry
	p := 0
	kl, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < kl {
		return e, 0, errors.New("corrupt sort record (key)")
	}
	p = w
	e.Key = b[p : p+int(kl)]
	p += int(kl)
	line, w := binary.Uvarint(b[p:])
	if w <= 0 || p+w >= len(b) {
		return e, 0, errors.New("corrupt sort record (line)")
	}
	e.Line = int64(line)
	p += w
	e.Op = b[p]
	p++
	bl, w := binary.Uvarint(b[p:])
	if w <= 0 || uint64(len(b)-p-w) < bl {
		return e, 0, errors.New("corrupt sort record (blob)")
	}
	p += w
	e.Blob = b[p : p+int(bl)]
	return e, p + int(bl), nil
}

type runReader struct {
	f   *os.File
	r   *bufio.Reader
	idx int
	cur entry
	key []byte
	blb []byte
}

func (r *runReader) advance() (bool, error) {
	kl, err := binary.ReadUvarint(r.r)
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read sort run: %w", err)
	}
	r.key = slices.Grow(r.key[:0], int(kl))[:kl]
	if _, err := io.ReadFull(r.r, r.key); err != nil {
		return false, fmt.Errorf("read sort run: %w", err)
	}
	line, err := binary.ReadUvarint(r.r)
	if err != nil {
		return false, fmt.Errorf("read sort run: %w", err)
	}
	op, err := r.r.ReadByte()
	if err != nil {
		return false, fmt.Errorf("read sort run: %w", err)
	}
	bl, err := binary.ReadUvarint(r.r)
	if err != nil {
		return false, fmt.Errorf("read sort run: %w", err)
	}
	r.blb = slices.Grow(r.blb[:0], int(bl))[:bl]
	if _, err := io.ReadFull(r.r, r.blb); err != nil {
		return false, fmt.Errorf("read sort run: %w", err)
	}
	r.cur = entry{Key: r.key, Line: int64(line), Op: op, Blob: r.blb}
	return true, nil
}

type runHeap []*runReader

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	if c := bytes.Compare(h[i].cur.Key, h[j].cur.Key); c != 0 {
		return c < 0
	}
	return h[i].idx < h[j].idx
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeIter merges the runs. The entry it returns belongs to the run reader that
// produced it, which is advanced only on the following call.
type mergeIter struct {
	readers []*runReader
	h       runHeap
	last    *runReader
}

func (m *mergeIter) next() (entry, bool, error) {
	if m.last != nil {
		ok, err := m.last.advance()
		if err != nil {
			return entry{}, false, err
		}
		if ok {
			heap.Fix(&m.h, 0)
		} else {
			heap.Pop(&m.h)
		}
		m.last = nil
	}
	if len(m.h) == 0 {
		return entry{}, false, nil
	}
	m.last = m.h[0]
	return m.last.cur, true, nil
}

func (m *mergeIter) close() error {
	var errs []error
	for _, r := range m.readers {
		errs = append(errs, r.f.Close())
	}
	return errors.Join(errs...)
}
