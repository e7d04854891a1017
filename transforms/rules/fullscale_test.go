package rules

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/mapping"
)

// TestRulesFullScale is the documented 7 M-person run behind docs/benchmarks.md
// ("Monitoring rules on the stream"). Skipped unless SHOUWANG_RULES_FULL=1 (it needs
// about 15 minutes and ~8 GB of disk):
//
//	SHOUWANG_RULES_FULL=1 go test ./transforms/rules/ -run TestRulesFullScale -v -timeout 90m
//
// It generates the full province (2.2 M households, default config) into a private
// MariaDB, then reads household, person and measure in household order, maps every row
// with the embedded mappings and evaluates every default Q-rule on every household
// (two evaluating goroutines, as many as cores), and logs the wall time and the peak
// RSS of that phase (VmHWM reset through /proc/self/clear_refs after the generation;
// MariaDB runs in its own process).
func TestRulesFullScale(t *testing.T) {
	if os.Getenv("SHOUWANG_RULES_FULL") == "" {
		t.Skip("set SHOUWANG_RULES_FULL=1 to run the rules over the full province (minutes, ~8 GB disk)")
	}
	ctx := context.Background()
	base, err := os.MkdirTemp("/tmp", "shouwang-rules-full-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := testenv.StartMariaDB(ctx, testenv.MariaDBOptions{BaseDir: base, BufferPool: "2G"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if err := m.CreateDatabase(ctx, "national"); err != nil {
		t.Fatal(err)
	}
	cfg := gen.DefaultConfig()
	cfg.Households = gen.FullScaleHouseholds
	if v := os.Getenv("SHOUWANG_RULES_FULL_HOUSEHOLDS"); v != "" { // a smaller smoke run
		if _, err := fmt.Sscan(v, &cfg.Households); err != nil {
			t.Fatalf("SHOUWANG_RULES_FULL_HOUSEHOLDS=%q: %v", v, err)
		}
	}
	start := time.Now()
	sum, err := gen.Generate(ctx, cfg, gen.Options{MySQLDSN: m.RootDSN("national")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d households, %d persons, %d measures in %s", sum.Households, sum.Persons, sum.Measures, time.Since(start).Round(time.Second))

	// Measure the rules phase alone: reset the peak RSS the generation left.
	if err := testenv.ResetPeakRSS(); err != nil {
		t.Fatal(err)
	}
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	set, err := mapping.Load(mapping.Embedded, &mapping.Env{})
	if err != nil {
		t.Fatal(err)
	}
	// Without parseTime: dates come as capture publishes them ("2006-01-02[ 15:04:05]").
	dc, err := mysql.ParseDSN(m.RootDSN("national"))
	if err != nil {
		t.Fatal(err)
	}
	dc.ParseTime = false
	db, err := sql.Open("mysql", dc.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start = time.Now()
	groups := make(chan *rawHousehold, 256)
	readErr := make(chan error, 1)
	go func() {
		defer close(groups)
		readErr <- readHouseholds(db, groups)
	}()
	var (
		mu       sync.Mutex
		byRule   = map[string]int{}
		evalErrs = map[string]int{}
		hhs      int
		persons  int
		badRows  [3]int // households, persons, measures that did not map
	)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			local, localErr := map[string]int{}, map[string]int{}
			var nh, np int
			var bad [3]int
			for g := range groups {
				h, ps, ms, b := mapHousehold(set, g)
				for i := range bad {
					bad[i] += b[i]
				}
				if h == nil {
					continue
				}
				nh++
				np += len(ps)
				for _, f := range e.Evaluate(NewHouseholdContext(h, ps, ms), cfg.AsOf) {
					if f.Err != "" {
						localErr[f.RuleID]++
						continue
					}
					local[f.RuleID]++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range local {
				byRule[k] += v
			}
			for k, v := range localErr {
				evalErrs[k] += v
			}
			hhs += nh
			persons += np
			for i := range bad {
				badRows[i] += bad[i]
			}
		})
	}
	wg.Wait()
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	total := 0
	var rules []string
	for k, v := range byRule {
		total += v
		rules = append(rules, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(rules)
	t.Logf("rules phase: %d households, %d persons, %d rules, %d findings (not mappable, to the DLQ in the pipeline: %d households, %d persons, %d measures) in %s: %.0f persons/s; peak RSS %s",
		hhs, persons, len(e.RuleIDs()), total, badRows[0], badRows[1], badRows[2], el.Round(time.Second), float64(persons)/el.Seconds(), testenv.PeakRSS())
	t.Logf("findings by rule: %s", strings.Join(rules, " "))
	if int64(hhs+badRows[0]) != int64(sum.Households) || int64(persons+badRows[1]) > int64(sum.Persons) {
		t.Errorf("evaluated %d (+%d unmappable) households and %d (+%d) persons, generated %d and %d", hhs, badRows[0], persons, badRows[1], sum.Households, sum.Persons)
	}
	if len(evalErrs) > 0 {
		t.Errorf("rule evaluation errors: %v", evalErrs)
	}
}

// rawHousehold is one household's rows as read from the national tables.
type rawHousehold struct {
	hh       map[string]any
	persons  []map[string]any
	measures []map[string]any
}

// readHouseholds reads household, person and measure ordered by household number and
// merges them into one group per household (persons and measures of a household
// number missing from household are dropped: no context to evaluate them in).
func readHouseholds(db *sql.DB, out chan<- *rawHousehold) error {
	type cursor struct {
		rows *sql.Rows
		cols []string
		next map[string]any
	}
	open := func(q string) (*cursor, error) {
		rows, err := db.Query(q)
		if err != nil {
			return nil, err
		}
		cols, err := rows.Columns()
		if err != nil {
			return nil, err
		}
		return &cursor{rows: rows, cols: cols}, nil
	}
	advance := func(c *cursor) error {
		c.next = nil
		if !c.rows.Next() {
			return c.rows.Err()
		}
		vals := make([]sql.NullString, len(c.cols))
		ptrs := make([]any, len(c.cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := c.rows.Scan(ptrs...); err != nil {
			return err
		}
		row := make(map[string]any, len(c.cols))
		for i, col := range c.cols {
			if vals[i].Valid {
				row[col] = vals[i].String
			} else {
				row[col] = nil
			}
		}
		c.next = row
		return nil
	}
	var cs [3]*cursor
	for i, q := range []string{"SELECT * FROM household ORDER BY hh_no", "SELECT * FROM person ORDER BY hh_no, person_no",
		"SELECT * FROM measure ORDER BY hh_no, measure_id"} {
		c, err := open(q)
		if err != nil {
			return err
		}
		defer c.rows.Close()
		if err := advance(c); err != nil {
			return err
		}
		cs[i] = c
	}
	hhNo := func(r map[string]any) string { s, _ := r["hh_no"].(string); return s }
	// take collects the rows of cursor c up to household number no (those below it are
	// orphans and dropped).
	take := func(c *cursor, no string) ([]map[string]any, error) {
		var rows []map[string]any
		for c.next != nil && hhNo(c.next) <= no {
			if hhNo(c.next) == no {
				rows = append(rows, c.next)
			}
			if err := advance(c); err != nil {
				return nil, err
			}
		}
		return rows, nil
	}
	for cs[0].next != nil {
		g := &rawHousehold{hh: cs[0].next}
		no := hhNo(g.hh)
		var err error
		if g.persons, err = take(cs[1], no); err != nil {
			return err
		}
		if g.measures, err = take(cs[2], no); err != nil {
			return err
		}
		out <- g
		if err := advance(cs[0]); err != nil {
			return err
		}
	}
	return nil
}

// mapHousehold maps a household's rows to canonical entities as the transform worker
// and the monitor would (mapping, then the canonical JSON decoded into the typed
// entity); bad counts the household, person and measure rows that did not map.
func mapHousehold(set *mapping.Set, g *rawHousehold) (h *schemas.Household, ps []schemas.Person, ms []schemas.AssistanceMeasure, bad [3]int) {
	apply := func(table, keyCol string, row map[string]any, into any) bool {
		mp, _ := set.For("national", table)
		env := &schemas.Envelope{V: 1, Op: schemas.OpRead, Source: schemas.Source{System: "national", Kind: "mysqlbinlog", DB: "national", Table: table, Snapshot: true},
			Key: map[string]any{keyCol: row[keyCol]}, After: row}
		o, err := mp.Apply(env, 1, table, 1)
		if err != nil {
			return false
		}
		b, err := json.Marshal(o.Doc)
		if err != nil {
			return false
		}
		return json.Unmarshal(b, into) == nil
	}
	h = new(schemas.Household)
	if !apply("household", "hh_no", g.hh, h) {
		return nil, nil, nil, [3]int{1, 0, 0}
	}
	for _, r := range g.persons {
		var p schemas.Person
		if apply("person", "person_no", r, &p) {
			ps = append(ps, p)
		} else {
			bad[1]++
		}
	}
	for _, r := range g.measures {
		var m schemas.AssistanceMeasure
		if apply("measure", "measure_id", r, &m) {
			ms = append(ms, m)
		} else {
			bad[2]++
		}
	}
	return h, ps, ms, bad
}
