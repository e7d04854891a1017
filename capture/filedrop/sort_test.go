package filedrop

import (
	"bytes"
	"fmt"
	"testing"
)

// TestExternalSortSpillsAndMergesStably forces many run files and checks the merged
// stream is complete, sorted, and keeps input order among equal keys (so duplicate
// reports name the later line).
func TestExternalSortSpillsAndMergesStably(t *testing.T) {
	s := newSorter(t.TempDir(), 300)
	defer s.cleanup()
	const n = 2000
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("k%05d", (i*7919)%(n/2)) // every key twice
		if err := s.add([]byte(k), int64(i+2), opUpsert, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if s.runs() < 10 {
		t.Fatalf("only %d runs; the test must exercise the merge", s.runs())
	}
	it, err := s.iterate()
	if err != nil {
		t.Fatal(err)
	}
	defer it.close()
	var prev []byte
	var prevLine int64
	count := 0
	for {
		e, ok, err := it.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		count++
		if c := bytes.Compare(prev, e.Key); c > 0 || (c == 0 && e.Line < prevLine) {
			t.Fatalf("out of order at %s line %d after %s line %d", e.Key, e.Line, prev, prevLine)
		}
		prev, prevLine = append(prev[:0], e.Key...), e.Line
	}
	if count != n {
		t.Fatalf("merged %d entries, want %d", count, n)
	}
}
