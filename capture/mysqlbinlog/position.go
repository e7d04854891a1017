package mysqlbinlog

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/shouwang/shouwang/capture"
)

// positionVersion is the version of the Position JSON written by this code.
const positionVersion = 1

// Position is the decoded form of this connector's capture.Position: where the
// binlog stream stands (always file+pos, plus the executed GTID set when known) and
// which tables still need (part of) a snapshot.
type Position struct {
	V    int    `json:"v"`
	File string `json:"file"`
	Pos  uint32 `json:"pos"`
	GTID string `json:"gtid,omitempty"`
	// Snapshot lists the table snapshots not finished yet, in the order they run.
	Snapshot []TableCursor `json:"snapshot,omitempty"`
	// Reload is the reload-state generation of each reload-collapse table that this
	// position goes with (see reload.go): a restart rolls the state back to it.
	Reload map[string]uint64 `json:"reload,omitempty"`
}

// TableCursor is the resumable state of one table's snapshot: the primary-key
// values of the last row of the last emitted chunk (nil: not started).
type TableCursor struct {
	Table  string            `json:"table"` // db.table
	Where  string            `json:"where,omitempty"`
	Cursor []json.RawMessage `json:"cursor,omitempty"`
}

// DecodePosition parses a saved position. Empty input (no saved position) gives
// ok=false and no error; a malformed or future-version position is an error.
func DecodePosition(b capture.Position) (p Position, ok bool, err error) {
	if len(b) == 0 {
		return Position{}, false, nil
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return Position{}, false, fmt.Errorf("mysqlbinlog: decode saved position %q: %w (delete it to start over)", truncate(string(b), 200), err)
	}
	if p.V < 1 || p.V > positionVersion {
		return Position{}, false, fmt.Errorf("mysqlbinlog: saved position has version %d, this build reads 1..%d", p.V, positionVersion)
	}
	if p.File == "" && p.GTID == "" {
		return Position{}, false, fmt.Errorf("mysqlbinlog: saved position %q has neither file nor gtid", truncate(string(b), 200))
	}
	return p, true, nil
}

// Encode returns the JSON form handed to the runner.
func (p Position) Encode() capture.Position {
	p.V = positionVersion
	b, err := json.Marshal(p)
	if err != nil {
		// Only json.RawMessage cursors could fail, and they come from json.Marshal.
		panic(fmt.Sprintf("mysqlbinlog: encode position: %v", err))
	}
	return b
}

func (p Position) String() string {
	s := fmt.Sprintf("%s:%d", p.File, p.Pos)
	if p.GTID != "" {
		s += " gtid " + p.GTID
	}
	return s
}

// binlogPos is a file+offset pair that orders positions across files.
type binlogPos struct {
	File string
	Pos  uint32
}

// compare orders two positions by file sequence number, then offset.
func (a binlogPos) compare(b binlogPos) int {
	if a.File != b.File {
		na, nb := fileSeq(a.File), fileSeq(b.File)
		switch {
		case na < nb:
			return -1
		case na > nb:
			return 1
		}
		return strings.Compare(a.File, b.File)
	}
	switch {
	case a.Pos < b.Pos:
		return -1
	case a.Pos > b.Pos:
		return 1
	}
	return 0
}

// fileSeq extracts the numeric suffix of a binlog file name ("binlog.000012" → 12).
func fileSeq(name string) int64 {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(name[i+1:], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
