// Package consistency is the regional totals check (地区总数核查): it counts
// configured indicators (households, persons, monitored households by category, …)
// by region in two stores — the national front-end database, the provincial
// database, the sharing platform's exchange table — and, where a region differs,
// bisects it with bucketed checksums (like data-diff) down to the exact keys that
// differ. Differences are re-verified after a settle interval, so that changes still
// in flight through the pipeline are not reported.
package consistency

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/shouwang/shouwang/internal/region"
)

// Dialect is the SQL flavour of a store.
type Dialect string

const (
	MySQL    Dialect = "mysql"
	Postgres Dialect = "postgres"
)

// hash is a 32-bit unsigned number from the MD5 of expr, the same in both dialects.
func (d Dialect) hash(expr string) string {
	if d == MySQL {
		return "CAST(CONV(SUBSTRING(MD5(" + expr + "), 1, 8), 16, 10) AS UNSIGNED)"
	}
	return "('x' || substr(md5(" + expr + "), 1, 8))::bit(32)::bigint"
}

// param is the n-th (1-based) query parameter.
func (d Dialect) param(n int) string {
	if d == MySQL {
		return "?"
	}
	return fmt.Sprintf("$%d", n)
}

// jsonText is the text of member field of the JSON column col.
func (d Dialect) jsonText(col, field string) string {
	if d == MySQL {
		return "JSON_UNQUOTE(JSON_EXTRACT(" + col + ", '$." + field + "'))"
	}
	return "(" + col + "::jsonb ->> '" + field + "')"
}

// Set is how one store lists the members of an indicator: each row of FROM … WHERE
// is one member with its key and its 12-digit region code.
type Set struct {
	From   string
	Region string
	Key    string
	Where  string
	// Table ("db.table") and KeyColumn are where a source re-reads the members by
	// key (a targeted re-snapshot); "" where the store is not a capture source.
	Table, KeyColumn string
	// Split says that a scan of the set restricted to a range of region codes costs
	// only that range (the region is reached through an index, as in the national
	// persons join): Totals then cuts the scan into region ranges that run in
	// parallel (Store.Parallel).
	Split bool
}

// ResnapshotWhere is the condition that selects keys in the indicator's source table
// (KeyColumn IN (…)), for the capture source's re-snapshot signal; ok is false when
// the store cannot be re-read.
func (s *Store) ResnapshotWhere(ind string, keys []string) (table, where string, ok bool) {
	set, found := s.Sets[ind]
	if !found || set.Table == "" || len(keys) == 0 {
		return "", "", false
	}
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = sqlString(k)
	}
	return set.Table, set.KeyColumn + " IN (" + strings.Join(q, ", ") + ")", true
}

// Store is one side of a comparison: a database and how it lists each indicator.
type Store struct {
	// Name says which side it is in reports ("国办前置库 national", …).
	Name    string
	DB      *sql.DB
	Dialect Dialect
	// Sets by indicator name; an indicator the store has no set for is not compared.
	Sets map[string]Set
	// Parallel is how many region ranges of a Split set Totals scans at once
	// (default 2). Sets that are not split are scanned whole, each on its own
	// connection, at the same time.
	Parallel int
}

// members is the indicator's set as a subquery with columns r (region), k (key) and
// h (hash of the key).
func (s *Store) members(ind string) (string, error) {
	set, ok := s.Sets[ind]
	if !ok {
		return "", fmt.Errorf("%s has no definition of indicator %s", s.Name, ind)
	}
	q := "SELECT " + set.Region + " AS r, " + set.Key + " AS k, " + s.Dialect.hash(set.Key) + " AS h FROM " + set.From
	if set.Where != "" {
		q += " WHERE " + set.Where
	}
	return "(" + q + ") m", nil
}

// Total is one region's count and checksum (the sum of the members' key hashes).
type Total struct {
	Count int64
	Sum   string // decimal text: both databases sum exactly
}

