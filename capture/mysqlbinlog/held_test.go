package mysqlbinlog

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestHeldDeletesReadsTheCurrentGeneration(t *testing.T) {
	dir := t.TempDir()
	if got, err := HeldDeletes(dir); err != nil || got != nil {
		t.Fatalf("no reload state: %v, %v", got, err)
	}
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	write := func(table string, gens ...generation) {
		d := filepath.Join(dir, "reload", table)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(manifest{Table: table, Gens: gens})
		if err := os.WriteFile(filepath.Join(d, "manifest.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("gb.person", generation{Epoch: 1, Held: true, HeldRows: 5}, generation{Epoch: 2, Held: true, HeldRows: 812, Created: at, At: "mysql-bin.000003:4711"})
	write("gb.household", generation{Epoch: 1, Held: true, HeldRows: 3}, generation{Epoch: 2}) // released since
	write("gb.member", generation{Epoch: 4, Held: true, HeldRows: 9, ReleaseRequested: true})
	got, err := HeldDeletes(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []HeldTable{
		{Table: "gb.member", Rows: 9, ReleaseRequested: true},
		{Table: "gb.person", Rows: 812, Since: at, At: "mysql-bin.000003:4711"},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("HeldDeletes = %+v, want %+v", got, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "reload", "gb.member", "manifest.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := HeldDeletes(dir); err == nil {
		t.Fatal("a corrupt manifest was not reported")
	}
}
