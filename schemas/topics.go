package schemas

import (
	"fmt"
	"strings"
)

// Topic naming: every topic starts with the configured prefix (e.g. "sc" for Sichuan,
// or "sc.prod"), then the stream kind, then its qualifiers, all separated by dots:
//
//	<p>.raw.<source>.<table>     changes captured from one source table
//	<p>.canonical.<entity>       canonical entities (household, person, …)
//	<p>.warning                  department screening warnings
//	<p>.quality_issue            supervision / data-quality issues
//	<p>.discrepancy              department discrepancies (行业数据比对)
//	<p>.dlq.<stage>              records a stage could not process, with the reason
//	<p>.signal                   control signals (re-snapshot requests, …)
//
// Names use only [a-z0-9_], so source and table names are lower-cased and any other
// character becomes "_".

// TopicPart lower-cases s and replaces each run of characters other than [a-z0-9_]
// with one "_". It runs once per captured change, so it avoids regexp and allocates
// nothing when s is already a valid part.
func TopicPart(s string) string {
	valid := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			valid = false
			break
		}
	}
	if valid {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	inRun := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
			inRun = false
		} else if !inRun {
			b.WriteByte('_')
			inRun = true
		}
	}
	return b.String()
}

// RawTopic is the topic of one captured source table.
func RawTopic(prefix, source, table string) string {
	return fmt.Sprintf("%s.raw.%s.%s", prefix, TopicPart(source), TopicPart(table))
}

// CanonicalTopic is the topic of one canonical entity.
func CanonicalTopic(prefix, entity string) string {
	return fmt.Sprintf("%s.canonical.%s", prefix, TopicPart(entity))
}

// DLQTopic is the dead-letter topic of one stage (e.g. "capture", "transform", "sink").
func DLQTopic(prefix, stage string) string {
	return fmt.Sprintf("%s.dlq.%s", prefix, TopicPart(stage))
}

// WarningTopic, QualityIssueTopic, DiscrepancyTopic and SignalTopic name the derived
// and control streams.
func WarningTopic(prefix string) string      { return prefix + ".warning" }
func QualityIssueTopic(prefix string) string { return prefix + ".quality_issue" }
func DiscrepancyTopic(prefix string) string  { return prefix + ".discrepancy" }
func SignalTopic(prefix string) string       { return prefix + ".signal" }

// CaptureLeaseTopic is the one-partition topic whose consumer groups decide which
// capture process is active for a source (config capture.standby); nothing is written
// to it.
func CaptureLeaseTopic(prefix string) string { return prefix + ".capture.lease" }

// DLQRecord is what a dead-letter topic carries: the original message, where it came
// from and why it could not be processed.
type DLQRecord struct {
	Stage     string `json:"stage"`
	Reason    string `json:"reason"`
	Source    string `json:"source,omitempty"` // source name, topic or file
	Position  string `json:"position,omitempty"`
	Key       string `json:"key,omitempty"`
	Payload   []byte `json:"payload,omitempty"`
	Partition int    `json:"partition,omitempty"`
	Offset    int64  `json:"offset,omitempty"`
	TsMs      int64  `json:"ts_ms"`
}
