package filedrop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// Kind is the connector kind written to envelope source.kind.
const Kind = "filedrop"

// Source reads the delivery files of one dataset. It implements capture.Source.
//
// Files are taken one at a time, oldest first, once settled. A file is parsed, sorted
// by key on disk and merge-joined with the dataset's state file into a spool of
// changes; ReadN hands the spool out; acknowledging the delivery's last change swaps
// in the new state file and archives the file. Until then nothing is half applied: a
// crash re-computes the identical change sequence and Open's position skips what was
// already acknowledged. The next file is started only after the current one is
// committed, so each delivery is diffed against the one before it.
type Source struct {
	cfg    Config
	ds     DatasetOptions
	log    *slog.Logger
	now    func() time.Time
	topic  string
	dlq    string
	tmpDir string
	scrub  func(string) string

	mu        sync.Mutex
	cur       *delivery
	rs        *reemission // on-demand re-emission of the state (resnapshot.go)
	resume    *position
	seen      map[string]observation
	committed chan struct{}
}

// observation is what a scan saw of a file, to decide whether it has settled.
type observation struct {
	size  int64
	mtime time.Time
	at    time.Time
}

var _ capture.Source = (*Source)(nil)

// New validates the configuration; it does no I/O (Open does).
func New(cfg Config) (*Source, error) {
	if err := cfg.Dataset.Validate(); err != nil {
		return nil, err
	}
	if cfg.System == "" || cfg.TopicPrefix == "" {
		return nil, fmt.Errorf("filedrop dataset %q: system and topic prefix are required", cfg.Dataset.Name)
	}
	s := &Source{
		cfg:       cfg,
		ds:        cfg.Dataset.withDefaults(),
		log:       cfg.Logger,
		now:       cfg.Now,
		seen:      map[string]observation{},
		committed: make(chan struct{}, 1),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("source", cfg.System, "dataset", s.ds.Name)
	if s.now == nil {
		s.now = time.Now
	}
	s.scrub = cfg.Scrub
	if s.scrub == nil {
		s.scrub = defaultScrub
	}
	if s.cfg.PollInterval <= 0 {
		s.cfg.PollInterval = 2 * time.Second
	}
	s.topic = schemas.RawTopic(cfg.TopicPrefix, cfg.System, s.ds.Name)
	s.dlq = schemas.DLQTopic(cfg.TopicPrefix, "capture")
	s.tmpDir = filepath.Join(s.ds.StateDir, s.ds.Name+".tmp")
	return s, nil
}

// Open creates the working folders, clears leftovers of a crashed run and remembers
// where to resume (last is the position of the last acknowledged change, or nil).
func (s *Source) Open(ctx context.Context, last capture.Position) error {
	for _, d := range []string{s.ds.Inbox, s.ds.Archive, s.ds.Rejected, s.ds.Held, s.ds.StateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("filedrop %s: create folder %s: %w", s.ds.Name, d, err)
		}
	}
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return fmt.Errorf("filedrop %s: clear %s: %w", s.ds.Name, s.tmpDir, err)
	}
	if err := os.MkdirAll(s.tmpDir, 0o755); err != nil {
		return fmt.Errorf("filedrop %s: create %s: %w", s.ds.Name, s.tmpDir, err)
	}
	if _, _, err := readTrailer(statePath(s.ds.StateDir, s.ds.Name), s.ds.Name); err != nil {
		return fmt.Errorf("filedrop %s: %w", s.ds.Name, err)
	}
	if len(last) > 0 {
		p, err := parsePosition(last, s.ds.Name)
		if err != nil {
			return err
		}
		s.resume = &p
	}
	return nil
}

