package filedrop

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// HeldFile is a delivery the mass-delete breaker set aside in the held folder.
type HeldFile struct {
	// Name is the file name (what Release takes).
	Name string
	// Size and ModTime describe the held file.
	Size    int64
	ModTime time.Time
	// Reason is the breaker's reason and Summary the report's "previous rows: …, would
	// create …" line; both are empty when the report is missing.
	Reason, Summary string
	// Report is the path of the report written beside the file ("" when missing).
	Report string
}

// HeldFiles lists the held deliveries of a dataset, oldest first. It only reads the
// held folder, so it is safe while the worker runs.
func HeldFiles(ds DatasetOptions) ([]HeldFile, error) {
	ds = ds.withDefaults()
	entries, err := os.ReadDir(ds.Held)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("filedrop %s: list held files: %w", ds.Name, err)
	}
	var out []HeldFile
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasSuffix(name, ".report.txt") || strings.HasSuffix(name, ".done") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile (released)
		}
		h := HeldFile{Name: name, Size: info.Size(), ModTime: info.ModTime()}
		report := filepath.Join(ds.Held, name+".report.txt")
		if f, err := os.Open(report); err == nil {
			h.Report = report
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line := sc.Text()
				if r, ok := strings.CutPrefix(line, "reason: "); ok {
					h.Reason = r
				} else if strings.HasPrefix(line, "previous rows: ") {
					h.Summary = line
				}
			}
			f.Close()
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ModTime.Equal(out[j].ModTime) {
			return out[i].ModTime.Before(out[j].ModTime)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
