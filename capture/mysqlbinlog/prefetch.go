package mysqlbinlog

import "sync"

// prefetchBatch is how many records a prefetchIter reads ahead per hand-over: large
// enough that the channel costs little per record, small enough that a batch is a
// small allocation (batches are recycled through a free list anyway).
const prefetchBatch = 256

// prefetchIter reads another iterator in its own goroutine, a few batches ahead. The
// window close compares two streams (the stored image: base plus overlays; the
// window's spilled runs), each a heap merge that decodes every record; serially the
// three took most of the close (issue #3 profile: 60 s of 223 s at full scale). With
// both streams prefetched, decoding and merging run on the second core while the
// comparison and the writes of the new base run on the first. Records own their
// slices (recReader allocates them), so handing them across goroutines is safe.
type prefetchIter struct {
	src  recIter
	ch   chan prefetched
	free chan []rec // read batches handed back for reuse
	stop chan struct{}
	wg   sync.WaitGroup
	cur  []rec
	i    int
	err  error
	done bool
}

type prefetched struct {
	recs []rec
	err  error
	end  bool
}

func newPrefetchIter(src recIter) *prefetchIter {
	p := &prefetchIter{src: src, ch: make(chan prefetched, 4), free: make(chan []rec, 6), stop: make(chan struct{})}
	p.wg.Add(1)
	go p.run()
	return p
}

func (p *prefetchIter) run() {
	defer p.wg.Done()
	for {
		var b prefetched
		select {
		case b.recs = <-p.free:
		default:
			b.recs = make([]rec, 0, prefetchBatch)
		}
		for len(b.recs) < prefetchBatch {
			r, ok, err := p.src.next()
			if err != nil {
				b.err = err
				break
			}
			if !ok {
				b.end = true
				break
			}
			b.recs = append(b.recs, r)
		}
		select {
		case p.ch <- b:
		case <-p.stop:
			return
		}
		if b.err != nil || b.end {
			return
		}
	}
}

func (p *prefetchIter) next() (rec, bool, error) {
	for {
		if p.i < len(p.cur) {
			r := p.cur[p.i]
			p.cur[p.i] = rec{}
			p.i++
			return r, true, nil
		}
		if p.done {
			return rec{}, false, p.err
		}
		if p.cur != nil {
			// Every record of the batch was cleared as it was handed out.
			select {
			case p.free <- p.cur[:0]:
			default:
			}
		}
		b := <-p.ch
		p.cur, p.i = b.recs, 0
		if b.err != nil || b.end {
			p.done, p.err = true, b.err
		}
	}
}

// close stops the reading goroutine and only then closes the source, which the
// goroutine may still be reading.
func (p *prefetchIter) close() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.stop = nil
	p.src.close()
	p.cur = nil
}
