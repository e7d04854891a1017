package mysqlbinlog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/shouwang/shouwang/schemas"
)

// The comparison of a reload window with the stored image.
//
// A collapser takes the window's rows in strictly ascending key order and walks the
// stored image (base + overlays, key-sorted) alongside: a stored row passed over is a
// vanished row, an equal row is unchanged, a different row is an update, a row with no
// stored row is new. As it goes it writes the next generation's base, the vanished
// rows and the real changes (to temporary files in the table's state directory, named
// *.tmp so that a restart removes them).
//
// National pushes load their tables in primary-key order, so the window's rows usually
// arrive sorted: the window then feeds them to a collapser on its own goroutine while
// the binlog is still being read (asyncCollapser), and closing the window only has to
// finish the walk of the stored image. When a row arrives out of key order, or a row
// the window already inserted is deleted or changed, the window turns to sorting: the
// rows compared so far are read back from the unfinished base into a sorter, and the
// window close feeds the sorted rows to a new collapser instead.

// collapseCounts are a collapse's totals, for the breaker, the metrics and the log.
type collapseCounts struct {
	oldRows, newRows, unchanged, updated, created, vanished int64
	// kept counts stored rows left as they were because the window's row of their
	// key did not convert (recKeep).
	kept                     int64
	oldByCounty, vanByCounty map[string]int64
}

// baseSyncBytes is how much of a new base is written between background syncs.
const baseSyncBytes = 64 << 20

type collapser struct {
	rt      *reloadTable
	old     *prefetchIter
	cleanup func()
	o       rec
	oOK     bool
	// bw is the next generation's base, vw the vanished rows, cw the updates and
	// creates: all temporary until the window's collapse is committed.
	bw, vw *recWriter
	cw     *changeWriter
	enc    recEncoder
	collapseCounts
}

// newCollapser opens the stored image of generation g of rt (sorted: see openView).
// The caller must have flushed rt's overlay writer. countyCols are the columns
// addRow takes the county code of a row from.
func newCollapser(rt *reloadTable, g *generation, sorted string, countyCols []string) (c *collapser, err error) {
	view, cleanup, err := openView(rt, g, sorted)
	if err != nil {
		return nil, err
	}
	c = &collapser{rt: rt, old: newPrefetchIter(view), cleanup: cleanup, enc: recEncoder{countyCols: countyCols},
		collapseCounts: collapseCounts{oldByCounty: map[string]int64{}, vanByCounty: map[string]int64{}}}
	defer func() {
		if err != nil {
			c.abort()
			c = nil
		}
	}()
	if c.bw, err = createTempRecWriter(rt.dir, "collapse-base-*.tmp"); err != nil {
		return c, err
	}
	c.bw.syncInBackground(baseSyncBytes)
	if c.vw, err = createTempRecWriter(rt.dir, "collapse-vanished-*.tmp"); err != nil {
		return c, err
	}
	if c.cw, err = createChangeWriter(rt.dir); err != nil {
		return c, err
	}
	c.o, c.oOK, err = c.old.next()
	return c, err
}

func createTempRecWriter(dir, pattern string) (*recWriter, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, fmt.Errorf("reload state: %w", err)
	}
	f.Close()
	return createRecWriter(f.Name())
}

// add compares the window row n, whose key is greater than every key added before.
func (c *collapser) add(n *rec) error {
	for c.oOK {
		k := bytes.Compare(c.o.key, n.key)
		if k > 0 {
			break
		}
		c.oldRows++
		c.oldByCounty[string(c.o.county)]++
		if k < 0 {
			if err := c.vanish(); err != nil {
				return err
			}
			continue
		}
		c.newRows++
		if n.flags&recKeep != 0 {
			c.kept++
			c.o.flags, c.o.seq = 0, 0
			if err := c.bw.write(&c.o); err != nil {
				return err
			}
			return c.nextOld()
		}
		if bytes.Equal(c.o.row, n.row) {
			c.unchanged++
		} else {
			c.updated++
			if err := c.cw.add(schemas.OpUpdate, n.key, c.o.row, n.row); err != nil {
				return err
			}
		}
		n.flags, n.seq = 0, 0
		if err := c.bw.write(n); err != nil {
			return err
		}
		return c.nextOld()
	}
	if n.flags&recKeep != 0 {
		return nil // a new key whose row did not convert: nothing to keep, nothing to create
	}
	c.newRows++
	c.created++
	if err := c.cw.add(schemas.OpCreate, n.key, nil, n.row); err != nil {
		return err
	}
	n.flags, n.seq = 0, 0
	return c.bw.write(n)
}

