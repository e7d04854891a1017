package mysqlbinlog

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

// The reload state lives on disk as files of records sorted by key ("runs"), so that a
// table of millions of rows is compared with a reload by streaming merges in bounded
// memory rather than through an in-memory index. A record is
//
//	uvarint len(key) | key | flags | uvarint seq | uvarint len(county) | county | 8 reserved bytes | uvarint len(row) | row
//
// key is the encoded primary key (encodeKey), row the canonical JSON of the image
// downstream holds, county the 6-digit county code used by the mass-delete breaker
// (empty when the row has none). seq orders records of one key in a log: the highest
// wins. The reserved bytes once held a hash of row; rows are compared whole (both are
// in memory when they are compared), so they are written as zero and ignored.

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

func (w *recWriter) write(r *rec) error {
	b := w.buf[:0]
	b = binary.AppendUvarint(b, uint64(len(r.key)))
	b = append(b, r.key...)
	b = append(b, r.flags)
	b = binary.AppendUvarint(b, r.seq)
	b = binary.AppendUvarint(b, uint64(len(r.county)))
	b = append(b, r.county...)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // reserved
	b = binary.AppendUvarint(b, uint64(len(r.row)))
	b = append(b, r.row...)
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
	f   *os.File
	r   *bufio.Reader
	seq uint64 // when > 0, records get seq = position in the file (logs written without seq)
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
	if rr.seq > 0 {
		r.seq = rr.seq
		rr.seq++
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

// sorter collects records in memory, spilling sorted runs to dir when the buffer is
// full, and merges them back in key order keeping the highest seq of each key.
type sorter struct {
	dir, prefix string
	buf         []rec
	size        int
	runs        []string
	seq         uint64
	n           int64
	// background spills sorted runs on a goroutine while records keep coming (the
	// window's spill: sorting and writing overlap reading the binlog).
	background bool
	pending    chan spillResult
}

func newSorter(dir, prefix string) *sorter { return &sorter{dir: dir, prefix: prefix} }

// newWindowSorter is the background sorter of a reload window's rows.
func newWindowSorter(dir string) *sorter {
	return &sorter{dir: dir, prefix: "window", background: true}
}

// add takes ownership of r's slices; a zero seq gets the next sequence number.
func (so *sorter) add(r rec) error {
	if r.seq == 0 {
		so.seq++
		r.seq = so.seq
	}
	so.buf = append(so.buf, r)
	so.size += r.size()
	so.n++
	if so.size >= sortBufferBytes {
		return so.spill()
	}
	return nil
}

func cmpRec(a, b rec) int {
	if c := bytes.Compare(a.key, b.key); c != 0 {
		return c
	}
	switch {
	case a.seq < b.seq:
		return -1
	case a.seq > b.seq:
		return 1
	}
	return 0
}

// spill writes the buffer as a sorted run: on a goroutine for a background sorter
// (the previous run is waited for first, so at most two buffers are in memory).
func (so *sorter) spill() error {
	if len(so.buf) == 0 {
		return nil
	}
	if !so.background {
		p, err := writeRun(so.dir, so.prefix, so.buf)
		if err != nil {
			return err
		}
		so.runs = append(so.runs, p)
		so.buf, so.size = so.buf[:0], 0
		return nil
	}
	if err := so.wait(); err != nil {
		return err
	}
	buf := so.buf
	so.buf, so.size = make([]rec, 0, len(buf)), 0
	ch := make(chan spillResult, 1)
	so.pending = ch
	go func() {
		p, err := writeRun(so.dir, so.prefix, buf)
		ch <- spillResult{path: p, err: err}
	}()
	return nil
}

type spillResult struct {
	path string
	err  error
}

// wait collects the run being written in the background, if any.
func (so *sorter) wait() error {
	if so.pending == nil {
		return nil
	}
	r := <-so.pending
	so.pending = nil
	if r.err != nil {
		return r.err
	}
	so.runs = append(so.runs, r.path)
	return nil
}

// writeRun sorts buf and writes it to a new run file in dir.
func writeRun(dir, prefix string, buf []rec) (string, error) {
	slices.SortFunc(buf, cmpRec)
	f, err := os.CreateTemp(dir, prefix+"-run-*.tmp")
	if err != nil {
		return "", fmt.Errorf("reload state: sort run: %w", err)
	}
	f.Close()
	w, err := createRecWriter(f.Name())
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	for i := range buf {
		if err := w.write(&buf[i]); err != nil {
			w.f.Close()
			os.Remove(f.Name())
			return "", err
		}
	}
	if err := w.w.Flush(); err != nil {
		w.f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("reload state: write %s: %w", f.Name(), err)
	}
	w.f.Close()
	return f.Name(), nil
}

// iter spills what is buffered and returns the merged, de-duplicated records.
func (so *sorter) iter() (recIter, error) {
	if err := so.spill(); err != nil {
		return nil, err
	}
	if err := so.wait(); err != nil {
		return nil, err
	}
	var its []recIter
	for _, p := range so.runs {
		rr, err := openRecReader(p)
		if err != nil {
			for _, it := range its {
				it.close()
			}
			return nil, err
		}
		its = append(its, rr)
	}
	return newMergeIter(its, false)
}

// remove deletes the sorter's run files.
func (so *sorter) remove() {
	so.wait()
	for _, p := range so.runs {
		os.Remove(p)
	}
	so.runs, so.buf, so.size = nil, nil, 0
}

// mergeIter merges sorted iterators. Equal keys collapse to the record with the
// highest seq, or, with byIndex, to the record of the highest-indexed iterator (later
// iterators override earlier ones: overlay over base).
type mergeIter struct {
	h       mergeHeap
	byIndex bool
}

type mergeItem struct {
	r   rec
	idx int
	it  recIter
}

type mergeHeap []mergeItem

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if c := cmpRec(h[i].r, h[j].r); c != 0 {
		return c < 0
	}
	return h[i].idx < h[j].idx
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(mergeItem)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newMergeIter(its []recIter, byIndex bool) (*mergeIter, error) {
	m := &mergeIter{byIndex: byIndex}
	for i, it := range its {
		r, ok, err := it.next()
		if err != nil {
			m.close()
			for _, rest := range its[i:] {
				rest.close()
			}
			return nil, err
		}
		if !ok {
			it.close()
			continue
		}
		if byIndex {
			r.seq = 0
		}
		m.h = append(m.h, mergeItem{r: r, idx: i, it: it})
	}
	heap.Init(&m.h)
	return m, nil
}

func (m *mergeIter) pop() (rec, error) {
	top := m.h[0]
	r, ok, err := top.it.next()
	if err != nil {
		return rec{}, err
	}
	if ok {
		if m.byIndex {
			r.seq = 0
		}
		m.h[0].r = r
		heap.Fix(&m.h, 0)
	} else {
		top.it.close()
		heap.Pop(&m.h)
	}
	return top.r, nil
}

func (m *mergeIter) next() (rec, bool, error) {
	if len(m.h) == 0 {
		return rec{}, false, nil
	}
	best, err := m.pop()
	if err != nil {
		return rec{}, false, err
	}
	for len(m.h) > 0 && bytes.Equal(m.h[0].r.key, best.key) {
		r, err := m.pop()
		if err != nil {
			return rec{}, false, err
		}
		best = r // heap order: higher seq, then higher index, comes later
	}
	return best, true, nil
}

func (m *mergeIter) close() {
	for _, it := range m.h {
		it.it.close()
	}
	m.h = nil
}

// emptyIter yields nothing.
type emptyIter struct{}

func (emptyIter) next() (rec, bool, error) { return rec{}, false, nil }
func (emptyIter) close()                   {}

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
