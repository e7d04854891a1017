package mysqlbinlog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/shouwang/shouwang/internal/extsort"
)

// The reload state lives on disk as files of records sorted by key ("runs"), so that a
// table of millions of rows is compared with a reload by streaming merges in bounded
// memory rather than through an in-memory index. A record is
//
//	uvarint len(key) | key | flags | uvarint seq | uvarint len(county) | county | 8 reserved bytes | uvarint len(row) | row
//
// key is the encoded primary key (encodeKey), row the canonical JSON of the image
// downstream holds, county the 6-digit county code used by the mass-delete breaker
// (empty when the row has none). seq is written as the record has it (0 in practice)
// and ignored: of the records of one key in a log the later wins, and in a merge the
// later file's. The reserved bytes once held a hash of row; rows are compared whole
// (both are in memory when they are compared), so they are written as zero and
// ignored.
//
// The state files (bases, overlay logs) are plain sequences of such records, written
// by recWriter (appended to and cut back after a crash: skimRecFile). Sorting goes
// through internal/extsort (sorter): records in this encoding are buffered, spilled
// as checksummed temporary runs and merged with a bounded fan-in, and the last record
// of each key is kept; mergeRecs merges the sorted streams of a view with extsort's
// stable merge.

const (
	recTomb     byte = 1 << iota // the key was deleted
	recVanished                  // absent from the last reload; held, or deleted when the generation is not held
	// recKeep is a window row whose values did not convert (it went to the DLQ): the
	// key's stored row stays as it is, neither updated nor vanished, so that a bad
	// row in a weekly push never deletes its previous version.
	recKeep
)

// sortBufferBytes bounds the memory of one sorter before it spills a sorted run.
const sortBufferBytes = 32 << 20

type rec struct {
	key    []byte
	flags  byte
	seq    uint64
	county []byte
	row    []byte
}

func (r *rec) size() int { return len(r.key) + len(r.county) + len(r.row) + 48 }

// recWriter appends records to a file.
type recWriter struct {
	f   *os.File
	w   *bufio.Writer
	buf []byte
	n   int64
	// With syncEvery > 0, every syncEvery bytes written a goroutine makes the file
	// durable so far, so that close's fsync has only the tail left (a new base of
	// gigabytes would otherwise be written to disk in one go when the window closes).
	syncEvery, written, synced int64
	syncReq                    chan struct{}
	syncDone                   chan error
}

// syncInBackground starts the background syncs of w (see recWriter.syncEvery).
func (w *recWriter) syncInBackground(every int64) {
	w.syncEvery = every
	req, done, f := make(chan struct{}, 1), make(chan error, 1), w.f
	w.syncReq, w.syncDone = req, done
	go func() {
		var first error
		for range req {
			if err := f.Sync(); err != nil && first == nil {
				first = fmt.Errorf("reload state: sync %s: %w", f.Name(), err)
			}
		}
		done <- first
	}()
}

// stopSyncing ends the background syncs and returns the first error of one.
func (w *recWriter) stopSyncing() error {
	if w.syncReq == nil {
		return nil
	}
	close(w.syncReq)
	w.syncReq = nil
	return <-w.syncDone
}