// ReadN returns the next changes of the current delivery, starting the next settled
// file when none is in progress. Dead letters (rows that could not be read) come as
// changes on the capture DLQ topic; see DeadLetter.
func (s *Source) ReadN(ctx context.Context, max int) ([]capture.Change, error) {
	if max <= 0 {
		max = 1
	}
	for {
		s.mu.Lock()
		if d := s.cur; d != nil {
			if d.emitted < d.total {
				out, err := s.emit(d, max)
				s.mu.Unlock()
				return out, err
			}
			s.mu.Unlock()
			// Everything emitted: wait for the final ack before diffing the next file.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-s.committed:
			}
			continue
		}
		if rs := s.rs; rs != nil {
			if rs.emitted < rs.total {
				out, err := s.emitReemission(rs, max)
				s.mu.Unlock()
				return out, err
			}
			s.mu.Unlock()
			// Every row re-emitted: wait for the final ack before the next delivery.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-s.committed:
			}
			continue
		}
		started, err := s.startReemission()
		if err != nil || started {
			s.mu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		}
		s.mu.Unlock()
		name, ok, err := s.nextSettled()
		if err != nil {
			return nil, err
		}
		if ok {
			if err := s.process(ctx, name); err != nil {
				return nil, err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(s.cfg.PollInterval):
		}
	}
}

// Ack commits the delivery when upTo is its last change: the new state file replaces
// the old one and the file moves to the archive. Earlier positions need no action.
func (s *Source) Ack(ctx context.Context, upTo capture.Position) error {
	p, err := parsePosition(upTo, s.ds.Name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Resnapshot {
		if rs := s.rs; rs != nil && p.End && p.SHA256 == rs.id && rs.emitted >= rs.total {
			return s.finishReemission(rs)
		}
		return nil
	}
	d := s.cur
	if d == nil || p.File != d.name || p.SHA256 != d.sha || p.Line < d.total || d.emitted < d.total {
		return nil
	}
	return s.commit(d)
}

// Close releases the open spool. It is safe after a failed Open.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rs != nil {
		s.rs.r.close()
		s.rs = nil
	}
	if s.cur != nil && s.cur.spoolF != nil {
		err := s.cur.spoolF.Close()
		s.cur = nil
		return err
	}
	return nil
}

// ignoredSuffixes mark files in the inbox that are not deliveries.
var ignoredSuffixes = []string{".done", ".report.txt", ".tmp", ".part", ".filepart", ".partial"}

// nextSettled picks the oldest settled delivery file (the resume file first).
func (s *Source) nextSettled() (string, bool, error) {
	entries, err := os.ReadDir(s.ds.Inbox)
	if err != nil {
		return "", false, fmt.Errorf("filedrop %s: list inbox %s: %w", s.ds.Name, s.ds.Inbox, err)
	}
	now := s.now()
	type cand struct {
		name  string
		mtime time.Time
	}
	var ready []cand
	present := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "~$") || hasAnySuffix(name, ignoredSuffixes) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // vanished between listing and stat
		}
		present[name] = true
		if s.ds.RequireDoneMarker {
			if _, err := os.Stat(filepath.Join(s.ds.Inbox, name+".done")); err != nil {
				continue
			}
		} else if s.ds.SettleAge > 0 {
			o, ok := s.seen[name]
			if !ok || o.size != info.Size() || !o.mtime.Equal(info.ModTime()) {
				s.seen[name] = observation{size: info.Size(), mtime: info.ModTime(), at: now}
				continue
			}
			if now.Sub(o.at) < s.ds.SettleAge {
				continue
			}
		}
		ready = append(ready, cand{name, info.ModTime()})
	}
	for n := range s.seen {
		if !present[n] {
			delete(s.seen, n)
		}
	}
	if len(ready) == 0 {
		return "", false, nil
	}
	sort.Slice(ready, func(i, j int) bool {
		if s.resume != nil && (ready[i].name == s.resume.File) != (ready[j].name == s.resume.File) {
			return ready[i].name == s.resume.File
		}
		if !ready[i].mtime.Equal(ready[j].mtime) {
			return ready[i].mtime.Before(ready[j].mtime)
		}
		return ready[i].name < ready[j].name
	})
	return ready[0].name, true, nil
}

func hasAnySuffix(s string, suffixes []string) bool {
	for _, x := range suffixes {
		if strings.HasSuffix(strings.ToLower(s), x) {
			return true
		}
	}
	return false
}

// fileSHA256 hashes a file's content.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func releaseMarker(stateDir, dataset, sha string) string {
	return filepath.Join(stateDir, dataset+".release-"+sha)
}

