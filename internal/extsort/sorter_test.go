package extsort

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// A test record is len(key) | key | uint32 insertion index | padding; its key is
// rec[1:1+len(key)].
func testRec(key []byte, idx uint32, pad int) []byte {
	b := append([]byte{byte(len(key))}, key...)
	b = binary.BigEndian.AppendUint32(b, idx)
	return append(b, make([]byte, pad)...)
}

func testKey(rec []byte) []byte { return rec[1 : 1+int(rec[0])] }

func randomRecs(rng *rand.Rand, n, distinct int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		// Few distinct keys of varied lengths: many ties, shared prefixes longer and
		// shorter than the 8-byte sort prefix.
		k := fmt.Appendf(nil, "%s%d", strings.Repeat("k", rng.IntN(12)), rng.IntN(distinct))
		recs[i] = testRec(k, uint32(i), rng.IntN(40))
	}
	return recs
}

// drain reads it to the end, copying the records.
func drain(t *testing.T, it *Iter) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		r, ok, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, bytes.Clone(r))
	}
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// The output equals a stable sort of the input across budgets that keep everything in
// memory, spill one run or many, and fan-ins that force several merge levels; at most
// FanIn+1 files are ever open and Close leaves nothing behind.
func TestSortMatchesStableSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name       string
		n, budget  int
		fanIn      int
		background bool
		minRuns    int
		minLevels  int
	}{
		{"empty", 0, 1 << 20, 0, false, 0, 0},
		{"memory", 3000, 1 << 20, 0, false, 0, 0},
		{"one_spill", 3000, 150 << 10, 0, false, 1, 0},
		{"many_runs", 5000, 4 << 10, 0, false, 30, 0},
		{"many_runs_background", 5000, 4 << 10, 0, true, 30, 0},
		{"fanin3", 5000, 4 << 10, 3, false, 30, 3},
		{"fanin2", 5000, 4 << 10, 2, false, 30, 5},
		{"fanin2_background", 5000, 4 << 10, 2, true, 30, 5},
		{"under_fanin", 1000, 2 << 10, 0, false, 20, 0},
		{"tiny_budget", 300, 1, 4, false, 300, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := randomRecs(rng, tc.n, 200)
			s, err := New(Options{Dir: dir, MemoryBytes: tc.budget, FanIn: tc.fanIn, Key: testKey, Background: tc.background})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range in {
				if err := s.Add(r); err != nil {
					t.Fatal(err)
				}
			}
			it, err := s.Iter()
			if err != nil {
				t.Fatal(err)
			}
			fanIn := max(tc.fanIn, DefaultFanIn*boolInt(tc.fanIn == 0))
			if n := len(dirEntries(t, dir)); n > fanIn {
				t.Errorf("%d files while the final merge runs, want at most %d", n, fanIn)
			}
			got := drain(t, it)
			want := append([][]byte(nil), in...)
			sort.SliceStable(want, func(i, j int) bool { return bytes.Compare(testKey(want[i]), testKey(want[j])) < 0 })
			if len(got) != len(want) {
				t.Fatalf("%d records, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("record %d: %q, want %q", i, got[i], want[i])
				}
			}
			st := s.Stats()
			t.Logf("stats %+v", st)
			if st.Records != int64(tc.n) || st.Runs < tc.minRuns || st.Levels < tc.minLevels || (tc.minRuns == 0 && st.Runs != 0) {
				t.Errorf("stats %+v: want %d records, at least %d runs and %d levels", st, tc.n, tc.minRuns, tc.minLevels)
			}
			if st.MaxOpenFiles > fanIn+1 {
				t.Errorf("%d files open at once, want at most fan-in+1 = %d", st.MaxOpenFiles, fanIn+1)
			}
			if err := it.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if left := dirEntries(t, dir); len(left) > 0 {
				t.Errorf("files left after Close: %v", left)
			}
			if n := s.open.Load(); n != 0 {
				t.Errorf("%d files still open", n)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Equal keys keep their insertion order across runs and merge levels, with a custom
// comparison too (here: descending, and only the first key byte counts).
func TestSortStableCustomCompare(t *testing.T) {
	dir := t.TempDir()
	desc := func(a, b []byte) int { return int(b[0]) - int(a[0]) }
	s, err := New(Options{Dir: dir, MemoryBytes: 1 << 10, FanIn: 2, Key: testKey, Compare: desc})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 2000
	for i := range n {
		if err := s.Add(testRec([]byte{byte('a' + i%5), byte(i)}, uint32(i), 3)); err != nil {
			t.Fatal(err)
		}
	}
	it, err := s.Iter()
	if err != nil {
		t.Fatal(err)
	}
	got := drain(t, it)
	if len(got) != n || s.Stats().Levels < 2 {
		t.Fatalf("%d records, stats %+v", len(got), s.Stats())
	}
	for i := 1; i < n; i++ {
		a, b := got[i-1], got[i]
		ka, kb := testKey(a)[0], testKey(b)[0]
		ia, ib := binary.BigEndian.Uint32(a[3:]), binary.BigEndian.Uint32(b[3:])
		if ka < kb || (ka == kb && ia >= ib) {
			t.Fatalf("record %d: key %c index %d after key %c index %d", i, kb, ib, ka, ia)
		}
	}
}

// Records without a Key function sort whole; a record larger than the budget is
// buffered alone; zero-length records survive a spill.
func TestSortWholeRecordsAndOddSizes(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Dir: dir, MemoryBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := [][]byte{[]byte("b"), {}, bytes.Repeat([]byte("z"), 1000), []byte("a"), {}, []byte("ab")}
	for _, r := range in {
		if err := s.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	it, err := s.Iter()
	if err != nil {
		t.Fatal(err)
	}
	got := drain(t, it)
	want := [][]byte{{}, {}, []byte("a"), []byte("ab"), []byte("b"), bytes.Repeat([]byte("z"), 1000)}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d: %q, want %q", i, got[i], want[i])
		}
	}
	if s.Stats().Runs < 2 {
		t.Fatalf("stats %+v: want several runs", s.Stats())
	}
}

// spilled adds records until the sorter has spilled runs and returns it with its
// (unmerged) run names.
func spilled(t *testing.T, fanIn int) (*Sorter, []string) {
	t.Helper()
	s, err := New(Options{Dir: t.TempDir(), MemoryBytes: 2 << 10, FanIn: fanIn, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, r := range randomRecs(rand.New(rand.NewPCG(3, 4)), 2000, 50) {
		if err := s.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.runs) < 4 {
		t.Fatalf("only %d runs", len(s.runs))
	}
	return s, append([]string(nil), s.runs...)
}

// readAll iterates the sorter and returns the first error.
func readAll(s *Sorter) error {
	it, err := s.Iter()
	if err != nil {
		return err
	}
	defer it.Close()
	for {
		_, ok, err := it.Next()
		if err != nil || !ok {
			return err
		}
	}
}

// A run changed on disk fails the sort with ErrCorrupt naming the file, whether the
// damage is found by an intermediate merge or by the final one.
func TestCorruptRunDetected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
		want   string
	}{
		{"bit_flip", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }, ""},
		{"truncated_mid_record", func(b []byte) []byte { return b[:len(b)/2] }, ""},
		{"truncated_trailer", func(b []byte) []byte { return b[:len(b)-3] }, "truncated trailer"},
		{"no_trailer", func(b []byte) []byte { return b[:len(b)-9] }, "no trailer"},
		{"trailing_garbage", func(b []byte) []byte { return append(b, 1) }, "after the trailer"},
		{"empty", func(b []byte) []byte { return nil }, "not a sort run"},
	} {
		for _, fanIn := range []int{2, DefaultFanIn} {
			t.Run(fmt.Sprintf("%s_fanin%d", tc.name, fanIn), func(t *testing.T) {
				s, runs := spilled(t, fanIn)
				victim := runs[len(runs)/2]
				b, err := os.ReadFile(victim)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(victim, tc.damage(b), 0o600); err != nil {
					t.Fatal(err)
				}
				err = readAll(s)
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(victim)) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want ErrCorrupt naming %s (%q)", err, filepath.Base(victim), tc.want)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if left := dirEntries(t, s.opts.Dir); len(left) > 0 {
					t.Errorf("files left after Close: %v", left)
				}
			})
		}
	}
}

