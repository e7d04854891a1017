package monitor

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/rules"
	"github.com/shouwang/shouwang/transforms/warnings"
)

// Buckets of the state file besides one per warnings record kind ("w." + kind).
const (
	bucketOffsets  = "offsets"     // "topic/partition" → next offset to read (8 bytes)
	bucketIssues   = "issues"      // household key → rules.HouseholdState
	bucketMeasure  = "measure"     // measure key → measureRecord
	bucketMeasures = "measures_of" // household key → warnings.KeyList of measure keys
	bucketDirty    = "dirty"       // household key → unix ms it first changed since its last evaluation
	bucketMeta     = "meta"        // "meta" → metaRecord
	// bucketOutbox holds the events of the last commit (8-byte sequence → encoded
	// message): they are committed with the state that produced them and sent after
	// the commit, and sent again when a restart finds them (see state.outbox).
	bucketOutbox = "outbox"
)

// metaRecord says what the last full evaluation was made with.
type metaRecord struct {
	// Passes counts full re-evaluations (rules changed, or a new evaluation day).
	// Issue versions are the input position plus Passes, so the events of a pass
	// order after those of the same input before it.
	Passes int64 `json:"passes"`
	// Rules identifies the rule sets in force; Day the evaluation date (YYYY-MM-DD).
	Rules string `json:"rules"`
	Day   string `json:"day"`
}

// measureRecord is the last applied version of an assistance measure.
type measureRecord struct {
	Version int64                      `json:"version"`
	Deleted bool                       `json:"deleted,omitempty"`
	Measure *schemas.AssistanceMeasure `json:"measure,omitempty"`
}

// state is the worker's whole state in memory — the warnings engine's records, the
// quality-issue tracker's households, the measures by household, the households waiting
// for evaluation and the next offset of every input partition —
// with the keys changed since the last commit. commit writes exactly those, with the
// offsets, in one bbolt transaction, so state and input positions never disagree.
type state struct {
	db *bolt.DB

	buckets map[string]map[string]any // bucket → key → record (pointer types)
	dirty   map[string]map[string]bool
	offsets map[string]int64
	// outbox is the loaded outbox: the events of the last commit, which a crash may
	// have kept from being sent.
	outbox []bus.Message
}

// fillPercent is how full bbolt fills a page before it splits (its default is half).
// Most state keys arrive in key order (a snapshot's households and persons) or are
// rewritten in place, so pages split half full would stay half empty and every commit
// would write twice the pages: 0.9 made BenchmarkMonitorCPU 1.15× faster.
const fillPercent = 0.9

// initialMmapSize is the state file's first memory map (see openState).
const initialMmapSize = 1 << 30

// openState opens (creating) the state file and loads it.
func openState(path string) (*state, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("monitor: state directory: %w", err)
	}
	// The freelist is rebuilt on open instead of written by every commit (as etcd runs
	// bbolt): commits write fewer pages; opening a large file scans it once.
	// The map is made large at once: a growing file is otherwise mapped again at
	// every doubling, and each new map first copies every record the open
	// transaction touched (a third of a fresh state's commit time). On Linux (64-bit,
	// the supported target) this is address space only and the file grows as it
	// must; bbolt on Windows would make the file this large at once.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
		InitialMmapSize: initialMmapSize})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("monitor: state file %s is locked by another process (is a second monitor running with the same monitor.state?): %w", path, err)
		}
		return nil, fmt.Errorf("monitor: open state file %s: %w", path, err)
	}
	s := &state{db: db, buckets: map[string]map[string]any{}, dirty: map[string]map[string]bool{}, offsets: map[string]int64{}}
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("monitor: load state file %s: %w (move it away to rebuild the state from the topics)", path, err)
	}
	return s, nil
}

func (s *state) close() error { return s.db.Close() }

// newValue returns a pointer to a zero record of a bucket's type.
func newValue(bucket string) (any, error) {
	switch bucket {
	case bucketIssues:
		return new(rules.HouseholdState), nil
	case bucketMeasure:
		return new(measureRecord), nil
	case bucketMeasures:
		return new(warnings.KeyList), nil
	case bucketDirty:
		return new(int64), nil
	case bucketMeta:
		return new(metaRecord), nil
	}
	if kind, ok := strings.CutPrefix(bucket, "w."); ok {
		return warnings.NewRecord(kind)
	}
	return nil, fmt.Errorf("unknown state bucket %q", bucket)
}

