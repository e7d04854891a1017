package mysqlbinlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// sliceIter yields recs, then err (if any).
type sliceIter struct {
	recs   []rec
	err    error
	closed bool
}

func (s *sliceIter) next() (rec, bool, error) {
	if len(s.recs) == 0 {
		return rec{}, false, s.err
	}
	r := s.recs[0]
	s.recs = s.recs[1:]
	return r, true, nil
}
func (s *sliceIter) close() { s.closed = true }

func TestPrefetchIter(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		n   int
		err error
	}{{0, nil}, {1, nil}, {prefetchBatch, nil}, {3*prefetchBatch + 7, nil}, {0, boom}, {prefetchBatch + 1, boom}} {
		t.Run(fmt.Sprintf("%d_%v", tc.n, tc.err), func(t *testing.T) {
			src := &sliceIter{err: tc.err}
			for i := range tc.n {
				src.recs = append(src.recs, rec{key: fmt.Appendf(nil, "%08d", i), seq: uint64(i)})
			}
			p := newPrefetchIter(src)
			got := 0
			var err error
			for {
				r, ok, e := p.next()
				if e != nil || !ok {
					err = e
					break
				}
				if want := fmt.Sprintf("%08d", got); string(r.key) != want || r.seq != uint64(got) {
					t.Fatalf("record %d: key %q seq %d, want %q", got, r.key, r.seq, want)
				}
				got++
			}
			if got != tc.n || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("got %d records and error %v, want %d and %v", got, err, tc.n, tc.err)
			}
			p.close()
			if !src.closed {
				t.Fatal("source not closed")
			}
		})
	}
}

// A prefetchIter closed before it is read to the end stops its goroutine and closes
// the source.
func TestPrefetchIterEarlyClose(t *testing.T) {
	src := &sliceIter{}
	for i := range 10 * prefetchBatch {
		src.recs = append(src.recs, rec{key: fmt.Appendf(nil, "%08d", i)})
	}
	p := newPrefetchIter(src)
	if _, ok, err := p.next(); !ok || err != nil {
		t.Fatalf("first record: ok %v, err %v", ok, err)
	}
	p.close()
	p.close()
	if !src.closed {
		t.Fatal("source not closed")
	}
}

// The window's background sorter yields the same records as the foreground one, across several spilled runs.
func TestBackgroundSorterMatchesForeground(t *testing.T) {
	dir := t.TempDir()
	fg, bg := newSorter(dir, "fg"), newWindowSorter(dir)
	defer fg.remove()
	defer bg.remove()
	row := make([]byte, 4<<10)
	n := 3*sortBufferBytes/len(row) + 11
	for i := range n {
		k := fmt.Appendf(nil, "%08d", (i*7919)%(n/2+1)) // repeated keys: the last wins
		r := fmt.Appendf(append([]byte(nil), row...), "%d", i)
		if err := fg.add(rec{key: k, row: r}); err != nil {
			t.Fatal(err)
		}
		if err := bg.add(rec{key: k, row: r}); err != nil {
			t.Fatal(err)
		}
	}
	if bg.runs() < 2 {
		t.Fatalf("background sorter wrote %d runs, want several", bg.runs())
	}
	fi, err := fg.iter()
	if err != nil {
		t.Fatal(err)
	}
	defer fi.close()
	bi, err := bg.iter()
	if err != nil {
		t.Fatal(err)
	}
	defer bi.close()
	count := 0
	for {
		a, aok, aerr := fi.next()
		b, bok, berr := bi.next()
		if aerr != nil || berr != nil {
			t.Fatal(aerr, berr)
		}
		if aok != bok {
			t.Fatalf("record %d: foreground ok %v, background ok %v", count, aok, bok)
		}
		if !aok {
			break
		}
		if string(a.key) != string(b.key) || string(a.row) != string(b.row) {
			t.Fatalf("record %d: foreground %q, background %q", count, a.key, b.key)
		}
		count++
	}
	if count != n/2+1 {
		t.Fatalf("%d distinct keys, want %d", count, n/2+1)
	}
}

