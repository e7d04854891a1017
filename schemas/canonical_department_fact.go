package schemas

// DepartmentFact is one fact pushed by a department (医保 settlement, 民政 低保
// recipient, 住建 housing appraisal, 公安 death, …) in a generic shape, so that a new
// department dataset needs a mapping, not a new entity. Key is
// DeterministicID(department, dataset, source record id) — stable across re-deliveries
// of the same record.
type DepartmentFact struct {
	Meta
	// Department is the department code (yibao, weijian, jiaoyu, zhujian, minzheng,
	// canlian, yingji, nongye, gongan, renshe, shuili).
	Department string `json:"department"`
	// Dataset names the delivered table, view or file kind (e.g. "settlement").
	Dataset string `json:"dataset"`
	// FactType says what the fact means, for the rules (e.g. "inpatient_settlement",
	// "dibao_recipient", "house_appraisal", "death").
	FactType string `json:"fact_type"`
	// IDNo is the subject's normalised ID number, when the fact is about a person.
	IDNo string `json:"id_no,omitempty"`
	// HouseholdNo is the 户编号, when the department gives it or it was matched.
	HouseholdNo string `json:"household_no,omitempty"`
	// RegionCode is the subject's 12-digit region code, when known.
	RegionCode string `json:"region_code,omitempty"`
	// Period is the month the fact belongs to (YYYYMM).
	Period string `json:"period"`
	// OccurredOn is the date of the underlying event (settlement, diagnosis,
	// appraisal, death), YYYY-MM-DD, when the department gives it.
	OccurredOn string `json:"occurred_on,omitempty"`
	// Amount is the fact's main money figure (yuan), e.g. the in-scope out-of-pocket
	// cost of a settlement.
	Amount Decimal `json:"amount,omitempty"`
	// Values holds the remaining fields as text, decimals as Decimal syntax (e.g.
	// "total_cost": "12000.50", "grade": "C"); names are the mapping's target names.
	Values map[string]string `json:"values,omitempty"`
}
