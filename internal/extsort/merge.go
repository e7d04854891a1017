package extsort

// Stream is a sorted source of values for Merge.
type Stream[T any] interface {
	// Next returns the next value; ok is false at the end.
	Next() (v T, ok bool, err error)
	// Close releases the stream.
	Close() error
}

// Merger merges sorted streams into one sorted stream. Values that compare equal come
// in stream order (the order of the slice given to Merge), and within one stream in
// that stream's order: the merge is stable.
//
// A value returned by Next stays valid until the following call of Next: the stream
// that produced it is advanced only then, so streams may reuse their buffers.
type Merger[T any] struct {
	cmp     func(a, b T) int
	h       []mergeItem[T]
	pending bool // h[0] was handed out and its stream must advance
	closed  []Stream[T]
	err     error
}

type mergeItem[T any] struct {
	v   T
	idx int
	s   Stream[T]
}

// Merge returns the stable merge of streams ordered by cmp. It reads the first value
// of every stream; on an error it closes them all. The Merger owns the streams: its
// Close closes them.
func Merge[T any](streams []Stream[T], cmp func(a, b T) int) (*Merger[T], error) {
	m := &Merger[T]{cmp: cmp, h: make([]mergeItem[T], 0, len(streams))}
	for i, s := range streams {
		v, ok, err := s.Next()
		if err != nil {
			m.closed = append(m.closed, streams[i:]...)
			m.Close()
			return nil, err
		}
		if !ok {
			m.closeStream(s)
			continue
		}
		m.h = append(m.h, mergeItem[T]{v: v, idx: i, s: s})
	}
	for i := len(m.h)/2 - 1; i >= 0; i-- {
		m.down(i)
	}
	return m, nil
}

func (m *Merger[T]) less(i, j int) bool {
	if c := m.cmp(m.h[i].v, m.h[j].v); c != 0 {
		return c < 0
	}
	return m.h[i].idx < m.h[j].idx
}

func (m *Merger[T]) down(i int) {
	n := len(m.h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && m.less(r, l) {
			j = r
		}
		if !m.less(j, i) {
			return
		}
		m.h[i], m.h[j] = m.h[j], m.h[i]
		i = j
	}
}

func (m *Merger[T]) closeStream(s Stream[T]) {
	if err := s.Close(); err != nil && m.err == nil {
		m.err = err
	}
}

// Next returns the smallest value left; ok is false at the end.
func (m *Merger[T]) Next() (v T, ok bool, err error) {
	if m.pending {
		m.pending = false
		top := &m.h[0]
		nv, ok, err := top.s.Next()
		if err != nil {
			return v, false, err
		}
		if ok {
			top.v = nv
		} else {
			m.closeStream(top.s)
			last := len(m.h) - 1
			m.h[0] = m.h[last]
			m.h[last] = mergeItem[T]{}
			m.h = m.h[:last]
		}
		if len(m.h) > 1 {
			m.down(0)
		}
	}
	if len(m.h) == 0 {
		return v, false, m.err
	}
	m.pending = true
	return m.h[0].v, true, nil
}

// Close closes the streams not yet closed and returns the first error of any close.
func (m *Merger[T]) Close() error {
	for _, it := range m.h {
		m.closeStream(it.s)
	}
	for _, s := range m.closed {
		m.closeStream(s)
	}
	m.h, m.closed, m.pending = nil, nil, false
	return m.err
}
