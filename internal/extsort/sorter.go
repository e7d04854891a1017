package extsort

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
)

// DefaultFanIn is the number of runs merged at once when Options.FanIn is 0.
const DefaultFanIn = 64

// DefaultMemoryBytes is the buffer budget when Options.MemoryBytes is 0.
const DefaultMemoryBytes = 64 << 20

// refBytes is what one buffered record costs besides its bytes (its index entry).
const refBytes = 24

// Options configure a Sorter.
type Options struct {
	// Dir is the directory of the run files (it must exist).
	Dir string
	// Pattern names the run files as os.CreateTemp does; default "extsort-*.tmp".
	Pattern string
	// MemoryBytes bounds the buffer of added records (record bytes plus 24 bytes per
	// record); default DefaultMemoryBytes. With Background two buffers can be in
	// memory. The merge's read buffers come on top: up to FanIn+1 of
	// min(256 KiB, max(16 KiB, MemoryBytes/(FanIn+1))).
	MemoryBytes int
	// FanIn is the most runs merged at once (at least 2); default DefaultFanIn.
	FanIn int
	// Key returns the sort key of a record: nil means the whole record. It must
	// return a subslice of rec (or an empty slice).
	Key func(rec []byte) []byte
	// Compare orders two keys; nil means bytes.Compare.
	Compare func(a, b []byte) int
	// Background sorts and writes full buffers on a goroutine while Add goes on.
	Background bool
}

// Stats describe what a Sorter did.
type Stats struct {
	Records int64 // added
	Runs    int   // sorted runs spilled from the buffer
	Merges  int   // intermediate merges (runs written from other runs)
	Levels  int   // merge passes before the final merge
	// MaxOpenFiles is the peak number of run files open at once.
	MaxOpenFiles int
	SpilledBytes int64 // record bytes written to spilled runs
}

// Sorter is an external merge sort of records (see the package doc). It is not safe
// for concurrent use.
type Sorter struct {
	opts     Options
	bufBytes int
	fanIn    int

	arena []byte
	refs  []ref
	spare *buffer // the buffer of the last background spill, for reuse

	runs    []string // sorted runs, in input order
	all     map[string]bool
	pending chan spillResult
	iter    *Iter
	done    bool // Iter was called

	stats   Stats
	open    atomic.Int64
	maxOpen atomic.Int64
}

// ref locates a buffered record: off is also its insertion rank, which breaks ties.
type ref struct {
	pfx        uint64 // first 8 key bytes, big-endian, zero-padded (bytes order only)
	off, n     uint32
	kOff, kLen uint32
}

type buffer struct {
	arena []byte
	refs  []ref
}

type spillResult struct {
	name string
	n    int64
	buf  *buffer
	err  error
}

// New returns a Sorter; it creates no file until a buffer spills.
func New(opts Options) (*Sorter, error) {
	if opts.Dir == "" {
		return nil, errors.New("extsort: no directory for the run files")
	}
	if opts.Pattern == "" {
		opts.Pattern = "extsort-*.tmp"
	}
	if opts.MemoryBytes <= 0 {
		opts.MemoryBytes = DefaultMemoryBytes
	}
	// Offsets into the buffer are 32-bit.
	opts.MemoryBytes = min(opts.MemoryBytes, 1<<31)
	if opts.FanIn == 0 {
		opts.FanIn = DefaultFanIn
	}
	if opts.FanIn < 2 {
		return nil, fmt.Errorf("extsort: fan-in %d: at least 2 runs must be merged at once", opts.FanIn)
	}
	s := &Sorter{opts: opts, fanIn: opts.FanIn, all: map[string]bool{}}
	s.bufBytes = min(256<<10, max(16<<10, opts.MemoryBytes/(opts.FanIn+1)))
	return s, nil
}

func (s *Sorter) opened() {
	n := s.open.Add(1)
	for {
		m := s.maxOpen.Load()
		if n <= m || s.maxOpen.CompareAndSwap(m, n) {
			return
		}
	}
}

func (s *Sorter) closed() { s.open.Add(-1) }

// key returns the key of rec.
func (s *Sorter) key(rec []byte) ([]byte, error) {
	if s.opts.Key == nil {
		return rec, nil
	}
	k := s.opts.Key(rec)
	if len(k) == 0 {
		return nil, nil
	}
	if off := cap(rec) - cap(k); off < 0 || off > len(rec)-len(k) || &rec[off] != &k[0] {
		return nil, errors.New("Options.Key returned a slice that is not part of the record")
	}
	return k, nil
}

func (s *Sorter) compare(a, b []byte) int {
	if s.opts.Compare != nil {
		return s.opts.Compare(a, b)
	}
	return bytes.Compare(a, b)
}