// Totals counts the members of each indicator by region prefix of digits length,
// within scope (a region prefix; "" for all): indicators over the same rows (the same
// FROM, region and key) are counted in one scan with conditional aggregates. A Split
// set is scanned in the region ranges between consecutive bounds (sorted region
// codes or prefixes; see SplitBounds), Parallel at a time.
func (s *Store) Totals(ctx context.Context, inds []string, digits int, scope string, bounds []string) (map[string]map[string]Total, error) {
	type group struct {
		base Set
		inds []string
	}
	var groups []*group
	at := map[string]*group{}
	for _, ind := range inds {
		set, ok := s.Sets[ind]
		if !ok {
			return nil, fmt.Errorf("%s has no definition of indicator %s", s.Name, ind)
		}
		k := set.From + "\x00" + set.Region + "\x00" + set.Key
		g := at[k]
		if g == nil {
			g = &group{base: set}
			at[k] = g
			groups = append(groups, g)
		}
		g.inds = append(g.inds, ind)
	}
	// The groups scan different rows: count them at once, each on its own connection;
	// a group of a Split set is cut into ranges [bound i, bound i+1) — the first open
	// below, the last open above, so that every code is in exactly one — scanned
	// Parallel at a time, and their totals added up.
	type job struct {
		g    *group
		q    string
		args []any
	}
	var whole, split []job
	for _, g := range groups {
		cols := []string{g.base.Region + " AS r", s.Dialect.hash(g.base.Key) + " AS h"}
		aggs := []string{fmt.Sprintf("LEFT(r, %d)", digits)}
		for i, ind := range g.inds {
			w := s.Sets[ind].Where
			if w == "" {
				w = "1 = 1"
			}
			cols = append(cols, fmt.Sprintf("CASE WHEN %s THEN 1 ELSE 0 END AS c%d", w, i))
			aggs = append(aggs, fmt.Sprintf("SUM(c%d)", i), fmt.Sprintf("COALESCE(SUM(CASE WHEN c%d = 1 THEN h END), 0)", i))
		}
		query := func(cond string) string {
			return fmt.Sprintf("SELECT %s FROM (SELECT %s FROM %s) m WHERE r LIKE %s%s GROUP BY LEFT(r, %d)",
				strings.Join(aggs, ", "), strings.Join(cols, ", "), g.base.From, s.Dialect.param(1), cond, digits)
		}
		if !g.base.Split || len(bounds) == 0 {
			whole = append(whole, job{g, query(""), []any{scope + "%"}})
			continue
		}
		for i := 0; i <= len(bounds); i++ {
			var cond string
			args := []any{scope + "%"}
			if i > 0 {
				args = append(args, bounds[i-1])
				cond += " AND r >= " + s.Dialect.param(len(args))
			}
			if i < len(bounds) {
				args = append(args, bounds[i])
				cond += " AND r < " + s.Dialect.param(len(args))
			}
			split = append(split, job{g, query(cond), args})
		}
	}
	out := map[string]map[string]Total{}
	var mu sync.Mutex
	var errs []error
	ctx, cancel := context.WithCancel(ctx) // the first failure stops the other scans
	defer cancel()
	run := func(j job) {
		part := map[string]map[string]Total{}
		err := s.scanTotals(ctx, j.q, j.args, j.g.inds, part)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if len(errs) == 0 || ctx.Err() == nil {
				errs = append(errs, err)
			}
			cancel()
			return
		}
		for ind, byRegion := range part {
			if out[ind] == nil {
				out[ind] = map[string]Total{}
			}
			for r, t := range byRegion {
				out[ind][r] = out[ind][r].add(t)
			}
		}
	}
	var wg sync.WaitGroup
	for _, j := range whole {
		wg.Go(func() { run(j) })
	}
	workers := s.Parallel
	if workers <= 0 {
		workers = 2
	}
	jobs := make(chan job)
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				run(j)
			}
		})
	}
	for _, j := range split {
		if ctx.Err() != nil {
			break
		}
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// SplitBounds are the bounds of about 64 region ranges within scope for Totals: the
// codes of the counties (or, when there are fewer than 16, the townships) within
// scope in regions, every k-th of them; without regions, scope followed by 01 … 99.
func SplitBounds(regions *region.Table, scope string) []string {
	if regions == nil {
		if len(scope)+2 > 12 {
			return nil
		}
		out := make([]string, 0, 99)
		for i := 1; i < 100; i++ {
			out = append(out, fmt.Sprintf("%s%02d", scope, i))
		}
		return out
	}
	var codes []string
	for _, lvl := range []region.Level{region.County, region.Township} {
		codes = codes[:0]
		for _, r := range regions.Regions(lvl) {
			if strings.HasPrefix(r.Code, scope) {
				codes = append(codes, r.Code)
			}
		}
		if len(codes) >= 16 {
			break
		}
	}
	slices.Sort(codes)
	k := max(1, len(codes)/64)
	var out []string
	for i := k; i < len(codes); i += k {
		out = append(out, codes[i])
	}
	return out
}

// add is the total of both (sums are decimal text of any size).
func (t Total) add(u Total) Total {
	if t.Count == 0 && t.Sum == "" {
		return u
	}
	a, ok1 := new(big.Int).SetString(t.Sum, 10)
	b, ok2 := new(big.Int).SetString(u.Sum, 10)
	if !ok1 || !ok2 {
		return Total{Count: t.Count + u.Count, Sum: "invalid sum " + t.Sum + " + " + u.Sum}
	}
	return Total{Count: t.Count + u.Count, Sum: a.Add(a, b).String()}
}

func (s *Store) scanTotals(ctx context.Context, q string, args []any, inds []string, out map[string]map[string]Total) error {
	rows, err := s.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%s: count %s: %w", s.Name, strings.Join(inds, ", "), err)
	}
	defer rows.Close()
	for _, ind := range inds {
		if out[ind] == nil {
			out[ind] = map[string]Total{}
		}
	}
	for rows.Next() {
		var g sql.NullString
		counts := make([]int64, len(inds))
		sums := make([]string, len(inds))
		dst := []any{&g}
		for i := range inds {
			dst = append(dst, &counts[i], &sums[i])
		}
		if err := rows.Scan(dst...); err != nil {
			return fmt.Errorf("%s: count %s: %w", s.Name, strings.Join(inds, ", "), err)
		}
		for i, ind := range inds {
			if counts[i] > 0 {
				out[ind][g.String] = Total{Count: counts[i], Sum: sums[i]}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: count %s: %w", s.Name, strings.Join(inds, ", "), err)
	}
	return nil
}

// cell is the members of one region (a code of the check's level) whose key hash
// modulo mod is bucket; mod 1 is the whole region.
type cell struct {
	region      string
	mod, bucket int64
}

// inRegions is the condition "the member's region code of digits length is one of
// regions", with placeholders from the first, and its arguments.
func (s *Store) inRegions(digits int, regions []string) (string, []any) {
	ph := make([]string, len(regions))
	args := make([]any, len(regions))
	for i, r := range regions {
		ph[i], args[i] = s.Dialect.param(i+1), r
	}
	return fmt.Sprintf("LEFT(r, %d) IN (%s)", digits, strings.Join(ph, ", ")), args
}

func intList(vs []int64) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(parts, ", ")
}

// bucketTotals counts, in one scan, the members of regions (codes of digits length)
// by key hash modulo mod, among those whose hash modulo parentMod is one of parents
// (parentMod 1: all).
func (s *Store) bucketTotals(ctx context.Context, ind string, digits int, regions []string, mod, parentMod int64, parents []int64) (map[cell]Total, error) {
	m, err := s.members(ind)
	if err != nil {
		return nil, err
	}
	cond, args := s.inRegions(digits, regions)
	if parentMod > 1 {
		cond += fmt.Sprintf(" AND MOD(h, %d) IN (%s)", parentMod, intList(parents))
	}
	q := fmt.Sprintf("SELECT LEFT(r, %d), MOD(h, %d), COUNT(*), SUM(h) FROM %s WHERE %s GROUP BY LEFT(r, %d), MOD(h, %d)",
		digits, mod, m, cond, digits, mod)
	rows, err := s.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: buckets of %s in %d regions: %w", s.Name, ind, len(regions), err)
	}
	defer rows.Close()
	out := map[cell]Total{}
	for rows.Next() {
		c := cell{mod: mod}
		var t Total
		if err := rows.Scan(&c.region, &c.bucket, &t.Count, &t.Sum); err != nil {
			return nil, fmt.Errorf("%s: buckets of %s: %w", s.Name, ind, err)
		}
		out[c] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: buckets of %s: %w", s.Name, ind, err)
	}
	return out, nil
}

