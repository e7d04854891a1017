package schemas

// Discrepancy statuses (行业数据比对 feedback): pending until the department
// answers; confirmed by the department, corrected in the registry, or rejected with
// a reason.
const (
	DiscrepancyPending   = "pending"
	DiscrepancyConfirmed = "confirmed"
	DiscrepancyCorrected = "corrected"
	DiscrepancyRejected  = "rejected"
)

// Discrepancy is a department fact that contradicts the registry (health status,
// disability, 低保/特困 status, housing safety, death, insurance participation). Its
// ID is DeterministicID(department, subject_kind, subject_key, field), so an unchanged
// discrepancy is never raised twice and a changed department value updates the same
// record; Key equals ID.
type Discrepancy struct {
	Meta
	// ID is the deterministic discrepancy id (equals Key).
	ID string `json:"id"`
	// Department is the department code.
	Department string `json:"department"`
	// SubjectKind is "person" or "household".
	SubjectKind string `json:"subject_kind"`
	// SubjectKey is the normalised ID number (person) or 户编号 (household).
	SubjectKey string `json:"subject_key"`
	// HouseholdNo is the subject's household.
	HouseholdNo string `json:"household_no,omitempty"`
	// RegionCode is the subject's 12-digit region code.
	RegionCode string `json:"region_code,omitempty"`
	// Field is the canonical field compared (e.g. "health", "dangerous_house").
	Field string `json:"field"`
	// RegistryValue and DepartmentValue are the two values as text.
	RegistryValue   string `json:"registry_value"`
	DepartmentValue string `json:"department_value"`
	// Status is DiscrepancyPending, DiscrepancyConfirmed, DiscrepancyCorrected or
	// DiscrepancyRejected.
	Status string `json:"status"`
	// Reason is required with DiscrepancyRejected and optional otherwise.
	Reason string `json:"reason,omitempty"`
	// DetectedAt is when the comparison first found it, ResolvedAt when its status
	// left pending (RFC 3339).
	DetectedAt string `json:"detected_at"`
	ResolvedAt string `json:"resolved_at,omitempty"`
	// FactKey is the key of the department fact compared.
	FactKey string `json:"fact_key,omitempty"`
}