// Add copies rec into the sorter, spilling the buffer first when rec does not fit.
func (s *Sorter) Add(rec []byte) error {
	if s.done {
		return errors.New("extsort: Add after Iter")
	}
	if len(rec) > MaxRecordBytes {
		return fmt.Errorf("extsort: record of %d bytes (at most %d)", len(rec), MaxRecordBytes)
	}
	need := len(rec) + refBytes
	if len(s.refs) > 0 && len(s.arena)+len(s.refs)*refBytes+need > s.opts.MemoryBytes {
		if err := s.spill(); err != nil {
			return err
		}
	}
	if len(s.arena)+len(rec) > cap(s.arena) {
		s.grow(len(rec))
	}
	off := len(s.arena)
	s.arena = append(s.arena, rec...)
	stored := s.arena[off:]
	k, err := s.key(stored)
	if err != nil {
		s.arena = s.arena[:off]
		return fmt.Errorf("extsort: %w", err)
	}
	r := ref{off: uint32(off), n: uint32(len(rec))}
	if len(k) > 0 {
		r.kOff, r.kLen = uint32(off+cap(stored)-cap(k)), uint32(len(k))
	}
	if s.opts.Compare == nil {
		r.pfx = prefix(k)
	}
	s.refs = append(s.refs, r)
	s.stats.Records++
	return nil
}

// grow makes room for n more bytes, doubling the buffer up to the budget (append's
// growth would overshoot it).
func (s *Sorter) grow(n int) {
	c := max(2*cap(s.arena), 64<<10, len(s.arena)+n)
	if c > s.opts.MemoryBytes {
		c = max(s.opts.MemoryBytes, len(s.arena)+n)
	}
	a := make([]byte, len(s.arena), c)
	copy(a, s.arena)
	s.arena = a
}

func prefix(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(k)
	}
	var b [8]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:])
}

// sortBuffer sorts refs by key, then by insertion (off).
func (s *Sorter) sortBuffer(arena []byte, refs []ref) {
	if s.opts.Compare == nil {
		slices.SortFunc(refs, func(x, y ref) int {
			if x.pfx != y.pfx {
				return cmp.Compare(x.pfx, y.pfx)
			}
			if c := bytes.Compare(arena[x.kOff:x.kOff+x.kLen], arena[y.kOff:y.kOff+y.kLen]); c != 0 {
				return c
			}
			return cmp.Compare(x.off, y.off)
		})
		return
	}
	c := s.opts.Compare
	slices.SortFunc(refs, func(x, y ref) int {
		if r := c(arena[x.kOff:x.kOff+x.kLen], arena[y.kOff:y.kOff+y.kLen]); r != 0 {
			return r
		}
		return cmp.Compare(x.off, y.off)
	})
}

// writeBuffer sorts a buffer and writes it as a run.
func (s *Sorter) writeBuffer(b *buffer) (string, int64, error) {
	s.sortBuffer(b.arena, b.refs)
	w, err := s.createRun()
	if err != nil {
		return "", 0, err
	}
	for _, r := range b.refs {
		if err := w.write(b.arena[r.off : r.off+r.n]); err != nil {
			w.abort()
			return "", 0, err
		}
	}
	name, err := w.finish()
	return name, int64(len(b.arena)), err
}

// spill writes the buffer as a run: on a goroutine with Background (after the
// previous one finished, so at most two buffers are in memory).
func (s *Sorter) spill() error {
	if len(s.refs) == 0 {
		return nil
	}
	b := &buffer{arena: s.arena, refs: s.refs}
	if !s.opts.Background {
		name, n, err := s.writeBuffer(b)
		if err != nil {
			return err
		}
		s.addRun(name, n)
		s.arena, s.refs = s.arena[:0], s.refs[:0]
		return nil
	}
	if err := s.wait(); err != nil {
		return err
	}
	if sp := s.spare; sp != nil {
		s.arena, s.refs, s.spare = sp.arena[:0], sp.refs[:0], nil
	} else {
		s.arena, s.refs = nil, make([]ref, 0, len(b.refs))
	}
	ch := make(chan spillResult, 1)
	s.pending = ch
	go func() {
		name, n, err := s.writeBuffer(b)
		ch <- spillResult{name: name, n: n, buf: b, err: err}
	}()
	return nil
}

func (s *Sorter) addRun(name string, n int64) {
	s.runs = append(s.runs, name)
	s.all[name] = true
	s.stats.Runs++
	s.stats.SpilledBytes += n
}

// wait collects the run being written in the background, if any.
func (s *Sorter) wait() error {
	if s.pending == nil {
		return nil
	}
	r := <-s.pending
	s.pending = nil
	if r.err != nil {
		return r.err
	}
	s.addRun(r.name, r.n)
	s.spare = r.buf
	return nil
}