func (c *collapser) nextOld() error {
	var err error
	c.o, c.oOK, err = c.old.next()
	return err
}

// vanish records the current stored row as absent from the reload and moves on.
func (c *collapser) vanish() error {
	c.vanished++
	c.vanByCounty[string(c.o.county)]++
	c.o.flags, c.o.seq = recVanished, 0
	if err := c.bw.write(&c.o); err != nil {
		return err
	}
	if err := c.vw.write(&c.o); err != nil {
		return err
	}
	return c.nextOld()
}

// finish marks the stored rows after the last window row vanished.
func (c *collapser) finish() error {
	for c.oOK {
		c.oldRows++
		c.oldByCounty[string(c.o.county)]++
		if err := c.vanish(); err != nil {
			return err
		}
	}
	c.closeOld()
	if err := c.vw.close(); err != nil {
		return err
	}
	return c.cw.flush()
}

func (c *collapser) closeOld() {
	if c.old != nil {
		c.old.close()
		c.cleanup()
		c.old = nil
	}
}

// windowRows reads back the window rows added so far (the unfinished base without
// its vanished rows); the caller closes the iterator.
func (c *collapser) windowRows() (recIter, error) {
	if err := c.bw.flush(false); err != nil {
		return nil, err
	}
	rr, err := openRecReader(c.bw.f.Name())
	if err != nil {
		return nil, err
	}
	return filterIter{rr, func(r *rec) bool { return r.flags&recVanished == 0 }}, nil
}

// abort closes and removes everything the collapser opened or wrote.
func (c *collapser) abort() {
	c.closeOld()
	for _, w := range []*recWriter{c.bw, c.vw} {
		if w != nil {
			w.stopSyncing()
			w.f.Close()
			os.Remove(w.f.Name())
		}
	}
	if c.cw != nil {
		c.cw.f.Close()
		os.Remove(c.cw.f.Name())
	}
}

// changeWriter keeps a collapse's updates and creates until the window closes, when
// they become envelopes (which carry the close's position and schema version):
//
//	op | uvarint len(key) | key | uvarint len(before) | before | uvarint len(after) | after
type changeWriter struct {
	f   *os.File
	w   *bufio.Writer
	buf []byte
}

