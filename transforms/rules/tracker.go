package rules

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/shouwang/shouwang/schemas"
)

// HouseholdState is what the Tracker keeps per household: the last applied version
// and the open issues, by issue ID.
type HouseholdState struct {
	Version int64                 `json:"version"`
	Open    map[string]*OpenIssue `json:"open,omitempty"`
}

// OpenIssue is an open quality issue as stored.
type OpenIssue struct {
	RuleID      string `json:"rule_id"`
	SubjectKind string `json:"subject_kind"`
	SubjectKey  string `json:"subject_key"`
	RegionCode  string `json:"region_code"`
	Severity    string `json:"severity"`
	Detail      string `json:"detail,omitempty"`
	FirstSeen   string `json:"first_seen"`
	LastSeen    string `json:"last_seen"`
}

// Store keeps the Tracker's state per household key. Implementations must make Put
// durable before the caller commits its input position (at-least-once made
// effectively-once: a redelivered input finds the stored version and is skipped).
type Store interface {
	// Get returns the household's state; ok is false when none is stored.
	Get(hhKey string) (st HouseholdState, ok bool, err error)
	// Put stores the household's state.
	Put(hhKey string, st HouseholdState) error
}

// MemoryStore is an in-memory Store, safe for concurrent use. It marshals to and
// from JSON, so a worker can snapshot it.
type MemoryStore struct {
	mu sync.Mutex
	m  map[string]HouseholdState
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{m: map[string]HouseholdState{}} }

// Get implements Store.
func (s *MemoryStore) Get(hhKey string) (HouseholdState, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[hhKey]
	return cloneState(st), ok, nil
}

// Put implements Store.
func (s *MemoryStore) Put(hhKey string, st HouseholdState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]HouseholdState{}
	}
	s.m[hhKey] = cloneState(st)
	return nil
}

// Len is the number of households stored.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// MarshalJSON writes the whole store as {"households": {key: state}}.
func (s *MemoryStore) MarshalJSON() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return json.Marshal(struct {
		Households map[string]HouseholdState `json:"households"`
	}{s.m})
}

// UnmarshalJSON replaces the store's content with a snapshot written by MarshalJSON.
func (s *MemoryStore) UnmarshalJSON(b []byte) error {
	var v struct {
		Households map[string]HouseholdState `json:"households"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("rules: memory store snapshot: %w", err)
	}
	if v.Households == nil {
		v.Households = map[string]HouseholdState{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = v.Households
	return nil
}

func cloneState(st HouseholdState) HouseholdState {
	out := HouseholdState{Version: st.Version}
	if len(st.Open) > 0 {
		out.Open = make(map[string]*OpenIssue, len(st.Open))
		for k, v := range st.Open {
			c := *v
			out.Open[k] = &c
		}
	}
	return out
}

// Tracker turns findings into the quality-issue lifecycle: a newly failing subject
// opens an issue, a subject that passes again closes it, an unchanged open issue
// emits nothing. It relies on the household version alone for idempotence, so a
// replayed or redelivered evaluation (version ≤ the stored one) changes nothing.
type Tracker struct {
	store Store
	// Now stamps first_seen, last_seen, closed_at and updated_ms (default
	// time.Now); tests and replays set a fixed clock.
	Now func() time.Time
	// System is written to the issues' source.system (default "rules").
	System string
	// RuleSet is written to the issues' source.table, e.g. Engine.Version().
	RuleSet string
}

// NewTracker returns a Tracker keeping its state in store.
func NewTracker(store Store) *Tracker {
	return &Tracker{store: store, Now: time.Now, System: "rules"}
}

// IssueID is the deterministic quality-issue ID of a rule and subject
// (schemas.QualityIssue: DeterministicID(rule_id, subject_kind, subject_key)).
func IssueID(ruleID, subjectKind, subjectKey string) string {
	return schemas.DeterministicID(ruleID, subjectKind, subjectKey)
}

// Apply records the findings of one evaluation of household hhKey at version (which
// must grow with every change of the household, its members or its measures) and
// returns the issue events to publish, ordered by issue ID: open for subjects that
// newly fail, closed for subjects that pass again. A finding with Err set keeps the
// subject's previous state for that rule. A version ≤ the stored one returns no
// events and changes nothing.
func (t *Tracker) Apply(hhKey string, version int64, findings []Finding) ([]schemas.QualityIssue, error) {
	st, ok, err := t.store.Get(hhKey)
	if err != nil {
		return nil, fmt.Errorf("rules: tracker: read state of household %s: %w", hhKey, err)
	}
	if ok && version <= st.Version {
		return nil, nil
	}
	now := t.now()
	stamp := now.UTC().Format(time.RFC3339)
	next := HouseholdState{Version: version, Open: map[string]*OpenIssue{}}
	var events []schemas.QualityIssue
	unknown := map[string]bool{}
	for i := range findings {
		f := &findings[i]
		id := IssueID(f.RuleID, f.SubjectKind, f.SubjectKey)
		if f.Err != "" {
			unknown[id] = true
			continue
		}
		if _, dup := next.Open[id]; dup {
			continue
		}
		if prev, was := st.Open[id]; was {
			c := *prev
			c.LastSeen = stamp
			next.Open[id] = &c
			continue
		}
		oi := &OpenIssue{RuleID: f.RuleID, SubjectKind: f.SubjectKind, SubjectKey: f.SubjectKey, RegionCode: f.RegionCode,
			Severity: f.Severity, Detail: f.Detail(), FirstSeen: stamp, LastSeen: stamp}
		next.Open[id] = oi
		events = append(events, t.issue(hhKey, id, oi, schemas.IssueOpen, version, now, ""))
	}
	for id, prev := range st.Open {
		if _, still := next.Open[id]; still {
			continue
		}
		if unknown[id] {
			next.Open[id] = prev
			continue
		}
		events = append(events, t.issue(hhKey, id, prev, schemas.IssueClosed, version, now, stamp))
	}
	if len(next.Open) == 0 {
		next.Open = nil
	}
	if err := t.store.Put(hhKey, next); err != nil {
		return nil, fmt.Errorf("rules: tracker: store state of household %s: %w", hhKey, err)
	}
	sort.Slice(events, func(i, j int) bool { return events[i].ID < events[j].ID })
	return events, nil
}

// Delete closes every open issue of a deleted household (its members and measures
// go with it) at version, with the same idempotence as Apply.
func (t *Tracker) Delete(hhKey string, version int64) ([]schemas.QualityIssue, error) {
	return t.Apply(hhKey, version, nil)
}

// State returns the stored state of a household (for inspection and tests).
func (t *Tracker) State(hhKey string) (HouseholdState, bool, error) { return t.store.Get(hhKey) }

func (t *Tracker) now() time.Time {
	if t.Now == nil {
		return time.Now()
	}
	return t.Now()
}

func (t *Tracker) issue(hhKey, id string, oi *OpenIssue, status string, version int64, now time.Time, closedAt string) schemas.QualityIssue {
	sys := t.System
	if sys == "" {
		sys = "rules"
	}
	return schemas.QualityIssue{
		Meta: schemas.Meta{Key: id, Version: version, UpdatedMs: now.UnixMilli(),
			Source: schemas.SourceRef{System: sys, Table: t.RuleSet, Position: "household " + hhKey}},
		ID: id, RuleID: oi.RuleID, SubjectKind: oi.SubjectKind, SubjectKey: oi.SubjectKey, RegionCode: oi.RegionCode,
		Severity: oi.Severity, Status: status, Detail: oi.Detail, FirstSeen: oi.FirstSeen, LastSeen: oi.LastSeen,
		ClosedAt: closedAt,
	}
}
