package mysqlbinlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// HeldTable is a reload table whose vanished rows the mass-delete circuit breaker
// holds: the last weekly push lacked more of the table than the breaker allows, so the
// deletes were not emitted and the rows still stand downstream.
type HeldTable struct {
	// Table is "db.table".
	Table string
	// Rows is the number of held deletes.
	Rows int64
	// Since is when the window that held them closed; At is its binlog position.
	Since time.Time
	At    string
	// ReleaseRequested says a release was asked for and the worker has not yet
	// emitted the deletes.
	ReleaseRequested bool
}

// HeldDeletes lists the tables with held deletes in a source's state directory
// (Options.StateDir). It only reads the saved reload state, which the running worker
// replaces atomically, so an operator can list while the worker runs; a release goes
// through the worker (Source.ReleaseHeldDeletes, reached by the signal topic).
func HeldDeletes(stateDir string) ([]HeldTable, error) {
	dirs, err := os.ReadDir(filepath.Join(stateDir, "reload"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read reload state: %w", err)
	}
	var out []HeldTable
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		path := filepath.Join(stateDir, "reload", d.Name(), "manifest.json")
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read reload state: %w", err)
		}
		var m manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("read reload state: decode %s: %w", path, err)
		}
		if len(m.Gens) == 0 {
			continue
		}
		g := m.Gens[len(m.Gens)-1]
		if !g.Held {
			continue
		}
		out = append(out, HeldTable{Table: m.Table, Rows: g.HeldRows, Since: g.Created, At: g.At, ReleaseRequested: g.ReleaseRequested})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Table < out[j].Table })
	return out, nil
}
