package mysqlbinlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/schemas"
)

// Weekly reload collapse.
//
// The national push reloads whole tables every week (TRUNCATE or DELETE of every row,
// then INSERT of every row; in one transaction or spread over minutes). Downstream must
// see only the real changes. For each table in Options.Reload.Tables the connector
// keeps, in StateDir/reload/<db.table>/, the image downstream holds of every row:
// a key-sorted base file written when the last reload window closed plus an
// append-only overlay log of every change emitted since (snapshot r, c, u, d).
//
// A reload window opens on a TRUNCATE of the table, on a push_log row with started_at
// and no finished_at (Detect push_log), or on a transaction deleting more than
// DeleteShare of the table (Detect quiet). Inside the window the TRUNCATE's t and the
// deletes are swallowed. The window closes when push_log gets its finished_at
// (push_log windows) or when the table saw no write for QuietPeriod (other windows).
// The inserted rows are compared with the stored image in key order (collapse.go):
// as they come, on a goroutine of their own, while they come in key order (national
// pushes load in primary-key order), or else from a sorted spill on disk when the
// window closes. The comparison emits u (before = stored image) for changed rows, c
// for new rows and nothing for unchanged rows, and writes the new base; rows that
// vanished are emitted as d at the close, unless the mass-delete circuit breaker
// holds them.
//
// Positions: while a window is open, or its collapse is still being handed out, no
// change carries a position, so a restart resumes from before the window's start and
// re-reads the whole window (the comparison's files and the spill are not persisted). Each position carries the
// state generation ("epoch") of every reload table; a window close or a release makes
// a new generation and the old one is kept until a position with the new epoch is
// acknowledged, so a restart between a close and its acknowledgement rolls the state
// back and collapses the window again rather than comparing it with its own result.
// The cost is that a long spread push (hours) is re-read from its start after a
// crash in the middle; the binlog of one push is read far faster than it was written.

// Window detection modes for ReloadOptions.Detect.
const (
	// DetectQuiet opens a window on TRUNCATE or on a transaction deleting more than
	// DeleteShare of the table, and closes it after QuietPeriod without writes.
	DetectQuiet = "quiet"
	// DetectTruncate opens a window only on TRUNCATE and closes it after QuietPeriod.
	DetectTruncate = "truncate"
	// DetectPushLog opens a window on a push_log row naming the table with started_at
	// set and finished_at NULL, and closes it when finished_at is set. A TRUNCATE
	// outside such a window still opens one, closed by QuietPeriod.
	DetectPushLog = "push_log"
)

// generation is one version of a table's reload state.
type generation struct {
	Epoch uint64 `json:"epoch"`
	// Base is the key-sorted file written at the window close that made this
	// generation ("" for the empty generation 0).
	Base string `json:"base,omitempty"`
	// Overlays are the change logs applied over Base, oldest first; the last is
	// appended to while this generation is current.
	Overlays []string `json:"overlays"`
	// Held is true when Base's vanished rows are held by the mass-delete breaker
	// (still downstream); otherwise they are deleted rows.
	Held     bool  `json:"held,omitempty"`
	HeldRows int64 `json:"held_rows,omitempty"`
	// ReleaseRequested asks for the held deletes to be emitted; it survives a
	// rollback to this generation so that the release is redone.
	ReleaseRequested bool      `json:"release_requested,omitempty"`
	Rows             int64     `json:"rows"`
	Created          time.Time `json:"created"`
	At               string    `json:"at,omitempty"` // binlog position it was made at
}

type manifest struct {
	Table string       `json:"table"`
	Gens  []generation `json:"generations"`
}

// window is an open reload of one table.
type window struct {
	opened    binlogPos
	reason    string
	byPushLog bool
	// stream compares the rows with the stored image as they come, while they come
	// in key order; spill sorts them for the close once they did not.
	stream   *asyncCollapser
	spill    *sorter
	inserted int64
	// unkeyed counts window rows that did not convert and whose key did not either:
	// any stored row may be one of them, so the window's deletes are held.
	unkeyed   int64
	lastWrite int64 // binlog timestamp (Unix seconds) of the last write to the table
	openedAt  int64 // binlog timestamp (Unix seconds) of the window's start
}

// dropRows forgets the rows the window has taken so far.
func (w *window) dropRows() {
	if w.stream != nil {
		w.stream.discard()
		w.stream = nil
	}
	w.dropSpill()
}

func (w *window) dropSpill() {
	if w.spill != nil {
		w.spill.remove()
		w.spill = nil
	}
}

// txBuffer holds a transaction's changes of one table while Detect quiet decides
// whether its deletes are the start of a reload.
type txBuffer struct {
	path    string
	f       *os.File
	w       *bufio.Writer
	n       int
	deletes int64
}

type reloadTable struct {
	name string
	dir  string
	man  manifest
	ow   *recWriter // overlay of the current generation
	// owSorted: the keys of ow's file strictly ascend so far (the seeding snapshot's
	// rows, read in key order); owLast is its last key. The window's comparison then
	// merges the overlay as it is, without checking or sorting it.
	owSorted bool
	owLast   []byte
	rows     int64 // approximate row count (threshold of Detect quiet)
	win      *window
	tx       *txBuffer

	closeDue bool
}

func (rt *reloadTable) cur() *generation { return &rt.man.Gens[len(rt.man.Gens)-1] }

// drain hands out a file of changes (a reload's collapse, or a buffered transaction)
// a few at a time, so that a collapse of millions of changes never sits in memory.
type drain struct {
	path    string
	f       *os.File
	dec     *json.Decoder
	overlay *reloadTable // record drained changes into this table's state
	// A collapse's changes are read from the collapser's compact file instead
	// (changes set): each becomes an envelope like meta, on topic.
	changes *changeReader
	meta    schemas.Envelope
	topic   string
}

type drainedChange struct {
	Topic    string           `json:"topic"`
	Key      []byte           `json:"key,omitempty"`
	Envelope schemas.Envelope `json:"env"`
	DLQ      *dlqPart         `json:"dlq,omitempty"`
}

type dlqPart struct {
	Rec  schemas.DLQRecord `json:"rec"`
	Code string            `json:"code"`
}

type reloadManager struct {
	s      *Source
	tables map[string]*reloadTable
	order  []string
	drains []*drain
	dirty  bool // overlay records written since the last sync
	enc    recEncoder

	mu       sync.Mutex
	acked    map[string]uint64
	releases []string
}

