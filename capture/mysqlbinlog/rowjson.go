package mysqlbinlog

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/shouwang/shouwang/schemas"
)

// appendRowJSON appends the JSON encoding of row to dst, byte for byte what
// json.Marshal produces (keys sorted, HTML characters, U+2028/U+2029 and invalid
// UTF-8 escaped the same way), without its reflection and reflect.Value key sort,
// which dominated the reload collapse's CPU profile (every reloaded row is encoded
// once for its state record). Value types other than the converter's common ones go
// through json.Marshal one by one, so the result is always the same as Marshal's.
func appendRowJSON(dst []byte, row map[string]any) ([]byte, error) {
	if row == nil {
		return append(dst, "null"...), nil
	}
	var buf [64]string
	keys := buf[:0]
	for k := range row {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return appendSortedRow(dst, keys, row)
}

// rowEncoder is appendRowJSON keeping the sorted key order of the last row, and each
// key already encoded: the rows of a table share their columns, and sorting and
// escaping the keys (and looking each up twice) were most of the remaining cost.
type rowEncoder struct {
	keys []string
	enc  [][]byte // `"key":` for each of keys
}

func (e *rowEncoder) append(dst []byte, row map[string]any) ([]byte, error) {
	if row == nil {
		return append(dst, "null"...), nil
	}
	if len(row) == len(e.keys) {
		start := len(dst)
		dst = append(dst, '{')
		same := true
		for i, k := range e.keys {
			v, ok := row[k]
			if !ok {
				same = false
				break
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, e.enc[i]...)
			var err error
			if dst, err = appendJSONValue(dst, v); err != nil {
				return dst, err
			}
		}
		if same {
			return append(dst, '}'), nil
		}
		dst = dst[:start]
	}
	e.keys = e.keys[:0]
	for k := range row {
		e.keys = append(e.keys, k)
	}
	slices.Sort(e.keys)
	e.enc = e.enc[:0]
	for _, k := range e.keys {
		e.enc = append(e.enc, append(schemas.AppendJSONString(nil, k), ':'))
	}
	return appendSortedRow(dst, e.keys, row)
}

// appendSortedRow encodes row with its keys in the given (sorted) order.
func appendSortedRow(dst []byte, keys []string, row map[string]any) ([]byte, error) {
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = schemas.AppendJSONString(dst, k)
		dst = append(dst, ':')
		var err error
		if dst, err = appendJSONValue(dst, row[k]); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

func appendJSONValue(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return schemas.AppendJSONString(dst, x), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case []byte:
		if x == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x)
		return append(dst, '"'), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// rowJSONBound returns an upper bound of the length of row's JSON encoding, and
// false when row holds a value type it cannot bound cheaply. Every byte of a string
// becomes at most 6 (\u00XX, or \ufffd for an invalid byte).
func rowJSONBound(row map[string]any) (int, bool) {
	n := 2
	for k, v := range row {
		n += 6*len(k) + 4 // quotes, colon, comma
		switch x := v.(type) {
		case nil, bool:
			n += 5
		case string:
			n += 6*len(x) + 2
		case int64, uint64, int, int32, uint32, int16, uint16, int8, uint8:
			n += 20
		case float32, float64:
			n += 32
		case []byte:
			n += base64.StdEncoding.EncodedLen(len(x)) + 2
		default:
			return 0, false
		}
	}
	return n, true
}

// envelopeJSONBound returns an upper bound of the length of env's JSON encoding
// (false: unknown; encode it to know). It lets the per-row MaxRowBytes check skip the
// full json.Marshal for the ordinary row, far below the limit.
func envelopeJSONBound(env *schemas.Envelope) (int, bool) {
	n := 1024 // field names, numbers, punctuation
	src := &env.Source
	for _, s := range []string{string(env.Op), src.System, src.Kind, src.DB, src.Table, src.BinlogFile, src.GTID,
		src.LSN, src.File, src.Watermark, env.Schema.Name, env.DDL} {
		n += 6 * len(s)
	}
	for _, row := range []map[string]any{env.Key, env.Before, env.After} {
		b, ok := rowJSONBound(row)
		if !ok {
			return 0, false
		}
		n += b
	}
	return n, true
}
