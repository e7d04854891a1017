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
	"fmt"
	"strings"
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
// FROM, region and key) are counted in one scan with conditional aggregates.
func (s *Store) Totals(ctx context.Context, inds []string, digits int, scope string) (map[string]map[string]Total, error) {
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
	out := map[string]map[string]Total{}
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
		q := fmt.Sprintf("SELECT %s FROM (SELECT %s FROM %s) m WHERE r LIKE %s GROUP BY LEFT(r, %d)",
			strings.Join(aggs, ", "), strings.Join(cols, ", "), g.base.From, s.Dialect.param(1), digits)
		if err := s.scanTotals(ctx, q, scope, g.inds, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) scanTotals(ctx context.Context, q, scope string, inds []string, out map[string]map[string]Total) error {
	rows, err := s.DB.QueryContext(ctx, q, scope+"%")
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

// buckets counts the members of region (a prefix) by their key hash modulo mod,
// among those whose hash modulo parentMod is parent (parentMod 1: all).
func (s *Store) buckets(ctx context.Context, ind, region string, mod, parentMod, parent int64) (map[int64]Total, error) {
	m, err := s.members(ind)
	if err != nil {
		return nil, err
	}
	q := fmt.Sprintf("SELECT MOD(h, %d), COUNT(*), SUM(h) FROM %s WHERE r LIKE %s AND MOD(h, %d) = %d GROUP BY MOD(h, %d)",
		mod, m, s.Dialect.param(1), parentMod, parent, mod)
	rows, err := s.DB.QueryContext(ctx, q, region+"%")
	if err != nil {
		return nil, fmt.Errorf("%s: buckets of %s in %s: %w", s.Name, ind, region, err)
	}
	defer rows.Close()
	out := map[int64]Total{}
	for rows.Next() {
		var b int64
		var t Total
		if err := rows.Scan(&b, &t.Count, &t.Sum); err != nil {
			return nil, err
		}
		out[b] = t
	}
	return out, rows.Err()
}

// keys lists the members of region whose key hash modulo mod is bucket (mod 1: all),
// with their regions.
func (s *Store) keys(ctx context.Context, ind, region string, mod, bucket int64) (map[string]string, error) {
	m, err := s.members(ind)
	if err != nil {
		return nil, err
	}
	q := fmt.Sprintf("SELECT k, r FROM %s WHERE r LIKE %s AND MOD(h, %d) = %d", m, s.Dialect.param(1), mod, bucket)
	return s.scanKeys(ctx, ind, q, region+"%")
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