func newReloadManager(s *Source) *reloadManager {
	rm := &reloadManager{s: s, tables: map[string]*reloadTable{}, enc: recEncoder{countyCols: s.countyCols}}
	for _, t := range s.opts.Reload.Tables {
		if _, dup := rm.tables[t]; dup {
			continue
		}
		rm.tables[t] = &reloadTable{name: t, dir: filepath.Join(s.opts.StateDir, "reload", t)}
		rm.order = append(rm.order, t)
	}
	return rm
}

// quiet reports that no reload work is in flight: positions may be handed out.
func (rm *reloadManager) quiet() bool {
	if len(rm.drains) > 0 {
		return false
	}
	for _, rt := range rm.tables {
		if rt.win != nil || rt.closeDue || rt.tx != nil {
			return false
		}
	}
	return true
}

func (rm *reloadManager) table(name string) *reloadTable {
	if rm == nil {
		return nil
	}
	return rm.tables[name]
}

// open restores every table's state for the saved position (epochs nil: fresh start)
// and returns the tables that must be snapshotted to seed their state.
func (rm *reloadManager) open(ctx context.Context, epochs map[string]uint64, fresh bool) ([]string, error) {
	var seed []string
	for _, name := range rm.order {
		rt := rm.tables[name]
		if err := os.MkdirAll(rt.dir, 0o750); err != nil {
			return nil, fmt.Errorf("reload state of %s: create %s: %w", name, rt.dir, err)
		}
		removeTemp(rt.dir)
		e, have := epochs[name]
		ok := false
		if !fresh && have {
			var err error
			if ok, err = rm.restore(rt, e); err != nil {
				return nil, err
			}
			if !ok {
				rm.s.log.Warn("reload state missing for the saved position: resetting it and re-snapshotting the table", "table", name, "epoch", e, "dir", rt.dir)
			}
		}
		if !ok {
			if err := rm.reset(rt); err != nil {
				return nil, err
			}
			if !fresh {
				seed = append(seed, name)
			}
		}
		if rt.ow != nil {
			rt.ow.f.Close()
		}
		if err := rm.openOverlay(rt); err != nil {
			return nil, err
		}
		rt.rows = rt.cur().Rows
		db, tb, _ := strings.Cut(name, ".")
		var n int64
		if err := rm.s.db.QueryRowContext(ctx, fmt.Sprintf("SELECT COUNT(*) FROM %s.%s", quoteIdent(db), quoteIdent(tb))).Scan(&n); err == nil {
			rt.rows = n
		}
		g := rt.cur()
		rm.s.m.held.WithLabelValues(name).Set(b2f(g.Held && g.HeldRows > 0))
		if g.ReleaseRequested {
			rm.releases = append(rm.releases, name)
		}
	}
	return seed, nil
}

// openOverlay opens the current generation's overlay for appending. A record torn by
// a crash in the middle of an append is cut off first (it was written after the saved
// position, so the binlog replay writes it again; appending after it would make the
// rest of the log unreadable), and the overlay's key order is learnt.
func (rm *reloadManager) openOverlay(rt *reloadTable) error {
	path := filepath.Join(rt.dir, rt.cur().Overlays[len(rt.cur().Overlays)-1])
	size, asc, last, err := skimRecFile(path)
	if errors.Is(err, os.ErrNotExist) {
		size, asc, last, err = 0, true, nil, nil
	}
	if err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > size {
		rm.s.log.Warn("reload state: cutting off a record torn by a crash at the end of the overlay log",
			"table", rt.name, "file", path, "size", fi.Size(), "complete", size)
		if err := os.Truncate(path, size); err != nil {
			return fmt.Errorf("reload state of %s: %w", rt.name, err)
		}
	}
	ow, err := appendRecWriter(path)
	if err != nil {
		return err
	}
	rt.ow, rt.owSorted, rt.owLast = ow, asc, last
	return nil
}

// sortedOverlay names the current overlay when its keys are known to ascend.
func (rt *reloadTable) sortedOverlay() string {
	if !rt.owSorted {
		return ""
	}
	return rt.cur().Overlays[len(rt.cur().Overlays)-1]
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (rm *reloadManager) epochs() map[string]uint64 {
	m := make(map[string]uint64, len(rm.tables))
	for n, rt := range rm.tables {
		m[n] = rt.cur().Epoch
	}
	return m
}

func (rt *reloadTable) manifestPath() string { return filepath.Join(rt.dir, "manifest.json") }

// restore loads the manifest and rolls back to epoch e. It reports false when the
// state for e is not there.
func (rm *reloadManager) restore(rt *reloadTable, e uint64) (bool, error) {
	b, err := os.ReadFile(rt.manifestPath())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reload state of %s: read %s: %w", rt.name, rt.manifestPath(), err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return false, fmt.Errorf("reload state of %s: decode %s: %w (delete the directory to re-snapshot the table)", rt.name, rt.manifestPath(), err)
	}
	i := slices.IndexFunc(m.Gens, func(g generation) bool { return g.Epoch == e })
	if i < 0 {
		return false, nil
	}
	if i < len(m.Gens)-1 {
		rm.s.log.Warn("rolling the reload state back to the saved position's generation (its later changes were not acknowledged and will be read again)",
			"table", rt.name, "epoch", e, "dropped", len(m.Gens)-1-i)
	}
	rt.man = manifest{Table: rt.name, Gens: m.Gens[i : i+1]}
	if err := rm.saveManifest(rt); err != nil {
		return false, err
	}
	rm.removeUnreferenced(rt)
	return true, nil
}

// reset starts an empty generation.
func (rm *reloadManager) reset(rt *reloadTable) error {
	next := uint64(0)
	if len(rt.man.Gens) > 0 {
		next = rt.cur().Epoch + 1
	}
	rt.man = manifest{Table: rt.name, Gens: []generation{{Epoch: next, Overlays: []string{fmt.Sprintf("overlay-%d.log", next)}, Created: time.Now().UTC()}}}
	os.Remove(filepath.Join(rt.dir, rt.man.Gens[0].Overlays[0]))
	if err := rm.saveManifest(rt); err != nil {
		return err
	}
	rm.removeUnreferenced(rt)
	return nil
}

