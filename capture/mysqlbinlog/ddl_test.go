package mysqlbinlog

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseDDL(t *testing.T) {
	base := &TableVersion{Columns: []Column{{Name: "id", Type: "int"}, {Name: "a", Type: "varchar", Charset: "utf8mb4"}}, PK: []string{"id"}}
	cur := func(string) *TableVersion { return base }
	tests := []struct {
		sql      string
		kind     ddlKind
		table    string
		newName  string
		cols     string // JSON names of the resulting columns, "" when not checked
		pk       string
		nilSchem bool
	}{
		{sql: "ALTER TABLE h ADD COLUMN b INT UNSIGNED AFTER id", kind: ddlAlter, table: "d.h", cols: `["id","b","a"]`, pk: `["id"]`},
		{sql: "ALTER TABLE x.h ADD COLUMN c TEXT FIRST", kind: ddlAlter, table: "x.h", cols: `["c","id","a"]`, pk: `["id"]`},
		{sql: "ALTER TABLE h DROP COLUMN a", kind: ddlAlter, table: "d.h", cols: `["id"]`, pk: `["id"]`},
		{sql: "ALTER TABLE h RENAME COLUMN id TO hid", kind: ddlAlter, table: "d.h", cols: `["hid","a"]`, pk: `["hid"]`},
		{sql: "ALTER TABLE h CHANGE a aa VARCHAR(9)", kind: ddlAlter, table: "d.h", cols: `["id","aa"]`, pk: `["id"]`},
		{sql: "ALTER TABLE h MODIFY a BIGINT", kind: ddlAlter, table: "d.h", cols: `["id","a"]`, pk: `["id"]`},
		{sql: "CREATE TABLE n (k CHAR(18), v DECIMAL(10,2), PRIMARY KEY (k))", kind: ddlCreate, table: "d.n", cols: `["k","v"]`, pk: `["k"]`},
		{sql: "CREATE TABLE n2 (id BIGINT PRIMARY KEY, e ENUM('a','b'))", kind: ddlCreate, table: "d.n2", cols: `["id","e"]`, pk: `["id"]`},
		{sql: "DROP TABLE IF EXISTS h", kind: ddlDrop, table: "d.h"},
		{sql: "RENAME TABLE h TO h_old", kind: ddlRename, table: "d.h", newName: "d.h_old"},
		{sql: "TRUNCATE TABLE `x`.`h`", kind: ddlTruncate, table: "x.h"},
		{sql: "truncate h", kind: ddlTruncate, table: "d.h"},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			effs, err := parseDDL("d", tt.sql, cur)
			if err != nil {
				t.Fatal(err)
			}
			if len(effs) != 1 {
				t.Fatalf("%d effects, want 1", len(effs))
			}
			e := effs[0]
			if e.Kind != tt.kind || e.Table != tt.table || e.NewName != tt.newName {
				t.Errorf("effect = %+v, want kind %d table %s new %s", e, tt.kind, tt.table, tt.newName)
			}
			if tt.cols != "" {
				if e.Version == nil {
					t.Fatal("no schema version")
				}
				var names []string
				for _, c := range e.Version.Columns {
					names = append(names, c.Name)
				}
				got, _ := json.Marshal(names)
				pk, _ := json.Marshal(e.Version.PK)
				if string(got) != tt.cols || string(pk) != tt.pk {
					t.Errorf("columns %s pk %s, want %s pk %s", got, pk, tt.cols, tt.pk)
				}
			}
		})
	}
	if len(base.Columns) != 2 || base.Columns[0].Name != "id" || base.PK[0] != "id" {
		t.Errorf("parseDDL modified the current version: %+v", base)
	}
}

func TestParseElems(t *testing.T) {
	tests := []struct{ in, want string }{
		{"enum('a','b')", `["a","b"]`},
		{"set('x','it''s','')", `["x","it's",""]`},
		{"enum('脱贫户','监测户')", `["脱贫户","监测户"]`},
		{"int(11)", `null`},
	}
	for _, tt := range tests {
		got, _ := json.Marshal(parseElems(tt.in))
		if string(got) != tt.want {
			t.Errorf("parseElems(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func FuzzParseDDL(f *testing.F) {
	for _, s := range []string{"ALTER TABLE h ADD COLUMN b INT", "TRUNCATE t", "CREATE TABLE a (id INT PRIMARY KEY)", "RENAME TABLE a TO b", "ALTER TABLE h RENAME COLUMN a TO b"} {
		f.Add(s)
	}
	base := &TableVersion{Columns: []Column{{Name: "id", Type: "int"}, {Name: "a", Type: "int"}}, PK: []string{"id"}}
	f.Fuzz(func(t *testing.T, q string) {
		effs, err := parseDDL("d", q, func(string) *TableVersion { return base })
		if err != nil {
			return
		}
		for _, e := range effs {
			if e.Table == "" {
				t.Errorf("%q: effect without table: %+v", q, e)
			}
		}
		if len(base.Columns) != 2 {
			t.Fatalf("%q modified the current version", q)
		}
	})
}

func FuzzParseElems(f *testing.F) {
	f.Add("enum('a','b''c')")
	f.Fuzz(func(t *testing.T, s string) {
		// Every value is opened and closed by a quote.
		if n, q := len(parseElems(s)), strings.Count(s, "'"); n > q/2 {
			t.Errorf("parseElems(%q) found %d values from %d quotes", s, n, q)
		}
	})
}
