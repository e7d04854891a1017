package warnings

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"github.com/shouwang/shouwang/schemas"
)

// Kinds of records the Engine keeps in its Store. A Store must give back for a kind a
// value of the type NewRecord returns for it.
const (
	KindFact        = "fact"          // fact key → *FactRecord
	KindPerson      = "person"        // person key → *PersonRecord
	KindHousehold   = "household"     // household key → *HouseholdRecord
	KindFactsByID   = "facts_by_id"   // ID number → *KeyList of fact keys
	KindPersonsByID = "persons_by_id" // ID number → *KeyList of person keys
	KindMembers     = "members"       // household key → *KeyList of person keys
	KindUnit        = "unit"          // evaluation unit → *UnitRecord
	KindWarning     = "warning"       // warning id → *WarningRecord
	KindDiscrepancy = "discrepancy"   // discrepancy id → *DiscrepancyRecord
)

// Kinds lists every record kind, in a fixed order.
var Kinds = []string{KindFact, KindPerson, KindHousehold, KindFactsByID, KindPersonsByID, KindMembers, KindUnit, KindWarning, KindDiscrepancy}

// FactRecord is the last applied version of a department fact (Deleted: a tombstone
// that keeps the version so an older redelivery is still dropped).
type FactRecord struct {
	Version int64                   `json:"version"`
	Deleted bool                    `json:"deleted,omitempty"`
	Fact    *schemas.DepartmentFact `json:"fact,omitempty"`
	// Identity is recordIdentity(Fact), kept so that evaluating a person's facts does
	// not hash every one of them again (empty in state written before it existed).
	Identity string `json:"identity,omitempty"`
}

// PersonRecord is the last applied version of a registry person.
type PersonRecord struct {
	Version int64           `json:"version"`
	Deleted bool            `json:"deleted,omitempty"`
	Person  *schemas.Person `json:"person,omitempty"`
}

// HouseholdRecord is the last applied version of a registry household.
type HouseholdRecord struct {
	Version   int64              `json:"version"`
	Deleted   bool               `json:"deleted,omitempty"`
	Household *schemas.Household `json:"household,omitempty"`
}

// KeyList is a sorted set of keys (an index entry).
type KeyList []string

// UnitRecord lists the warnings and discrepancies an evaluation unit (one ID number,
// or one household) currently holds open.
type UnitRecord struct {
	Warnings      []string `json:"warnings,omitempty"`
	Discrepancies []string `json:"discrepancies,omitempty"`
}

// WarningRecord is the last emitted state of a warning; Hash covers what makes it
// "unchanged" (subject, period, evidence, fact keys).
type WarningRecord struct {
	Hash    string          `json:"hash"`
	Open    bool            `json:"open"`
	Warning schemas.Warning `json:"warning"`
}

// DiscrepancyRecord is the last emitted state of a discrepancy.
type DiscrepancyRecord struct {
	Hash        string              `json:"hash"`
	Open        bool                `json:"open"`
	Discrepancy schemas.Discrepancy `json:"discrepancy"`
}

// NewRecord returns a pointer to a zero value of the kind's record type, for stores
// that decode what they hold.
func NewRecord(kind string) (any, error) {
	switch kind {
	case KindFact:
		return new(FactRecord), nil
	case KindPerson:
		return new(PersonRecord), nil
	case KindHousehold:
		return new(HouseholdRecord), nil
	case KindFactsByID, KindPersonsByID, KindMembers:
		return new(KeyList), nil
	case KindUnit:
		return new(UnitRecord), nil
	case KindWarning:
		return new(WarningRecord), nil
	case KindDiscrepancy:
		return new(DiscrepancyRecord), nil
	}
	return nil, fmt.Errorf("warnings: unknown record kind %q", kind)
}

// Store holds the Engine's state. Values are the pointer types NewRecord returns; the
// Engine never modifies a value after Put (it puts a new one), so a store may keep the
// pointer. Errors abort the Apply call that met them.
type Store interface {
	Get(kind, key string) (any, bool, error)
	Put(kind, key string, v any) error
	Delete(kind, key string) error
}

// MemoryStore is an in-memory Store. It marshals to JSON (a snapshot) and back, so a
// worker can persist it alongside its consumer offsets.
type MemoryStore struct {
	mu sync.RWMutex
	m  map[string]map[string]any
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{m: map[string]map[string]any{}} }

// Get implements Store.
func (s *MemoryStore) Get(kind, key string) (any, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[kind][key]
	return v, ok, nil
}

// Put implements Store.
func (s *MemoryStore) Put(kind, key string, v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]map[string]any{}
	}
	b := s.m[kind]
	if b == nil {
		b = map[string]any{}
		s.m[kind] = b
	}
	b[key] = v
	return nil
}

// Delete implements Store.
func (s *MemoryStore) Delete(kind, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m[kind], key)
	return nil
}

// Len is the number of records of a kind.
func (s *MemoryStore) Len(kind string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m[kind])
}

// MarshalJSON writes {kind: {key: record}} (keys sorted by encoding/json).
func (s *MemoryStore) MarshalJSON() ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return json.Marshal(s.m)
}

// UnmarshalJSON replaces the store's content with a snapshot from MarshalJSON.
func (s *MemoryStore) UnmarshalJSON(b []byte) error {
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("warnings: memory store snapshot: %w", err)
	}
	m := make(map[string]map[string]any, len(raw))
	kinds := make([]string, 0, len(raw))
	for k := range raw {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		bucket := make(map[string]any, len(raw[kind]))
		for key, r := range raw[kind] {
			v, err := NewRecord(kind)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(r, v); err != nil {
				return fmt.Errorf("warnings: memory store snapshot %s %q: %w", kind, key, err)
			}
			bucket[key] = v
		}
		m[kind] = bucket
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
	return nil
}
