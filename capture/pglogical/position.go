package pglogical

import (
	"encoding/json"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/shouwang/shouwang/capture"
)

// positionVersion is the version of the Position JSON written by this code.
const positionVersion = 1

// Position is the decoded form of this connector's capture.Position.
//
// LSN is where streaming resumes: the TransactionEndLSN of the last transaction whose
// changes were all produced (or, before the first one, the slot's consistent point).
// Snapshot holds the initial load's progress until it is done; Schemas the column-set
// version of each table, so that schema-change events keep counting after a restart.
type Position struct {
	V        int            `json:"v"`
	LSN      string         `json:"lsn"`
	Snapshot *SnapshotState `json:"snapshot,omitempty"`
	Schemas  map[string]int `json:"schemas,omitempty"`
	// Resnapshot lists the on-demand re-reads not finished yet, the first one in
	// progress (RequestSnapshot), so that a restart continues them.
	Resnapshot []Resnapshot  `json:"resnapshot,omitempty"`
	lsn        pglogrepl.LSN // parsed LSN
}

// SnapshotState is the resumable state of the initial load.
type SnapshotState struct {
	// Done is true once every table was read completely.
	Done bool `json:"done"`
	// LSN is the WAL position the snapshot rows reflect (the slot's consistent point
	// for the exported snapshot; the WAL position taken just before a fresh snapshot
	// after a restart). Snapshot envelopes carry it as source.lsn.
	LSN string `json:"lsn,omitempty"`
	// Tables holds each table's cursor, keyed by "schema.table".
	Tables map[string]*TableCursor `json:"tables,omitempty"`
}

// TableCursor is one table's snapshot progress: the key values (PostgreSQL text form)
// of the last row emitted, and whether the table is finished.
type TableCursor struct {
	Cursor []string `json:"cursor,omitempty"`
	Done   bool     `json:"done,omitempty"`
}

// DecodePosition parses a saved position. ok is false for an empty input.
func DecodePosition(b capture.Position) (p Position, ok bool, err error) {
	if len(b) == 0 {
		return Position{}, false, nil
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return Position{}, false, fmt.Errorf("pglogical: decode saved position %q: %w (delete the saved position to start over with a new snapshot)", clip(string(b), 200), err)
	}
	if p.V < 1 || p.V > positionVersion {
		return Position{}, false, fmt.Errorf("pglogical: saved position has version %d, this build reads 1..%d", p.V, positionVersion)
	}
	l, err := pglogrepl.ParseLSN(p.LSN)
	if err != nil {
		return Position{}, false, fmt.Errorf("pglogical: saved position field lsn %q: %w", p.LSN, err)
	}
	p.lsn = l
	return p, true, nil
}

// Encode returns the JSON form handed to the runner.
func (p Position) Encode() capture.Position {
	p.V = positionVersion
	p.LSN = p.lsn.String()
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("pglogical: encode position: %v", err)) // only strings and ints inside
	}
	return b
}

// clone copies p deeply enough that later cursor updates do not change it.
func (p Position) clone() Position {
	q := p
	if p.Snapshot != nil {
		s := *p.Snapshot
		s.Tables = make(map[string]*TableCursor, len(p.Snapshot.Tables))
		for k, v := range p.Snapshot.Tables {
			c := *v
			c.Cursor = append([]string(nil), v.Cursor...)
			s.Tables[k] = &c
		}
		q.Snapshot = &s
	}
	if p.Resnapshot != nil {
		q.Resnapshot = make([]Resnapshot, len(p.Resnapshot))
		for i, r := range p.Resnapshot {
			r.Cursor = append([]string(nil), r.Cursor...)
			q.Resnapshot[i] = r
		}
	}
	if p.Schemas != nil {
		q.Schemas = make(map[string]int, len(p.Schemas))
		for k, v := range p.Schemas {
			q.Schemas[k] = v
		}
	}
	return q
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
