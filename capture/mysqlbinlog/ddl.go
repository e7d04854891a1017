package mysqlbinlog

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/parser/types"

	// The parser needs a value-expression driver to build literal nodes (defaults,
	// enum values); test_driver is the parser's own minimal one.
	_ "github.com/pingcap/tidb/pkg/parser/test_driver"
)

// ddlKind is what a DDL statement did to one table.
type ddlKind int

const (
	ddlAlter ddlKind = iota + 1
	ddlCreate
	ddlDrop
	ddlRename
	ddlTruncate
)

// ddlEffect is one table-level consequence of a DDL statement. Version is nil when
// the statement could not be applied to the history (the caller then re-reads the
// table from information_schema).
type ddlEffect struct {
	Kind    ddlKind
	Table   string // db.table
	NewName string // db.table after RENAME
	Version *TableVersion
}

var truncateRE = regexp.MustCompile("(?is)^\\s*TRUNCATE\\s+(?:TABLE\\s+)?`?([^`\\s.;]+)`?(?:\\.`?([^`\\s;]+)`?)?")

// parseDDL parses one QueryEvent statement. current returns the table's schema
// version in effect (nil when unknown). Statements that change no table schema
// (GRANT, CREATE USER, …) return no effects.
func parseDDL(defaultDB, query string, current func(table string) *TableVersion) ([]ddlEffect, error) {
	if m := truncateRE.FindStringSubmatch(query); m != nil {
		t := qualify(defaultDB, m[1], m[2])
		return []ddlEffect{{Kind: ddlTruncate, Table: t}}, nil
	}
	stmts, _, err := parser.New().Parse(query, "", "")
	if err != nil {
		return nil, fmt.Errorf("parse DDL %q: %w", truncate(query, 200), err)
	}
	var out []ddlEffect
	for _, st := range stmts {
		switch s := st.(type) {
		case *ast.CreateTableStmt:
			t := tableName(defaultDB, s.Table)
			if s.ReferTable != nil || s.Select != nil {
				out = append(out, ddlEffect{Kind: ddlCreate, Table: t})
				continue
			}
			v := &TableVersion{}
			for _, c := range s.Cols {
				col, pk := columnFromDef(c)
				v.Columns = append(v.Columns, col)
				if pk {
					v.PK = append(v.PK, col.Name)
				}
			}
			for _, c := range s.Constraints {
				if c.Tp == ast.ConstraintPrimaryKey {
					v.PK = nil
					for _, k := range c.Keys {
						if k.Column != nil {
							v.PK = append(v.PK, k.Column.Name.O)
						}
					}
				}
			}
			out = append(out, ddlEffect{Kind: ddlCreate, Table: t, Version: v})
		case *ast.DropTableStmt:
			if s.IsView {
				continue
			}
			for _, tn := range s.Tables {
				out = append(out, ddlEffect{Kind: ddlDrop, Table: tableName(defaultDB, tn)})
			}
		case *ast.RenameTableStmt:
			for _, tt := range s.TableToTables {
				out = append(out, ddlEffect{Kind: ddlRename, Table: tableName(defaultDB, tt.OldTable), NewName: tableName(defaultDB, tt.NewTable)})
			}
		case *ast.TruncateTableStmt:
			out = append(out, ddlEffect{Kind: ddlTruncate, Table: tableName(defaultDB, s.Table)})
		case *ast.AlterTableStmt:
			t := tableName(defaultDB, s.Table)
			cur := current(t)
			var v *TableVersion
			if cur != nil {
				cp := *cur
				cp.Columns = append([]Column(nil), cur.Columns...)
				cp.PK = append([]string(nil), cur.PK...)
				v = &cp
			}
			for _, spec := range s.Specs {
				if spec.Tp == ast.AlterTableRenameTable {
					out = append(out, ddlEffect{Kind: ddlRename, Table: t, NewName: tableName(defaultDB, spec.NewTable)})
					t = tableName(defaultDB, spec.NewTable)
					continue
				}
				if v != nil && !applyAlter(v, spec) {
					v = nil // unknown change: re-read the schema
				}
			}
			out = append(out, ddlEffect{Kind: ddlAlter, Table: t, Version: v})
		}
	}
	return out, nil
}

