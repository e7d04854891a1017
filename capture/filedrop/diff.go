package filedrop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Spool record kinds: the change operations plus dead letters.
const (
	spoolCreate byte = 'c'
	spoolUpdate byte = 'u'
	spoolDelete byte = 'd'
	spoolDead   byte = 'x'
)

// maxReportProblems bounds the problems listed in a report (the counts are exact).
const maxReportProblems = 1000

// outcome is what preparing a delivery decided.
type outcome int

const (
	outcomeReady    outcome = iota // events spooled, state written, waiting to be emitted and acked
	outcomeRejected                // the file is broken; nothing emitted
	outcomeHeld                    // the mass-delete breaker tripped; nothing emitted
)

// delivery is one file being turned into changes. Its events are spooled on disk in
// their final order, so memory stays bounded and a re-run reproduces them exactly.
type delivery struct {
	name, path, sha string
	outcome         outcome
	problems        []problem
	problemCount    int
	reason          string

	spoolPath    string
	newStatePath string
	oldFields    []string
	newFields    []string
	keyFields    []string
	trailer      stateTrailer

	rows, badRows                    int64
	creates, updates, deletes, deads int64
	prevRows, unchanged, total       int64
	emitted                          int64
	// unkeyed counts bad rows whose key could not be read; withheld counts the
	// deletes they made uncertain (see prepare); kept counts previous versions kept
	// for bad rows.
	unkeyed, withheld, kept int64
	summaryRows             int64 // totals rows (合计 …) skipped
	dupIdentical            int64 // rows identical to an earlier row of the same key, ignored
	dupConflicts            int64 // rows repeating a key with other values, set aside
	oldTypes                map[string]ColumnType
	keyCols                 []string
	scrub                   func(string) string
	spoolF                  *os.File
	spoolR                  *bufio.Reader
}

func (d *delivery) addProblem(p problem) {
	d.problemCount++
	if len(d.problems) < maxReportProblems {
		d.problems = append(d.problems, p)
	}
}

func (d *delivery) reject(reason string, ps ...problem) *delivery {
	d.outcome = outcomeRejected
	d.reason = reason
	for _, p := range ps {
		d.addProblem(p)
	}
	return d
}

// spoolWriter appends change records to the spool file.
type spoolWriter struct {
	w   *bufio.Writer
	buf []byte
}

func (s *spoolWriter) add(op byte, line int64, key, a, b []byte) error {
	s.buf = append(s.buf[:0], op)
	s.buf = binary.AppendUvarint(s.buf, uint64(line))
	for _, x := range [][]byte{key, a, b} {
		s.buf = binary.AppendUvarint(s.buf, uint64(len(x)))
		s.buf = append(s.buf, x...)
	}
	_, err := s.w.Write(s.buf)
	return err
}

// spoolRecord is one decoded spool record.
type spoolRecord struct {
	op   byte
	line int64
	key  string
	a, b []byte
}

func readSpool(r *bufio.Reader) (spoolRecord, error) {
	var rec spoolRecord
	op, err := r.ReadByte()
	if err != nil {
		return rec, err
	}
	rec.op = op
	line, err := binary.ReadUvarint(r)
	if err != nil {
		return rec, fmt.Errorf("read spool: %w", err)
	}
	rec.line = int64(line)
	var parts [3][]byte
	for i := range parts {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return rec, fmt.Errorf("read spool: %w", err)
		}
		parts[i] = make([]byte, n)
		if _, err := io.ReadFull(r, parts[i]); err != nil {
			return rec, fmt.Errorf("read spool: %w", err)
		}
	}
	rec.key, rec.a, rec.b = string(parts[0]), parts[1], parts[2]
	return rec, nil
}

