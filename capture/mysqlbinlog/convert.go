package mysqlbinlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/shopspring/decimal"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// kind is how a column's values are normalised, so that a snapshot read (text
// protocol) and a binlog row (binary row image) give identical Go values and hence
// identical JSON and Kafka keys.
type kind uint8

const (
	kOther     kind = iota
	kInt            // signed integer → int64
	kUint           // unsigned integer → uint64
	kFloat          // FLOAT → float32
	kDouble         // DOUBLE → float64
	kDecimal        // DECIMAL → string with the column's scale
	kText           // character data → UTF-8 string
	kBinary         // binary data → []byte (base64 in JSON)
	kDate           // "2006-01-02"
	kDateTime       // "2006-01-02 15:04:05[.ffffff]" (zone-less)
	kTimestamp      // like kDateTime, in UTC
	kTime           // "15:04:05[.ffffff]"
	kYear           // int64
	kEnum           // string value
	kSet            // comma-separated values
	kBit            // int64
	kJSON           // JSON text as a string
)

// colSpec is one column as the converters need it.
type colSpec struct {
	name    string
	kind    kind
	scale   int
	charset string
	elems   []string
}

// errBadValue marks a value that cannot be converted: the row goes to the DLQ.
var errBadValue = errors.New("bad value")

// badValue is a conversion failure with its bounded DLQ reason code (invalid_text,
// zero_date, unknown_type, bad_number), so that metrics and operators can group
// dead letters without parsing messages.
type badValue struct{ code, msg string }

func (e *badValue) Error() string        { return "bad value: " + e.msg }
func (e *badValue) Is(target error) bool { return target == errBadValue }

func badValueErr(code, format string, args ...any) error {
	return &badValue{code: code, msg: fmt.Sprintf(format, args...)}
}

// reasonCode returns the DLQ reason code of a conversion error (the first one when
// several columns failed).
func reasonCode(err error) string {
	var b *badValue
	if errors.As(err, &b) {
		return b.code
	}
	return "bad_value"
}

func specFromColumn(c Column) colSpec {
	s := colSpec{name: c.Name, scale: c.Scale, charset: c.Charset, elems: c.Elems}
	switch c.Type {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		s.kind = kInt
		if c.Unsigned {
			s.kind = kUint
		}
	case "float":
		s.kind = kFloat
	case "double", "real":
		s.kind = kDouble
	case "decimal", "numeric":
		s.kind = kDecimal
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		s.kind = kText
		if c.Charset == "" {
			s.kind = kBinary
		}
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		s.kind = kBinary
	case "date":
		s.kind = kDate
	case "datetime":
		s.kind = kDateTime
	case "timestamp":
		s.kind = kTimestamp
	case "time":
		s.kind = kTime
	case "year":
		s.kind = kYear
	case "enum":
		s.kind = kEnum
	case "set":
		s.kind = kSet
	case "bit":
		s.kind = kBit
	case "json":
		s.kind = kJSON
	default:
		s.kind = kOther
	}
	return s
}

// specsFromTableMap derives the column specs from a TableMapEvent carrying full row
// metadata (binlog_row_metadata=FULL). ok is false when the names are missing.
func specsFromTableMap(t *replication.TableMapEvent, charsets map[uint64]string) (specs []colSpec, ok bool) {
	names := t.ColumnNameString()
	if len(names) != int(t.ColumnCount) {
		return nil, false
	}
	unsigned := t.UnsignedMap()
	coll := t.CollationMap()
	enums := t.EnumStrValueMap()
	sets := t.SetStrValueMap()
	specs = make([]colSpec, len(names))
	for i, n := range names {
		s := colSpec{name: n}
		switch {
		case t.IsEnumColumn(i):
			s.kind, s.elems = kEnum, enums[i]
		case t.IsSetColumn(i):
			s.kind, s.elems = kSet, sets[i]
		default:
			switch t.ColumnType[i] {
			case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG:
				s.kind = kInt
				if unsigned[i] {
					s.kind = kUint
				}
			case mysql.MYSQL_TYPE_FLOAT:
				s.kind = kFloat
			case mysql.MYSQL_TYPE_DOUBLE:
				s.kind = kDouble
			case mysql.MYSQL_TYPE_NEWDECIMAL:
				s.kind, s.scale = kDecimal, int(t.ColumnMeta[i]&0xff)
			case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
				s.kind = kDate
			case mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_DATETIME2:
				s.kind = kDateTime
			case mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2:
				s.kind = kTimestamp
			case mysql.MYSQL_TYPE_TIME, mysql.MYSQL_TYPE_TIME2:
				s.kind = kTime
			case mysql.MYSQL_TYPE_YEAR:
				s.kind = kYear
			case mysql.MYSQL_TYPE_BIT:
				s.kind = kBit
			case mysql.MYSQL_TYPE_JSON:
				s.kind = kJSON
			case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_BLOB:
				id, has := coll[i]
				switch {
				case has && id == 63:
					s.kind = kBinary
				case has:
					s.kind, s.charset = kText, charsets[id]
				default:
					s.kind, s.charset = kText, "utf8mb4"
				}
			default:
				s.kind = kOther
			}
		}
		specs[i] = s
	}
	return specs, true
}

// decoderFor returns the decoder turning the named MySQL charset into UTF-8 (nil for
// UTF-8 and ASCII, which only need validating).
func decoderFor(charset string) *encoding.Decoder {
	switch charset {
	case "gbk", "gb2312":
		return simplifiedchinese.GBK.NewDecoder()
	case "gb18030":
		return simplifiedchinese.GB18030.NewDecoder()
	case "latin1":
		return charmap.Windows1252.NewDecoder()
	}
	return nil
}