func (s *state) load() error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			bn := string(name)
			switch bn {
			case bucketOffsets:
				return b.ForEach(func(k, v []byte) error {
					s.offsets[string(k)] = int64(binary.BigEndian.Uint64(v))
					return nil
				})
			case bucketOutbox:
				return b.ForEach(func(k, v []byte) error {
					m, err := decodeOutMessage(v)
					if err != nil {
						return fmt.Errorf("bucket %s key %x: %w", bn, k, err)
					}
					s.outbox = append(s.outbox, m)
					return nil
				})
			}
			m := map[string]any{}
			s.buckets[bn] = m
			return b.ForEach(func(k, v []byte) error {
				rec, err := newValue(bn)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(v, rec); err != nil {
					return fmt.Errorf("bucket %s key %q: %w", bn, k, err)
				}
				m[string(k)] = rec
				return nil
			})
		})
	})
}

func (s *state) get(bucket, key string) (any, bool) {
	v, ok := s.buckets[bucket][key]
	return v, ok
}

func (s *state) put(bucket, key string, v any) {
	m := s.buckets[bucket]
	if m == nil {
		m = map[string]any{}
		s.buckets[bucket] = m
	}
	m[key] = v
	s.mark(bucket, key)
}

func (s *state) del(bucket, key string) {
	delete(s.buckets[bucket], key)
	s.mark(bucket, key)
}

func (s *state) mark(bucket, key string) {
	d := s.dirty[bucket]
	if d == nil {
		d = map[string]bool{}
		s.dirty[bucket] = d
	}
	d[key] = true
}

// len is the number of records of a bucket.
func (s *state) len(bucket string) int { return len(s.buckets[bucket]) }

// pending is the number of changed keys not yet committed.
func (s *state) pending() int {
	n := 0
	for _, d := range s.dirty {
		n += len(d)
	}
	return n
}

func offsetKey(topic string, partition int) string { return topic + "/" + strconv.Itoa(partition) }

// The commit's value arenas (see commit): a new one of arenaSize bytes when fewer
// than arenaRoom are left.
const (
	arenaSize = 256 << 10
	arenaRoom = 4 << 10
)