// process prepares one file and files it as ready, duplicate, rejected or held.
func (s *Source) process(ctx context.Context, name string) error {
	path := filepath.Join(s.ds.Inbox, name)
	scan, err := scanFile(path)
	if err != nil {
		return fmt.Errorf("filedrop %s: %w", s.ds.Name, err)
	}
	sha := scan.sha
	t, _, err := readTrailer(statePath(s.ds.StateDir, s.ds.Name), s.ds.Name)
	if err != nil {
		return fmt.Errorf("filedrop %s: %w", s.ds.Name, err)
	}
	if t.accepted(sha) {
		s.log.Info("filedrop: identical file was already applied; archiving it without events", "file", name, "sha256", sha[:12])
		s.cfg.Metrics.file(s.ds.Name, "duplicate")
		return s.archive(path)
	}
	marker := releaseMarker(s.ds.StateDir, s.ds.Name, sha)
	_, merr := os.Stat(marker)
	released := merr == nil
	d, err := prepare(ctx, &s.ds, s.tmpDir, path, &scan, released, s.scrub)
	if err != nil {
		return fmt.Errorf("filedrop %s: file %s: %w", s.ds.Name, name, err)
	}
	switch d.outcome {
	case outcomeRejected:
		s.log.Warn("filedrop: file rejected", "file", name, "reason", d.reason, "problems", d.problemCount)
		s.cfg.Metrics.file(s.ds.Name, "rejected")
		return s.setAside(path, s.ds.Rejected, d, "rejected")
	case outcomeHeld:
		s.log.Warn("filedrop: file held by the mass-delete breaker", "file", name, "reason", d.reason)
		s.cfg.Metrics.file(s.ds.Name, "held")
		return s.setAside(path, s.ds.Held, d, "held")
	}
	s.cfg.Metrics.rows(s.ds.Name, d.rows, d.badRows)
	s.cfg.Metrics.delivery(s.ds.Name, d)
	s.log.Info("filedrop: delivery diffed", "file", name, "rows", d.rows, "bad_rows", d.badRows,
		"creates", d.creates, "updates", d.updates, "deletes", d.deletes, "unchanged", d.unchanged,
		"kept", d.kept, "deletes_withheld", d.withheld)
	if d.withheld > 0 {
		s.log.Warn("filedrop: deletes withheld: bad rows without a readable key may be some of the missing rows",
			"file", name, "withheld", d.withheld, "unkeyed_rows", d.unkeyed)
	}
	if r := s.resume; r != nil && r.File == name && r.SHA256 == sha {
		skip := min(r.Line, d.total)
		for d.emitted < skip {
			if _, err := readSpool(d.spoolR); err != nil {
				d.spoolF.Close()
				return fmt.Errorf("filedrop %s: file %s: skip to resume line %d: %w", s.ds.Name, name, skip, err)
			}
			d.emitted++
		}
		s.log.Info("filedrop: resuming delivery", "file", name, "skipped", skip, "of", d.total)
	}
	s.resume = nil
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = d
	if d.emitted >= d.total {
		return s.commit(d)
	}
	return nil
}

// setAside moves a rejected or held file (and its marker) out of the inbox with its
// report.
func (s *Source) setAside(path, dir string, d *delivery, verdict string) error {
	dst, err := moveFile(path, dir)
	if err != nil {
		return fmt.Errorf("filedrop %s: %w", s.ds.Name, err)
	}
	if _, err := os.Stat(path + ".done"); err == nil {
		if _, err := moveFile(path+".done", dir); err != nil {
			return fmt.Errorf("filedrop %s: %w", s.ds.Name, err)
		}
	}
	if err := writeReport(dst, d, verdict, s.now(), s.cfg.ReleaseCommand); err != nil {
		return fmt.Errorf("filedrop %s: %w", s.ds.Name, err)
	}
	delete(s.seen, d.name)
	return nil
}

// archive moves a processed file (and its marker) to the archive folder.
func (s *Source) archive(path string) error {
	_, err := s.archiveTo(path)
	return err
}

