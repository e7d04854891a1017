// Package capture holds what every source connector shares: the Source contract, the
// runner that produces changes to Kafka and commits source positions only after Kafka
// acknowledged them, and the position store. One sub-package per source kind
// (mysqlbinlog, pglogical, poll, filedrop) implements Source.
package capture

import (
	"context"

	"github.com/shouwang/shouwang/schemas"
)

// Position is a connector-owned, opaque, versioned JSON document saying how far a
// source has been read (binlog file+pos/GTID, LSN, per-table snapshot cursor, file
// checksum+line, poll watermark). The runner stores it and hands it back on restart.
type Position []byte

// Change is one event read from a source, ready to be produced.
type Change struct {
	// Topic is the Kafka topic the event goes to (schemas.RawTopic for row changes).
	Topic string
	// Key is the Kafka message key: the entity's primary key, encoded stably, so that
	// every change of one row lands in one partition in order.
	Key []byte
	// Envelope is the change itself.
	Envelope schemas.Envelope
	// Position is the source position to commit once this change and every change
	// before it have been acknowledged by Kafka. It may be nil for changes inside a
	// transaction when only the transaction's last change can be committed.
	Position Position
	// DeadLetter, when set, marks a record the source could read but not turn into a
	// valid change (invalid text for the charset, a zero date, a malformed file row).
	// The runner sends it to the capture DLQ topic instead of Topic, counts it in
	// shouwang_dlq_records_total{stage="capture",reason=DeadLetterReason}, and keeps
	// going; Envelope may be partial. Position still applies, so the stream moves on.
	DeadLetter *schemas.DLQRecord
	// PositionOnly marks a change that carries nothing to produce, only a Position to
	// commit (a heartbeat on a quiet source, the end of a skipped transaction), so that
	// the saved position and the source's retained log keep moving.
	PositionOnly bool
	// DeadLetterReason is a short, bounded-cardinality code for metrics
	// (e.g. "invalid_text", "zero_date", "bad_row"); the full text is DeadLetter.Reason.
	DeadLetterReason string
}

// Source is one connector instance. Snapshot and streaming are two phases behind one
// iterator; the connector records its consistency anchor before the snapshot and
// switches to streaming only after every snapshot change was acknowledged.
type Source interface {
	// Open connects and positions the source just after last (nil: from the start,
	// according to the configured snapshot mode). Open must not create replication
	// slots or publications as a side effect unless configured to.
	Open(ctx context.Context, last Position) error
	// ReadN returns at least one and at most max changes, blocking until some are
	// available or ctx is done. It never returns (nil, nil).
	ReadN(ctx context.Context, max int) ([]Change, error)
	// Ack tells the source that every change up to and including upTo is durable in
	// Kafka, so it may release resources (e.g. confirm a PostgreSQL LSN).
	Ack(ctx context.Context, upTo Position) error
	// Close releases connections. It is safe to call after a failed Open.
	Close() error
}