// commit writes every changed record and the offsets in one transaction.
func (s *state) commit(outbox []bus.Message) error {
	var arena []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		names := make([]string, 0, len(s.dirty))
		for bn := range s.dirty {
			names = append(names, bn)
		}
		sort.Strings(names)
		for _, bn := range names {
			b, err := tx.CreateBucketIfNotExists([]byte(bn))
			if err != nil {
				return err
			}
			b.FillPercent = fillPercent // per transaction: bbolt does not store it
			// In key order: bbolt inserts in order touch each page once.
			keys := make([]string, 0, len(s.dirty[bn]))
			for k := range s.dirty[bn] {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				v, ok := s.buckets[bn][k]
				if !ok {
					if err := b.Delete([]byte(k)); err != nil {
						return err
					}
					continue
				}
				// bbolt keeps the value until the transaction ends: values are
				// appended to an arena that is never rewritten, a new one when the
				// room left is small.
				if cap(arena)-len(arena) < arenaRoom {
					arena = make([]byte, 0, arenaSize)
				}
				start := len(arena)
				arena, err = appendRecord(arena, v)
				if err != nil {
					return fmt.Errorf("encode %s %q: %w", bn, k, err)
				}
				raw := arena[start:len(arena):len(arena)]
				if err := b.Put([]byte(k), raw); err != nil {
					return err
				}
			}
		}
		if err := dropOutbox(tx); err != nil {
			return err
		}
		if len(outbox) > 0 {
			xb, err := tx.CreateBucket([]byte(bucketOutbox))
			if err != nil {
				return err
			}
			for i, m := range outbox {
				var k [8]byte
				binary.BigEndian.PutUint64(k[:], uint64(i))
				if err := xb.Put(k[:], encodeOutMessage(m)); err != nil {
					return err
				}
			}
		}
		ob, err := tx.CreateBucketIfNotExists([]byte(bucketOffsets))
		if err != nil {
			return err
		}
		var buf [8]byte
		for k, off := range s.offsets {
			binary.BigEndian.PutUint64(buf[:], uint64(off))
			if err := ob.Put([]byte(k), append([]byte(nil), buf[:]...)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("monitor: commit state: %w", err)
	}
	s.dirty = map[string]map[string]bool{}
	return nil
}

// clearOutbox empties the outbox on disk (its events have been sent).
func (s *state) clearOutbox() error { return s.db.Update(dropOutbox) }

// dropOutbox deletes the outbox bucket, if there is one.
func dropOutbox(tx *bolt.Tx) error {
	if err := tx.DeleteBucket([]byte(bucketOutbox)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
		return err
	}
	return nil
}

// encodeOutMessage encodes an outbox message: topic, key and value, each preceded by
// its length as a uvarint (monitor events carry no headers).
func encodeOutMessage(m bus.Message) []byte {
	b := make([]byte, 0, len(m.Topic)+len(m.Key)+len(m.Value)+3*binary.MaxVarintLen32)
	for _, f := range [][]byte{[]byte(m.Topic), m.Key, m.Value} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

func decodeOutMessage(b []byte) (bus.Message, error) {
	var f [3][]byte
	for i := range f {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return bus.Message{}, errors.New("truncated outbox message")
		}
		f[i] = append([]byte(nil), b[w:w+int(n)]...)
		b = b[w+int(n):]
	}
	if len(b) != 0 {
		return bus.Message{}, errors.New("outbox message with trailing bytes")
	}
	return bus.Message{Topic: string(f[0]), Key: f[1], Value: f[2]}, nil
}

// warningsStore is the warnings engine's view of the state.
type warningsStore struct{ s *state }

func (w warningsStore) Get(kind, key string) (any, bool, error) {
	v, ok := w.s.get("w."+kind, key)
	return v, ok, nil
}

func (w warningsStore) Put(kind, key string, v any) error {
	w.s.put("w."+kind, key, v)
	return nil
}

func (w warningsStore) Delete(kind, key string) error {
	w.s.del("w."+kind, key)
	return nil
}

// issuesStore is the quality-issue tracker's view of the state.
type issuesStore struct{ s *state }

func (i issuesStore) Get(hhKey string) (rules.HouseholdState, bool, error) {
	v, ok := i.s.get(bucketIssues, hhKey)
	if !ok {
		return rules.HouseholdState{}, false, nil
	}
	return *v.(*rules.HouseholdState), true, nil
}

func (i issuesStore) Put(hhKey string, st rules.HouseholdState) error {
	if st.Version == 0 && len(st.Open) == 0 {
		i.s.del(bucketIssues, hhKey)
		return nil
	}
	c := st
	i.s.put(bucketIssues, hhKey, &c)
	return nil
}

// StateSummary is what a stopped monitor's state file says about its progress.
type StateSummary struct {
	// Offsets is the next input offset to read, by "topic/partition".
	Offsets map[string]int64
	// Waiting is the number of households changed but not yet evaluated.
	Waiting int
	// Outbox is the number of events of the last commit kept for sending again: 0
	// after a clean stop (they were sent), the next start sends them after a kill.
	Outbox int
}

// ReadState summarises the state file at path without changing it. It waits up to
// timeout for the file lock, which a running monitor holds.
func ReadState(path string, timeout time.Duration) (StateSummary, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return StateSummary{}, fmt.Errorf("monitor: open state file %s: %w", path, err)
	}
	defer db.Close()
	sum := StateSummary{Offsets: map[string]int64{}}
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte(bucketOffsets)); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				sum.Offsets[string(k)] = int64(binary.BigEndian.Uint64(v))
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket([]byte(bucketDirty)); b != nil {
			sum.Waiting = b.Stats().KeyN
		}
		if b := tx.Bucket([]byte(bucketOutbox)); b != nil {
			sum.Outbox = b.Stats().KeyN
		}
		return nil
	})
	return sum, err
}