func createRecWriter(path string) (*recWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("reload state: create %s: %w", path, err)
	}
	return &recWriter{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func appendRecWriter(path string) (*recWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("reload state: open %s for append: %w", path, err)
	}
	return &recWriter{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

// appendRec appends the encoding of r (see the format above) to dst.
func appendRec(dst []byte, r *rec) []byte {
	b := binary.AppendUvarint(dst, uint64(len(r.key)))
	b = append(b, r.key...)
	b = append(b, r.flags)
	b = binary.AppendUvarint(b, r.seq)
	b = binary.AppendUvarint(b, uint64(len(r.county)))
	b = append(b, r.county...)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // reserved
	b = binary.AppendUvarint(b, uint64(len(r.row)))
	return append(b, r.row...)
}

// recKey is the key of an encoded record (nil when it does not decode: parseRec
// reports that).
func recKey(b []byte) []byte {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return nil
	}
	return b[w : w+int(n)]
}

// parseRec decodes one whole encoded record; its slices point into b.
func parseRec(b []byte) (rec, error) {
	var r rec
	field := func() ([]byte, bool) {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nil, false
		}
		f := b[w : w+int(n) : w+int(n)]
		b = b[w+int(n):]
		return f, true
	}
	var ok bool
	if r.key, ok = field(); !ok || len(b) < 1 {
		return r, errors.New("truncated key")
	}
	r.flags, b = b[0], b[1:]
	seq, w := binary.Uvarint(b)
	if w <= 0 {
		return r, errors.New("truncated seq")
	}
	r.seq, b = seq, b[w:]
	if r.county, ok = field(); !ok || len(b) < 8 {
		return r, errors.New("truncated county")
	}
	if len(r.county) == 0 {
		r.county = nil
	}
	b = b[8:] // reserved
	if r.row, ok = field(); !ok || len(b) != 0 {
		return r, errors.New("bad row length")
	}
	return r, nil
}

func (w *recWriter) write(r *rec) error {
	b := appendRec(w.buf[:0], r)
	w.buf = b
	w.n++
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("reload state: write %s: %w", w.f.Name(), err)
	}
	if w.syncReq != nil {
		// Bytes still in w.w are synced by a later request or by close.
		if w.written += int64(len(b)); w.written-w.synced >= w.syncEvery {
			select {
			case w.syncReq <- struct{}{}:
				w.synced = w.written
			default: // a sync is still running
			}
		}
	}
	return nil
}

// flush hands buffered records to the OS; sync also makes them durable.
func (w *recWriter) flush(sync bool) error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("reload state: write %s: %w", w.f.Name(), err)
	}
	if sync {
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("reload state: sync %s: %w", w.f.Name(), err)
		}
	}
	return nil
}

func (w *recWriter) close() error {
	err := w.stopSyncing()
	if ferr := w.flush(true); err == nil {
		err = ferr
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("reload state: close %s: %w", w.f.Name(), cerr)
	}
	return err
}

// recIter yields records in key order (each key once) until ok is false.
type recIter interface {
	next() (r rec, ok bool, err error)
	close()
}

// recReader reads one record file sequentially.
type recReader struct {
	f *os.File
	r *bufio.Reader
	// slab is the rest of the current block that fields are carved from.
	slab []byte
}

func openRecReader(path string) (*recReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reload state: open %s: %w", path, err)
	}
	return &recReader{f: f, r: bufio.NewReaderSize(f, 128<<10)}, nil
}

func (rr *recReader) bytes() ([]byte, error) {
	n, err := binary.ReadUvarint(rr.r)
	if err != nil {
		return nil, err
	}
	if n > 1<<30 {
		return nil, fmt.Errorf("field of %d bytes", n)
	}
	var b []byte
	if n > recSlabBytes/4 {
		b = make([]byte, n)
	} else {
		if rr.slab == nil || uint64(len(rr.slab)) < n {
			rr.slab = make([]byte, recSlabBytes)
		}
		b, rr.slab = rr.slab[:n:n], rr.slab[n:]
	}
	_, err = io.ReadFull(rr.r, b)
	return b, err
}

// recSlabBytes is the size of the blocks a recReader carves record fields from: one
// allocation per few hundred records instead of three per record (the window close
// decodes every stored and every reloaded row). A block stays alive while any record
// carved from it does; records are short-lived in the merges, so that is bounded.
const recSlabBytes = 64 << 10

func (rr *recReader) next() (rec, bool, error) {
	var r rec
	var err error
	if r.key, err = rr.bytes(); err != nil {
		if errors.Is(err, io.EOF) {
			return r, false, nil
		}
		return r, false, rr.corrupt(err)
	}
	if r.flags, err = rr.r.ReadByte(); err != nil {
		return r, false, rr.corrupt(err)
	}
	if r.seq, err = binary.ReadUvarint(rr.r); err != nil {
		return r, false, rr.corrupt(err)
	}
	if r.county, err = rr.bytes(); err != nil {
		return r, false, rr.corrupt(err)
	}
	if _, err = rr.r.Discard(8); err != nil { // reserved
		return r, false, rr.corrupt(err)
	}
	if r.row, err = rr.bytes(); err != nil {
		return r, false, rr.corrupt(err)
	}
	return r, true, nil
}