// prepare reads, sorts and diffs one delivery file against the dataset's state.
// Outcomes other than ready leave nothing behind but the returned report data.
//
// A bad row never deletes: every row that is rejected (unreadable, wrong field
// count, bad value, too long, conflicting duplicate key) keeps its key's previous
// version — no d, no u. Its key is taken from the row where it can be read (for a
// row with a wrong field count, also counted from the row's end); when a bad row's
// key cannot be read at all, the delivery cannot prove that any previous row is
// really absent, so its deletes are withheld (the rows stay, the report and
// shouwang_filedrop_deletes_withheld_total say how many) until a delivery without
// such rows.
func prepare(ctx context.Context, ds *DatasetOptions, tmpDir, path string, scan *fileScan, released bool, scrub func(string) string) (*delivery, error) {
	d := &delivery{name: filepath.Base(path), path: path, sha: scan.sha, keyFields: ds.Key, scrub: scrub}
	tr, err := openTable(path, ds, scan)
	if err != nil {
		return d.reject(fmt.Sprintf("cannot read the file: %v", err)), nil
	}
	defer tr.Close()
	header := tr.Header()
	m, probs := newMapper(ds, header)
	if len(probs) > 0 {
		reason := "the header does not match the configured columns"
		if len(header) == 1 && len(ds.Columns) > 1 {
			reason = fmt.Sprintf("the header has a single column (read as %s): wrong delimiter or not a table", tr.Describe())
		}
		return d.reject(reason, probs...), nil
	}
	d.newFields = m.fields
	d.keyCols = keyColumns(m)

	spoolF, err := os.Create(filepath.Join(tmpDir, "spool"))
	if err != nil {
		return nil, fmt.Errorf("create spool: %w", err)
	}
	d.spoolPath = spoolF.Name()
	ok := false
	defer func() {
		if !ok {
			spoolF.Close()
			os.Remove(d.spoolPath)
			d.spoolPath = ""
		}
	}()
	sp := &spoolWriter{w: bufio.NewWriterSize(spoolF, 1<<20)}
	srt := newSorter(tmpDir, ds.SortBufferBytes)
	defer srt.cleanup()

	var keyBuf, blobBuf []byte
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		row, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return d.reject(fmt.Sprintf("cannot read the file (%s): %v", tr.Describe(), err)), nil
		}
		d.rows++
		var bad *problem
		if row.Problem != "" {
			bad = &problem{Column: row.Column, Reason: row.Problem}
			for fi, h := range m.hdr {
				if h == row.Column && row.Column != "" {
					bad.Field = m.fields[fi]
				}
			}
		} else if m.summaryRow(row.Fields) {
			d.summaryRows++
			continue
		} else {
			bad = m.normalize(row.Fields)
		}
		if bad == nil {
			k, kp, kok := m.key(keyBuf)
			keyBuf = k
			if !kok {
				bad = kp
			} else {
				op := opUpsert
				if ds.Delivery == DeliveryIncremental {
					op = m.op(row.Fields)
				}
				blobBuf = m.blob(blobBuf)
				if err := srt.add(k, row.Line, op, blobBuf); err != nil {
					return nil, err
				}
				continue
			}
		}
		bad.Line = row.Line
		if err := d.dead(sp, *bad, row.raw()); err != nil {
			return nil, err
		}
		keys := m.candidateKeys(row.Fields)
		for _, k := range keys {
			if err := srt.add(k, row.Line, opKeep, nil); err != nil {
				return nil, err
			}
		}
		if len(keys) == 0 {
			d.unkeyed++
		}
	}
	// A header-only file is a real delivery ("no records this month"): incremental, it
	// changes nothing; full, it deletes every previous row, which the mass-delete
	// breaker below holds for an operator whenever there were any.
	if d.tooManyBad(ds) {
		return d.reject(fmt.Sprintf("%d of %d rows are bad (more than %.0f%%): wrong layout, delimiter or encoding? (read as %s)", d.badRows, d.rows, ds.MaxBadRowShare*100, tr.Describe())), nil
	}

	it, err := srt.iterate()
	if err != nil {
		return nil, err
	}
	defer it.close()
	old, err := openState(statePath(ds.StateDir, ds.Name), ds.Name)
	if err != nil {
		return nil, err
	}
	defer old.close()
	d.oldFields = old.trailer.Fields
	d.oldTypes = old.trailer.Types
	d.prevRows = old.trailer.Rows
	d.newStatePath = filepath.Join(tmpDir, "next.state")
	nw, err := createState(d.newStatePath)
	if err != nil {
		return nil, err
	}
	if err := d.join(ctx, ds, m, it, old, nw, sp); err != nil {
		nw.abort()
		return nil, err
	}
	if d.tooManyBad(ds) {
		nw.abort()
		return d.reject(fmt.Sprintf("%d of %d rows are bad (more than %.0f%%), %d of them rows repeating a key with other values (key %s)", d.badRows, d.rows, ds.MaxBadRowShare*100, d.dupConflicts, strings.Join(d.keyCols, " + "))), nil
	}
	full := ds.Delivery == DeliveryFull
	if full && !released && ds.MaxDeleteShare < 1 && d.prevRows > 0 && float64(d.deletes) > ds.MaxDeleteShare*float64(d.prevRows) {
		nw.abort()
		d.outcome = outcomeHeld
		d.reason = fmt.Sprintf("the delivery would delete %d of %d previous rows (%.1f%%, limit %.1f%%); check it with the department, then release it", d.deletes, d.prevRows, 100*float64(d.deletes)/float64(d.prevRows), 100*ds.MaxDeleteShare)
		return d, nil
	}
	t := old.trailer
	t.V, t.Dataset, t.Fields, t.Types = stateVersion, ds.Name, m.fields, m.typeMap()
	t.Accepted = append(append([]acceptedFile(nil), t.Accepted...), acceptedFile{SHA256: scan.sha, File: d.name})
	if len(t.Accepted) > maxAccepted {
		t.Accepted = t.Accepted[len(t.Accepted)-maxAccepted:]
	}
	d.trailer = t
	if err := nw.finish(t); err != nil {
		nw.abort()
		return nil, err
	}
	d.trailer.Rows = nw.rows
	if err := sp.w.Flush(); err != nil {
		return nil, fmt.Errorf("write spool: %w", err)
	}
	if _, err := spoolF.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind spool: %w", err)
	}
	d.total = d.deads + d.creates + d.updates + d.deletes
	d.spoolF = spoolF
	d.spoolR = bufio.NewReaderSize(spoolF, 1<<20)
	d.outcome = outcomeReady
	ok = true
	return d, nil
}