// view merges a base with sorted overlays (read as they are) and unsorted ones
// (sorted first): later overlays win, and within one the later record of a key.
func TestViewSortedAndUnsortedOverlays(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, recs ...rec) {
		t.Helper()
		w, err := createRecWriter(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			if err := w.write(&recs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.close(); err != nil {
			t.Fatal(err)
		}
	}
	row := func(k, v string) rec { return rec{key: []byte(k), row: []byte(v)} }
	tomb := func(k string) rec { return rec{key: []byte(k), flags: recTomb} }
	write("base", row("a", "a0"), row("b", "b0"), row("c", "c0"), row("d", "d0"), rec{key: []byte("v"), row: []byte("v0"), flags: recVanished})
	write("o1", row("b", "b1"), tomb("c"), row("e", "e1"))                                 // sorted
	write("o2", row("e", "e2"), tomb("d"), row("a", "a2"), row("a", "a3"), row("c", "c2")) // unsorted, a twice
	write("o3", row("f", "f3"))
	for _, tc := range []struct {
		held bool
		want string
	}{{false, "a=a3 b=b1 c=c2 e=e2 f=f3 "}, {true, "a=a3 b=b1 c=c2 e=e2 f=f3 v=v0 "}} {
		g := &generation{Base: "base", Overlays: []string{"o1", "o2", "missing", "o3"}, Held: tc.held}
		it, cleanup, err := openView(&reloadTable{name: "t", dir: dir}, g, "")
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for {
			r, ok, err := it.next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got += fmt.Sprintf("%s=%s ", r.key, r.row)
		}
		cleanup()
		if got != tc.want {
			t.Errorf("held %v: view %q, want %q", tc.held, got, tc.want)
		}
	}
}

// skimRecFile measures the complete records of a file (not a record torn at the end)
// and tells whether their keys ascend.
func TestSkimRecFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, keys ...string) (string, int64) {
		t.Helper()
		path := filepath.Join(dir, name)
		w, err := createRecWriter(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			r := rec{key: []byte(k), seq: uint64(300 * i), county: []byte("510104"), row: bytes.Repeat([]byte("x"), 200*i)}
			if err := w.write(&r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.close(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return path, fi.Size()
	}
	sorted, sortedSize := write("sorted", "a", "b", "c", "d")
	unsorted, unsortedSize := write("unsorted", "a", "c", "b")
	dup, dupSize := write("dup", "a", "b", "b")
	empty, _ := write("empty")
	for _, tc := range []struct {
		path string
		size int64
		asc  bool
		last string
	}{{sorted, sortedSize, true, "d"}, {unsorted, unsortedSize, false, "b"}, {dup, dupSize, false, "b"}, {empty, 0, true, ""}} {
		size, asc, last, err := skimRecFile(tc.path)
		if err != nil || size != tc.size || asc != tc.asc || string(last) != tc.last {
			t.Errorf("%s: size %d ascending %v last %q err %v; want %d %v %q", filepath.Base(tc.path), size, asc, last, err, tc.size, tc.asc, tc.last)
		}
	}
	// Every cut inside the last record leaves the first three.
	full, err := os.ReadFile(sorted)
	if err != nil {
		t.Fatal(err)
	}
	_, threeSize := write("three", "a", "b", "c")
	for cut := threeSize; cut < sortedSize; cut++ {
		p := filepath.Join(dir, "torn")
		if err := os.WriteFile(p, full[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		size, asc, last, err := skimRecFile(p)
		if err != nil || size != threeSize || !asc || string(last) != "c" {
			t.Fatalf("cut at %d of %d: size %d ascending %v last %q err %v; want %d", cut, sortedSize, size, asc, last, err, threeSize)
		}
	}
	// A crash can leave the file extended with zeros the data never reached.
	zeroed := filepath.Join(dir, "zeroed")
	if err := os.WriteFile(zeroed, append(append([]byte(nil), full...), make([]byte, 4096)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if size, asc, last, err := skimRecFile(zeroed); err != nil || size != sortedSize || !asc || string(last) != "d" {
		t.Errorf("zero-filled tail: size %d ascending %v last %q err %v; want %d", size, asc, last, err, sortedSize)
	}
	if _, _, _, err := skimRecFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want not exist", err)
	}
}
