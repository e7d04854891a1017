package schemas

// Warning statuses: a warning is open until verified at home; it then either led to
// identification as a monitoring household or was dismissed with a reason.
const (
	WarningOpen       = "open"
	WarningVerifying  = "verifying"
	WarningIdentified = "identified"
	WarningDismissed  = "dismissed"
)

// Warning is a department screening warning (部门筛查预警): a department fact that
// crossed a configured threshold for a person or household. Its ID is
// DeterministicID(rule_id, subject_kind, subject_key, period), so a replay or a
// re-delivered fact never raises a second warning; Key equals ID.
type Warning struct {
	Meta
	// ID is the deterministic warning id (equals Key).
	ID string `json:"id"`
	// RuleID names the configured warning rule (e.g. "yibao.oop_12m").
	RuleID string `json:"rule_id"`
	// Department is the department code whose data raised the warning.
	Department string `json:"department"`
	// SubjectKind is "person" or "household".
	SubjectKind string `json:"subject_kind"`
	// SubjectKey is the normalised ID number (person) or 户编号 (household).
	SubjectKey string `json:"subject_key"`
	// HouseholdNo is the subject's household, when matched.
	HouseholdNo string `json:"household_no,omitempty"`
	// RegionCode is the subject's 12-digit region code (absent when unmatched).
	RegionCode string `json:"region_code,omitempty"`
	// Period is the period the rule evaluated (YYYYMM).
	Period string `json:"period"`
	// RaisedAt is when the warning was first raised (RFC 3339).
	RaisedAt string `json:"raised_at"`
	// DueDays is the verification deadline in days, from configuration (generally 15).
	DueDays int `json:"due_days"`
	// DueAt is RaisedAt + DueDays (RFC 3339), carried so readers need no config.
	DueAt string `json:"due_at"`
	// Status is WarningOpen, WarningVerifying, WarningIdentified or WarningDismissed.
	Status string `json:"status"`
	// Resolution explains a dismissal or names the resulting episode.
	Resolution string `json:"resolution,omitempty"`
	// Evidence holds the figures that triggered the rule as text (e.g. "amount":
	// "23000.00", "threshold": "20000", "window": "12m") and FactKeys the keys of
	// the department facts used.
	Evidence map[string]string `json:"evidence,omitempty"`
	FactKeys []string          `json:"fact_keys,omitempty"`
}
