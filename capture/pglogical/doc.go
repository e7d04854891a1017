// Package pglogical captures row changes from a PostgreSQL database (a department
// source reached through the data-sharing platform) through logical replication with
// the built-in pgoutput plugin, protocol version 2 with streaming of large
// in-progress transactions. It implements capture.Source.
//
// # Setup
//
// Slot and publication are created only by explicit operations: Setup (operator
// command) creates the publication for the configured tables and, with
// SnapshotMode never, the slot; with SnapshotMode initial the first Open creates the
// slot itself (when CreateSlot is set), because the initial load needs the snapshot
// the slot exports on the replication connection that created it. Open fails with an
// error naming the slot or publication when it is missing and creation is off, and
// when a position was saved but its slot is gone. Only Teardown drops anything.
//
// Open checks every table's REPLICA IDENTITY: NOTHING, or DEFAULT without a primary
// key, refuse to start (updates and deletes could not be keyed); DEFAULT and USING
// INDEX start with a warning and shouwang_pglogical_partial_before_images=1 (update
// before-images are absent unless the key changed, delete before-images hold the key
// columns only); FULL gives complete before-images.
//
// # Initial load and its guarantee
//
// A new slot is created with EXPORT_SNAPSHOT; one REPEATABLE READ transaction imports
// that snapshot (SET TRANSACTION SNAPSHOT) on the normal connection while the
// replication connection stays open and idle, and reads every table in primary-key
// order in chunks (keyset pagination; tables without a primary key, possible with
// REPLICA IDENTITY FULL, are read through a cursor and restart from their beginning
// after a crash). Rows are emitted as op "r" with source.snapshot=true and
// source.lsn = the LSN streaming will start from. Streaming then starts at the slot's
// consistent point, so snapshot + stream is exact: every change committed after the
// snapshot is streamed, none before it.
//
// Positions saved during the load hold each table's cursor. An exported snapshot does
// not survive its connection, so after a crash mid-snapshot (or when the slot existed
// but no position was saved) the unfinished tables are read again from their cursor
// with a fresh REPEATABLE READ snapshot, and streaming starts afterwards from the
// slot's position (which never moved past the consistent point during the load).
// Guarantee in that case: nothing is lost and the replayed state converges exactly.
// The fresh snapshot may be newer than the stream's start, so the stream re-delivers
// changes the snapshot rows already contain, and a consumer applying events in order
// may briefly see an older value for a row until the stream passes the snapshot's
// moment. Snapshot rows carry source.lsn = the stream start, which is below every
// streamed commit LSN, so a consumer that keeps the highest version per key
// (version from source.lsn) lets every streamed change win over a snapshot row.
//
// # On-demand re-snapshot
//
// RequestSnapshot("schema.table", where) (`shouwang snapshot`, the consistency
// checker) re-reads a configured table, or the rows matching where, while streaming
// continues: ReadN alternates streamed batches with chunks of at most ChunkSize rows
// in primary-key order. Each chunk is its own REPEATABLE READ, READ ONLY transaction
// on a separate normal connection (pg_current_wal_lsn() at its start is recorded as
// the request's read_lsn); rows are emitted as op "r" with source.snapshot=true.
//
// Ordering guarantee: snapshot rows carry source.lsn = (LSN of the last position the
// stream had handed out when the chunk was read) - 1. Every transaction with a lower
// commit LSN was already decoded and handed out, so it is visible to the chunk;
// every transaction handed out afterwards has a higher commit LSN and follows the
// rows in the topic. So with "highest version per key wins" a change committed after
// the read always beats the snapshot row, and a change the row already contains may
// be re-applied after it, which only moves the row forward to its true latest value.
// (pg_current_wal_lsn() would be the natural stamp but is unsafe: a transaction
// whose commit record precedes it may not yet be visible to the snapshot.) The one
// theoretical gap is a commit decoded by the walsender before its backend made it
// visible; it needs that commit to race the chunk's BEGIN within microseconds.
//
// Durability: the request is checked synchronously (the table must be configured, by
// "schema.table" or by the table alone when unambiguous, and
// have a primary key; where must be one expression, without ';' or comments, and
// EXPLAIN must accept it) and then recorded in the Position ("resnapshot": table,
// where, key cursor), first through a position-only change, then with every chunk;
// streamed changes handed out meanwhile carry the list too. A restart continues
// from the saved cursor, so at most one chunk (or one runner batch, if larger) is
// emitted twice. Identical pending
// requests collapse into one. A chunk query that fails with a syntax, permission or
// data error (class 42/22: the table changed since the request) abandons the request
// with an error in the log instead of stopping the connector.
//
// Trust model for where: it is SQL supplied by an operator (whoever may write to the
// signal topic), spliced into SELECT … WHERE (where) AND key > cursor. It runs as
// the source's user inside a READ ONLY transaction, so it can read what that user
// can read but not write; it is not a boundary against a hostile operator, only
// against mistakes. Protect the signal topic with Kafka ACLs.
//
// # Streaming
//
// Relation messages are tracked per relation id; a changed column set of a captured
// table becomes an op "s" envelope (schema.version incremented, DDL describing the
// new columns) in the transaction that carries it, followed by rows with the new
// columns. Insert/Update/Delete/Truncate become c/u/d/t envelopes; values are decoded
// from pgoutput's text format by type OID (see decodeValue). An unchanged TOASTed
// value is taken from the old row when REPLICA IDENTITY FULL sent one, otherwise the
// column is left out of "after" (absent means unchanged). Row keys are the primary
// key (else the replica identity columns).
//
// Every transaction, including one the server streams before its commit, is buffered
// in memory until its Commit/StreamCommit, and dropped on StreamAbort (only the
// aborted subtransaction's changes when a savepoint rolled back). Change.Position is
// set on the transaction's last change only, to its TransactionEndLSN. Ack sends a
// standby status update with that LSN; periodic status updates repeat the last
// acknowledged LSN, never a later one, except that when a keepalive arrives with no
// transaction open and everything queued before it has been acknowledged, its WAL end
// may be confirmed, so the slot advances on a quiet database. A lost replication
// connection is re-established with backoff (retrying "slot is active" for up to
// ReconnectTimeout) from the last acknowledged LSN; transactions already queued are
// skipped. A value that cannot be decoded (invalid UTF-8 from a SQL_ASCII database,
// malformed JSON) turns its change into a dead letter and the stream continues.
package pglogical