func (rr *recReader) corrupt(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	// A torn record at the end of a log (crash while appending) loses only changes
	// after the saved position, which the binlog replay writes again.
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return fmt.Errorf("reload state: read %s: %w (delete the reload state directory and re-snapshot the table)", rr.f.Name(), err)
}

func (rr *recReader) close() { rr.f.Close() }

// sorter sorts records by key through internal/extsort (in memory up to
// sortBufferBytes, then in spilled runs merged with a bounded fan-in) and yields each
// key once: the record added last wins. Records are encoded as in the state files.
type sorter struct {
	xs  *extsort.Sorter
	err error // of extsort.New: reported by add and iter
	buf []byte
}

func newSorter(dir, prefix string) *sorter { return makeSorter(dir, prefix, false) }

// newWindowSorter is the sorter of a reload window's rows: it sorts and writes full
// buffers on a goroutine while records keep coming (sorting and writing overlap
// reading the binlog), so at most two buffers are in memory.
func newWindowSorter(dir string) *sorter { return makeSorter(dir, "window", true) }

func makeSorter(dir, prefix string, background bool) *sorter {
	// The run files end in .tmp: removeTemp deletes them after a crash.
	xs, err := extsort.New(extsort.Options{Dir: dir, Pattern: prefix + "-run-*.tmp", MemoryBytes: sortBufferBytes,
		Key: recKey, Background: background})
	if err != nil {
		err = fmt.Errorf("reload state: %w", err)
	}
	return &sorter{xs: xs, err: err}
}

// add copies r into the sorter (the caller may reuse r's slices).
func (so *sorter) add(r rec) error {
	if so.err != nil {
		return so.err
	}
	so.buf = appendRec(so.buf[:0], &r)
	if err := so.xs.Add(so.buf); err != nil {
		return fmt.Errorf("reload state: %w", err)
	}
	return nil
}

// runs is the number of sorted runs spilled so far.
func (so *sorter) runs() int {
	if so.xs == nil {
		return 0
	}
	return so.xs.Runs()
}

// iter ends the input and returns the sorted records, each key once (the last added).
func (so *sorter) iter() (recIter, error) {
	if so.err != nil {
		return nil, so.err
	}
	it, err := so.xs.Iter()
	if err != nil {
		return nil, fmt.Errorf("reload state: %w", err)
	}
	return &lastOfKey{it: &sortedRecs{it: it}}, nil
}

// remove deletes the sorter's run files.
func (so *sorter) remove() {
	if so.xs != nil {
		so.xs.Close()
	}
}

// sortedRecs decodes a sorter's records into records owning their slices (carved
// from blocks as recReader does), so that they may cross goroutines (prefetchIter).
type sortedRecs struct {
	it   *extsort.Iter
	slab []byte
}

func (s *sortedRecs) next() (rec, bool, error) {
	b, ok, err := s.it.Next()
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("reload state: %w", err)
		}
		return rec{}, false, err
	}
	n := len(b)
	var own []byte
	if n > recSlabBytes/4 {
		own = make([]byte, n)
	} else {
		if len(s.slab) < n {
			s.slab = make([]byte, recSlabBytes)
		}
		own, s.slab = s.slab[:n:n], s.slab[n:]
	}
	copy(own, b)
	r, err := parseRec(own)
	if err != nil {
		return rec{}, false, fmt.Errorf("reload state: sorted record: %w", err)
	}
	return r, true, nil
}

func (s *sortedRecs) close() { s.it.Close() }

// lastOfKey yields the last record of each key of a key-ordered iterator.
type lastOfKey struct {
	it     recIter
	peek   rec
	peeked bool
	done   bool
}

