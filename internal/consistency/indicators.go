package consistency

import (
	"fmt"
	"strings"

	"github.com/shouwang/shouwang/internal/dict"
)

// Indicator is one compared total.
type Indicator struct {
	// Name is the indicator's id (households, persons, …); Label its Chinese name in
	// reports.
	Name  string
	Label string
}

// Entity is what the indicator's keys are: "person" for persons, "household" for
// every other built-in indicator.
func (i Indicator) Entity() string {
	if i.Name == "persons" {
		return "person"
	}
	return "household"
}

// flag values of the national export (是/否) and their canonical booleans.
const yes = "是"

// Indicators are the built-in indicators, in report order: households, persons,
// monitored households by category (codes of the category dictionary), households
// with their risk eliminated, relocated households.
func Indicators(categories *dict.Dict) []Indicator {
	out := []Indicator{{"households", "户数"}, {"persons", "人数"}}
	for _, e := range categories.Entries {
		out = append(out, Indicator{"category_" + e.Code, "监测对象户数（" + e.Name + "）"})
	}
	return append(out, Indicator{"eliminated", "风险已消除户数"}, Indicator{"relocated", "易地搬迁户数"})
}

// NationalSets are the indicators over the national front-end tables household and
// person in database db.
func NationalSets(db string, categories *dict.Dict) map[string]Set {
	hh, p := quoteMySQL(db)+".household", quoteMySQL(db)+".person"
	household := func(where string) Set {
		return Set{From: hh + " h", Region: "h.village_code", Key: "h.hh_no", Where: where, Table: db + ".household", KeyColumn: "hh_no"}
	}
	sets := map[string]Set{
		"households": household(""),
		"persons": {From: p + " p JOIN " + hh + " h ON h.hh_no = p.hh_no", Region: "h.village_code", Key: "p.person_no",
			Table: db + ".person", KeyColumn: "person_no", Split: true},
		"eliminated": household("h.risk_eliminated = '" + yes + "'"),
		"relocated":  household("h.relocated = '" + yes + "'"),
	}
	for _, e := range categories.Entries {
		names := []string{sqlString(e.Name)}
		for _, a := range e.Aliases {
			names = append(names, sqlString(a))
		}
		sets["category_"+e.Code] = household("h.category IN (" + strings.Join(names, ", ") + ")")
	}
	return sets
}

// ProvincialSets are the indicators over the provincial schema fpjc (soft-deleted
// rows are not members).
func ProvincialSets(categories *dict.Dict) map[string]Set {
	household := func(where string) Set {
		w := "NOT h.deleted"
		if where != "" {
			w += " AND " + where
		}
		return Set{From: "fpjc.household h", Region: "h.region_code", Key: "h.key", Where: w}
	}
	sets := map[string]Set{
		"households": household(""),
		"persons": {From: "fpjc.person p JOIN fpjc.household h ON h.key = p.household_no AND NOT h.deleted", Region: "h.region_code", Key: "p.key",
			Where: "NOT p.deleted"},
		"eliminated": household("h.risk_eliminated"),
		"relocated":  household("h.relocated"),
	}
	for _, e := range categories.Entries {
		sets["category_"+e.Code] = household(fmt.Sprintf("h.monitoring_category = %s", e.Code))
	}
	return sets
}

// SharingSets are the indicators over the sharing platform's exchange table
// (fpjc_base_data: entity, record_key, op, data as JSON) in dialect d. Persons take
// the region of their household's record.
func SharingSets(d Dialect, table string, categories *dict.Dict) map[string]Set {
	field := func(alias, f string) string { return d.jsonText(alias+".data", f) }
	household := func(where string) Set {
		w := "h.entity = 'household' AND h.op <> 'delete'"
		if where != "" {
			w += " AND " + where
		}
		return Set{From: table + " h", Region: field("h", "region_code"), Key: "h.record_key", Where: w}
	}
	sets := map[string]Set{
		"households": household(""),
		"persons": {From: table + " p JOIN " + table + " h ON h.entity = 'household' AND h.op <> 'delete' AND h.record_key = " + field("p", "household_no"),
			Region: field("h", "region_code"), Key: "p.record_key", Where: "p.entity = 'person' AND p.op <> 'delete'"},
		"eliminated": household(field("h", "risk_eliminated") + " = 'true'"),
		"relocated":  household(field("h", "relocated") + " = 'true'"),
	}
	for _, e := range categories.Entries {
		sets["category_"+e.Code] = household(field("h", "monitoring_category") + " = " + sqlString(e.Code))
	}
	return sets
}

func quoteMySQL(id string) string { return "`" + strings.ReplaceAll(id, "`", "``") + "`" }

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
