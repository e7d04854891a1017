package schemas

import "fmt"

// Op is the kind of change an envelope carries.
type Op string

// The change operations. Snapshot reads are distinguished from creates so that a
// consumer can tell a re-read row from a newly inserted one.
const (
	OpCreate   Op = "c"
	OpUpdate   Op = "u"
	OpDelete   Op = "d"
	OpRead     Op = "r"
	OpTruncate Op = "t"
	// OpSchema marks a schema-change event (DDL seen on the source); Before/After are
	// empty and DDL carries the statement.
	OpSchema Op = "s"
)

// Valid reports whether o is one of the known operations.
func (o Op) Valid() bool {
	switch o {
	case OpCreate, OpUpdate, OpDelete, OpRead, OpTruncate, OpSchema:
		return true
	}
	return false
}

// EnvelopeVersion is the version of the envelope format written by this code. Readers
// accept every version up to this one (see schemas/json/envelope.v*.json).
const EnvelopeVersion = 1

// Envelope is one change of one row (or one table, for truncate and schema events).
// It is serialised as JSON (UTF-8); the Kafka message key is the entity key so that
// all changes of one entity stay ordered in one partition.
type Envelope struct {
	// V is the envelope format version (EnvelopeVersion when written by this code).
	V int `json:"v"`
	// Op is the change kind.
	Op Op `json:"op"`
	// Source says where and when the change happened.
	Source Source `json:"source"`
	// Key holds the primary-key columns of the row (column name → value).
	Key map[string]any `json:"key,omitempty"`
	// Before is the row before an update or delete (nil when the source cannot tell).
	Before map[string]any `json:"before,omitempty"`
	// After is the row after a create, update or snapshot read.
	After map[string]any `json:"after,omitempty"`
	// Schema names the row's schema (for raw topics: the source table's schema
	// version as tracked by capture; for canonical topics: the entity schema).
	Schema SchemaRef `json:"schema"`
	// DDL is the statement of a schema-change event.
	DDL string `json:"ddl,omitempty"`
	// TsMs is when Shouwang produced the envelope (Unix milliseconds).
	TsMs int64 `json:"ts_ms"`
}

// SchemaRef names a schema and its version.
type SchemaRef struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
}

// Source describes the origin of a change. Exactly one of the position groups is
// filled, according to Kind.
type Source struct {
	// System is the configured source name (e.g. "national", "yibao").
	System string `json:"system"`
	// Kind is the connector kind: mysqlbinlog, pglogical, poll or filedrop.
	Kind string `json:"kind"`
	// DB and Table name the source table (for files: the dataset name as Table).
	DB    string `json:"db,omitempty"`
	Table string `json:"table"`

	// MySQL/MariaDB binlog position.
	BinlogFile string `json:"binlog_file,omitempty"`
	BinlogPos  uint32 `json:"binlog_pos,omitempty"`
	GTID       string `json:"gtid,omitempty"`
	// PostgreSQL log sequence number, as text (e.g. "0/16B3748").
	LSN string `json:"lsn,omitempty"`
	// File delivery position.
	File string `json:"file,omitempty"`
	Line int64  `json:"line,omitempty"`
	// Poll watermark (incrementing column value or timestamp, as text).
	Watermark string `json:"watermark,omitempty"`

	// Snapshot is true for rows read by a snapshot rather than from the change stream.
	Snapshot bool `json:"snapshot,omitempty"`
	// CommitMs is the source commit time (Unix milliseconds), when known.
	CommitMs int64 `json:"commit_ms,omitempty"`
	// Seq orders events inside one source position (row index in a transaction).
	Seq int64 `json:"seq,omitempty"`
}

// Validate checks the fields every consumer relies on.
func (e *Envelope) Validate() error {
	return e.validate(len(e.Key) > 0, len(e.Before) > 0, len(e.After) > 0)
}

// validate is Validate with whether the key, before and after maps are non-empty
// given (UnmarshalEnvelopeCells builds no maps).
func (e *Envelope) validate(key, before, after bool) error {
	if e.V < 1 || e.V > EnvelopeVersion {
		return fmt.Errorf("envelope: unsupported version %d (this build reads 1..%d)", e.V, EnvelopeVersion)
	}
	if !e.Op.Valid() {
		return fmt.Errorf("envelope: field op: unknown operation %q (want c, u, d, r, t or s)", e.Op)
	}
	if e.Source.System == "" || e.Source.Table == "" {
		return fmt.Errorf("envelope: field source: system and table are required")
	}
	switch e.Op {
	case OpCreate, OpRead, OpUpdate:
		// len, not nil: an empty map is omitted on encoding and would come back as nil.
		if !after {
			return fmt.Errorf("envelope: op %q needs field after", e.Op)
		}
	case OpDelete:
		if !before && !key {
			return fmt.Errorf("envelope: op d needs field before or key")
		}
	}
	return nil
}

// UnmarshalEnvelope decodes and validates one envelope. Numbers are kept as
// json.Number so that large integers and decimals survive unchanged. Decoding follows
// encoding/json with UseNumber exactly (see envelope_decode.go) without its
// reflection, except that bytes after the envelope other than whitespace are refused:
// a Kafka message holds one envelope. Errors start with "envelope: decode: " and give
// the field and byte offset (a *DecodeError), or are Validate's.
func UnmarshalEnvelope(b []byte) (*Envelope, error) {
	var e Envelope
	if err := decodeEnvelope(b, &e); err != nil {
		return nil, fmt.Errorf("envelope: decode: %w", err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}
