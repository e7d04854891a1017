package poll

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// kind is how a column's values are turned into JSON-able values. It is derived from
// the driver's database type name, so PostgreSQL and MySQL views of the same data
// produce the same JSON.
type kind uint8

const (
	kText        kind = iota // UTF-8 string; invalid bytes make the row a dead letter
	kInt                     // int64
	kUint                    // uint64 (MySQL UNSIGNED)
	kFloat                   // float64; NaN and ±Inf are dead letters (JSON cannot carry them)
	kDecimal                 // exact decimal as a string
	kBool                    // bool
	kDate                    // "2006-01-02"
	kTimestamp               // zone-less "2006-01-02 15:04:05[.ffffff]"
	kTimestampTZ             // RFC 3339 in UTC
	kBinary                  // []byte (base64 in JSON)
	kJSON                    // JSON text as a string
)

// column is one result column as the converters need it.
type column struct {
	name   string
	kind   kind
	dbType string // driver type name, upper case (for PostgreSQL casts)
	// mysql is set for MySQL/MariaDB columns: with parseTime the driver turns a zero date
	// (0000-00-00) into the zero time.Time, which must not pass as 0001-01-01.
	mysql bool
}

// kindOf maps a database/sql DatabaseTypeName (pgx stdlib or go-sql-driver/mysql) to a
// kind. Unknown types are treated as text: their values are strings or bytes.
func kindOf(dbType string) kind {
	t := strings.ToUpper(dbType)
	if strings.HasPrefix(t, "UNSIGNED ") {
		return kUint
	}
	switch t {
	case "INT2", "INT4", "INT8", "INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "MEDIUMINT", "YEAR", "OID":
		return kInt
	case "FLOAT4", "FLOAT8", "FLOAT", "DOUBLE", "REAL":
		return kFloat
	case "NUMERIC", "DECIMAL", "MONEY":
		return kDecimal
	case "BOOL", "BOOLEAN":
		return kBool
	case "DATE":
		return kDate
	case "TIMESTAMP", "DATETIME":
		return kTimestamp
	case "TIMESTAMPTZ":
		return kTimestampTZ
	case "BYTEA", "BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB", "BINARY", "VARBINARY", "BIT", "GEOMETRY":
		return kBinary
	case "JSON", "JSONB":
		return kJSON
	}
	return kText
}

// errBadValue marks a value that cannot be converted; the row becomes a dead letter.
var errBadValue = errors.New("bad value")

// badValue is a conversion failure with a bounded-cardinality reason code for metrics.
type badValue struct {
	reason string // invalid_text, zero_date, bad_number, bad_time
	msg    string
}

func (b *badValue) Error() string { return b.msg }
func (b *badValue) Unwrap() error { return errBadValue }

func bad(reason, format string, args ...any) error {
	return &badValue{reason: reason, msg: fmt.Sprintf(format, args...)}
}

const (
	layoutDate      = "2006-01-02"
	layoutTimestamp = "2006-01-02 15:04:05.999999"
)

var (
	dateTextRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	tsTextRe   = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,9})?$`)
)

// convert turns one driver value into a JSON-able value according to the column kind.
func convert(c column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch c.kind {
	case kInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case int32:
			return int64(x), nil
		case []byte, string:
			s := asString(x)
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, bad("bad_number", "column %s: %q is not an integer", c.name, s)
			}
			return n, nil
		}
	case kUint:
		switch x := v.(type) {
		case int64:
			return x, nil
		case uint64:
			return x, nil
		case []byte, string:
			s := asString(x)
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, bad("bad_number", "column %s: %q is not an unsigned integer", c.name, s)
			}
			return n, nil
		}
	case kFloat:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case float32:
			f = float64(x)
		case []byte, string:
			var err error
			if f, err = strconv.ParseFloat(asString(x), 64); err != nil {
				return nil, bad("bad_number", "column %s: %q is not a number", c.name, asString(x))
			}
		default:
			return nil, bad("bad_number", "column %s: unexpected %T for a float", c.name, v)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, bad("bad_number", "column %s: %v cannot be represented in JSON", c.name, f)
		}
		return f, nil
	case kDecimal:
		switch x := v.(type) {
		case []byte, string:
			s := asString(x)
			if f, err := strconv.ParseFloat(s, 64); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, bad("bad_number", "column %s: %q is not a finite decimal", c.name, s)
			}
			return s, nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64), nil
		}
	case kBool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case int64:
			return x != 0, nil
		case []byte, string:
			b, err := strconv.ParseBool(asString(x))
			if err != nil {
				return nil, bad("bad_number", "column %s: %q is not a boolean", c.name, asString(x))
			}
			return b, nil
		}
	case kDate:
		switch x := v.(type) {
		case time.Time:
			if c.mysql && x.IsZero() {
				return nil, bad("zero_date", "column %s: zero date 0000-00-00", c.name)
			}
			return x.Format(layoutDate), nil
		case []byte, string:
			s := asString(x)
			if strings.HasPrefix(s, "0000-00-00") {
				return nil, bad("zero_date", "column %s: zero date %q", c.name, s)
			}
			if !dateTextRe.MatchString(s) {
				return nil, bad("bad_time", "column %s: %q is not a date (infinity?)", c.name, s)
			}
			return s, nil
		}
	case kTimestamp:
		switch x := v.(type) {
		case time.Time:
			if c.mysql && x.IsZero() {
				return nil, bad("zero_date", "column %s: zero date-time 0000-00-00 00:00:00", c.name)
			}
			return x.Format(layoutTimestamp), nil
		case []byte, string:
			s := asString(x)
			if strings.HasPrefix(s, "0000-00-00") {
				return nil, bad("zero_date", "column %s: zero date-time %q", c.name, s)
			}
			if !tsTextRe.MatchString(s) {
				return nil, bad("bad_time", "column %s: %q is not a date-time (infinity?)", c.name, s)
			}
			return strings.Replace(s, "T", " ", 1), nil
		}
	case kTimestampTZ:
		switch x := v.(type) {
		case time.Time:
			return x.UTC().Format(time.RFC3339Nano), nil
		case []byte, string:
			s := asString(x)
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, bad("bad_time", "column %s: %q is not a timestamp with time zone (infinity?)", c.name, s)
			}
			return t.UTC().Format(time.RFC3339Nano), nil
		}
	case kBinary:
		switch x := v.(type) {
		case []byte:
			return bytes.Clone(x), nil
		case string:
			return []byte(x), nil
		}
	case kJSON:
		switch x := v.(type) {
		case []byte, string:
			s := asString(x)
			if !json.Valid([]byte(s)) {
				return nil, bad("invalid_text", "column %s: invalid JSON", c.name)
			}
			return s, nil
		}
	}
	// kText and anything a driver hands back in an unexpected Go type.
	switch x := v.(type) {
	case []byte, string:
		s := asString(x)
		if !utf8.ValidString(s) {
			return nil, bad("invalid_text", "column %s: invalid UTF-8 at byte %d (check the view's character set)", c.name, firstInvalid(s))
		}
		return s, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case int64, float64, bool:
		return x, nil
	default:
		return fmt.Sprint(x), nil
	}
}

func asString(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

func firstInvalid(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return i
			}
		}
	}
	return -1
}

// encodeKey is the Kafka key and the key store key: the key columns as a JSON object
// (encoding/json sorts the names), the same form the other capture connectors use.
func encodeKey(key map[string]any) ([]byte, error) {
	b, err := json.Marshal(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return b, nil
}
