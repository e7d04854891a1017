package filedrop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
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
	spoolF                           *os.File
	spoolR                           *bufio.Reader
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
func prepare(ctx context.Context, ds *DatasetOptions, tmpDir, path, sha string, released bool) (*delivery, error) {
	d := &delivery{name: filepath.Base(path), path: path, sha: sha, keyFields: ds.Key}
	tr, err := openTable(path, ds)
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
	dead := func(row rawRow, reason, column string) error {
		d.badRows++
		d.deads++
		raw := strings.ToValidUTF8(strings.Join(row.Fields, string(rune(','))), "\uFFFD")
		return sp.add(spoolDead, row.Line, []byte(column), []byte(reason), []byte(raw))
	}
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
		if row.Problem != "" {
			if err := dead(row, row.Problem, row.Column); err != nil {
				return nil, fmt.Errorf("write spool: %w", err)
			}
			// A bad value in a non-key column of a well-formed row: keep the
			// previous version of that row rather than deleting it.
			if len(row.Fields) == m.width {
				if k, _, kok := m.key(keyBuf, row.Fields); kok && utf8.Valid(k) && !bytes.ContainsRune(k, utf8.RuneError) {
					keyBuf = k
					if err := srt.add(k, row.Line, opKeep, nil); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		k, col, kok := m.key(keyBuf, row.Fields)
		keyBuf = k
		if !kok {
			if err := dead(row, "key value empty", col); err != nil {
				return nil, fmt.Errorf("write spool: %w", err)
			}
			continue
		}
		op := opUpsert
		if ds.Delivery == DeliveryIncremental {
			op = m.op(row.Fields)
		}
		blobBuf = m.blob(blobBuf, row.Fields)
		if err := srt.add(k, row.Line, op, blobBuf); err != nil {
			return nil, err
		}
	}
	// A header-only file is a real delivery ("no records this month"): incremental, it
	// changes nothing; full, it deletes every previous row, which the mass-delete
	// breaker below holds for an operator whenever there were any.
	if float64(d.badRows) > ds.MaxBadRowShare*float64(d.rows) {
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
	d.prevRows = old.trailer.Rows
	d.newStatePath = filepath.Join(tmpDir, "next.state")
	nw, err := createState(d.newStatePath)
	if err != nil {
		return nil, err
	}
	if err := d.join(ctx, ds, it, old, nw, sp); err != nil {
		nw.abort()
		return nil, err
	}
	if d.problemCount > 0 {
		nw.abort()
		return d.reject(fmt.Sprintf("%d rows repeat a key that appears earlier in the file (key fields %s)", d.problemCount, strings.Join(ds.Key, ", "))), nil
	}
	full := ds.Delivery == DeliveryFull
	if full && !released && ds.MaxDeleteShare < 1 && d.prevRows > 0 && float64(d.deletes) > ds.MaxDeleteShare*float64(d.prevRows) {
		nw.abort()
		d.outcome = outcomeHeld
		d.reason = fmt.Sprintf("the delivery would delete %d of %d previous rows (%.1f%%, limit %.1f%%); check it with the department, then release it", d.deletes, d.prevRows, 100*float64(d.deletes)/float64(d.prevRows), 100*ds.MaxDeleteShare)
		return d, nil
	}
	t := old.trailer
	t.V, t.Dataset, t.Fields = stateVersion, ds.Name, m.fields
	t.Accepted = append(append([]acceptedFile(nil), t.Accepted...), acceptedFile{SHA256: sha, File: d.name})
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

// join merge-joins the sorted delivery with the sorted previous state, writing the
// next state and the change events.
func (d *delivery) join(ctx context.Context, ds *DatasetOptions, it iterator, old *stateReader, nw *stateWriter, sp *spoolWriter) error {
	full := ds.Delivery == DeliveryFull
	oKey, oBlob, oOK, err := old.next()
	if err != nil {
		return err
	}
	var prevKey []byte
	var prevLine int64
	havePrev := false
	// Old rows are compared by their bytes; when the field list changed, a row must be
	// re-encoded in the new order to compare (done by decode + re-encode).
	sameFields := equalStrings(d.oldFields, d.newFields) || d.oldFields == nil
	reencode := func(blob []byte) ([]byte, error) {
		if sameFields {
			return blob, nil
		}
		mm, err := decodeBlob(d.oldFields, blob)
		if err != nil {
			return nil, err
		}
		var out []byte
		for _, f := range d.newFields {
			v, _ := mm[f].(string)
			out = binary.AppendUvarint(out, uint64(len(v)))
			out = append(out, v...)
		}
		return out, nil
	}
	oldOnly := func() error {
		if full {
			d.deletes++
			return sp.add(spoolDelete, 0, oKey, oBlob, nil)
		}
		b, err := reencode(oBlob)
		if err != nil {
			return err
		}
		return nw.add(oKey, b)
	}
	for n := 0; ; n++ {
		if n%65536 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		e, ok, err := it.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if havePrev && bytes.Equal(prevKey, e.Key) {
			d.addProblem(problem{Line: e.Line, Column: strings.Join(ds.Key, "+"), Reason: fmt.Sprintf("duplicate key %s (first on line %d)", maskKey(string(e.Key)), prevLine)})
			continue
		}
		prevKey, prevLine, havePrev = append(prevKey[:0], e.Key...), e.Line, true
		for oOK && bytes.Compare(oKey, e.Key) < 0 {
			if err := oldOnly(); err != nil {
				return err
			}
			if oKey, oBlob, oOK, err = old.next(); err != nil {
				return err
			}
		}
		if oOK && bytes.Equal(oKey, e.Key) {
			ob, err := reencode(oBlob)
			if err != nil {
				return err
			}
			switch {
			case e.Op == opKeep:
				err = nw.add(oKey, ob)
			case e.Op == opDelete:
				d.deletes++
				err = sp.add(spoolDelete, e.Line, e.Key, oBlob, nil)
			case bytes.Equal(ob, e.Blob):
				d.unchanged++
				err = nw.add(e.Key, e.Blob)
			default:
				d.updates++
				if err = sp.add(spoolUpdate, e.Line, e.Key, oBlob, e.Blob); err == nil {
					err = nw.add(e.Key, e.Blob)
				}
			}
			if err != nil {
				return err
			}
			if oKey, oBlob, oOK, err = old.next(); err != nil {
				return err
			}
			continue
		}
		switch e.Op {
		case opKeep:
		case opDelete:
			// Unknown key: still tell consumers, deletes are idempotent downstream.
			d.deletes++
			err = sp.add(spoolDelete, e.Line, e.Key, nil, nil)
		default:
			d.creates++
			if err = sp.add(spoolCreate, e.Line, e.Key, nil, e.Blob); err == nil {
				err = nw.add(e.Key, e.Blob)
			}
		}
		if err != nil {
			return err
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