// archiveTo archives path and returns where it went.
func (s *Source) archiveTo(path string) (string, error) {
	dst, err := moveFile(path, s.ds.Archive)
	if err != nil {
		return "", fmt.Errorf("filedrop %s: %w", s.ds.Name, err)
	}
	if _, err := os.Stat(path + ".done"); err == nil {
		if _, err := moveFile(path+".done", s.ds.Archive); err != nil {
			return "", fmt.Errorf("filedrop %s: %w", s.ds.Name, err)
		}
	}
	delete(s.seen, filepath.Base(path))
	return dst, nil
}

// commit publishes the delivery: state swap first (one rename: rows and the file's
// checksum together), then archive. A crash between the two leaves the file in the
// inbox, where its checksum now marks it as a duplicate. Called with s.mu held.
func (s *Source) commit(d *delivery) error {
	if d.spoolF != nil {
		d.spoolF.Close()
		os.Remove(d.spoolPath)
		d.spoolF = nil
	}
	dst := statePath(s.ds.StateDir, s.ds.Name)
	if err := os.Rename(d.newStatePath, dst); err != nil {
		return fmt.Errorf("filedrop %s: install state %s: %w", s.ds.Name, dst, err)
	}
	if dir, err := os.Open(s.ds.StateDir); err == nil {
		dir.Sync()
		dir.Close()
	}
	os.Remove(releaseMarker(s.ds.StateDir, s.ds.Name, d.sha))
	s.cur = nil
	select {
	case s.committed <- struct{}{}:
	default:
	}
	dst, err := s.archiveTo(d.path)
	if err != nil {
		return err
	}
	if d.badRows > 0 || d.withheld > 0 || d.summaryRows > 0 || d.dupIdentical > 0 {
		if err := writeReport(dst, d, "accepted", s.now(), s.cfg.ReleaseCommand); err != nil {
			s.log.Warn("filedrop: report of an accepted delivery not written", "file", d.name, "error", err)
		}
	}
	s.cfg.Metrics.file(s.ds.Name, "processed")
	s.log.Info("filedrop: delivery committed", "file", d.name, "events", d.total, "rows", d.trailer.Rows)
	if s.cfg.OnCommitted != nil {
		s.cfg.OnCommitted(s.ds.Name, d.name)
	}
	return nil
}