// cellKeys lists, in one scan, the members of cells (all of one mod) with their
// regions, by cell.
func (s *Store) cellKeys(ctx context.Context, ind string, digits int, mod int64, cells []cell) (map[cell]map[string]string, error) {
	m, err := s.members(ind)
	if err != nil {
		return nil, err
	}
	want := map[cell]bool{}
	var regions, ids []string
	seen := map[string]bool{}
	for _, c := range cells {
		want[c] = true
		if !seen[c.region] {
			seen[c.region] = true
			regions = append(regions, c.region)
		}
		ids = append(ids, c.region+":"+strconv.FormatInt(c.bucket, 10))
	}
	cond, args := s.inRegions(digits, regions)
	if mod > 1 {
		// The exact cells, as "region:bucket" constants: both databases look a
		// constant IN list up by binary search or hash, and only the cells' members
		// leave the server.
		ph := make([]string, len(ids))
		for i, id := range ids {
			ph[i] = s.Dialect.param(len(args) + 1)
			args = append(args, id)
		}
		cond += fmt.Sprintf(" AND CONCAT(LEFT(r, %d), ':', MOD(h, %d)) IN (%s)", digits, mod, strings.Join(ph, ", "))
	}
	q := fmt.Sprintf("SELECT k, r, LEFT(r, %d), MOD(h, %d) FROM %s WHERE %s", digits, mod, m, cond)
	rows, err := s.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: keys of %s: %w", s.Name, ind, err)
	}
	defer rows.Close()
	out := map[cell]map[string]string{}
	for rows.Next() {
		var k, r sql.NullString
		c := cell{mod: mod}
		if err := rows.Scan(&k, &r, &c.region, &c.bucket); err != nil {
			return nil, fmt.Errorf("%s: keys of %s: %w", s.Name, ind, err)
		}
		if !want[c] {
			continue
		}
		if out[c] == nil {
			out[c] = map[string]string{}
		}
		out[c][k.String] = r.String
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: keys of %s: %w", s.Name, ind, err)
	}
	return out, nil
}

// Members finds which of keys are members of the indicator now, with their regions.
func (s *Store) Members(ctx context.Context, ind string, keys []string) (map[string]string, error) {
	m, err := s.members(ind)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for lo := 0; lo < len(keys); lo += 500 {
		chunk := keys[lo:min(lo+500, len(keys))]
		ph := make([]string, len(chunk))
		args := make([]any, len(chunk))
		for i, k := range chunk {
			ph[i], args[i] = s.Dialect.param(i+1), k
		}
		got, err := s.scanKeys(ctx, ind, "SELECT k, r FROM "+m+" WHERE k IN ("+strings.Join(ph, ", ")+")", args...)
		if err != nil {
			return nil, err
		}
		for k, r := range got {
			out[k] = r
		}
	}
	return out, nil
}

func (s *Store) scanKeys(ctx context.Context, ind, q string, args ...any) (map[string]string, error) {
	rows, err := s.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: keys of %s: %w", s.Name, ind, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, r sql.NullString
		if err := rows.Scan(&k, &r); err != nil {
			return nil, err
		}
		out[k.String] = r.String
	}
	return out, rows.Err()
}
