package mysqlbinlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Column is one column of one version of a captured table, as the schema history
// records it. Type is the lower-case information_schema DATA_TYPE ("int", "varchar",
// "datetime", …).
type Column struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Unsigned bool     `json:"unsigned,omitempty"`
	Scale    int      `json:"scale,omitempty"`
	Charset  string   `json:"charset,omitempty"` // empty for binary and non-text columns
	Elems    []string `json:"elems,omitempty"`   // ENUM / SET values
}

// TableVersion is one schema version of a table, valid for binlog events at or after
// Start until the next version's Start.
type TableVersion struct {
	Version   int      `json:"version"`
	StartFile string   `json:"start_file"`
	StartPos  uint32   `json:"start_pos"`
	Columns   []Column `json:"columns"`
	PK        []string `json:"pk"`
	DDL       string   `json:"ddl,omitempty"`
	Dropped   bool     `json:"dropped,omitempty"`
}

func (v *TableVersion) start() binlogPos { return binlogPos{v.StartFile, v.StartPos} }

// history is the connector's own schema history: per table ("db.table") the versions
// in start order. It is persisted in StateDir so that a replay after a restart decodes
// rows written before a DDL with the columns they were written with.
type history struct {
	mu     sync.Mutex
	path   string
	Tables map[string][]TableVersion `json:"tables"`
}

func loadHistory(dir string) (*history, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mysqlbinlog: create state dir %s: %w", dir, err)
	}
	h := &history{path: filepath.Join(dir, "schema-history.json"), Tables: map[string][]TableVersion{}}
	b, err := os.ReadFile(h.path)
	if os.IsNotExist(err) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mysqlbinlog: read schema history %s: %w", h.path, err)
	}
	if err := json.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("mysqlbinlog: schema history %s is corrupt: %w (restore it from backup or delete it and re-snapshot)", h.path, err)
	}
	if h.Tables == nil {
		h.Tables = map[string][]TableVersion{}
	}
	return h, nil
}

// save writes the history atomically (temp file + rename).
func (h *history) save() error {
	h.mu.Lock()
	b, err := json.MarshalIndent(h, "", " ")
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("mysqlbinlog: encode schema history: %w", err)
	}
	tmp := h.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("mysqlbinlog: write schema history %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, h.path); err != nil {
		return fmt.Errorf("mysqlbinlog: replace schema history %s: %w", h.path, err)
	}
	return nil
}

// at returns the version of table valid at pos (the earliest one when pos precedes
// every recorded version), or nil when the table is unknown.
func (h *history) at(table string, pos binlogPos) *TableVersion {
	h.mu.Lock()
	defer h.mu.Unlock()
	vs := h.Tables[table]
	if len(vs) == 0 {
		return nil
	}
	best := &vs[0]
	for i := range vs {
		if vs[i].start().compare(pos) <= 0 {
			best = &vs[i]
		}
	}
	return best
}

// latest returns the newest version of table, or nil.
func (h *history) latest(table string) *TableVersion {
	h.mu.Lock()
	defer h.mu.Unlock()
	vs := h.Tables[table]
	if len(vs) == 0 {
		return nil
	}
	return &vs[len(vs)-1]
}

// add appends a version starting at pos unless one already starts there (a replay of
// the same DDL). It reports whether the history changed.
func (h *history) add(table string, pos binlogPos, v TableVersion) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	vs := h.Tables[table]
	for _, old := range vs {
		if old.start() == pos {
			return false
		}
	}
	v.StartFile, v.StartPos = pos.File, pos.Pos
	v.Version = 1
	if len(vs) > 0 {
		v.Version = vs[len(vs)-1].Version + 1
	}
	vs = append(vs, v)
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].start().compare(vs[j].start()) < 0 })
	h.Tables[table] = vs
	return true
}

// tableNames lists the tables with a live (not dropped) latest version.
func (h *history) tableNames() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for t, vs := range h.Tables {
		if len(vs) > 0 && !vs[len(vs)-1].Dropped {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// readTableSchema reads a table's current columns and primary key from
// information_schema.
func readTableSchema(ctx context.Context, db *sql.DB, schema, table string) (TableVersion, error) {
	rows, err := db.QueryContext(ctx, `SELECT COLUMN_NAME, LOWER(DATA_TYPE), LOWER(COLUMN_TYPE), COALESCE(NUMERIC_SCALE, 0),
		COALESCE(CHARACTER_SET_NAME, ''), COLUMN_KEY
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, schema, table)
	if err != nil {
		return TableVersion{}, fmt.Errorf("mysqlbinlog: read columns of %s.%s: %w", schema, table, err)
	}
	defer rows.Close()
	var v TableVersion
	for rows.Next() {
		var c Column
		var colType, key string
		if err := rows.Scan(&c.Name, &c.Type, &colType, &c.Scale, &c.Charset, &key); err != nil {
			return TableVersion{}, fmt.Errorf("mysqlbinlog: scan columns of %s.%s: %w", schema, table, err)
		}
		c.Unsigned = strings.Contains(colType, "unsigned")
		if c.Type == "enum" || c.Type == "set" {
			c.Elems = parseElems(colType)
		}
		if c.Charset == "binary" {
			c.Charset = ""
		}
		v.Columns = append(v.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return TableVersion{}, fmt.Errorf("mysqlbinlog: read columns of %s.%s: %w", schema, table, err)
	}
	if len(v.Columns) == 0 {
		return TableVersion{}, fmt.Errorf("mysqlbinlog: table %s.%s not found or has no columns (check the tables option and the user's SELECT grant)", schema, table)
	}
	pk, err := db.QueryContext(ctx, `SELECT COLUMN_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`, schema, table)
	if err != nil {
		return TableVersion{}, fmt.Errorf("mysqlbinlog: read primary key of %s.%s: %w", schema, table, err)
	}
	defer pk.Close()
	for pk.Next() {
		var n string
		if err := pk.Scan(&n); err != nil {
			return TableVersion{}, fmt.Errorf("mysqlbinlog: scan primary key of %s.%s: %w", schema, table, err)
		}
		v.PK = append(v.PK, n)
	}
	return v, pk.Err()
}

// parseElems splits "enum('a','b”c')" into its values.
func parseElems(colType string) []string {
	open := strings.IndexByte(colType, '(')
	if open < 0 || !strings.HasSuffix(colType, ")") {
		return nil
	}
	s := colType[open+1 : len(colType)-1]
	var out []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\'' && in && i+1 < len(s) && s[i+1] == '\'':
			cur.WriteByte('\'')
			i++
		case ch == '\'':
			if in {
				out = append(out, cur.String())
				cur.Reset()
			}
			in = !in
		case in:
			cur.WriteByte(ch)
		}
	}
	return out
}

// listTables expands the Databases and Tables options into "db.table" names of base
// tables that exist now.
func listTables(ctx context.Context, db *sql.DB, databases, tables []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, d := range databases {
		rows, err := db.QueryContext(ctx, `SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`, d)
		if err != nil {
			return nil, fmt.Errorf("mysqlbinlog: list tables of database %s: %w", d, err)
		}
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return nil, fmt.Errorf("mysqlbinlog: list tables of database %s: %w", d, err)
			}
			if n := d + "." + t; !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("mysqlbinlog: list tables of database %s: %w", d, err)
		}
	}
	for _, t := range tables {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out, nil
}