// emit turns up to max spool records into changes. Called with s.mu held.
func (s *Source) emit(d *delivery, max int) ([]capture.Change, error) {
	out := make([]capture.Change, 0, min(int64(max), d.total-d.emitted))
	ts := s.now().UnixMilli()
	for len(out) < max && d.emitted < d.total {
		rec, err := readSpool(d.spoolR)
		if err != nil {
			return nil, fmt.Errorf("filedrop %s: file %s: read spooled change %d: %w", s.ds.Name, d.name, d.emitted+1, err)
		}
		d.emitted++
		c, err := s.change(d, rec, ts)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func (s *Source) change(d *delivery, rec spoolRecord, ts int64) (capture.Change, error) {
	pos := position{V: positionVersion, Dataset: s.ds.Name, File: d.name, SHA256: d.sha, Line: d.emitted, End: d.emitted == d.total}
	src := schemas.Source{System: s.cfg.System, Kind: Kind, DB: s.ds.Department, Table: s.ds.Name, File: d.name, Line: rec.line, Seq: d.emitted}
	env := schemas.Envelope{V: schemas.EnvelopeVersion, Source: src, Schema: schemas.SchemaRef{Name: s.ds.Name, Version: 1}, TsMs: ts}
	if rec.op == spoolDead {
		reason := string(rec.a)
		if rec.key != "" {
			reason = rec.key + ": " + reason // rec.key names the column (see delivery.dead)
		}
		s.cfg.Metrics.event(s.ds.Name, "dlq")
		dl := &schemas.DLQRecord{
			Stage:    "capture",
			Reason:   fmt.Sprintf("file %s line %d: %s", d.name, rec.line, reason),
			Source:   s.cfg.System + "/" + s.ds.Name + "/" + d.name,
			Position: fmt.Sprintf("line %d", rec.line),
			Key:      fmt.Sprintf("%s:%d", d.name, rec.line),
			Payload:  rec.b,
			TsMs:     ts,
		}
		return capture.Change{Topic: s.dlq, Key: []byte(dl.Key), Envelope: env, Position: pos.encode(),
			DeadLetter: dl, DeadLetterReason: "bad_row"}, nil
	}
	env.Key = keyMap(d.keyFields, rec.key)
	var err error
	if len(rec.a) > 0 {
		if env.Before, err = decodeBlob(d.oldFields, rec.a); err != nil {
			return capture.Change{}, fmt.Errorf("filedrop %s: file %s: before image of change %d: %w", s.ds.Name, d.name, d.emitted, err)
		}
	}
	if len(rec.b) > 0 {
		if env.After, err = decodeBlob(d.newFields, rec.b); err != nil {
			return capture.Change{}, fmt.Errorf("filedrop %s: file %s: after image of change %d: %w", s.ds.Name, d.name, d.emitted, err)
		}
	}
	switch rec.op {
	case spoolCreate:
		env.Op = schemas.OpCreate
	case spoolUpdate:
		env.Op = schemas.OpUpdate
	case spoolDelete:
		env.Op = schemas.OpDelete
	default:
		return capture.Change{}, fmt.Errorf("filedrop %s: file %s: unknown spooled op %q", s.ds.Name, d.name, rec.op)
	}
	s.cfg.Metrics.event(s.ds.Name, string(env.Op))
	key, err := json.Marshal(env.Key)
	if err != nil {
		return capture.Change{}, fmt.Errorf("filedrop %s: encode key: %w", s.ds.Name, err)
	}
	return capture.Change{Topic: s.topic, Key: key, Envelope: env, Position: pos.encode()}, nil
}

// Release puts a held file back into the inbox and marks its checksum so the
// mass-delete breaker lets it through once. It is what `shouwang held release`
// calls after an operator confirmed the deletions with the department; it works on
// the folders alone, so the worker need not be stopped (it reads the file from the
// inbox at its next scan).
func Release(ds DatasetOptions, file string) error {
	ds = ds.withDefaults()
	if file != filepath.Base(file) || file == "" {
		return fmt.Errorf("filedrop %s: release: %q must be a plain file name from %s", ds.Name, file, ds.Held)
	}
	src := filepath.Join(ds.Held, file)
	sha, err := fileSHA256(src)
	if err != nil {
		return fmt.Errorf("filedrop %s: release: %w (list %s for held files)", ds.Name, err, ds.Held)
	}
	if _, err := os.Stat(filepath.Join(ds.Inbox, file)); err == nil {
		return fmt.Errorf("filedrop %s: release: %s already exists in the inbox %s; wait until it is processed", ds.Name, file, ds.Inbox)
	}
	if err := os.MkdirAll(ds.StateDir, 0o755); err != nil {
		return fmt.Errorf("filedrop %s: release: %w", ds.Name, err)
	}
	if err := os.WriteFile(releaseMarker(ds.StateDir, ds.Name, sha), []byte(file+"\n"), 0o644); err != nil {
		return fmt.Errorf("filedrop %s: release: write marker: %w", ds.Name, err)
	}
	// Move the report away first so a later hold of the same name gets a fresh one.
	if _, err := os.Stat(src + ".report.txt"); err == nil {
		if _, err := moveFile(src+".report.txt", ds.Archive); err != nil {
			return fmt.Errorf("filedrop %s: release: %w", ds.Name, err)
		}
	}
	if err := os.Rename(src, filepath.Join(ds.Inbox, file)); err != nil {
		var le *os.LinkError
		if !errors.As(err, &le) {
			return fmt.Errorf("filedrop %s: release: %w", ds.Name, err)
		}
		if _, err := moveFile(src, ds.Inbox); err != nil {
			return fmt.Errorf("filedrop %s: release: %w", ds.Name, err)
		}
	}
	if _, err := os.Stat(src + ".done"); err == nil {
		if _, err := moveFile(src+".done", ds.Inbox); err != nil {
			return fmt.Errorf("filedrop %s: release: %w", ds.Name, err)
		}
	}
	return nil
}
