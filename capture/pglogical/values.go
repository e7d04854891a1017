package pglogical

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// valueError is a value PostgreSQL sent that cannot become a JSON value; the change
// carrying it goes to the capture DLQ with Reason as its metric label.
type valueError struct {
	Column string
	OID    uint32
	Reason string // bounded: invalid_text, invalid_number, invalid_json, invalid_time
	Err    error
}

func (e *valueError) Error() string {
	return fmt.Sprintf("column %s (type oid %d): %s: %v", e.Column, e.OID, e.Reason, e.Err)
}

// typeMap validates date and time values; it is only read after init, which pgtype
// allows concurrently.
var typeMap = pgtype.NewMap()

// decodeValue turns one text-format column value into a JSON-able value according to
// its type: integers become numbers, numeric stays a string (no precision lost),
// booleans become bools, json/jsonb stay raw JSON, dates and times stay PostgreSQL's
// ISO text (validated), floats become numbers unless NaN/Infinity (strings), and every
// other type is its text form, which must be valid UTF-8.
func decodeValue(oid uint32, b []byte) (any, error) {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID, pgtype.XIDOID:
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			if oid == pgtype.OIDOID || oid == pgtype.XIDOID {
				u, uerr := strconv.ParseUint(string(b), 10, 32)
				if uerr == nil {
					return int64(u), nil
				}
			}
			return nil, &valueError{OID: oid, Reason: "invalid_number", Err: err}
		}
		return n, nil
	case pgtype.Float4OID, pgtype.Float8OID:
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			return nil, &valueError{OID: oid, Reason: "invalid_number", Err: err}
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return string(b), nil // JSON has no NaN/Infinity
		}
		return f, nil
	case pgtype.NumericOID:
		if !numericText(b) {
			return nil, &valueError{OID: oid, Reason: "invalid_number", Err: fmt.Errorf("%q is not a numeric literal", clip(string(b), 40))}
		}
		return string(b), nil
	case pgtype.BoolOID:
		switch string(b) {
		case "t", "true":
			return true, nil
		case "f", "false":
			return false, nil
		}
		return nil, &valueError{OID: oid, Reason: "invalid_text", Err: fmt.Errorf("%q is not a boolean", clip(string(b), 40))}
	case pgtype.JSONOID, pgtype.JSONBOID:
		if !json.Valid(b) {
			return nil, &valueError{OID: oid, Reason: "invalid_json", Err: fmt.Errorf("not valid JSON: %q", clip(string(b), 40))}
		}
		return json.RawMessage(append([]byte(nil), b...)), nil
	case pgtype.DateOID, pgtype.TimestampOID, pgtype.TimestamptzOID:
		var err error
		switch oid {
		case pgtype.DateOID:
			var d pgtype.Date
			err = typeMap.Scan(oid, pgtype.TextFormatCode, b, &d)
		case pgtype.TimestampOID:
			var t pgtype.Timestamp
			err = typeMap.Scan(oid, pgtype.TextFormatCode, b, &t)
		default:
			var t pgtype.Timestamptz
			err = typeMap.Scan(oid, pgtype.TextFormatCode, b, &t)
		}
		if err != nil {
			return nil, &valueError{OID: oid, Reason: "invalid_time", Err: err}
		}
		return string(b), nil
	}
	if !utf8.Valid(b) {
		return nil, &valueError{OID: oid, Reason: "invalid_text", Err: fmt.Errorf("%d bytes are not valid UTF-8 (database encoding not UTF8?)", len(b))}
	}
	return string(b), nil
}

// numericText accepts PostgreSQL's numeric output: an optional sign, digits with one
// optional point, an optional exponent, or NaN/Infinity.
func numericText(b []byte) bool {
	switch string(b) {
	case "NaN", "Infinity", "-Infinity":
		return true
	}
	i := 0
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		i++
	}
	digits, point := 0, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !point:
			point = true
		case (c == 'e' || c == 'E') && digits > 0:
			_, err := strconv.Atoi(string(b[i+1:]))
			return err == nil
		default:
			return false
		}
	}
	return digits > 0
}
