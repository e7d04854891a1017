package poll

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shouwang/shouwang/capture"
)

// positionVersion is the version of the position document written by this code.
const positionVersion = 1

// positionDoc is the Position of a poll source:
//
//	{"v":1,"seq":42,"queries":{"insured":{"watermark":"2024-05-01 10:00:00","key":["510…"],"last_full_scan":"…"}}}
//
// watermark and key are the ordering values of the last row read (Column, then the key
// columns other than Column), as JSON values; seq numbers the batches so the key store
// can tell whether it is behind the runner's saved position.
type positionDoc struct {
	V       int                  `json:"v"`
	Seq     int64                `json:"seq"`
	Queries map[string]*queryPos `json:"queries"`
	// Resnapshot lists the requested re-reads not finished yet, the first one in
	// progress (RequestSnapshot).
	Resnapshot []resnapPos `json:"resnapshot,omitempty"`
}

// queryPos is the progress of one query.
type queryPos struct {
	Watermark    any       `json:"watermark,omitempty"`
	Key          []any     `json:"key,omitempty"`
	LastFullScan time.Time `json:"last_full_scan,omitzero"`
}

func parsePosition(p capture.Position) (positionDoc, error) {
	d := positionDoc{V: positionVersion, Queries: map[string]*queryPos{}}
	if len(p) == 0 {
		return d, nil
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("poll position %q: %w (fix or delete the saved position to re-read every row)", p, err)
	}
	if d.V < 1 || d.V > positionVersion {
		return d, fmt.Errorf("poll position: unsupported version %d (this build reads 1..%d)", d.V, positionVersion)
	}
	if d.Queries == nil {
		d.Queries = map[string]*queryPos{}
	}
	return d, nil
}

func (d positionDoc) encode() (capture.Position, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("poll position: encode: %w", err)
	}
	return b, nil
}

// clone copies d deeply enough that later progress does not change an emitted position.
func (d positionDoc) clone() positionDoc {
	c := positionDoc{V: d.V, Seq: d.Seq, Queries: make(map[string]*queryPos, len(d.Queries))}
	for k, v := range d.Queries {
		q := *v
		q.Key = append([]any(nil), v.Key...)
		c.Queries[k] = &q
	}
	for _, r := range d.Resnapshot {
		r.Key = append([]any(nil), r.Key...)
		c.Resnapshot = append(c.Resnapshot, r)
	}
	return c
}
