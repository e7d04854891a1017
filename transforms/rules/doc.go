// Package rules is the supervision (data-quality) rules engine: the Q-rules of
// shared/domain/quality-rules.md written as data, evaluated per household on the
// canonical entities (schemas.Household, schemas.Person, schemas.AssistanceMeasure as
// transforms/mapping emits them), and a Tracker that turns findings into the
// lifecycle of schemas.QualityIssue (open when a subject starts failing, closed when
// it passes again, nothing while unchanged, stale or repeated versions ignored).
//
// # Rule files
//
// A rule file is one versioned rule set; the embedded default is
// defaults/quality.v1.yaml (Default). Expressions are github.com/expr-lang/expr,
// compiled and type-checked once at Load:
//
//	ruleset: quality                  # name; Engine.Version() says "quality.v1"
//	version: 1                        # bump on every change
//	params:                           # ages, thresholds, dates, label lists
//	  labour_min_age: 16              # type from the value: int, float, string, bool,
//	  able_skills: [技能劳动力, 普通劳动力] # list (strings), int_list, map (string → number)
//	  road_max_km: {type: float, value: 5, doc: "Q-113"}   # or declared
//	rules:
//	  - id: Q-022                     # catalogue number, unique across loaded files
//	    title: under 16 but labour skill is not 无劳动力
//	    subject: person               # person (once per member, as p) or household
//	    severity: error               # error, warning or info
//	    when: hh.monitored            # optional: the rule applies only where true
//	    fail: p.age >= 0 && p.age < params.labour_min_age && p.labour_skill != params.no_labour_skill
//	    evidence: {age: p.age}        # optional: expressions recorded with a finding
//
// params.NAME is replaced by the parameter's value before type checking, so a
// parameter used with the wrong type, an unknown parameter, an unknown field, a
// syntax error, a non-boolean fail, an unknown key in the file or a duplicate rule ID
// is a *LoadError "file:line: reason" and Load returns no Engine. Parameters are
// overridden by name with Options.Params (the pipeline config); an override of the
// wrong type or for an undeclared name is an error too.
//
// # What expressions see
//
// hh (HouseholdView), members ([]PersonView), measures ([]MeasureView) and, in person
// rules, p (PersonView). Field names are the canonical JSON names (hh.risks,
// p.labour_skill, …) plus derived facts: p.age at the evaluation date (-1 unknown),
// p.id_len, p.id_error (""/empty/length/chars/placeholder/birth_date/checksum),
// p.id_birth, p.id_sex, p.cert_error, p.id_masked, hh.monitored,
// hh.months_since_identified, hh.months_to_elimination, hh.eliminated_year,
// hh.measure_categories (the household's measure columns and its measures'
// categories), hh.measure_items, hh.head_count, hh.head_sex. Nothing is nil:
// unrecorded optional yes/no and number fields read false / 0 and their names are in
// hh.empty / p.empty. Evidence must use the masked forms of ID numbers and phones.
//
// # Not covered
//
// Rules across households or villages (Q-001/Q-002 duplicate IDs, Q-111 a phone in
// several households, Q-120 village totals) need an aggregate state and are not
// evaluated here. need fields the canonical person does not have.
package rules
