package filedrop

import (
	"encoding/binary"
	"errors"

	"github.com/shouwang/shouwang/internal/extsort"
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

// appendEntry encodes e as a sort record: uvarint len(key) | key | uvarint line | op
// | blob (the sort frames each record, so the blob runs to its end).
func appendEntry(dst []byte, key []byte, line int64, op byte, blob []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(line))
	dst = append(dst, op)
	return append(dst, blob...)
}

// entryKey is the sort key of an encoded entry.
func entryKey(b []byte) []byte {
	kl, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < kl {
		return nil // decodeEntry reports it
	}
	return b[w : w+int(kl)]
}

// sorter is an external merge sort of delivery rows by key (internal/extsort): rows
// accumulate up to a byte budget, are sorted and spilled as run files in the
// delivery's temporary directory, and iterate merges the runs. Memory stays bounded by
// the budget whatever the delivery size.
type sorter struct {
	xs  *extsort.Sorter
	err error // of New: reported by the first add or iterate
	buf []byte
}

func newSorter(dir string, budget int) *sorter {
	xs, err := extsort.New(extsort.Options{Dir: dir, Pattern: "run-*", MemoryBytes: budget, Key: entryKey})
	return &sorter{xs: xs, err: err}
}

// add appends one row.
func (s *sorter) add(key []byte, line int64, op byte, blob []byte) error {
	if s.err != nil {
		return s.err
	}
	s.buf = appendEntry(s.buf[:0], key, line, op, blob)
	return s.xs.Add(s.buf)
}

// runs is the number of sorted runs spilled so far.
func (s *sorter) runs() int {
	if s.xs == nil {
		return 0
	}
	return s.xs.Runs()
}

// iterator yields entries in key order; rows with equal keys keep their input order
// (the sort is stable), so duplicates are reported deterministically.
type iterator interface {
	next() (entry, bool, error)
	close() error
}

// iterate finishes the input and returns the sorted stream.
func (s *sorter) iterate() (iterator, error) {
	if s.err != nil {
		return nil, s.err
	}
	it, err := s.xs.Iter()
	if err != nil {
		return nil, err
	}
	return entryIter{it}, nil
}

// cleanup removes the run files.
func (s *sorter) cleanup() {
	if s.xs != nil {
		s.xs.Close()
	}
}

type entryIter struct{ it *extsort.Iter }

func (e entryIter) next() (entry, bool, error) {
	b, ok, err := e.it.Next()
	if err != nil || !ok {
		return entry{}, false, err
	}
	en, err := decodeEntry(b)
	return en, err == nil, err
}

func (e entryIter) close() error { return e.it.Close() }

// decodeEntry decodes one sort record.
func decodeEntry(b []byte) (entry, error) {
	var e entry
	kl, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < kl {
		return e, errors.New("corrupt sort record (key)")
	}
	p := w
	e.Key = b[p : p+int(kl)]
	p += int(kl)
	line, w := binary.Uvarint(b[p:])
	if w <= 0 || p+w >= len(b) {
		return e, errors.New("corrupt sort record (line)")
	}
	e.Line = int64(line)
	p += w
	e.Op = b[p]
	e.Blob = b[p+1:]
	return e, nil
}
