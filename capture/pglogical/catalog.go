package pglogical

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// column is one table column as the catalog or a relation message describes it.
type column struct {
	Name    string
	OID     uint32
	TypeSQL string // format_type(), used to cast snapshot cursors
	Key     bool   // part of the replica identity (relation message flag)
}

// table is what Open learns about one captured table.
type table struct {
	Name      string // schema.table
	Schema    string
	Rel       string
	OID       uint32
	Identity  byte // relreplident: d default, n nothing, f full, i index
	Columns   []column
	KeyCols   []string // primary key, else replica identity index, else (FULL) every column
	HasPK     bool
	Partial   bool // before-images carry the key columns only
	QuotedSQL string
}

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

// loadTable reads the table's columns, keys and replica identity, and checks that the
// identity lets updates and deletes be captured.
func loadTable(ctx context.Context, conn *pgx.Conn, name string) (*table, error) {
	schema, rel, _ := strings.Cut(name, ".")
	t := &table{Name: name, Schema: schema, Rel: rel, QuotedSQL: pgx.Identifier{schema, rel}.Sanitize()}
	var ident string
	err := conn.QueryRow(ctx, `SELECT c.oid, c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r','p')`, schema, rel).Scan(&t.OID, &ident)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pglogical: table %s (option tables) does not exist or is not a table: create it or remove it from the list", name)
	}
	if err != nil {
		return nil, fmt.Errorf("pglogical: look up table %s: %w", name, err)
	}
	t.Identity = ident[0]
	rows, err := conn.Query(ctx, `SELECT attname, atttypid, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, t.OID)
	if err != nil {
		return nil, fmt.Errorf("pglogical: read columns of %s: %w", name, err)
	}
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.Name, &c.OID, &c.TypeSQL); err != nil {
			rows.Close()
			return nil, fmt.Errorf("pglogical: read columns of %s: %w", name, err)
		}
		t.Columns = append(t.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pglogical: read columns of %s: %w", name, err)
	}
	keyOf := func(cond string) ([]string, error) {
		var cols []string
		err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(a.attname ORDER BY k.ord), '{}') FROM pg_index i
			CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			WHERE i.indrelid = $1 AND `+cond, t.OID).Scan(&cols)
		return cols, err
	}
	pk, err := keyOf("i.indisprimary")
	if err != nil {
		return nil, fmt.Errorf("pglogical: read primary key of %s: %w", name, err)
	}
	t.HasPK = len(pk) > 0
	t.KeyCols = pk
	switch t.Identity {
	case 'n':
		return nil, fmt.Errorf("pglogical: table %s has REPLICA IDENTITY NOTHING: updates and deletes cannot be captured; run ALTER TABLE %s REPLICA IDENTITY FULL (or DEFAULT with a primary key)", name, t.QuotedSQL)
	case 'd':
		if !t.HasPK {
			return nil, fmt.Errorf("pglogical: table %s has REPLICA IDENTITY DEFAULT but no primary key: updates and deletes cannot be captured; add a primary key or run ALTER TABLE %s REPLICA IDENTITY FULL", name, t.QuotedSQL)
		}
		t.Partial = true
	case 'i':
		idx, err := keyOf("i.indisreplident")
		if err != nil {
			return nil, fmt.Errorf("pglogical: read replica identity index of %s: %w", name, err)
		}
		if len(idx) == 0 {
			return nil, fmt.Errorf("pglogical: table %s has REPLICA IDENTITY USING INDEX but the index is gone; set REPLICA IDENTITY FULL or DEFAULT", name)
		}
		if !t.HasPK {
			t.KeyCols = idx
		}
		t.Partial = true
	case 'f':
		if !t.HasPK {
			for _, c := range t.Columns {
				t.KeyCols = append(t.KeyCols, c.Name)
			}
		}
	}
	return t, nil
}

func (t *table) column(name string) (column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return column{}, false
}
