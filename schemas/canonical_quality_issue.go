package schemas

// Quality issue statuses: a rule opens an issue for an offending subject and closes
// it when a later change makes the subject pass.
const (
	IssueOpen   = "open"
	IssueClosed = "closed"
)

// QualityIssue is one supervision (data-quality) rule violation (see the Q-xxx
// catalogue). Its ID is DeterministicID(rule_id, subject_kind, subject_key), so a
// subject has at most one issue per rule, re-opened rather than duplicated; Key
// equals ID.
type QualityIssue struct {
	Meta
	// ID is the deterministic issue id (equals Key).
	ID string `json:"id"`
	// RuleID is the catalogue rule, "Q-" and three digits.
	RuleID string `json:"rule_id"`
	// SubjectKind is "person", "household" or "village".
	SubjectKind string `json:"subject_kind"`
	// SubjectKey is the 人编号, 户编号 or village code.
	SubjectKey string `json:"subject_key"`
	// RegionCode is the subject's 12-digit region code.
	RegionCode string `json:"region_code"`
	// Severity is "error", "warning" or "info", from the rule configuration.
	Severity string `json:"severity"`
	// Status is IssueOpen or IssueClosed.
	Status string `json:"status"`
	// Detail says what is wrong, for the county staff who fix it. It must not hold
	// a full ID number or phone.
	Detail string `json:"detail,omitempty"`
	// FirstSeen and LastSeen are when the rule first and last found the violation
	// (RFC 3339); ClosedAt when it stopped finding it.
	FirstSeen string `json:"first_seen"`
	LastSeen  string `json:"last_seen"`
	ClosedAt  string `json:"closed_at,omitempty"`
}