func createChangeWriter(dir string) (*changeWriter, error) {
	f, err := os.CreateTemp(dir, "collapse-changes-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("reload state: %w", err)
	}
	return &changeWriter{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (cw *changeWriter) add(op schemas.Op, key, before, after []byte) error {
	b := append(cw.buf[:0], op[0])
	for _, f := range [][]byte{key, before, after} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	cw.buf = b
	if _, err := cw.w.Write(b); err != nil {
		return fmt.Errorf("reload state: write %s: %w", cw.f.Name(), err)
	}
	return nil
}

func (cw *changeWriter) flush() error {
	if err := cw.w.Flush(); err != nil {
		return fmt.Errorf("reload state: write %s: %w", cw.f.Name(), err)
	}
	return nil
}

// changeReader reads a changeWriter's file from its start.
type changeReader struct {
	f *os.File
	r *bufio.Reader
}

func openChanges(f *os.File) (*changeReader, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reload state: %w", err)
	}
	return &changeReader{f: f, r: bufio.NewReaderSize(f, 64<<10)}, nil
}

func (cr *changeReader) field() ([]byte, error) {
	n, err := binary.ReadUvarint(cr.r)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	if n > 1<<30 {
		return nil, fmt.Errorf("field of %d bytes", n)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(cr.r, b)
	return b, err
}

// next returns the next change; ok is false at the end.
func (cr *changeReader) next() (op schemas.Op, key, before, after []byte, ok bool, err error) {
	o, err := cr.r.ReadByte()
	if errors.Is(err, io.EOF) {
		return "", nil, nil, nil, false, nil
	}
	if err == nil {
		key, err = cr.field()
	}
	if err == nil {
		before, err = cr.field()
	}
	if err == nil {
		after, err = cr.field()
	}
	if err != nil {
		return "", nil, nil, nil, false, fmt.Errorf("reload state: read %s: %w", cr.f.Name(), err)
	}
	return schemas.Op(string(rune(o))), key, before, after, true, nil
}

// asyncCollapseBatch is how many window rows go to the collapser's goroutine at once.
const asyncCollapseBatch = 512

// asyncCollapser runs a collapser on its own goroutine, fed batches of window rows by
// the reading goroutine. The goroutine owns the collapser until stop returns.
type asyncCollapser struct {
	in    chan []windowItem
	free  chan []windowItem
	done  chan error
	batch []windowItem
	// last is the key of the last row added (reading goroutine).
	last []byte
	rows int64
	// finishing is set before in is closed: walk the rest of the stored image.
	finishing bool
	aborted   atomic.Bool
	c         *collapser
	// dead are the row images whose values did not convert (left out of the
	// window, as the ordinary path leaves them); the reading goroutine takes them
	// (takeDead) and sends them to the DLQ as it goes, and the rest once the
	// goroutine is done.
	deadMu sync.Mutex
	dead   []windowItem
	nDead  atomic.Int64
	// failed holds the goroutine's first error, so that the reading goroutine stops
	// at the next row instead of at the window close.
	failed atomic.Pointer[error]
	plan   *rowPlan
}

// windowItem is a window row handed to the comparison: a record, or a row the
// comparison's goroutine encodes (the encoding is the costliest part of taking a
// window row, and the reading goroutine is the busiest).
type windowItem struct {
	r   rec
	row map[string]any
	// or a binlog row image to convert (rawrow.go); meta is where it was read, for
	// the DLQ when a value does not convert.
	specs []colSpec
	pk    []string
	raw   []any
	meta  rowMeta
}

// startCollapse starts comparing a new window of rt with rt's current image.
func (rm *reloadManager) startCollapse(rt *reloadTable) (*asyncCollapser, error) {
	if rt.ow != nil {
		if err := rt.ow.flush(false); err != nil {
			return nil, err
		}
	}
	g := *rt.cur()
	sorted := rt.sortedOverlay()
	a := &asyncCollapser{in: make(chan []windowItem, 8), free: make(chan []windowItem, 10), done: make(chan error, 1),
		batch: make([]windowItem, 0, asyncCollapseBatch)}
	go a.run(rt, &g, sorted, rm.s.countyCols)
	return a, nil
}

func (a *asyncCollapser) run(rt *reloadTable, g *generation, sorted string, countyCols []string) {
	c, err := newCollapser(rt, g, sorted, countyCols)
	a.c = c
	if err != nil {
		a.failed.Store(&err)
	}
	for b := range a.in {
		for i := 0; err == nil && i < len(b) && !a.aborted.Load(); i++ {
			it := &b[i]
			switch {
			case it.raw != nil:
				var ok bool
				if ok, err = a.encodeRaw(c, it); err == nil && !ok {
					a.deadMu.Lock()
					a.dead = append(a.dead, *it)
					a.deadMu.Unlock()
					a.nDead.Add(1)
					// The key converted (the reading goroutine made it): its stored
					// row stays.
					it.r = rec{key: it.r.key, flags: recKeep}
				}
			case it.row != nil:
				it.r, err = c.enc.rec(it.r.key, it.row)
			}
			if err == nil {
				err = c.add(&it.r)
			}
			if err != nil {
				a.failed.Store(&err)
			}
		}
		clear(b)
		select {
		case a.free <- b[:0]:
		default:
		}
	}
	if err == nil && a.finishing && !a.aborted.Load() {
		err = c.finish()
	}
	a.done <- err
}

// encodeRaw makes it.r from the row image it.raw; false when a value does not
// convert (an error only when a converted row does not encode, as for putRec).
func (a *asyncCollapser) encodeRaw(c *collapser, it *windowItem) (bool, error) {
	if a.plan == nil || !a.plan.fits(it.specs) {
		a.plan = newRowPlan(it.specs, c.enc.countyCols)
	}
	b, county, err := a.plan.encode(c.enc.scratch[:0], it.raw)
	c.enc.scratch = b
	var bad *badValue
	if errors.As(err, &bad) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("encode row %s: %w", it.r.key, err)
	}
	buf := make([]byte, len(b)+len(county))
	copy(buf, b)
	copy(buf[len(b):], county)
	it.r.row = buf[:len(b):len(b)]
	if county != "" {
		it.r.county = buf[len(b):]
	}
	return true, nil
}

// err is the goroutine's first error, if any.
func (a *asyncCollapser) err() error {
	if p := a.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// takeDead returns the rows found not to convert so far (reading goroutine).
func (a *asyncCollapser) takeDead() []windowItem {
	if a.nDead.Load() == 0 {
		return nil
	}
	a.deadMu.Lock()
	defer a.deadMu.Unlock()
	d := a.dead
	a.dead = nil
	a.nDead.Store(0)
	return d
}

// accepts reports whether a row with key k can be added: its key is greater than
// every key added so far.
func (a *asyncCollapser) accepts(k []byte) bool {
	return a.last == nil || bytes.Compare(k, a.last) > 0
}

// add queues r, whose key accepts.
func (a *asyncCollapser) add(r rec) { a.queue(windowItem{r: r}) }

// addRaw queues the row image raw of specs, read at meta, to be converted and encoded
// as the record of key, which accepts.
func (a *asyncCollapser) addRaw(key []byte, specs []colSpec, pk []string, raw []any, meta rowMeta) {
	a.queue(windowItem{r: rec{key: key}, specs: specs, pk: pk, raw: raw, meta: meta})
}

// addRow queues row to be encoded as the record of key, which accepts. The row must
// not change afterwards.
func (a *asyncCollapser) addRow(key []byte, row map[string]any) {
	a.queue(windowItem{r: rec{key: key}, row: row})
}

func (a *asyncCollapser) queue(it windowItem) {
	a.last = it.r.key
	a.rows++
	a.batch = append(a.batch, it)
	if len(a.batch) == cap(a.batch) {
		a.send()
	}
}

func (a *asyncCollapser) send() {
	if len(a.batch) == 0 {
		return
	}
	a.in <- a.batch
	select {
	case a.batch = <-a.free:
	default:
		a.batch = make([]windowItem, 0, asyncCollapseBatch)
	}
}

// stop hands over the last rows and waits for the goroutine; with finish the stored
// rows after the last window row are marked vanished. The caller owns the collapser.
func (a *asyncCollapser) stop(finish bool) (*collapser, error) {
	a.send()
	a.finishing = finish
	close(a.in)
	err := <-a.done
	if err != nil && a.c != nil {
		a.c.abort()
		return nil, err
	}
	return a.c, err
}

// discard stops the goroutine and removes what it wrote.
func (a *asyncCollapser) discard() {
	a.aborted.Store(true)
	a.batch = a.batch[:0]
	close(a.in)
	<-a.done
	if a.c != nil {
		a.c.abort()
	}
}

// drop compares what was handed over (so that every row that does not convert is
// found), then removes what the goroutine wrote.
func (a *asyncCollapser) drop() {
	if c, _ := a.stop(false); c != nil {
		c.abort()
	}
}

// sortedWindowRows turns an async window into a sorting one: it stops the comparison
// and returns the rows compared so far, in key order.
func (a *asyncCollapser) sortedWindowRows() (recIter, *collapser, error) {
	c, err := a.stop(false)
	if err != nil {
		return nil, nil, err
	}
	c.closeOld()
	it, err := c.windowRows()
	if err != nil {
		c.abort()
		return nil, nil, err
	}
	return it, c, nil
}