// Runs is the number of runs spilled so far.
func (s *Sorter) Runs() int {
	n := len(s.runs)
	if s.pending != nil {
		n++
	}
	return n
}

// Stats reports what the sorter did so far.
func (s *Sorter) Stats() Stats {
	st := s.stats
	st.MaxOpenFiles = int(s.maxOpen.Load())
	return st
}

// Iter ends the input and returns the records in order. Nothing can be added after.
// When more than FanIn runs were spilled, Iter first merges them down to FanIn.
func (s *Sorter) Iter() (*Iter, error) {
	if s.done {
		return nil, errors.New("extsort: Iter called twice")
	}
	s.done = true
	if err := s.wait(); err != nil {
		return nil, err
	}
	s.spare = nil
	if len(s.runs) == 0 {
		s.sortBuffer(s.arena, s.refs)
		s.iter = &Iter{s: s}
		return s.iter, nil
	}
	bg := s.opts.Background
	s.opts.Background = false
	err := s.spill()
	s.opts.Background = bg
	if err != nil {
		return nil, err
	}
	s.arena, s.refs = nil, nil
	if err := s.reduce(); err != nil {
		return nil, err
	}
	m, err := s.mergeRuns(s.runs)
	if err != nil {
		return nil, err
	}
	s.iter = &Iter{s: s, m: m}
	return s.iter, nil
}

// reduce merges consecutive runs into intermediate runs until at most FanIn are left,
// merging no more than needed.
func (s *Sorter) reduce() error {
	for len(s.runs) > s.fanIn {
		s.stats.Levels++
		need := len(s.runs) - s.fanIn // runs to get rid of
		var next []string
		for i := 0; i < len(s.runs); {
			k := min(s.fanIn, need+1, len(s.runs)-i)
			if k < 2 {
				next = append(next, s.runs[i:]...)
				break
			}
			name, err := s.mergeToRun(s.runs[i : i+k])
			if err != nil {
				return err
			}
			next = append(next, name)
			need -= k - 1
			i += k
		}
		s.runs = next
	}
	return nil
}

// mergeToRun merges runs into a new run and removes them.
func (s *Sorter) mergeToRun(runs []string) (string, error) {
	m, err := s.mergeRuns(runs)
	if err != nil {
		return "", err
	}
	defer m.Close()
	w, err := s.createRun()
	if err != nil {
		return "", err
	}
	for {
		kr, ok, err := m.Next()
		if err != nil {
			w.abort()
			return "", err
		}
		if !ok {
			break
		}
		if err := w.write(kr.rec); err != nil {
			w.abort()
			return "", err
		}
	}
	name, err := w.finish()
	if err != nil {
		return "", err
	}
	s.all[name] = true
	s.stats.Merges++
	m.Close()
	for _, r := range runs {
		os.Remove(r)
		delete(s.all, r)
	}
	return name, nil
}

// mergeRuns opens runs and merges them.
func (s *Sorter) mergeRuns(runs []string) (*Merger[keyed], error) {
	streams := make([]Stream[keyed], 0, len(runs))
	for _, name := range runs {
		r, err := s.openRun(name)
		if err != nil {
			for _, st := range streams {
				st.Close()
			}
			return nil, err
		}
		streams = append(streams, r)
	}
	return Merge(streams, func(a, b keyed) int { return s.compare(a.key, b.key) })
}

// Close ends any iteration and removes the sorter's run files.
func (s *Sorter) Close() error {
	err := s.wait()
	if s.iter != nil {
		s.iter.Close()
	}
	for name := range s.all {
		if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = fmt.Errorf("extsort: %w", rerr)
		}
	}
	s.all, s.runs, s.arena, s.refs, s.spare = map[string]bool{}, nil, nil, nil, nil
	s.done = true
	return err
}

// Iter streams the sorted records.
type Iter struct {
	s *Sorter
	m *Merger[keyed] // nil: the records are the sorter's buffer
	i int
}

// Next returns the next record; it stays valid until the next call of Next.
func (it *Iter) Next() ([]byte, bool, error) {
	if it.m != nil {
		kr, ok, err := it.m.Next()
		return kr.rec, ok, err
	}
	if it.s == nil || it.i >= len(it.s.refs) {
		return nil, false, nil
	}
	r := it.s.refs[it.i]
	it.i++
	return it.s.arena[r.off : r.off+r.n : r.off+r.n], true, nil
}

// Close closes the run files being merged (Sorter.Close removes them).
func (it *Iter) Close() error {
	if it.m != nil {
		err := it.m.Close()
		it.m, it.s = nil, nil
		return err
	}
	it.s = nil
	return nil
}
