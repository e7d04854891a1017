package filedrop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// ErrWhereUnsupported is returned by RequestSnapshot when a condition is given: a
// file dataset's state is not a database, so rows cannot be selected by SQL.
var ErrWhereUnsupported = errors.New("a condition (--where) is not supported for file datasets; re-snapshot the whole dataset")

// reemission is an on-demand re-emission of the dataset's accepted state in progress.
type reemission struct {
	r       *stateReader
	id      string // identity of the state being re-emitted (see stateIdentity)
	file    string // the delivery the state came from, for source.file
	fields  []string
	marker  []byte // request marker content when started: a newer request re-runs
	emitted int64
	total   int64
}

// resnapMarker is the file recording an on-demand re-snapshot request until the
// re-emission's last change is acknowledged.
func resnapMarker(stateDir, dataset string) string {
	return filepath.Join(stateDir, dataset+".resnapshot")
}

// stateIdentity names the accepted state: the last accepted delivery's checksum and
// the row count ("empty" before the first delivery). A resumed re-emission only skips
// rows when the state is still the one it was emitting.
func stateIdentity(t stateTrailer) string {
	if len(t.Accepted) == 0 {
		return "empty"
	}
	return t.Accepted[len(t.Accepted)-1].SHA256 + ":" + strconv.FormatInt(t.Rows, 10)
}

// RequestSnapshot asks for the dataset's current accepted state (the rows of the last
// accepted delivery, as kept in the state file) to be emitted again as op r with
// source.snapshot=true, so downstream can reconcile. table must be this dataset's name;
// where must be empty (ErrWhereUnsupported). The request is recorded at once in a
// marker file in the state folder, so it survives a restart; it starts when no
// delivery is in progress. Safe to call from any goroutine, before or after Open.
func (s *Source) RequestSnapshot(table, where string) error {
	if table != s.ds.Name {
		return fmt.Errorf("filedrop %s: request snapshot: dataset %q is not this connector's (it reads %q)", s.ds.Name, table, s.ds.Name)
	}
	if where != "" {
		return fmt.Errorf("filedrop %s: request snapshot with condition %q: %w", s.ds.Name, where, ErrWhereUnsupported)
	}
	if err := os.MkdirAll(s.ds.StateDir, 0o755); err != nil {
		return fmt.Errorf("filedrop %s: request snapshot: create state folder %s: %w", s.ds.Name, s.ds.StateDir, err)
	}
	path := resnapMarker(s.ds.StateDir, s.ds.Name)
	body := fmt.Appendf(nil, "{\"requested\":%q}\n", time.Now().UTC().Format(time.RFC3339Nano))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return fmt.Errorf("filedrop %s: request snapshot: write %s: %w", s.ds.Name, tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("filedrop %s: request snapshot: install %s: %w", s.ds.Name, path, err)
	}
	s.log.Info("filedrop: re-snapshot requested")
	return nil
}

// startReemission begins re-emitting the state when a request marker exists. It
// reports whether there is anything to emit. Called with s.mu held and s.cur nil.
func (s *Source) startReemission() (bool, error) {
	path := resnapMarker(s.ds.StateDir, s.ds.Name)
	marker, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("filedrop %s: read re-snapshot request %s: %w", s.ds.Name, path, err)
	}
	sr, err := openState(statePath(s.ds.StateDir, s.ds.Name), s.ds.Name)
	if err != nil {
		return false, fmt.Errorf("filedrop %s: re-snapshot: %w", s.ds.Name, err)
	}
	rs := &reemission{r: sr, id: stateIdentity(sr.trailer), fields: sr.trailer.Fields, marker: marker, total: sr.trailer.Rows}
	if n := len(sr.trailer.Accepted); n > 0 {
		rs.file = sr.trailer.Accepted[n-1].File
	}
	if r := s.resume; r != nil && r.Resnapshot {
		s.resume = nil
		if r.SHA256 == rs.id {
			for rs.emitted < min(r.Line, rs.total) {
				if _, _, _, err := sr.next(); err != nil {
					sr.close()
					return false, fmt.Errorf("filedrop %s: re-snapshot: skip to resume line %d: %w", s.ds.Name, r.Line, err)
				}
				rs.emitted++
			}
			s.log.Info("filedrop: resuming re-snapshot", "skipped", rs.emitted, "of", rs.total)
		} else {
			s.log.Warn("filedrop: the state changed since the interrupted re-snapshot; starting it over", "was", r.SHA256, "now", rs.id)
		}
	}
	s.rs = rs
	if rs.emitted >= rs.total {
		return false, s.finishReemission(rs)
	}
	s.log.Info("filedrop: re-emitting the accepted state", "rows", rs.total, "from_file", rs.file)
	return true, nil
}

// finishReemission closes the re-emission and removes the request marker unless a
// newer request replaced it meanwhile (then the state is emitted once more). Called
// with s.mu held.
func (s *Source) finishReemission(rs *reemission) error {
	rs.r.close()
	s.rs = nil
	select {
	case s.committed <- struct{}{}:
	default:
	}
	path := resnapMarker(s.ds.StateDir, s.ds.Name)
	cur, err := os.ReadFile(path)
	if err == nil && bytes.Equal(cur, rs.marker) {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("filedrop %s: re-snapshot done, but removing %s failed: %w (remove it by hand, or the state is emitted again)", s.ds.Name, path, err)
		}
	}
	s.log.Info("filedrop: re-snapshot done", "rows", rs.total)
	return nil
}

// emitReemission turns up to max state rows into r changes. Called with s.mu held.
func (s *Source) emitReemission(rs *reemission, max int) ([]capture.Change, error) {
	out := make([]capture.Change, 0, min(int64(max), rs.total-rs.emitted))
	ts := s.now().UnixMilli()
	for len(out) < max && rs.emitted < rs.total {
		key, blob, ok, err := rs.r.next()
		if err == nil && !ok {
			err = fmt.Errorf("state file ends after %d of %d rows", rs.emitted, rs.total)
		}
		if err != nil {
			return nil, fmt.Errorf("filedrop %s: re-snapshot row %d: %w", s.ds.Name, rs.emitted+1, err)
		}
		rs.emitted++
		after, err := decodeBlob(rs.fields, blob)
		if err != nil {
			return nil, fmt.Errorf("filedrop %s: re-snapshot row %d (key %q): %w", s.ds.Name, rs.emitted, clipKey(string(key)), err)
		}
		pos := position{V: positionVersion, Dataset: s.ds.Name, SHA256: rs.id, Line: rs.emitted, End: rs.emitted == rs.total, Resnapshot: true}
		src := schemas.Source{System: s.cfg.System, Kind: Kind, DB: s.ds.Department, Table: s.ds.Name, File: rs.file, Seq: rs.emitted, Snapshot: true}
		env := schemas.Envelope{V: schemas.EnvelopeVersion, Op: schemas.OpRead, Source: src, Schema: schemas.SchemaRef{Name: s.ds.Name, Version: 1},
			TsMs: ts, Key: keyMap(s.ds.Key, string(key)), After: after}
		kb, err := json.Marshal(env.Key)
		if err != nil {
			return nil, fmt.Errorf("filedrop %s: encode key: %w", s.ds.Name, err)
		}
		s.cfg.Metrics.event(s.ds.Name, string(schemas.OpRead))
		out = append(out, capture.Change{Topic: s.topic, Key: kb, Envelope: env, Position: pos.encode()})
	}
	return out, nil
}

// clipKey shortens a key for an error message (keys are often ID numbers: keep the
// region prefix only).
func clipKey(k string) string {
	if len(k) > 6 {
		return k[:6] + "…"
	}
	return k
}
