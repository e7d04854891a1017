package poll

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// store is the key store: for every (source, query, key) the hash of the last row
// emitted and the row itself (the before image of the next update or delete), plus the
// position the rows correspond to. It lives in a PostgreSQL database owned by Shouwang;
// see doc.go for the reasons.
type store struct {
	pool   *pgxpool.Pool
	source string
}

// stored is one key's last emitted row.
type stored struct {
	hash []byte
	row  []byte
}

// write is one change to apply to the key store once Kafka acknowledged its event.
type write struct {
	query string
	key   string
	del   bool
	hash  []byte
	row   []byte
}

func rowHash(row []byte) []byte {
	h := sha256.Sum256(row)
	return h[:16]
}

func openStore(ctx context.Context, dsn, source string) (*store, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("key store: connect (state_dsn): %w", err)
	}
	_, err = pool.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS shouwang_poll_rows (
			source text NOT NULL,
			query  text NOT NULL,
			key    text NOT NULL,
			hash   bytea NOT NULL,
			row    text NOT NULL,
			PRIMARY KEY (source, query, key));
		CREATE TABLE IF NOT EXISTS shouwang_poll_state (
			source     text PRIMARY KEY,
			position   text NOT NULL,
			updated_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("key store: create tables shouwang_poll_rows/shouwang_poll_state (does the state_dsn user have CREATE?): %w", err)
	}
	return &store{pool: pool, source: source}, nil
}

func (s *store) close() { s.pool.Close() }

// position returns the position the stored rows correspond to.
func (s *store) position(ctx context.Context) ([]byte, bool, error) {
	var p string
	err := s.pool.QueryRow(ctx, `SELECT position FROM shouwang_poll_state WHERE source = $1`, s.source).Scan(&p)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("key store: load position of %s: %w", s.source, err)
	}
	return []byte(p), true, nil
}

// reset forgets every row of the source, for a start without a saved position.
func (s *store) reset(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM shouwang_poll_rows WHERE source = $1`, s.source)
	if err != nil {
		return 0, fmt.Errorf("key store: reset %s: %w", s.source, err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM shouwang_poll_state WHERE source = $1`, s.source); err != nil {
		return 0, fmt.Errorf("key store: reset position of %s: %w", s.source, err)
	}
	return tag.RowsAffected(), nil
}

// lookup returns the stored rows of keys (missing keys are absent from the map).
func (s *store) lookup(ctx context.Context, query string, keys []string) (map[string]stored, error) {
	out := make(map[string]stored, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT key, hash, row FROM shouwang_poll_rows
		WHERE source = $1 AND query = $2 AND key = ANY($3)`, s.source, query, keys)
	if err != nil {
		return nil, fmt.Errorf("key store: look up %d keys of %s.%s: %w", len(keys), s.source, query, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, row string
		var h []byte
		if err := rows.Scan(&k, &h, &row); err != nil {
			return nil, fmt.Errorf("key store: read %s.%s: %w", s.source, query, err)
		}
		out[k] = stored{hash: h, row: []byte(row)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("key store: read %s.%s: %w", s.source, query, err)
	}
	return out, nil
}

// commit applies writes in order and records pos, in one transaction, so the stored
// rows and the position they correspond to never disagree.
func (s *store) commit(ctx context.Context, writes []write, pos []byte) error {
	// Last write per key wins; ON CONFLICT cannot touch a row twice in one statement.
	type qk struct{ q, k string }
	last := make(map[qk]int, len(writes))
	for i, w := range writes {
		last[qk{w.query, w.key}] = i
	}
	byQuery := map[string]*struct {
		upKeys, upRows []string
		upHash         [][]byte
		delKeys        []string
	}{}
	for i, w := range writes {
		if last[qk{w.query, w.key}] != i {
			continue
		}
		b := byQuery[w.query]
		if b == nil {
			b = &struct {
				upKeys, upRows []string
				upHash         [][]byte
				delKeys        []string
			}{}
			byQuery[w.query] = b
		}
		if w.del {
			b.delKeys = append(b.delKeys, w.key)
		} else {
			b.upKeys, b.upHash, b.upRows = append(b.upKeys, w.key), append(b.upHash, w.hash), append(b.upRows, string(w.row))
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for q, b := range byQuery {
			if len(b.delKeys) > 0 {
				if _, err := tx.Exec(ctx, `DELETE FROM shouwang_poll_rows WHERE source = $1 AND query = $2 AND key = ANY($3)`,
					s.source, q, b.delKeys); err != nil {
					return fmt.Errorf("delete %d keys of %s: %w", len(b.delKeys), q, err)
				}
			}
			if len(b.upKeys) > 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO shouwang_poll_rows (source, query, key, hash, row)
					SELECT $1, $2, k, h, r FROM unnest($3::text[], $4::bytea[], $5::text[]) AS u(k, h, r)
					ON CONFLICT (source, query, key) DO UPDATE SET hash = excluded.hash, row = excluded.row`,
					s.source, q, b.upKeys, b.upHash, b.upRows); err != nil {
					return fmt.Errorf("upsert %d keys of %s: %w", len(b.upKeys), q, err)
				}
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO shouwang_poll_state (source, position, updated_at) VALUES ($1, $2, now())
			ON CONFLICT (source) DO UPDATE SET position = excluded.position, updated_at = now()`, s.source, string(pos))
		return err
	})
	if err != nil {
		return fmt.Errorf("key store: commit %d rows of %s: %w", len(writes), s.source, err)
	}
	return nil
}

// vanished compares the stored key set of query with the keys streamed by next (in any
// order; next returns ok=false at the end) and returns the stored keys and rows that are
// no longer in the view, plus how many keys are stored. The streamed keys are copied
// into a temporary table and anti-joined in PostgreSQL, so memory stays flat however
// many keys the view has and the view's collation order does not matter.
func (s *store) vanished(ctx context.Context, query string, next func() (key string, ok bool, err error)) (gone map[string][]byte, total int64, err error) {
	gone = map[string][]byte{}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE poll_scan (key text NOT NULL) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("create temp table: %w", err)
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"poll_scan"}, []string{"key"}, pgx.CopyFromFunc(func() ([]any, error) {
			k, ok, err := next()
			if err != nil || !ok {
				return nil, err
			}
			return []any{k}, nil
		}))
		if err != nil {
			return fmt.Errorf("copy view keys: %w", err)
		}
		if _, err := tx.Exec(ctx, `ANALYZE poll_scan`); err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM shouwang_poll_rows WHERE source = $1 AND query = $2`,
			s.source, query).Scan(&total); err != nil {
			return fmt.Errorf("count stored keys: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT r.key, r.row FROM shouwang_poll_rows r
			WHERE r.source = $1 AND r.query = $2
			  AND NOT EXISTS (SELECT 1 FROM poll_scan p WHERE p.key = r.key)`, s.source, query)
		if err != nil {
			return fmt.Errorf("anti-join: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var k, row string
			if err := rows.Scan(&k, &row); err != nil {
				return fmt.Errorf("read vanished key: %w", err)
			}
			gone[k] = []byte(row)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("key store: compare key set of %s.%s: %w", s.source, query, err)
	}
	return gone, total, nil
}
