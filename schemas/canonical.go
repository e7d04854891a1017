package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strconv"
)

// Meta is embedded in every canonical entity; its fields appear at the top level of
// the entity's JSON. Consumers (sinks, rule state) rely on Key and Version alone to be
// idempotent, so these are required in every schema.
type Meta struct {
	// Key identifies the entity; it is also the Kafka message key, so every version
	// of one entity stays in one partition, in order.
	Key string `json:"key"`
	// Version grows strictly with each change of the entity with this Key. It is
	// derived from the source position (see the producer's documentation), so a
	// replayed or re-ordered event carries a version ≤ the stored one and is dropped.
	Version int64 `json:"version"`
	// Source says which source record produced this version, for audit and DLQ triage.
	Source SourceRef `json:"source"`
	// UpdatedMs is when Shouwang produced this version (Unix milliseconds).
	UpdatedMs int64 `json:"updated_ms"`
}

// Common returns the shared fields; it makes every canonical entity an Entity.
func (m *Meta) Common() *Meta { return m }

// Entity is implemented by every canonical entity type (through the embedded Meta),
// so that generic code can read the key and version without knowing the type.
type Entity interface {
	Common() *Meta
}

// SourceRef points at the record an entity version was derived from.
type SourceRef struct {
	// System is the configured source name ("national", "yibao", …), or the Kafka
	// topic for entities derived inside Shouwang (warnings, issues, discrepancies).
	System string `json:"system"`
	// Table is the source table or dataset.
	Table string `json:"table,omitempty"`
	// Position is the source position as readable text: "binlog.000012:4711#3",
	// an LSN, "file.csv:120", or "topic/partition@offset". It is for people, not
	// for ordering: Version orders.
	Position string `json:"position,omitempty"`
}

// Decimal is an exact decimal number carried as a JSON string, e.g. "12345.60".
//
// Money, areas and distances use strings rather than float64 (which cannot hold
// 0.1 exactly) and rather than json.Number: json.Number is written as a bare JSON
// number, which JavaScript, jq, many Java mappers and PostgreSQL's json→float8 casts
// read into binary doubles, silently losing cents on large sums. A string is read
// as text by every consumer and cast exactly (PostgreSQL: ::numeric), and JSON
// Schema can check its syntax with a pattern. The empty string means "not
// recorded", which quality rules must tell apart from zero.
type Decimal string

// decimalSyntax is DecimalPattern compiled; keep the two identical.
var decimalSyntax = regexp.MustCompile(DecimalPattern)

// DecimalPattern is the JSON Schema pattern of a non-empty Decimal.
const DecimalPattern = `^-?[0-9]+(\.[0-9]+)?$`

// Valid reports whether d is empty (not recorded) or a plain decimal number
// (optional minus sign, digits, optional fraction; no exponent, no thousands
// separators).
func (d Decimal) Valid() bool { return d == "" || decimalSyntax.MatchString(string(d)) }

// DeterministicID derives a stable identifier from its parts, so that replaying the
// same input yields the same warning, issue or discrepancy id. It is the first 16
// bytes, in lower-case hex (32 characters), of the SHA-256 of the parts each
// written as "<byte length>:<part>" and concatenated (other languages can reproduce
// it). The length prefix keeps ("ab","c") and ("a","bc") apart whatever characters
// the parts contain.
func DeterministicID(parts ...string) string {
	h := sha256.New()
	var buf []byte
	for _, p := range parts {
		buf = strconv.AppendInt(buf[:0], int64(len(p)), 10)
		buf = append(buf, ':')
		h.Write(buf)
		h.Write([]byte(p))
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}

// EntityInfo describes one canonical entity for code that enumerates them (topic
// creation, sinks, schema checks).
type EntityInfo struct {
	// Name is the schema name: schemas/json/<Name>.v<Version>.json.
	Name string
	// Version is the latest schema version this build writes.
	Version int
	// Topic returns the entity's topic for a topic prefix.
	Topic func(prefix string) string
	// New returns a pointer to a zero value of the entity's Go type (it implements
	// Entity).
	New func() any
}

// Entities lists every canonical entity, in a fixed order.
func Entities() []EntityInfo {
	canonical := func(name string) func(string) string {
		return func(prefix string) string { return CanonicalTopic(prefix, name) }
	}
	return []EntityInfo{
		{Name: "household", Version: 1, Topic: canonical("household"), New: func() any { return new(Household) }},
		{Name: "person", Version: 1, Topic: canonical("person"), New: func() any { return new(Person) }},
		{Name: "monitoring_episode", Version: 1, Topic: canonical("monitoring_episode"), New: func() any { return new(MonitoringEpisode) }},
		{Name: "assistance_measure", Version: 1, Topic: canonical("assistance_measure"), New: func() any { return new(AssistanceMeasure) }},
		{Name: "department_fact", Version: 1, Topic: canonical("department_fact"), New: func() any { return new(DepartmentFact) }},
		{Name: "warning", Version: 1, Topic: WarningTopic, New: func() any { return new(Warning) }},
		{Name: "quality_issue", Version: 1, Topic: QualityIssueTopic, New: func() any { return new(QualityIssue) }},
		{Name: "discrepancy", Version: 1, Topic: DiscrepancyTopic, New: func() any { return new(Discrepancy) }},
	}
}

// VersionedTopic is the topic that carries version v of an entity whose version-1
// topic is base: version 1 uses base itself, later versions append ".v<N>" so that
// readers of the old version keep their topic while producers migrate.
func VersionedTopic(base string, v int) string {
	if v <= 1 {
		return base
	}
	return base + ".v" + strconv.Itoa(v)
}
