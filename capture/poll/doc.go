// Package poll captures departments' read-only views (or tables) on PostgreSQL or
// MySQL/MariaDB by querying them periodically, for departments that expose no change
// stream. Each configured query becomes the raw topic <prefix>.raw.<source>.<name> with
// envelopes of source.kind "poll" (source.watermark = the row's Column value).
//
// # Finding changed rows
//
// Both modes page with a keyset over (Column, key columns), never with OFFSET:
//
//	WHERE Column IS NOT NULL AND (Column, k1, …) > (:watermark, :k1, …)
//	ORDER BY Column, k1, … LIMIT BatchSize
//
// so any number of rows sharing one Column value are read exactly once, across batch
// boundaries, and a restart resumes after the last row handed to Kafka.
//
// Incrementing mode suits views whose Column only grows (an id, a version counter). It
// cannot see a row whose Column value is below the watermark when it becomes visible
// (an auto-increment id allocated early but committed late); use timestamp mode for
// views with concurrent writers.
//
// Timestamp mode adds "AND Column <= now() - SafetyLag", with now() read from the
// DATABASE clock (PostgreSQL now() for timestamptz, LOCALTIMESTAMP for timestamp and
// date; MySQL NOW(6)), so the poller's own clock never matters. The guarantee: a row
// is never missed if the transaction that wrote it commits within SafetyLag (database
// time) of the Column value it wrote. Such a row has Column <= commit time <=
// Column + SafetyLag, so every poll whose bound reached Column started after the row was
// committed and saw it; the watermark never passes a bound. Rows committed later than
// that, rows whose Column is set from a clock running behind the database by more than
// SafetyLag, and updates that do not bump Column are not seen by the incremental poll
// (delete detection does not catch them either). Rows with NULL Column are never read.
// The key columns must be unique and NOT NULL, and for MySQL compared with a
// case-sensitive (or binary) collation, or keys equal under the collation are merged.
//
// # Telling creates from updates: the key store
//
// A poll sees only current rows. To emit c for a key never seen, u (with the before
// image) for a changed row, nothing for an unchanged re-read, and d with the before
// image for a vanished key, the source keeps every key's last emitted row and its
// SHA-256 (first 16 bytes) in the table shouwang_poll_rows of a PostgreSQL database
// owned by Shouwang (Options.StateDSN, normally the database holding
// shouwang_source_positions). A table was chosen over an on-disk file because:
//   - memory stays flat for millions of keys (lookups are one indexed
//     "key = ANY($keys)" query per batch);
//   - the rows and the position they correspond to (shouwang_poll_state) change in one
//     transaction, which a hand-written file store would need a write-ahead log for;
//   - delete detection is an anti-join in the database: the view's keys are streamed
//     (COPY) into a temporary table, so neither side must be sorted in the same
//     collation and nothing is held in memory;
//   - capture workers may move between hosts, like with the PostgreSQL position store.
//
// The department database is only ever read (SELECT); it often is a read-only account.
//
// # Positions and at-least-once
//
// The Position is {"v":1,"seq":N,"queries":{name:{"watermark","key","last_full_scan"}}}.
// It rides on the last change of every batch; the runner saves it after Kafka
// acknowledged the batch and then calls Ack, which commits the batch's key-store writes
// together with that position. Until then the writes live in an in-memory overlay that
// later polls consult first (so a row changed twice before an Ack still compares with
// its newest emitted state). On Open:
//   - no saved position: the source's key store is cleared and every row is read again
//     as c (an operator's way to re-snapshot);
//   - key store behind the saved position (crash between save and Ack): reading
//     resumes from the key store's position and the rows in between are emitted again;
//   - otherwise reading resumes after the saved watermark; rows re-read inside the
//     at-least-once window are compared with the store and emit nothing when unchanged.
//
// # Deletes
//
// With DeleteDetection enabled, every Interval the source streams all keys of the view
// and anti-joins them with the stored keys; each stored key not in the view becomes a d
// event with the stored row as before. If the deletes exceed MaxDeleteShare of the
// stored keys the scan is held: nothing is emitted, an error is logged and
// shouwang_poll_deletes_held_total counts it; the scan is retried at the next interval.
// A key deleted and later re-inserted is emitted as c. The queued deletes of one scan
// are held in memory (at most MaxDeleteShare of the keys).
//
// # On-demand re-snapshot
//
// RequestSnapshot(query, where) (`shouwang snapshot --table <query name>`) re-reads
// every row of the query's view, or the rows matching where, in key order (keyset
// chunks of BatchSize, alternating with the regular polls), and emits each as op r
// with source.snapshot=true, no before image and the current values, whether or not
// the key store says it changed. r for every row was chosen over u-if-changed so that
// downstream can reconcile against a complete picture (and so that a row changed
// without bumping Column, which polls cannot see, is corrected). The rows are written
// to the key store like polled rows, so the next poll compares with them. Rows that
// vanished are not reported by a re-snapshot: that is delete detection's job.
//
// Durability: the request goes into the position document ("resnapshot": query,
// where, key cursor) through a position-only change before any row is read, and
// every chunk's position carries the cursor, so a restart continues after the last
// acknowledged chunk (what repeats is at most one chunk or one runner batch, whichever
// is larger). Identical pending requests collapse.
// A chunk query that fails (the view changed) abandons the request with an error in
// the log; the source keeps running.
//
// Trust model for where: operator-supplied SQL (whoever may write the signal topic)
// spliced into SELECT … WHERE (where) AND key > cursor; it is refused when it holds
// ';', "--", "/*" or "#", and checked synchronously with SELECT 1 … LIMIT 0 so typos
// are refused at once. It runs with the poller's (normally read-only) account; the
// checks guard against mistakes, not against a hostile operator: protect the signal
// topic with Kafka ACLs.
//
// # Values
//
// Values become JSON-able: integers stay numbers, NUMERIC/DECIMAL become strings,
// DATE is "2006-01-02", zone-less TIMESTAMP/DATETIME "2006-01-02 15:04:05[.ffffff]",
// TIMESTAMPTZ RFC 3339 in UTC, character data (bytes from MySQL) UTF-8 strings, binary
// columns bytes (base64 in JSON), JSON columns their text. A row with a value that
// cannot be converted (invalid UTF-8, zero date, NaN) becomes a dead letter
// (Change.DeadLetter, reason invalid_text, zero_date, bad_number, bad_time) and the
// stream moves on; it is not stored, so it is emitted once fixed and re-stamped.
//
// Metrics: shouwang_poll_rows_total, shouwang_poll_events_total{op},
// shouwang_poll_duration_seconds{kind=poll|scan}, shouwang_poll_watermark_lag_seconds,
// shouwang_poll_deletes_held_total, all labelled by source and query.
package poll
