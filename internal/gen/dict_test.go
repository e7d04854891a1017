package gen

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/shouwang/shouwang/internal/dict"
	"github.com/shouwang/shouwang/internal/region"
)

// enumColumns maps each enumerated column of the national tables to its internal/dict
// table. Free-text columns (names, places, remarks, the m_* measure-name lists) are
// not enumerated.
var enumColumns = map[string]map[string]string{
	"household": {
		"household_type": "household_type", "category": "category", "no_labour_protected": "yes_no",
		"risk1": "risk_type", "risk2": "risk_type", "risk3": "risk_type", "risk4": "risk_type", "risk5": "risk_type",
		"disaster_subitem": "disaster_subitem", "risk_eliminated": "yes_no", "elimination_method": "elimination_method",
		"child_dropout": "yes_no", "member_uninsured": "yes_no", "dangerous_house": "yes_no", "safe_water": "yes_no",
		"electricity": "yes_no", "road_hardened": "yes_no", "dev_measure_status": "development_measure_status",
		"relocated": "yes_no", "resettlement_mode": "relocation_mode",
	},
	"person": {
		"id_type": "id_type", "sex": "sex", "ethnic": "ethnic", "relationship": "relationship",
		"education": "education", "school_status": "school_status", "not_in_school_reason": "dropout_reason",
		"dropout_reason": "dropout_reason", "health": "health", "disability_type": "disability_type",
		"disability_grade": "disability_grade", "labour_skill": "labour_skill", "work_status": "work_status",
		"employment_channel": "employment_channel", "welfare_job": "yes_no", "ins_resident_medical": "yes_no",
		"ins_employee_medical": "yes_no", "ins_serious_illness": "yes_no", "ins_resident_pension": "yes_no",
		"ins_employee_pension": "yes_no", "medical_assistance": "yes_no", "dibao": "dibao_status",
		"tekun": "tekun_status", "deceased": "yes_no",
	},
	"measure": {"category": "measure_category", "status": "development_measure_status", "development": "yes_no"},
}

// enumDeptColumns maps enumerated department columns to dict tables. 民政
// assistance_type, 教育 status, 残联 status and 医保 visit_type have no national code
// table.
var enumDeptColumns = map[int]map[string]string{
	dsDisability: {"disability_type": "disability_type", "disability_grade": "disability_grade"},
	dsHousing:    {"grade": "housing_grade"},
	dsStudent:    {"stage": "school_status"},
	dsDisaster:   {"disaster_type": "disaster_subitem"},
}

// rarelyFilled are enumerated columns that may legitimately stay NULL in a few
// thousand clean households (the generator leaves them empty unless a defect or push
// sets them).
var rarelyFilled = []string{"person.not_in_school_reason", "person.dropout_reason", "household.risk3", "household.risk4", "household.risk5"}

// TestValuesInDict generates a few thousand households and checks every enumerated
// value the generator writes (national tables and department datasets) against the
// project's code tables: dict must normalise it to an entry, except in a field of a
// household where the manifest records an injected defect on that field.
func TestValuesInDict(t *testing.T) {
	ds, err := dict.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Households = 4000
	cfg.MonitoredShare = 0.5 // more risks, categories, eliminations and measures
	for r := range cfg.DefectRates {
		cfg.DefectRates[r] = 0.01
	}
	tab, err := region.Default()
	if err != nil {
		t.Fatal(err)
	}
	plans, err := plan(&cfg, tab)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[string]int{} // table.column → value → count
	check := func(table, col, field, v, hh string, defects map[string]bool) {
		key := table + "." + col
		if seen[key] == nil {
			seen[key] = map[string]int{}
		}
		if v == "" {
			return
		}
		seen[key][v]++
		if defects[hh+"/"+col] {
			return
		}
		d, err := ds.Get(field)
		if err != nil {
			t.Fatalf("dict has no table %q for %s: %v", field, key, err)
		}
		if _, ok := d.Normalize(v); !ok && seen[key][v] == 1 {
			t.Errorf("%s = %q (household %s) is not in dict table %s", key, v, hh, field)
		}
	}
	colIndex := func(cols []string, name string) int {
		i := slices.Index(cols, name)
		if i < 0 {
			t.Fatalf("column %s not in %v", name, cols)
		}
		return i
	}
	scan := func(table string, tsvData []byte, cols []string, hhCol int, defects map[string]bool) {
		for line := range bytes.Lines(tsvData) {
			r := parseTSVRow(line)
			hh := r.get(hhCol)
			for col, field := range enumColumns[table] {
				check(table, col, field, r.get(colIndex(cols, col)), hh, defects)
			}
		}
	}
	for i := range plans {
		res, err := generateVillage(&cfg, &plans[i])
		if err != nil {
			t.Fatal(err)
		}
		defects := map[string]bool{}
		for _, l := range res.Manifest {
			if l.Kind == "defect" {
				defects[l.HHNo+"/"+l.Field] = true
			}
		}
		scan("household", res.HouseholdTSV, HouseholdColumns, 0, defects)
		scan("person", res.PersonTSV, PersonColumns, 1, defects)
		scan("measure", res.MeasureTSV, MeasureColumns, 1, defects)
		for dsi, cols := range enumDeptColumns {
			d := Datasets[dsi]
			for _, row := range res.Dept[dsi] {
				for col, field := range cols {
					v := row[colIndex(d.Columns, col)]
					s := ""
					switch x := v.(type) {
					case string:
						s = x
					case int64:
						s = fmt.Sprint(x)
					case nil:
					default:
						t.Fatalf("%s.%s: unexpected %T", d.Table(), col, v)
					}
					check(d.Table(), col, field, s, "", nil)
				}
			}
		}
	}
	for table, cols := range enumColumns {
		for col := range cols {
			key := table + "." + col
			if len(seen[key]) == 0 && !slices.Contains(rarelyFilled, key) {
				t.Errorf("%s never had a value: the check proves nothing for it", key)
			}
		}
	}
	for dsi, cols := range enumDeptColumns {
		for col := range cols {
			if key := Datasets[dsi].Table() + "." + col; len(seen[key]) == 0 {
				t.Errorf("%s never had a value", key)
			}
		}
	}
}