func TestOptionsAndMisuse(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("no directory accepted")
	}
	if _, err := New(Options{Dir: t.TempDir(), FanIn: 1}); err == nil {
		t.Error("fan-in 1 accepted")
	}
	s, err := New(Options{Dir: t.TempDir(), Key: func(rec []byte) []byte { return []byte("x") }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add([]byte("abc")); err == nil || !strings.Contains(err.Error(), "not part of the record") {
		t.Errorf("a key outside the record: %v", err)
	}
	if _, err := s.Iter(); err != nil {
		t.Fatal(err)
	}
	if err := s.Add([]byte("abc")); err == nil {
		t.Error("Add after Iter accepted")
	}
	if _, err := s.Iter(); err == nil {
		t.Error("second Iter accepted")
	}
	s.Close()
}

type intStream struct {
	vs     [][2]int
	closed *int
}

func (s *intStream) Next() ([2]int, bool, error) {
	if len(s.vs) == 0 {
		return [2]int{}, false, nil
	}
	v := s.vs[0]
	s.vs = s.vs[1:]
	return v, true, nil
}

func (s *intStream) Close() error { *s.closed++; return nil }

// Merge is stable: equal values come in stream order; every stream is closed once.
func TestMergeStable(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	closed := 0
	var streams []Stream[[2]int]
	var all [][2]int
	for si := range 7 {
		var vs [][2]int
		for j := range rng.IntN(30) {
			vs = append(vs, [2]int{rng.IntN(10), si*100 + j})
		}
		sort.SliceStable(vs, func(i, j int) bool { return vs[i][0] < vs[j][0] })
		all = append(all, vs...)
		streams = append(streams, &intStream{vs: vs, closed: &closed})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i][0] < all[j][0] })
	m, err := Merge(streams, func(a, b [2]int) int { return a[0] - b[0] })
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		v, ok, err := m.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if i != len(all) {
				t.Fatalf("%d values, want %d", i, len(all))
			}
			break
		}
		if v != all[i] {
			t.Fatalf("value %d: %v, want %v", i, v, all[i])
		}
	}
	m.Close()
	if closed != len(streams) {
		t.Fatalf("%d streams closed, want %d", closed, len(streams))
	}
}

