package postgres

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/shouwang/shouwang/schemas"
)

// Schema is the PostgreSQL schema the migrations create the provincial tables in
// (防返贫监测, fpjc).
const Schema = "fpjc"

// column is one column of a provincial table: a field of the canonical entity's
// document (path "source.system" for a field of a nested object).
type column struct {
	name   string // column name
	path   []string
	pgType string // text, numeric, integer, bigint, boolean, text[] or jsonb
}

// table is how one canonical entity is stored.
type table struct {
	entity  string // schema name of the entity (household, warning, …)
	version int    // newest entity schema version this build reads
	cols    []column
	// fields are the document's top-level field names, for refusing unknown ones.
	fields map[string]bool
	// lifecycle entities (with a status) also keep one history row per version.
	lifecycle bool
}

// entityTables derives the provincial tables from the canonical entities' Go types:
// every JSON field is a column of the matching type (Decimal as numeric, *bool as a
// nullable boolean, lists as text[], string maps as jsonb) and the source reference is
// three columns. TestMigrationsMatchEntities keeps the migrations equal to this.
func entityTables() map[string]*table {
	out := map[string]*table{}
	for _, e := range schemas.Entities() {
		t := &table{entity: e.Name, version: e.Version, fields: map[string]bool{}}
		addColumns(t, reflect.TypeOf(e.New()).Elem(), nil)
		for _, c := range t.cols {
			if c.name == "status" {
				t.lifecycle = true
			}
		}
		out[e.Name] = t
	}
	return out
}

var decimalType = reflect.TypeOf(schemas.Decimal(""))

func addColumns(t *table, rt reflect.Type, prefix []string) {
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		if f.Anonymous {
			addColumns(t, f.Type, prefix)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := append(append([]string{}, prefix...), name)
		if len(prefix) == 0 {
			t.fields[name] = true
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		var pg string
		switch {
		case ft == decimalType:
			pg = "numeric"
		case ft.Kind() == reflect.String:
			pg = "text"
		case ft.Kind() == reflect.Bool:
			pg = "boolean"
		case ft.Kind() == reflect.Int:
			pg = "integer"
		case ft.Kind() == reflect.Int64:
			pg = "bigint"
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
			pg = "text[]"
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.String:
			pg = "jsonb"
		case ft.Kind() == reflect.Struct:
			addColumns(t, ft, path)
			continue
		default:
			panic(fmt.Sprintf("sinks/postgres: %s.%s: no column type for Go type %s", t.entity, name, f.Type))
		}
		t.cols = append(t.cols, column{name: strings.Join(path, "_"), path: path, pgType: pg})
	}
}