func (rm *reloadManager) saveManifest(rt *reloadTable) error {
	b, err := json.MarshalIndent(rt.man, "", "  ")
	if err != nil {
		return fmt.Errorf("reload state of %s: encode manifest: %w", rt.name, err)
	}
	tmp := rt.manifestPath() + ".new"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("reload state of %s: %w", rt.name, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, rt.manifestPath())
	}
	if err != nil {
		return fmt.Errorf("reload state of %s: write %s: %w", rt.name, rt.manifestPath(), err)
	}
	if d, err := os.Open(rt.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// removeUnreferenced deletes state files no generation of the manifest uses.
func (rm *reloadManager) removeUnreferenced(rt *reloadTable) {
	used := map[string]bool{"manifest.json": true}
	for _, g := range rt.man.Gens {
		used[g.Base] = true
		for _, o := range g.Overlays {
			used[o] = true
		}
	}
	ents, _ := os.ReadDir(rt.dir)
	for _, e := range ents {
		n := e.Name()
		if !used[n] && (strings.HasPrefix(n, "base-") || strings.HasPrefix(n, "overlay-")) {
			os.Remove(filepath.Join(rt.dir, n))
		}
	}
}

// ack records positions the runner saved: older generations can go.
func (rm *reloadManager) ack(epochs map[string]uint64) {
	rm.mu.Lock()
	rm.acked = epochs
	rm.mu.Unlock()
}

func (rm *reloadManager) prune() error {
	rm.mu.Lock()
	acked := rm.acked
	rm.acked = nil
	rm.mu.Unlock()
	for name, e := range acked {
		rt := rm.tables[name]
		if rt == nil || len(rt.man.Gens) < 2 {
			continue
		}
		i := slices.IndexFunc(rt.man.Gens, func(g generation) bool { return g.Epoch == e })
		if i <= 0 {
			continue
		}
		rt.man.Gens = slices.Clone(rt.man.Gens[i:])
		if err := rm.saveManifest(rt); err != nil {
			return err
		}
		rm.removeUnreferenced(rt)
	}
	return nil
}

// flush hands overlay records to the OS, and makes them durable when a position is
// about to be handed out (the state must be at least as new as any saved position).
func (rm *reloadManager) flush(sync bool) error {
	for _, rt := range rm.tables {
		if rt.ow != nil {
			if err := rt.ow.flush(sync && rm.dirty); err != nil {
				return err
			}
		}
	}
	if sync {
		rm.dirty = false
	}
	return nil
}

func (rm *reloadManager) closeFiles() {
	for _, rt := range rm.tables {
		if rt.ow != nil {
			rt.ow.close()
			rt.ow = nil
		}
		if rt.win != nil {
			rt.win.dropRows()
			rt.win = nil
		}
		rm.dropTx(rt)
	}
	for _, d := range rm.drains {
		d.f.Close()
		os.Remove(d.path)
	}
	rm.drains = nil
}

// recEncoder turns rows into state records: the canonical JSON of the row (scratch
// is the encoding buffer; each record keeps an exact-size copy) and its county code.
type recEncoder struct {
	countyCols []string
	enc        rowEncoder
	scratch    []byte
}

// countyStr returns the first 6 characters of the first county column present, or
// "" when the row has none.
func (e *recEncoder) countyStr(row map[string]any) string {
	for _, c := range e.countyCols {
		if v, ok := row[c].(string); ok && len(v) >= 6 {
			return v[:6]
		}
	}
	return ""
}

// rec encodes row as the state record of key.
func (e *recEncoder) rec(key []byte, row map[string]any) (rec, error) {
	b, err := e.enc.append(e.scratch[:0], row)
	if err != nil {
		return rec{}, fmt.Errorf("encode row %s: %w", key, err)
	}
	e.scratch = b
	// One allocation holds the row and its county code.
	county := e.countyStr(row)
	buf := make([]byte, len(b)+len(county))
	copy(buf, b)
	copy(buf[len(b):], county)
	r := rec{key: key, row: buf[:len(b):len(b)]}
	if county != "" {
		r.county = buf[len(b):]
	}
	return r, nil
}

// putRec encodes row as the state record of key.
func (rm *reloadManager) putRec(key []byte, row map[string]any) (rec, error) {
	return rm.enc.rec(key, row)
}

// record applies an emitted change of a reload table to its state overlay.
func (rm *reloadManager) record(rt *reloadTable, op schemas.Op, pk []string, before, after map[string]any) error {
	var recs []rec
	switch op {
	case schemas.OpCreate, schemas.OpRead, schemas.OpUpdate:
		if op == schemas.OpUpdate && before != nil {
			if ok := encodeKey(keyOf(pk, before)); !bytes.Equal(ok, encodeKey(keyOf(pk, after))) {
				recs = append(recs, rec{key: ok, flags: recTomb})
				rt.rows--
			}
		}
		r, err := rm.putRec(encodeKey(keyOf(pk, after)), after)
		if err != nil {
			return fmt.Errorf("reload state of %s: %w", rt.name, err)
		}
		recs = append(recs, r)
		if op == schemas.OpCreate {
			rt.rows++
		}
	case schemas.OpDelete:
		recs = append(recs, rec{key: encodeKey(keyOf(pk, before)), flags: recTomb})
		rt.rows--
	default:
		return nil
	}
	for i := range recs {
		if err := rt.ow.write(&recs[i]); err != nil {
			return err
		}
		if rt.owSorted {
			if rt.owLast != nil && bytes.Compare(recs[i].key, rt.owLast) <= 0 {
				rt.owSorted, rt.owLast = false, nil
			} else {
				rt.owLast = append(rt.owLast[:0], recs[i].key...)
			}
		}
	}
	rm.dirty = true
	return nil
}

// openWindow starts a reload window of rt.
func (rm *reloadManager) openWindow(rt *reloadTable, reason string, byPushLog bool, ts uint32) {
	if rt.win != nil {
		if byPushLog {
			rt.win.byPushLog = true
		}
		return
	}
	rt.closeDue = false
	rt.win = &window{opened: rm.s.cur, reason: reason, byPushLog: byPushLog, lastWrite: int64(ts), openedAt: int64(ts)}
	rm.startStream(rt)
	rm.s.m.reloadWindows.WithLabelValues(rt.name, "opened").Inc()
	rm.s.log.Info("reload window opened", "table", rt.name, "reason", reason, "position", fmt.Sprintf("%s:%d", rm.s.cur.File, rm.s.cur.Pos))
}

// windowRow feeds one row change inside an open window.
func (rm *reloadManager) windowRow(rt *reloadTable, op schemas.Op, pk []string, before, after map[string]any, ts uint32) error {
	return rm.windowRowKey(rt, op, pk, nil, before, after, ts)
}

// windowRowKey is windowRow with the row's encoded key (of after, or of before for a
// delete) when the caller already has it (nil: computed here); the window's
// comparison may keep it (the sorter copies it), so the caller must not change it.
func (rm *reloadManager) windowRowKey(rt *reloadTable, op schemas.Op, pk []string, kb []byte, before, after map[string]any, ts uint32) error {
	w := rt.win
	if ts > 0 {
		w.lastWrite = int64(ts)
	}
	switch op {
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
		if op == schemas.OpUpdate && before != nil && w.inserted > 0 {
			if kb == nil {
				kb = encodeKey(keyOf(pk, after))
			}
			if ok := encodeKey(keyOf(pk, before)); !bytes.Equal(ok, kb) {
				if err := rm.windowAdd(rt, rec{key: ok, flags: recTomb}); err != nil {
					return err
				}
			}
		}
		if kb == nil {
			kb = encodeKey(keyOf(pk, after))
		}
		w.inserted++
		if a := w.stream; a != nil && a.accepts(kb) {
			a.addRow(kb, after) // encoded on the comparison's goroutine
			if err := a.err(); err != nil {
				return fmt.Errorf("reload window of %s: %w", rt.name, err)
			}
			return nil
		}
		r, err := rm.putRec(kb, after)
		if err != nil {
			return fmt.Errorf("reload window of %s: %w", rt.name, err)
		}
		return rm.windowAdd(rt, r)
	case schemas.OpDelete:
		// Deleting what the window has not inserted is the reload emptying the
		// table; deleting a row inserted in this window really removes it.
		if w.inserted > 0 {
			if kb == nil {
				kb = encodeKey(keyOf(pk, before))
			}
			return rm.windowAdd(rt, rec{key: kb, flags: recTomb})
		}
	}
	return nil
}

// windowAdd hands a window row (or a tombstone) to the running comparison while the
// rows come in key order, otherwise to the window's sorter.
func (rm *reloadManager) windowAdd(rt *reloadTable, r rec) error {
	w := rt.win
	if a := w.stream; a != nil {
		switch {
		case r.flags&recTomb != 0 && a.accepts(r.key):
			// A key the window has not reached: there is no row to remove (a
			// later row of that key is compared as usual).
			return nil
		case r.flags&recTomb == 0 && a.accepts(r.key):
			a.add(r)
			if err := a.err(); err != nil {
				return fmt.Errorf("reload window of %s: %w", rt.name, err)
			}
			return nil
		}
		if err := rm.streamToSorter(rt, r.key); err != nil {
			return err
		}
	}
	return w.spill.add(r)
}

// windowKeep records that the window's row of key did not convert: the key's stored
// row stays as it is (see recKeep).
func (rm *reloadManager) windowKeep(rt *reloadTable, key []byte, ts uint32) error {
	if ts > 0 {
		rt.win.lastWrite = int64(ts)
	}
	return rm.windowAdd(rt, rec{key: key, flags: recKeep})
}

// windowRaw hands a row image the reload inserts to the window's comparison (which
// accepts its key).
func (rm *reloadManager) windowRaw(rt *reloadTable, kb []byte, specs []colSpec, pk []string, raw []any, meta rowMeta) error {
	w := rt.win
	if meta.ts > 0 {
		w.lastWrite = int64(meta.ts)
	}
	w.inserted++
	a := w.stream
	a.addRaw(kb, specs, pk, raw, meta)
	// Rows that did not convert go to the DLQ as the comparison finds them, not all
	// at the close (they hold their binlog events in memory until then).
	rm.deadLetters(rt, a.takeDead())
	if err := a.err(); err != nil {
		return fmt.Errorf("reload window of %s: %w", rt.name, err)
	}
	return nil
}

// deadLetters sends the window rows whose values did not convert to the DLQ, as the
// ordinary path does when it reads them.
func (rm *reloadManager) deadLetters(rt *reloadTable, items []windowItem) {
	for _, it := range items {
		after, err := rowMap(it.specs, it.raw)
		if err == nil {
			err = fmt.Errorf("row does not encode as JSON")
		}
		c := rm.s.deadLetterChangeAt(rt.name, it.meta, keyOf(it.pk, after), nil, after, reasonCode(err), err.Error())
		if rm.s.inTx {
			rm.s.emit(c)
		} else {
			// Between transactions (a window close): nothing will carry it out.
			rm.s.out = append(rm.s.out, c)
		}
	}
}

// startStream starts the window's comparison as rows come (see collapse.go).
func (rm *reloadManager) startStream(rt *reloadTable) {
	a, err := rm.startCollapse(rt)
	if err != nil {
		// The sorting path needs nothing more: the close reports any problem.
		rm.s.log.Warn("reload window: comparing at the close instead of as rows come", "table", rt.name, "error", err)
		rt.win.spill = newWindowSorter(rt.dir)
		return
	}
	rt.win.stream = a
}

// streamToSorter moves an async window to the sorting path: the rows compared so far
// go to a new sorter, which the close merges.
func (rm *reloadManager) streamToSorter(rt *reloadTable, at []byte) error {
	w := rt.win
	a := w.stream
	w.stream = nil
	w.spill = newWindowSorter(rt.dir)
	rm.s.log.Info("reload window rows are not in key order: sorting them for the window close",
		"table", rt.name, "rows_in_order", a.rows, "key", string(at), "last_key", string(a.last))
	it, c, err := a.sortedWindowRows()
	rm.deadLetters(rt, a.takeDead())
	if err != nil {
		return fmt.Errorf("reload window of %s: %w", rt.name, err)
	}
	defer c.abort()
	defer it.close()
	for {
		r, ok, err := it.next()
		if err != nil {
			return fmt.Errorf("reload window of %s: %w", rt.name, err)
		}
		if !ok {
			return nil
		}
		r.seq = 0
		if err := w.spill.add(r); err != nil {
			return err
		}
	}
}

// truncated handles TRUNCATE of a reload table: it opens a window or, inside one,
// forgets the rows inserted so far.
func (rm *reloadManager) truncated(rt *reloadTable, ts uint32) {
	if w := rt.win; w != nil {
		if a := w.stream; a != nil {
			w.stream = nil
			a.drop()
			rm.deadLetters(rt, a.takeDead())
		}
		w.dropSpill()
		w.inserted = 0
		w.lastWrite = int64(ts)
		rm.startStream(rt)
		return
	}
	rm.openWindow(rt, "truncate", false, ts)
}

// pushLog interprets a change of the push_log table.
func (rm *reloadManager) pushLog(db string, op schemas.Op, before, after map[string]any, ts uint32) {
	if rm.s.opts.Reload.Detect != DetectPushLog || after == nil {
		return
	}
	name, _ := after["table_name"].(string)
	rt := rm.tables[db+"."+name]
	if rt == nil {
		return
	}
	switch {
	case op == schemas.OpCreate && after["finished_at"] == nil && after["started_at"] != nil:
		rm.openWindow(rt, "push_log", true, ts)
	case op == schemas.OpUpdate && before != nil && before["finished_at"] == nil && after["finished_at"] != nil:
		if rt.win != nil {
			rt.closeDue = true
		}
	}
}

// tick closes quiet windows: now is the binlog time of the event being read, or the
// wall clock when the stream is idle. Binlog timestamps are whole seconds, so a window
// closes after more than QuietPeriod (up to one second more) without writes.
func (rm *reloadManager) tick(now int64) {
	q := int64(rm.s.opts.Reload.QuietPeriod / time.Second)
	maxOpen := int64(rm.s.opts.Reload.MaxWindow / time.Second)
	for _, rt := range rm.tables {
		w := rt.win
		if w == nil || rt.closeDue {
			continue
		}
		switch {
		case !w.byPushLog && now-w.lastWrite > q:
			rt.closeDue = true
		case maxOpen > 0 && w.openedAt > 0 && now-w.openedAt > maxOpen:
			rt.closeDue = true
			rm.s.m.reloadWindows.WithLabelValues(rt.name, "timed_out").Inc()
			rm.s.log.Warn("reload window open longer than reload.max_window: closing it as it stands (the push may have died; the mass-delete breaker holds a half-loaded table's deletes)",
				"table", rt.name, "reason", w.reason, "opened", time.Unix(w.openedAt, 0).UTC().Format(time.RFC3339),
				"max_window", rm.s.opts.Reload.MaxWindow, "rows_so_far", w.inserted)
		}
	}
}

// bufferTx appends a change of a quiet-mode table to the transaction's buffer and
// reports whether the buffered deletes now make it a reload.
func (rm *reloadManager) bufferTx(rt *reloadTable, c capture.Change, isDelete bool) (bool, error) {
	if rt.tx == nil {
		f, err := os.CreateTemp(rt.dir, "tx-*.tmp")
		if err != nil {
			return false, fmt.Errorf("reload state of %s: transaction buffer: %w", rt.name, err)
		}
		rt.tx = &txBuffer{path: f.Name(), f: f, w: bufio.NewWriterSize(f, 256<<10)}
	}
	if err := writeDrained(rt.tx.w, c); err != nil {
		return false, fmt.Errorf("reload state of %s: transaction buffer: %w", rt.name, err)
	}
	rt.tx.n++
	if isDelete {
		rt.tx.deletes++
	}
	return float64(rt.tx.deletes) > rm.s.opts.Reload.DeleteShare*float64(max(rt.rows, 1)), nil
}

func writeDrained(w io.Writer, c capture.Change) error {
	d := drainedChange{Topic: c.Topic, Key: c.Key, Envelope: c.Envelope}
	if c.DeadLetter != nil {
		d.DLQ = &dlqPart{Rec: *c.DeadLetter, Code: c.DeadLetterReason}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

func (rm *reloadManager) dropTx(rt *reloadTable) {
	if rt.tx != nil {
		rt.tx.f.Close()
		os.Remove(rt.tx.path)
		rt.tx = nil
	}
}

// txToWindow replays a buffered transaction into a window that it turned out to open.
func (rm *reloadManager) txToWindow(rt *reloadTable, pk []string, ts uint32) error {
	tx := rt.tx
	rt.tx = nil
	defer func() { tx.f.Close(); os.Remove(tx.path) }()
	if err := tx.w.Flush(); err != nil {
		return fmt.Errorf("reload state of %s: transaction buffer: %w", rt.name, err)
	}
	rm.openWindow(rt, "mass_delete", false, ts)
	if _, err := tx.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("reload state of %s: transaction buffer: %w", rt.name, err)
	}
	dec := json.NewDecoder(bufio.NewReader(tx.f))
	dec.UseNumber()
	for {
		var d drainedChange
		if err := dec.Decode(&d); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reload state of %s: read transaction buffer: %w", rt.name, err)
		}
		if d.DLQ != nil {
			continue
		}
		if err := rm.windowRow(rt, d.Envelope.Op, pk, d.Envelope.Before, d.Envelope.After, 0); err != nil {
			return err
		}
	}
}

// onCommit ends the transaction's buffers: what did not open a window is handed out
// as ordinary changes (and recorded into the state as it goes).
func (rm *reloadManager) onCommit() error {
	for _, name := range rm.order {
		rt := rm.tables[name]
		if rt.tx == nil {
			continue
		}
		tx := rt.tx
		rt.tx = nil
		if err := tx.w.Flush(); err != nil {
			return fmt.Errorf("reload state of %s: transaction buffer: %w", rt.name, err)
		}
		if _, err := tx.f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("reload state of %s: transaction buffer: %w", rt.name, err)
		}
		dec := json.NewDecoder(bufio.NewReaderSize(tx.f, 256<<10))
		dec.UseNumber()
		rm.drains = append(rm.drains, &drain{path: tx.path, f: tx.f, dec: dec, overlay: rt})
	}
	return nil
}

