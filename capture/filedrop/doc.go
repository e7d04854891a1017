// Package filedrop captures department file deliveries (医保, 残联, 民政 …): monthly CSV
// (UTF-8 or GB18030/GBK, delimiter , ; tab |), XLSX or legacy XLS (Excel 97-2003)
// files dropped into one inbox folder per dataset, possibly on a mounted SFTP share.
//
// Each settled file (size and mtime unchanged for SettleAge, or a "<file>.done" marker)
// becomes an ordered sequence of change envelopes (source.kind "filedrop", source.file
// and source.line, schema name = dataset):
//
//   - full deliveries are diffed against the previous accepted delivery into c/u/d,
//     with the before image of updates and deletes;
//   - incremental deliveries become c/u, and d where the op column marks a deletion.
//
// Memory stays bounded whatever the delivery size: rows are sorted by key with an
// external merge sort (runs on disk) and merge-joined with the dataset's state file,
// which holds the last accepted rows sorted by key. Changes are spooled to disk in their
// final order: dead letters in file order, then the diff in key order.
//
// Safety: a re-delivered identical file (same SHA-256 as any of the last 1000 accepted
// deliveries, so an old file sent again by mistake cannot revert later ones) emits
// nothing; a delivery is
// committed (state swap, then move to archive/) only when its last change is acked, so
// a crash re-produces the same changes (at-least-once, deterministic) and the position
// {v, dataset, file, sha256, line} resumes mid-file ("line" counts the changes of the
// delivery already emitted). A header-only file is a delivery with no rows. Broken
// files (wrong delimiter, no header at all, corrupt XLSX or XLS,
// missing or unknown columns, merged header cells, duplicate keys) move to rejected/
// with "<file>.report.txt"; a full delivery deleting more than MaxDeleteShare of the
// previous rows moves to held/ until Release is called.
//
// Dead letters: a bad row of an otherwise good file (wrong field count, invalid byte
// sequence, empty key) is emitted in the change sequence as a capture.Change with
// DeadLetter set (reason code "bad_row"; the record names file, line and column), which
// the runner sends to the capture DLQ topic, while the good rows flow; a bad row whose
// key is readable keeps its previous version in the state instead of being deleted.
//
// On-demand re-snapshot: RequestSnapshot(dataset, "") re-emits the dataset's accepted
// state (the state file: the rows of the last accepted delivery, after any held or
// rejected file was set aside) as op r with source.snapshot=true, in key order, with
// source.file naming the delivery the state came from. A condition is refused
// (ErrWhereUnsupported: files have no SQL), as is another dataset's name (every
// dataset of a source sees the signal; only the named one accepts it). The request is
// written at once to "<dataset>.resnapshot" in the state folder, so it survives a
// restart even before it started; it runs when no delivery is in progress, and the
// next delivery waits until it is done. Its positions are {…, "resnapshot": true,
// "sha256": <state identity>, "line": rows re-emitted}; a restart resumes after the
// last acknowledged row when the state is unchanged (else starts over). Acknowledging
// the last row removes the marker, unless a newer request replaced it, which then
// re-emits the state once more.
//
// Spreadsheets: line numbers are sheet row numbers; empty rows are skipped; numbers
// and dates are shown through the cell's number format by excelize, so a date cell
// reads the same from XLSX and XLS (e.g. "2023-05-17" for format YYYY-MM-DD). Legacy
// .xls files are read whole in memory (a BIFF8 sheet has at most 65,536 rows) with
// github.com/shakinm/xlsReader for text cells plus our own BIFF record scanner for
// numbers, formula results (cached values), merged header cells and the 1904 date
// system; the compound file's sector chains are checked before the library sees
// them, and library panics become a "corrupt XLS" rejection. Excel 95 and older
// (BIFF5) and password-protected .xls files are rejected with ErrXLSUnsupported.
package filedrop