func textValue(b []byte, charset string) (string, error) {
	if dec := decoderFor(charset); dec != nil {
		out, err := dec.Bytes(b)
		if err != nil {
			return "", badValueErr("invalid_text", "invalid %s text: %v", charset, err)
		}
		return string(out), nil
	}
	if !utf8.Valid(b) {
		return "", badValueErr("invalid_text", "invalid UTF-8 text for charset %s", orDefault(charset, "utf8mb4"))
	}
	return string(b), nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func checkTemporal(s string) (string, error) {
	// Zero dates and dates with a zero month or day (allowed by lax sql_mode) have no
	// meaning downstream and no PostgreSQL equivalent.
	if len(s) >= 10 && (s[0:4] == "0000" || s[5:7] == "00" || s[8:10] == "00") {
		return "", badValueErr("zero_date", "zero date %q", s)
	}
	return s, nil
}

// binlogValue normalises one value of a binlog row image.
func binlogValue(s colSpec, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch s.kind {
	case kInt, kYear, kBit:
		switch x := v.(type) {
		case int8:
			return int64(x), nil
		case int16:
			return int64(x), nil
		case int32:
			return int64(x), nil
		case int64:
			return x, nil
		case int:
			return int64(x), nil
		case uint8:
			return int64(x), nil
		case uint16:
			return int64(x), nil
		case uint32:
			return int64(x), nil
		case uint64:
			return int64(x), nil
		}
	case kUint:
		switch x := v.(type) {
		case int8:
			return uint64(uint8(x)), nil
		case int16:
			return uint64(uint16(x)), nil
		case int32:
			return uint64(uint32(x)), nil
		case int64:
			return uint64(x), nil
		case uint8:
			return uint64(x), nil
		case uint16:
			return uint64(x), nil
		case uint32:
			return uint64(x), nil
		case uint64:
			return x, nil
		}
	case kFloat:
		switch x := v.(type) {
		case float32:
			return x, nil
		case float64:
			return float32(x), nil
		}
	case kDouble:
		switch x := v.(type) {
		case float64:
			return x, nil
		case float32:
			return float64(x), nil
		}
	case kDecimal:
		switch x := v.(type) {
		case decimal.Decimal:
			return x.StringFixed(int32(s.scale)), nil
		case string:
			return x, nil
		case float64:
			return strconv.FormatFloat(x, 'f', s.scale, 64), nil
		}
	case kText, kJSON:
		switch x := v.(type) {
		case []byte:
			return textValue(x, s.charset)
		case string:
			return textValue([]byte(x), s.charset)
		}
	case kBinary:
		switch x := v.(type) {
		case []byte:
			return append([]byte(nil), x...), nil
		case string:
			return []byte(x), nil
		}
	case kDate, kDateTime, kTimestamp, kTime:
		switch x := v.(type) {
		case string:
			if s.kind == kTime {
				return x, nil
			}
			return checkTemporal(x)
		case time.Time:
			if s.kind == kDate {
				return x.Format(time.DateOnly), nil
			}
			return x.UTC().Format(time.DateTime), nil
		}
	case kEnum:
		if x, ok := v.(int64); ok {
			if x == 0 {
				return "", nil
			}
			if int(x) > len(s.elems) {
				return nil, badValueErr("unknown_type", "enum index %d outside the %d known values", x, len(s.elems))
			}
			return s.elems[x-1], nil
		}
	case kSet:
		if x, ok := v.(int64); ok {
			var parts []string
			for i, e := range s.elems {
				if x&(1<<uint(i)) != 0 {
					parts = append(parts, e)
				}
			}
			return strings.Join(parts, ","), nil
		}
	}
	return nil, badValueErr("unknown_type", "column type not supported (Go value %T)", v)
}

// sqlValue normalises one value read by a snapshot SELECT (text protocol; the
// connection charset is utf8mb4 and time_zone is UTC).
func sqlValue(s colSpec, raw []byte) (any, error) {
	if raw == nil {
		return nil, nil
	}
	str := string(raw)
	switch s.kind {
	case kInt, kYear:
		n, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return nil, badValueErr("bad_number", "integer %q: %v", str, err)
		}
		return n, nil
	case kUint:
		n, err := strconv.ParseUint(str, 10, 64)
		if err != nil {
			return nil, badValueErr("bad_number", "unsigned integer %q: %v", str, err)
		}
		return n, nil
	case kFloat:
		f, err := strconv.ParseFloat(str, 32)
		if err != nil {
			return nil, badValueErr("bad_number", "float %q: %v", str, err)
		}
		return float32(f), nil
	case kDouble:
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, badValueErr("bad_number", "double %q: %v", str, err)
		}
		return f, nil
	case kDecimal, kEnum, kSet, kTime:
		return str, nil
	case kText, kJSON:
		return textValue(raw, "utf8mb4")
	case kBinary:
		return append([]byte(nil), raw...), nil
	case kDate, kDateTime, kTimestamp:
		return checkTemporal(str)
	case kBit:
		var buf [8]byte
		if len(raw) > 8 {
			return nil, badValueErr("unknown_type", "BIT value of %d bytes", len(raw))
		}
		copy(buf[8-len(raw):], raw)
		return int64(binary.BigEndian.Uint64(buf[:])), nil
	}
	return nil, badValueErr("unknown_type", "column type not supported")
}

// encodeKey is the Kafka message key: the JSON object of the primary-key columns
// (keys sorted, byte for byte json.Marshal's encoding, so the encoding is stable).
func encodeKey(key map[string]any) []byte {
	b, err := appendRowJSON(nil, key)
	if err != nil {
		return []byte(fmt.Sprint(key))
	}
	return b
}