// tooManyBad reports whether more than MaxBadRowShare of the rows are bad: a sign of
// a wrong layout rather than a few bad values.
func (d *delivery) tooManyBad(ds *DatasetOptions) bool {
	return d.badRows > 0 && float64(d.badRows) > ds.MaxBadRowShare*float64(d.rows)
}

// dead spools a dead letter for a bad row: where (line, column), why, and the row as
// delivered, with ID numbers and phones protected (d.scrub).
func (d *delivery) dead(sp *spoolWriter, p problem, raw []byte) error {
	d.badRows++
	d.deads++
	p.Reason = d.scrub(p.Reason)
	d.addProblem(p)
	col := ""
	if p.Column != "" || p.Field != "" {
		col = columnName(p.Column, p.Field)
	}
	payload := d.scrub(strings.ToValidUTF8(string(raw), "\uFFFD"))
	if err := sp.add(spoolDead, p.Line, []byte(col), []byte(p.Reason), []byte(payload)); err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	return nil
}

// keyColumns names the key columns as the department wrote them, for messages.
func keyColumns(m *mapper) []string {
	var out []string
	for _, fi := range m.keyIdx {
		out = append(out, columnName(m.hdr[fi], m.fields[fi]))
	}
	return out
}

// join merge-joins the sorted delivery with the sorted previous state, writing the
// next state and the change events. The rows of one key are taken together: rows
// that only keep (bad rows) keep the previous version; one row, or several identical
// ones, apply; rows repeating the key with different values all go to the
// dead-letter stream and the previous version is kept.
func (d *delivery) join(ctx context.Context, ds *DatasetOptions, m *mapper, it iterator, old *stateReader, nw *stateWriter, sp *spoolWriter) error {
	full := ds.Delivery == DeliveryFull
	oKey, oBlob, oOK, err := old.next()
	if err != nil {
		return err
	}
	// Old rows are compared by their bytes; when the field list or the field types
	// changed, a row is re-encoded in the new layout first (decode, normalise anew).
	same := d.oldFields == nil || (equalStrings(d.oldFields, d.newFields) && sameTypes(d.oldTypes, m.typeMap()))
	reencode := func(blob []byte) ([]byte, error) {
		if same {
			return blob, nil
		}
		mm, err := decodeBlob(d.oldFields, blob)
		if err != nil {
			return nil, err
		}
		var out []byte
		for fi, f := range d.newFields {
			v, _ := mm[f].(string)
			if n, err := normalizeValue(m.types[fi], v); err == nil {
				v = n
			}
			out = binary.AppendUvarint(out, uint64(len(v)))
			out = append(out, v...)
		}
		return out, nil
	}
	keepOld := func() error {
		b, err := reencode(oBlob)
		if err != nil {
			return err
		}
		return nw.add(oKey, b)
	}
	oldOnly := func() error {
		switch {
		case !full:
			return keepOld()
		case d.unkeyed > 0:
			d.withheld++
			return keepOld()
		}
		d.deletes++
		return sp.add(spoolDelete, 0, oKey, oBlob, nil)
	}
	e, eOK, err := it.next()
	if err != nil {
		return err
	}
	var key, firstBlob []byte
	for n := 0; eOK; n++ {
		if n%65536 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		key = append(key[:0], e.Key...)
		var first entry
		haveFirst, conflict := false, false
		var keepLine int64 // first bad row of the key
		for eOK && bytes.Equal(e.Key, key) {
			switch {
			case e.Op == opKeep:
				if keepLine == 0 {
					keepLine = e.Line
				}
				if haveFirst && !conflict {
					// A good row and a bad row of one key: which is right is unknown.
					conflict = true
					if err := d.duplicateOfBad(sp, m, first, keepLine); err != nil {
						return err
					}
				}
			case !haveFirst:
				firstBlob = append(firstBlob[:0], e.Blob...)
				first, haveFirst = entry{Key: key, Line: e.Line, Op: e.Op, Blob: firstBlob}, true
				if keepLine > 0 {
					conflict = true
					if err := d.duplicateOfBad(sp, m, first, keepLine); err != nil {
						return err
					}
				}
			case conflict:
				if err := d.duplicate(sp, m, e, first.Line); err != nil {
					return err
				}
			case e.Op == first.Op && bytes.Equal(e.Blob, first.Blob):
				d.dupIdentical++
				d.addProblem(problem{Line: e.Line, Reason: fmt.Sprintf("the same row as line %d (identical duplicate, ignored)", first.Line)})
			default:
				if !conflict {
					conflict = true
					if err := d.duplicate(sp, m, first, first.Line); err != nil {
						return err
					}
				}
				if err := d.duplicate(sp, m, e, first.Line); err != nil {
					return err
				}
			}
			if e, eOK, err = it.next(); err != nil {
				return err
			}
		}
		for oOK && bytes.Compare(oKey, key) < 0 {
			if err := oldOnly(); err != nil {
				return err
			}
			if oKey, oBlob, oOK, err = old.next(); err != nil {
				return err
			}
		}
		hasOld := oOK && bytes.Equal(oKey, key)
		switch {
		case !haveFirst || conflict:
			// Only bad rows, or conflicting ones: the previous version stays.
			if hasOld {
				d.kept++
				err = keepOld()
			}
		case hasOld:
			var ob []byte
			if ob, err = reencode(oBlob); err != nil {
				return err
			}
			switch {
			case first.Op == opDelete:
				d.deletes++
				err = sp.add(spoolDelete, first.Line, key, oBlob, nil)
			case bytes.Equal(ob, first.Blob):
				d.unchanged++
				err = nw.add(key, first.Blob)
			default:
				d.updates++
				if err = sp.add(spoolUpdate, first.Line, key, oBlob, first.Blob); err == nil {
					err = nw.add(key, first.Blob)
				}
			}
		case first.Op == opDelete:
			// Unknown key: still tell consumers, deletes are idempotent downstream.
			d.deletes++
			err = sp.add(spoolDelete, first.Line, key, nil, nil)
		default:
			d.creates++
			if err = sp.add(spoolCreate, first.Line, key, nil, first.Blob); err == nil {
				err = nw.add(key, first.Blob)
			}
		}
		if err != nil {
			return err
		}
		if hasOld {
			if oKey, oBlob, oOK, err = old.next(); err != nil {
				return err
			}
		}
	}
	for oOK {
		if err := oldOnly(); err != nil {
			return err
		}
		if oKey, oBlob, oOK, err = old.next(); err != nil {
			return err
		}
	}
	return nil
}

