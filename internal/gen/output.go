package gen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Options selects the outputs of Generate; each is optional.
type Options struct {
	// MySQLDSN is a go-sql-driver/mysql DSN of the national front-end database; the
	// tables are created from schemas.NationalMySQLDDL (existing rows are kept).
	MySQLDSN string
	// PGDSN is a PostgreSQL connection string for the department schemas.
	PGDSN string
	// OutDir receives manifest.jsonl, manifest.summary.json and files/<department>/<dataset>/.
	OutDir string
	// Formats of department files: "csv" (UTF-8), "gb18030" (CSV in GB18030), "xlsx".
	Formats []string
	// BOM prefixes UTF-8 CSV files with a byte-order mark (Excel on Windows wants it).
	BOM bool
	// Workers generating villages in parallel (default GOMAXPROCS); output is identical
	// for any value.
	Workers int
	// ChunkBytes is the size of one LOAD DATA statement's input (default 4 MiB).
	ChunkBytes int
	// Progress, if set, is called about once a second and once at the end.
	Progress func(Progress)
}

// CountyTotal is one county's regional totals (地区总数) as generated.
type CountyTotal struct {
	Code       string `json:"code"`
	Name       string `json:"name"`
	Households int64  `json:"households"`
	Persons    int64  `json:"persons"`
	Monitored  int64  `json:"monitored_households"`
}

// SignalCount counts department signals of one rule: Expected lines should raise a
// warning, Noise lines (expected false) should not.
type SignalCount struct {
	Expected int64 `json:"expected"`
	Noise    int64 `json:"noise"`
}

// Summary is manifest.summary.json: totals, defect and signal counts and per-county
// totals. It holds no timings, so it is identical for identical input.
type Summary struct {
	Seed       uint64                 `json:"seed"`
	AsOf       string                 `json:"as_of"`
	Households int64                  `json:"households"`
	Persons    int64                  `json:"persons"`
	Measures   int64                  `json:"measures"`
	Monitored  int64                  `json:"monitored_households"`
	Villages   int64                  `json:"villages"`
	Defects    map[string]int64       `json:"defects"`
	Signals    map[string]SignalCount `json:"signals"`
	DeptRows   map[string]int64       `json:"department_rows"`
	Counties   []CountyTotal          `json:"counties"`

	counties map[string]*CountyTotal
}

func newSummary(cfg *Config) *Summary {
	return &Summary{Seed: cfg.Seed, AsOf: cfg.AsOf.Format("2006-01-02"), Defects: map[string]int64{},
		Signals: map[string]SignalCount{}, DeptRows: map[string]int64{}, counties: map[string]*CountyTotal{}}
}

func (s *Summary) add(v *VillageResult) {
	s.Households += int64(v.Households)
	s.Persons += int64(v.Persons)
	s.Measures += int64(v.Measures)
	s.Monitored += int64(v.Monitored)
	s.Villages++
	c := s.counties[v.Plan.CountyCode]
	if c == nil {
		c = &CountyTotal{Code: v.Plan.CountyCode, Name: v.Plan.CountyName}
		s.counties[v.Plan.CountyCode] = c
	}
	c.Households += int64(v.Households)
	c.Persons += int64(v.Persons)
	c.Monitored += int64(v.Monitored)
	for _, l := range v.Manifest {
		switch l.Kind {
		case "defect":
			s.Defects[l.Rule]++
		case "signal":
			k := l.Department + "/" + l.Rule
			sc := s.Signals[k]
			if *l.Expected {
				sc.Expected++
			} else {
				sc.Noise++
			}
			s.Signals[k] = sc
		}
	}
	for i, d := range v.Dept {
		s.DeptRows[Datasets[i].Table()] += int64(len(d))
	}
}

func (s *Summary) finish() {
	s.Counties = s.Counties[:0]
	for _, c := range s.counties {
		s.Counties = append(s.Counties, *c)
	}
	sort.Slice(s.Counties, func(i, j int) bool { return s.Counties[i].Code < s.Counties[j].Code })
}

// manifestWriter writes manifest.jsonl in village order.
type manifestWriter struct {
	dir string
	f   *os.File
	w   *bufio.Writer
	enc *json.Encoder
}

func newManifestWriter(dir string) (*manifestWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("gen: create output directory %s: %w", dir, err)
	}
	f, err := os.Create(filepath.Join(dir, "manifest.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("gen: create manifest: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &manifestWriter{dir: dir, f: f, w: w, enc: enc}, nil
}

func (m *manifestWriter) write(lines []ManifestLine) error {
	for i := range lines {
		if err := m.enc.Encode(&lines[i]); err != nil {
			return fmt.Errorf("gen: write %s: %w", m.f.Name(), err)
		}
	}
	return nil
}

func (m *manifestWriter) close(s *Summary) error {
	err := m.w.Flush()
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("gen: write %s: %w", m.f.Name(), err)
	}
	s.finish()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("gen: encode summary: %w", err)
	}
	p := filepath.Join(m.dir, "manifest.summary.json")
	if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("gen: write %s: %w", p, err)
	}
	return nil
}
