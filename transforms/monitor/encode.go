package monitor

import (
	"encoding/json"
	"strconv"

	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/warnings"
)

// appendRecord appends the JSON of a state record, byte for byte what json.Marshal
// writes (TestRecordEncodingMatchesJSON): the records that hold canonical entities —
// most of every commit's bytes — are written from the entities' field tables
// (schemas.AppendEntityJSON) instead of by reflection; the rest go to encoding/json.
func appendRecord(b []byte, v any) ([]byte, error) {
	switch r := v.(type) {
	case *warnings.PersonRecord:
		b = appendVersion(b, r.Version, r.Deleted)
		if r.Person != nil {
			b = schemas.AppendEntityJSON(append(b, `,"person":`...), r.Person)
		}
		return append(b, '}'), nil
	case *warnings.HouseholdRecord:
		b = appendVersion(b, r.Version, r.Deleted)
		if r.Household != nil {
			b = schemas.AppendEntityJSON(append(b, `,"household":`...), r.Household)
		}
		return append(b, '}'), nil
	case *warnings.FactRecord:
		b = appendVersion(b, r.Version, r.Deleted)
		if r.Fact != nil {
			b = schemas.AppendEntityJSON(append(b, `,"fact":`...), r.Fact)
		}
		if r.Identity != "" {
			b = schemas.AppendJSONString(append(b, `,"identity":`...), r.Identity)
		}
		return append(b, '}'), nil
	case *measureRecord:
		b = appendVersion(b, r.Version, r.Deleted)
		if r.Measure != nil {
			b = schemas.AppendEntityJSON(append(b, `,"measure":`...), r.Measure)
		}
		return append(b, '}'), nil
	case *warnings.WarningRecord:
		b = appendHashOpen(b, r.Hash, r.Open)
		b = schemas.AppendEntityJSON(append(b, `,"warning":`...), &r.Warning)
		return append(b, '}'), nil
	case *warnings.DiscrepancyRecord:
		b = appendHashOpen(b, r.Hash, r.Open)
		b = schemas.AppendEntityJSON(append(b, `,"discrepancy":`...), &r.Discrepancy)
		return append(b, '}'), nil
	case *warnings.KeyList:
		return schemas.AppendJSONStrings(b, *r), nil
	case *int64:
		return strconv.AppendInt(b, *r, 10), nil
	}
	raw, err := json.Marshal(v)
	return append(b, raw...), err
}

// appendVersion opens a record object with its version and deleted members.
func appendVersion(b []byte, version int64, deleted bool) []byte {
	b = strconv.AppendInt(append(b, `{"version":`...), version, 10)
	if deleted {
		b = append(b, `,"deleted":true`...)
	}
	return b
}

func appendHashOpen(b []byte, hash string, open bool) []byte {
	b = schemas.AppendJSONString(append(b, `{"hash":`...), hash)
	return strconv.AppendBool(append(b, `,"open":`...), open)
}