// abortTx forgets the half-read transaction after a reconnect (it is read again).
func (rm *reloadManager) abortTx() {
	for _, rt := range rm.tables {
		rm.dropTx(rt)
	}
}

// RequestRelease is the locked part of ReleaseHeldDeletes.
func (rm *reloadManager) requestRelease(table string) error {
	rt := rm.tables[table]
	if rt == nil {
		return fmt.Errorf("table %s is not configured for reload collapse (reload.tables)", table)
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if !slices.Contains(rm.releases, table) {
		rm.releases = append(rm.releases, table)
	}
	return nil
}

// work does the reload work that is due between transactions: hand out a pending
// drain, collapse a closed window, release held deletes, drop acknowledged state. It
// reports whether it produced anything.
func (rm *reloadManager) work(ctx context.Context) (bool, error) {
	if err := rm.prune(); err != nil {
		return false, err
	}
	if len(rm.drains) > 0 {
		return true, rm.drainSome(512)
	}
	for _, name := range rm.order {
		rt := rm.tables[name]
		if rt.closeDue && rt.win != nil {
			rt.closeDue = false
			return true, rm.closeWindow(ctx, rt)
		}
		rt.closeDue = false
	}
	rm.mu.Lock()
	var rel string
	for i, t := range rm.releases {
		if rt := rm.tables[t]; rt.win == nil {
			rel = t
			rm.releases = slices.Delete(rm.releases, i, i+1)
			break
		}
	}
	rm.mu.Unlock()
	if rel != "" {
		return true, rm.release(rm.tables[rel])
	}
	return false, nil
}

func (rm *reloadManager) drainSome(n int) error {
	s := rm.s
	d := rm.drains[0]
	for i := 0; i < n; i++ {
		var dc drainedChange
		var err error
		if d.changes != nil {
			err = d.nextChange(&dc)
		} else {
			err = d.dec.Decode(&dc)
		}
		if err == io.EOF {
			d.f.Close()
			os.Remove(d.path)
			rm.drains = rm.drains[1:]
			if rm.quiet() {
				s.positionOnly(time.Now().UnixMilli())
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("capture %s: read %s: %w", s.opts.Name, d.path, err)
		}
		c := capture.Change{Topic: dc.Topic, Key: dc.Key, Envelope: dc.Envelope}
		if dc.DLQ != nil {
			r := dc.DLQ.Rec
			c.DeadLetter, c.DeadLetterReason = &r, dc.DLQ.Code
		} else if d.overlay != nil {
			e := &dc.Envelope
			s.m.events.WithLabelValues(d.overlay.name, string(e.Op)).Inc()
			if err := rm.record(d.overlay, e.Op, sortedCols(e.Key), e.Before, e.After); err != nil {
				return err
			}
		}
		s.out = append(s.out, c)
	}
	return nil
}

// decodeMap decodes a state record's JSON (numbers stay json.Number, as the drain of
// a transaction buffer decodes them).
func decodeMap(b []byte) (map[string]any, error) {
	if b == nil {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	err := dec.Decode(&m)
	return m, err
}

// changesDrain hands out the changes cw wrote for rt, as of the current binlog
// position and the binlog time ts (Unix seconds).
func (rm *reloadManager) changesDrain(rt *reloadTable, cw *changeWriter, ts int64) (*drain, error) {
	if err := cw.flush(); err != nil {
		return nil, err
	}
	cr, err := openChanges(cw.f)
	if err != nil {
		return nil, err
	}
	s := rm.s
	db, tb, _ := strings.Cut(rt.name, ".")
	return &drain{path: cw.f.Name(), f: cw.f, changes: cr, topic: s.topic(rt.name), meta: schemas.Envelope{V: schemas.EnvelopeVersion,
		Source: schemas.Source{System: s.opts.Name, Kind: Kind, DB: db, Table: tb,
			BinlogFile: s.cur.File, BinlogPos: s.cur.Pos, CommitMs: ts * 1000},
		Schema: schemas.SchemaRef{Name: rt.name, Version: s.versionOf(rt.name)}}}, nil
}

// nextChange makes the next change of a collapse drain (io.EOF at the end).
func (d *drain) nextChange(dc *drainedChange) error {
	op, key, before, after, ok, err := d.changes.next()
	if err != nil {
		return err
	}
	if !ok {
		return io.EOF
	}
	d.meta.Source.Seq++
	dc.Topic, dc.Key, dc.Envelope = d.topic, key, d.meta
	env := &dc.Envelope
	env.Op = op
	if env.Key, err = decodeMap(key); err != nil {
		return fmt.Errorf("reload state %s: key %s: %w", d.path, key, err)
	}
	if env.Before, err = decodeMap(before); err != nil {
		return fmt.Errorf("reload state %s: stored row %s: %w", d.path, key, err)
	}
	if env.After, err = decodeMap(after); err != nil {
		return fmt.Errorf("reload state %s: row %s: %w", d.path, key, err)
	}
	return nil
}

func sortedCols(k map[string]any) []string {
	out := make([]string, 0, len(k))
	for c := range k {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// openView opens the merged state of generation g: base with overlays applied, deleted
// rows (tombstones, and vanished rows of a generation that is not held) left out.
// An overlay whose keys already ascend (the seeding snapshot's, read in key order) is
// merged as it is; any other goes through a sorter first. sorted names an overlay
// known to ascend (""): it is not checked. Later overlays override
// earlier ones, and within an overlay the later record of a key wins.
func openView(rt *reloadTable, g *generation, sorted string) (recIter, func(), error) {
	var sorters []*sorter
	var its []recIter
	cleanup := func() {
		for _, it := range its {
			it.close()
		}
		for _, so := range sorters {
			so.remove()
		}
	}
	if g.Base != "" {
		br, err := openRecReader(filepath.Join(rt.dir, g.Base))
		if err != nil {
			return nil, nil, err
		}
		its = append(its, br)
	}
	for _, o := range g.Overlays {
		path := filepath.Join(rt.dir, o)
		ascends := o == sorted
		if !ascends {
			_, asc, _, err := skimRecFile(path)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				cleanup()
				return nil, nil, err
			}
			ascends = asc
		}
		if ascends {
			rr, err := openRecReader(path)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				cleanup()
				return nil, nil, err
			}
			its = append(its, rr)
			continue
		}
		so := newSorter(rt.dir, "overlay")
		sorters = append(sorters, so)
		rr, err := openRecReader(path)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		for {
			r, ok, err := rr.next()
			if err != nil {
				rr.close()
				cleanup()
				return nil, nil, err
			}
			if !ok {
				break
			}
			r.seq = 0
			if err := so.add(r); err != nil {
				rr.close()
				cleanup()
				return nil, nil, err
			}
		}
		rr.close()
		it, err := so.iter()
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		its = append(its, it)
	}
	m, err := mergeRecs(its)
	its = nil // the merge owns them now (and closed them on error)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return filterIter{m, live(g.Held)}, func() { m.close(); cleanup() }, nil
}

// filterIter yields the records of it that keep accepts.
type filterIter struct {
	it   recIter
	keep func(r *rec) bool
}

func (f filterIter) next() (rec, bool, error) {
	for {
		r, ok, err := f.it.next()
		if err != nil || !ok || f.keep(&r) {
			return r, ok, err
		}
	}
}
func (f filterIter) close() { f.it.close() }

// live keeps the rows of a stored image: no tombstones, and vanished rows only while
// their deletes are held (they are still downstream).
func live(held bool) func(r *rec) bool {
	return func(r *rec) bool { return r.flags&recTomb == 0 && (r.flags&recVanished == 0 || held) }
}

// notTomb drops tombstones (from a window's spill).
func notTomb(r *rec) bool { return r.flags&recTomb == 0 }

// closeWindow collapses a finished reload: the comparison of the window's rows with
// the stored image is finished (or, for a window whose rows came out of key order,
// run now over the sorted rows), its real changes are queued and the next generation
// becomes current.
func (rm *reloadManager) closeWindow(ctx context.Context, rt *reloadTable) error {
	s := rm.s
	w := rt.win
	rt.win = nil
	defer w.dropRows()
	began := time.Now()
	var c *collapser
	var err error
	if a := w.stream; a != nil {
		c, err = a.stop(true)
		w.stream = nil
		rm.deadLetters(rt, a.takeDead())
	} else {
		c, err = rm.collapseSorted(ctx, rt, w)
	}
	if err != nil {
		return fmt.Errorf("capture %s: collapse reload of %s: %w", s.opts.Name, rt.name, err)
	}
	return rm.commitCollapse(rt, w, c, began)
}

// collapseSorted compares the sorted rows of a window that did not come in key order.
func (rm *reloadManager) collapseSorted(ctx context.Context, rt *reloadTable, w *window) (*collapser, error) {
	if rt.ow != nil {
		if err := rt.ow.flush(false); err != nil {
			return nil, err
		}
	}
	c, err := newCollapser(rt, rt.cur(), rt.sortedOverlay(), rm.s.countyCols)
	if err != nil {
		return nil, err
	}
	winIt, err := w.spill.iter()
	if err != nil {
		c.abort()
		return nil, err
	}
	// The window's runs are decoded and merged a batch ahead on another goroutine,
	// as the stored image is.
	newIt := newPrefetchIter(filterIter{winIt, notTomb})
	defer newIt.close()
	for i := 0; ; i++ {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				c.abort()
				return nil, err
			}
		}
		n, ok, err := newIt.next()
		if err == nil && ok {
			err = c.add(&n)
		}
		if err != nil {
			c.abort()
			return nil, err
		}
		if !ok {
			break
		}
	}
	if err := c.finish(); err != nil {
		c.abort()
		return nil, err
	}
	return c, nil
}

// commitCollapse queues a finished comparison's changes (and, unless the breaker holds
// them, the deletes of the vanished rows) and makes its base the next generation.
func (rm *reloadManager) commitCollapse(rt *reloadTable, w *window, c *collapser, began time.Time) error {
	s := rm.s
	old := rt.cur()
	epoch := old.Epoch + 1
	baseName := fmt.Sprintf("base-%d.rec", epoch)
	fail := func(err error) error {
		c.abort()
		os.Remove(filepath.Join(rt.dir, baseName))
		return fmt.Errorf("capture %s: collapse reload of %s: %w", s.opts.Name, rt.name, err)
	}
	oldRows, newRows, unchanged, vanished := c.oldRows, c.newRows, c.unchanged, c.vanished
	oldByCounty, vanByCounty := c.oldByCounty, c.vanByCounty
	// Mass-delete circuit breaker.
	md := s.opts.MassDelete
	held := false
	var why []any
	if vanished > 0 && float64(vanished) > md.MaxShare*float64(oldRows) {
		held = true
		why = append(why, "share", fmt.Sprintf("%.4f > %.4f", float64(vanished)/float64(oldRows), md.MaxShare))
	}
	worst, worstShare := "", 0.0
	for county, v := range vanByCounty {
		if county == "" {
			continue
		}
		if sh := float64(v) / float64(oldByCounty[county]); sh > md.MaxCountyShare && sh > worstShare {
			worst, worstShare = county, sh
		}
	}
	if worst != "" {
		held = true
		why = append(why, "county", worst, "county_vanished", vanByCounty[worst], "county_rows", oldByCounty[worst],
			"county_share", fmt.Sprintf("%.4f > %.4f", worstShare, md.MaxCountyShare))
	}
	if w.unkeyed > 0 && vanished > 0 {
		// Rows of the push that went to the DLQ without a readable key may be the
		// rows that look vanished: deleting them would turn a bad row into a loss.
		held = true
		why = append(why, "unkeyed_bad_rows", w.unkeyed)
	}
	if c.kept > 0 {
		s.log.Warn("reload kept the stored rows of keys whose pushed row did not convert (see the DLQ)", "table", rt.name, "kept", c.kept)
		s.m.reloadRows.WithLabelValues(rt.name, "kept").Add(float64(c.kept))
	}
	n := map[schemas.Op]int64{schemas.OpUpdate: c.updated, schemas.OpCreate: c.created}
	if !held && vanished > 0 {
		// The deletes follow the updates and creates in the changes handed out.
		rr, err := openRecReader(c.vw.f.Name())
		if err != nil {
			return fail(err)
		}
		for {
			r, ok, err := rr.next()
			if err == nil && ok {
				err = c.cw.add(schemas.OpDelete, r.key, r.row, nil)
			}
			if err != nil {
				rr.close()
				return fail(err)
			}
			if !ok {
				break
			}
		}
		rr.close()
		n[schemas.OpDelete] = vanished
	}
	if err := c.cw.flush(); err != nil {
		return fail(err)
	}
	if err := c.bw.close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(c.bw.f.Name(), filepath.Join(rt.dir, baseName)); err != nil {
		return fail(fmt.Errorf("reload state: %w", err))
	}
	d, err := rm.changesDrain(rt, c.cw, w.lastWrite)
	if err != nil {
		return fail(err)
	}
	// The new generation becomes current before its changes are handed out; the
	// position after them carries its epoch, and until that is acknowledged the old
	// generation stays for a rollback.
	g := generation{Epoch: epoch, Base: baseName, Overlays: []string{fmt.Sprintf("overlay-%d.log", epoch)},
		Held: held, Rows: newRows, Created: time.Now().UTC(), At: fmt.Sprintf("%s:%d", s.cur.File, s.cur.Pos)}
	if held {
		g.HeldRows = vanished
		g.Rows += vanished
	}
	if err := rm.switchGen(rt, g); err != nil {
		return fail(err)
	}
	c.cw = nil // the drain owns the changes file now
	c.abort()  // the base was renamed: only the temporary files go
	rm.drains = append(rm.drains, d)
	emitted := n[schemas.OpCreate] + n[schemas.OpUpdate] + n[schemas.OpDelete]
	m := s.m
	m.reloadWindows.WithLabelValues(rt.name, "closed").Inc()
	m.reloadRows.WithLabelValues(rt.name, "compared").Add(float64(newRows))
	m.reloadRows.WithLabelValues(rt.name, "unchanged").Add(float64(unchanged))
	m.reloadRows.WithLabelValues(rt.name, "changed").Add(float64(n[schemas.OpUpdate]))
	m.reloadRows.WithLabelValues(rt.name, "created").Add(float64(n[schemas.OpCreate]))
	m.reloadRows.WithLabelValues(rt.name, "deleted").Add(float64(n[schemas.OpDelete]))
	for _, op := range []schemas.Op{schemas.OpCreate, schemas.OpUpdate, schemas.OpDelete} {
		m.reloadEvents.WithLabelValues(rt.name, string(op)).Set(float64(n[op]))
		m.events.WithLabelValues(rt.name, string(op)).Add(float64(n[op]))
	}
	if newRows > 0 {
		m.collapseRatio.WithLabelValues(rt.name).Set(float64(emitted) / float64(newRows))
	}
	m.held.WithLabelValues(rt.name).Set(b2f(held))
	attrs := []any{"table", rt.name, "reason", w.reason, "rows_before", oldRows, "rows_reloaded", newRows,
		"unchanged", unchanged, "updated", n[schemas.OpUpdate], "created", n[schemas.OpCreate],
		"vanished", vanished, "emitted", emitted, "took", time.Since(began).Round(time.Millisecond)}
	if held {
		m.reloadRows.WithLabelValues(rt.name, "held").Add(float64(vanished))
		s.log.Error("mass-delete circuit breaker: holding the deletes of a reload (check with the data owner, then: shouwang held list / shouwang held release --source S --table T)",
			append(append(attrs, "rows_held", vanished), why...)...)
	} else {
		s.log.Info("reload window closed", attrs...)
	}
	return nil
}

// switchGen makes g the current generation of rt, with a fresh overlay.
func (rm *reloadManager) switchGen(rt *reloadTable, g generation) error {
	if rt.ow != nil {
		if err := rt.ow.close(); err != nil {
			return err
		}
		rt.ow = nil
	}
	rt.man.Gens = append(rt.man.Gens, g)
	if err := rm.saveManifest(rt); err != nil {
		return err
	}
	ow, err := appendRecWriter(filepath.Join(rt.dir, g.Overlays[len(g.Overlays)-1]))
	if err != nil {
		return err
	}
	rt.ow, rt.owSorted, rt.owLast = ow, true, nil
	rt.rows = g.Rows
	rm.s.committed.Reload = rm.epochs()
	return nil
}

// release emits the held deletes of rt and makes a generation without them.
func (rm *reloadManager) release(rt *reloadTable) error {
	s := rm.s
	cur := rt.cur()
	if !cur.Held || cur.HeldRows == 0 {
		s.log.Warn("release of held deletes requested, but none are held", "table", rt.name)
		return nil
	}
	if !cur.ReleaseRequested {
		// Survives a rollback to this generation: the release is then redone.
		cur.ReleaseRequested = true
		if err := rm.saveManifest(rt); err != nil {
			return err
		}
	}
	if rt.ow != nil {
		if err := rt.ow.flush(false); err != nil {
			return err
		}
	}
	it, cleanup, err := openView(rt, cur, rt.sortedOverlay())
	if err != nil {
		return fmt.Errorf("capture %s: release held deletes of %s: %w", s.opts.Name, rt.name, err)
	}
	defer cleanup()
	epoch := cur.Epoch + 1
	baseName := fmt.Sprintf("base-%d.rec", epoch)
	bw, err := createRecWriter(filepath.Join(rt.dir, baseName))
	if err != nil {
		return err
	}
	cw, err := createChangeWriter(rt.dir)
	if err != nil {
		bw.close()
		return err
	}
	abort := func() { cw.f.Close(); os.Remove(cw.f.Name()) }
	var rows, released int64
	for {
		r, ok, err := it.next()
		if err == nil && ok {
			if r.flags&recVanished != 0 {
				released++
				err = cw.add(schemas.OpDelete, r.key, r.row, nil)
			} else {
				rows++
				r.seq = 0
				err = bw.write(&r)
			}
		}
		if err != nil {
			bw.close()
			abort()
			return fmt.Errorf("capture %s: release held deletes of %s: %w", s.opts.Name, rt.name, err)
		}
		if !ok {
			break
		}
	}
	if err := bw.close(); err != nil {
		abort()
		return err
	}
	d, err := rm.changesDrain(rt, cw, time.Now().Unix())
	if err != nil {
		abort()
		return err
	}
	g := generation{Epoch: epoch, Base: baseName, Overlays: []string{fmt.Sprintf("overlay-%d.log", epoch)},
		Rows: rows, Created: time.Now().UTC(), At: fmt.Sprintf("%s:%d", s.cur.File, s.cur.Pos)}
	if err := rm.switchGen(rt, g); err != nil {
		abort()
		return err
	}
	rm.drains = append(rm.drains, d)
	s.m.held.WithLabelValues(rt.name).Set(0)
	s.m.reloadRows.WithLabelValues(rt.name, "deleted").Add(float64(released))
	s.m.events.WithLabelValues(rt.name, string(schemas.OpDelete)).Add(float64(released))
	s.log.Warn("held reload deletes released", "table", rt.name, "deletes", released)
	return nil
}

// ReleaseHeldDeletes emits the deletes the mass-delete circuit breaker is holding for
// table ("db.table") after an operator checked that the rows really left the source.
// It only queues the request: the reading loop emits the deletes between
// transactions (once no reload window of the table is open), and the request is
// persisted with the state so that a restart before they are acknowledged redoes it.
// `shouwang held release --source NAME --table DB.TABLE` reaches it through the
// signal topic and the running capture worker. A later reload that brings the rows
// back drops the held deletes by itself.
func (s *Source) ReleaseHeldDeletes(table string) error {
	if s.reload == nil {
		return fmt.Errorf("capture %s: release held deletes of %s: no table is configured for reload collapse", s.opts.Name, table)
	}
	if err := s.reload.requestRelease(table); err != nil {
		return fmt.Errorf("capture %s: release held deletes: %w", s.opts.Name, err)
	}
	return nil
}