func (l *lastOfKey) next() (rec, bool, error) {
	best := l.peek
	if !l.peeked {
		if l.done {
			return rec{}, false, nil
		}
		var ok bool
		var err error
		if best, ok, err = l.it.next(); err != nil || !ok {
			l.done = true
			return rec{}, false, err
		}
	}
	l.peek, l.peeked = rec{}, false
	for {
		r, ok, err := l.it.next()
		if err != nil {
			return rec{}, false, err
		}
		if !ok {
			l.done = true
			return best, true, nil
		}
		if !bytes.Equal(r.key, best.key) {
			l.peek, l.peeked = r, true
			return best, true, nil
		}
		best = r
	}
}

func (l *lastOfKey) close() { l.it.close() }

// mergeRecs merges key-sorted iterators into one yielding each key once: the record
// of the highest-indexed iterator that has the key (later iterators override earlier
// ones: overlay over base), and within one iterator the later record. Records come
// with seq 0. The merge owns its iterators: it closes them, also on an error.
func mergeRecs(its []recIter) (recIter, error) {
	streams := make([]extsort.Stream[rec], len(its))
	for i, it := range its {
		streams[i] = recStream{it}
	}
	m, err := extsort.Merge(streams, func(a, b rec) int { return bytes.Compare(a.key, b.key) })
	if err != nil {
		return nil, err
	}
	return &lastOfKey{it: mergedRecs{m}}, nil
}

// recStream is a recIter as an extsort.Stream.
type recStream struct{ it recIter }

func (s recStream) Next() (rec, bool, error) {
	r, ok, err := s.it.next()
	r.seq = 0
	return r, ok, err
}
func (s recStream) Close() error { s.it.close(); return nil }

// mergedRecs is an extsort.Merger of records as a recIter.
type mergedRecs struct{ m *extsort.Merger[rec] }

func (m mergedRecs) next() (rec, bool, error) { return m.m.Next() }
func (m mergedRecs) close()                   { m.m.Close() }

// removeTemp deletes leftover temporary files (sort runs, window spills, event files)
// from a crash: they are never needed after a restart.
func removeTemp(dir string) {
	m, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	for _, p := range m {
		os.Remove(p)
	}
}

// skimRecFile reads the record file at path without keeping its records. It returns
// the length of its complete records (a record torn by a crash at the end is not
// counted), whether their keys strictly ascend, and the last key.
func skimRecFile(path string) (size int64, ascending bool, last []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	ascending = true
	var key []byte
	var off int64
	// field reads a uvarint length and, into buf when keep, the bytes after it.
	field := func(keep bool, buf []byte) ([]byte, int64, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return buf, 0, err
		}
		if n > 1<<30 {
			return buf, 0, fmt.Errorf("field of %d bytes", n)
		}
		used := int64(uvarintLen(n)) + int64(n)
		if keep {
			buf = slices.Grow(buf[:0], int(n))[:n]
			_, err = io.ReadFull(r, buf)
		} else {
			_, err = r.Discard(int(n))
		}
		return buf, used, err
	}
	for {
		var n, used int64
		key, used, err = field(true, key)
		if errors.Is(err, io.EOF) && used == 0 {
			return off, ascending, last, nil
		}
		n += used
		if err == nil {
			_, err = r.ReadByte() // flags
			n++
		}
		if err == nil {
			var seq uint64
			seq, err = binary.ReadUvarint(r)
			n += int64(uvarintLen(seq))
		}
		if err == nil {
			_, used, err = field(false, nil) // county
			n += used
		}
		if err == nil {
			_, err = r.Discard(8)
			n += 8
		}
		if err == nil {
			_, used, err = field(false, nil) // row
			n += used
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || (err == nil && len(key) == 0) {
			// Torn at the end; an empty key (no encoded key is empty) is a tail the
			// file system extended with zeros before the data reached the disk.
			return off, ascending, last, nil
		}
		if err != nil {
			return 0, false, nil, fmt.Errorf("reload state: read %s at byte %d: %w (delete the reload state directory and re-snapshot the table)", path, off, err)
		}
		if ascending && last != nil && bytes.Compare(key, last) <= 0 {
			ascending = false
		}
		last = append(last[:0], key...)
		off += n
	}
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