// BenchmarkSort sorts 1M records of about 100 bytes (16-byte random key) with a
// budget that spills about 50 runs, merged with fan-in 8 (two levels) or 64 (one).
func BenchmarkSort(b *testing.B) {
	const n, size = 1_000_000, 100
	rng := rand.New(rand.NewPCG(7, 8))
	data := make([]byte, n*size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	budget := n * (size + refBytes) / 50
	for _, fanIn := range []int{8, 64} {
		b.Run(fmt.Sprintf("fanin%d", fanIn), func(b *testing.B) {
			b.SetBytes(n * size)
			var st Stats
			for b.Loop() {
				s, err := New(Options{Dir: b.TempDir(), MemoryBytes: budget, FanIn: fanIn, Key: func(r []byte) []byte { return r[:16] }})
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					if err := s.Add(data[i*size : (i+1)*size]); err != nil {
						b.Fatal(err)
					}
				}
				it, err := s.Iter()
				if err != nil {
					b.Fatal(err)
				}
				count := 0
				for {
					_, ok, err := it.Next()
					if err != nil {
						b.Fatal(err)
					}
					if !ok {
						break
					}
					count++
				}
				if count != n {
					b.Fatalf("%d records", count)
				}
				st = s.Stats()
				it.Close()
				s.Close()
			}
			b.ReportMetric(float64(st.Runs), "runs")
			b.ReportMetric(float64(st.Levels), "levels")
		})
	}
}