// applyAlter applies one ALTER TABLE clause to v; false means the clause's effect on
// the columns is not modelled.
func applyAlter(v *TableVersion, spec *ast.AlterTableSpec) bool {
	idx := func(name string) int {
		for i, c := range v.Columns {
			if strings.EqualFold(c.Name, name) {
				return i
			}
		}
		return -1
	}
	insert := func(c Column, pos *ast.ColumnPosition) {
		at := len(v.Columns)
		if pos != nil {
			switch pos.Tp {
			case ast.ColumnPositionFirst:
				at = 0
			case ast.ColumnPositionAfter:
				if i := idx(pos.RelativeColumn.Name.O); i >= 0 {
					at = i + 1
				}
			}
		}
		v.Columns = append(v.Columns[:at], append([]Column{c}, v.Columns[at:]...)...)
	}
	switch spec.Tp {
	case ast.AlterTableAddColumns:
		for _, d := range spec.NewColumns {
			c, pk := columnFromDef(d)
			insert(c, spec.Position)
			if pk {
				v.PK = []string{c.Name}
			}
		}
		return true
	case ast.AlterTableDropColumn:
		if i := idx(spec.OldColumnName.Name.O); i >= 0 {
			v.Columns = append(v.Columns[:i], v.Columns[i+1:]...)
		}
		return true
	case ast.AlterTableRenameColumn:
		i := idx(spec.OldColumnName.Name.O)
		if i < 0 {
			return false
		}
		renamePK(v, v.Columns[i].Name, spec.NewColumnName.Name.O)
		v.Columns[i].Name = spec.NewColumnName.Name.O
		return true
	case ast.AlterTableModifyColumn, ast.AlterTableChangeColumn:
		if len(spec.NewColumns) != 1 {
			return false
		}
		old := spec.NewColumns[0].Name.Name.O
		if spec.OldColumnName != nil {
			old = spec.OldColumnName.Name.O
		}
		i := idx(old)
		if i < 0 {
			return false
		}
		c, _ := columnFromDef(spec.NewColumns[0])
		renamePK(v, v.Columns[i].Name, c.Name)
		v.Columns = append(v.Columns[:i], v.Columns[i+1:]...)
		if spec.Position == nil || spec.Position.Tp == ast.ColumnPositionNone {
			v.Columns = append(v.Columns[:i], append([]Column{c}, v.Columns[i:]...)...)
		} else {
			insert(c, spec.Position)
		}
		return true
	case ast.AlterTableAddConstraint:
		if spec.Constraint != nil && spec.Constraint.Tp == ast.ConstraintPrimaryKey {
			v.PK = nil
			for _, k := range spec.Constraint.Keys {
				if k.Column != nil {
					v.PK = append(v.PK, k.Column.Name.O)
				}
			}
		}
		return true
	case ast.AlterTableDropPrimaryKey:
		v.PK = nil
		return true
	case ast.AlterTableDropIndex, ast.AlterTableOption, ast.AlterTableRenameIndex, ast.AlterTableAlterColumn,
		ast.AlterTableLock, ast.AlterTableAlgorithm, ast.AlterTableForce:
		return true
	}
	return false
}

func renamePK(v *TableVersion, from, to string) {
	for i, k := range v.PK {
		if strings.EqualFold(k, from) {
			v.PK[i] = to
		}
	}
}

func columnFromDef(d *ast.ColumnDef) (Column, bool) {
	tp := d.Tp
	c := Column{Name: d.Name.Name.O, Unsigned: pmysql.HasUnsignedFlag(tp.GetFlag())}
	binaryCS := tp.GetCharset() == "binary" || pmysql.HasBinaryFlag(tp.GetFlag()) && tp.GetCharset() == ""
	c.Type = typeName(tp, binaryCS)
	if d := tp.GetDecimal(); d > 0 {
		c.Scale = d
	}
	switch c.Type {
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set":
		c.Charset = strings.ToLower(tp.GetCharset())
		if c.Charset == "" {
			c.Charset = "utf8mb4"
		}
	}
	if c.Type == "enum" || c.Type == "set" {
		c.Elems = tp.GetElems()
	}
	pk := false
	for _, o := range d.Options {
		if o.Tp == ast.ColumnOptionPrimaryKey {
			pk = true
		}
	}
	return c, pk
}

func typeName(tp *types.FieldType, binaryCS bool) string {
	switch tp.GetType() {
	case pmysql.TypeTiny:
		return "tinyint"
	case pmysql.TypeShort:
		return "smallint"
	case pmysql.TypeInt24:
		return "mediumint"
	case pmysql.TypeLong:
		return "int"
	case pmysql.TypeLonglong:
		return "bigint"
	case pmysql.TypeFloat:
		return "float"
	case pmysql.TypeDouble:
		return "double"
	case pmysql.TypeNewDecimal:
		return "decimal"
	case pmysql.TypeDate:
		return "date"
	case pmysql.TypeDatetime:
		return "datetime"
	case pmysql.TypeTimestamp:
		return "timestamp"
	case pmysql.TypeDuration:
		return "time"
	case pmysql.TypeYear:
		return "year"
	case pmysql.TypeVarchar, pmysql.TypeVarString:
		if binaryCS {
			return "varbinary"
		}
		return "varchar"
	case pmysql.TypeString:
		if binaryCS {
			return "binary"
		}
		return "char"
	case pmysql.TypeTinyBlob, pmysql.TypeBlob, pmysql.TypeMediumBlob, pmysql.TypeLongBlob:
		if binaryCS {
			return "blob"
		}
		return "text"
	case pmysql.TypeEnum:
		return "enum"
	case pmysql.TypeSet:
		return "set"
	case pmysql.TypeBit:
		return "bit"
	case pmysql.TypeJSON:
		return "json"
	}
	return "unknown"
}

func tableName(defaultDB string, tn *ast.TableName) string {
	db := tn.Schema.O
	if db == "" {
		db = defaultDB
	}
	return db + "." + tn.Name.O
}

func qualify(defaultDB, a, b string) string {
	if b == "" {
		return defaultDB + "." + a
	}
	return a + "." + b
}