// duplicate spools the dead letter of a row whose key another row repeats with
// other values.
func (d *delivery) duplicate(sp *spoolWriter, m *mapper, e entry, firstLine int64) error {
	reason := fmt.Sprintf("duplicate key %s = %s: lines %d and %d give it different values; both rows are set aside and the previous version is kept",
		strings.Join(d.keyCols, " + "), maskKey(string(e.Key)), firstLine, e.Line)
	if e.Line == firstLine {
		reason = fmt.Sprintf("duplicate key %s = %s: later lines repeat it with different values; the rows are set aside and the previous version is kept",
			strings.Join(d.keyCols, " + "), maskKey(string(e.Key)))
	}
	return d.duplicateRow(sp, m, e, reason)
}

// duplicateOfBad spools the dead letter of a good row whose key a bad row has too.
func (d *delivery) duplicateOfBad(sp *spoolWriter, m *mapper, e entry, badLine int64) error {
	return d.duplicateRow(sp, m, e, fmt.Sprintf("duplicate key %s = %s: line %d repeats the key of the bad row on line %d; the row is set aside and the previous version is kept",
		strings.Join(d.keyCols, " + "), maskKey(string(e.Key)), e.Line, badLine))
}

// duplicateRow spools a duplicate's dead letter; its payload is the row's values by
// field name.
func (d *delivery) duplicateRow(sp *spoolWriter, m *mapper, e entry, reason string) error {
	d.dupConflicts++
	vals, err := decodeBlob(m.fields, e.Blob)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(vals)
	if err != nil {
		return err
	}
	return d.dead(sp, problem{Line: e.Line, Reason: reason}, payload)
}

func sameTypes(a, b map[string]ColumnType) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// maskKey hides the middle of a key value (keys are often ID numbers) for reports
// and logs, keeping enough to find the row.
func maskKey(k string) string {
	r := []rune(strings.ReplaceAll(k, keySep, "+"))
	if len(r) <= 4 {
		return strings.Repeat("*", len(r))
	}
	keep := 2
	if len(r) >= 10 {
		keep = 4
	}
	return string(r[:keep]) + strings.Repeat("*", len(r)-2*keep) + string(r[len(r)-keep:])
}
