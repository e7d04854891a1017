package filedrop

import (
	"encoding/json"
	"fmt"

	"github.com/shouwang/shouwang/capture"
)

// positionVersion is the version of the position document written by this code.
const positionVersion = 1

// position is the connector's resume point. Line counts the changes of the delivery
// emitted up to and including this one (1-based), in the delivery's deterministic order
// (dead letters in file order, then the diff in key order), so a restart re-computes the
// same sequence and skips the first Line changes. End marks the delivery's last change:
// acknowledging it commits the delivery (state swap and archive).
type position struct {
	V       int    `json:"v"`
	Dataset string `json:"dataset"`
	File    string `json:"file"`
	SHA256  string `json:"sha256"`
	Line    int64  `json:"line"`
	End     bool   `json:"end,omitempty"`
	// Resnapshot marks a position inside an on-demand re-emission of the accepted
	// state (RequestSnapshot): File is empty, SHA256 holds the state's identity and
	// Line counts the re-emitted rows.
	Resnapshot bool `json:"resnapshot,omitempty"`
}

func (p position) encode() capture.Position {
	b, err := json.Marshal(p)
	if err != nil {
		// A struct of strings and integers always marshals.
		panic(fmt.Sprintf("filedrop: marshal position: %v", err))
	}
	return b
}

// parsePosition decodes a position written by this package, refusing other versions
// and other datasets so a misconfigured runner fails loudly instead of skipping rows.
func parsePosition(b capture.Position, dataset string) (position, error) {
	var p position
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("filedrop %s: decode position %q: %w", dataset, string(b), err)
	}
	if p.V != positionVersion {
		return p, fmt.Errorf("filedrop %s: position version %d not supported (this build reads %d)", dataset, p.V, positionVersion)
	}
	if p.Dataset != dataset {
		return p, fmt.Errorf("filedrop %s: position belongs to dataset %q; check the runner's position store", dataset, p.Dataset)
	}
	if p.Line < 0 {
		return p, fmt.Errorf("filedrop %s: position line %d is negative", dataset, p.Line)
	}
	return p, nil
}
