package schemas

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// This file is a reflection-free JSON encoder for Envelope. Profiles of capture showed
// encoding/json's Marshal of the map-based envelope at about half of the CPU per change
// (reflection per value, and sorting reflect.Values for every map). The encoder below
// produces byte for byte what json.Marshal produces — field order, omitempty, sorted
// map keys, HTML-safe escaping of <, > and &, U+2028/U+2029 escaped, invalid UTF-8 as
// \ufffd, the same float formatting, json.Number validated, []byte as base64 — and
// hands every value type it does not know (time.Time, json.RawMessage, named types,
// pointers, structs, ...) to json.Marshal one value at a time, so that it can never
// disagree with encoding/json. FuzzEnvelopeMarshal checks the equality.

// maxFastDepth bounds the nesting the fast path follows. Deeper documents (and
// self-referencing maps, which json.Marshal reports as a cycle) are encoded entirely
// by json.Marshal so that its result or error is returned unchanged.
const maxFastDepth = 64

// errTooDeep makes the envelope encoder fall back to json.Marshal of the whole
// envelope.
var errTooDeep = errors.New("envelope: nesting too deep for the fast encoder")

// envEncoder holds reusable scratch space. Rows of one table share their column set,
// so the sorted key order of the last map seen in each role (key, before, after) is
// kept and reused when the next map has exactly the same keys, which saves the sort.
type envEncoder struct {
	buf               []byte
	key, before, aftr keyCache
	vals              []any
	nested            []string
}

// keyCache remembers the sorted key sets of the last maps encoded in one role: a
// worker's stream mixes a few entities and tables, and their rows leave out different
// empty columns, so one remembered set would mostly miss.
type keyCache struct {
	sets [keySets][]string
	next int // the set to replace on a miss
}

const keySets = 8

var encoderPool = sync.Pool{New: func() any { return &envEncoder{buf: make([]byte, 0, 4096)} }}

// Marshal encodes the envelope as JSON, exactly as json.Marshal(e) would (see
// AppendJSON).
func (e *Envelope) Marshal() ([]byte, error) {
	if e == nil {
		return []byte("null"), nil
	}
	return marshalEnvelope(e, nil)
}

// marshalEnvelope encodes e with a non-empty row in place of its after map (before
// for a delete), exactly as json.Marshal of e with that map set to row.Map().
func marshalEnvelope(e *Envelope, row Fields) ([]byte, error) {
	enc := encoderPool.Get().(*envEncoder)
	b, err := enc.appendEnvelope(enc.buf[:0], e, row)
	if cap(b) <= 1<<20 { // do not keep the buffer of a freak row alive in the pool
		enc.buf = b[:0]
	}
	if err != nil {
		encoderPool.Put(enc)
		// Too deep, or a value encoding/json refuses (NaN, an invalid json.Number):
		// let encoding/json encode the whole envelope, or report the failure in its
		// own words ("json: unsupported value: NaN") as callers have always seen it.
		if len(row) > 0 {
			c := *e
			c.setRow(row.Map())
			e = &c
		}
		return json.Marshal(e)
	}
	out := make([]byte, len(b))
	copy(out, b)
	encoderPool.Put(enc)
	return out, nil
}

// AppendJSON appends the JSON encoding of e to dst, byte for byte what json.Marshal(e)
// produces. It lets a caller that batches many envelopes reuse one buffer.
func (e *Envelope) AppendJSON(dst []byte) ([]byte, error) {
	if e == nil {
		return append(dst, "null"...), nil
	}
	enc := encoderPool.Get().(*envEncoder)
	out, err := enc.appendEnvelope(dst, e, nil)
	encoderPool.Put(enc)
	if err != nil {
		b, jerr := json.Marshal(e)
		if jerr != nil {
			return dst, jerr
		}
		return append(dst, b...), nil
	}
	return out, nil
}

// appendEnvelope encodes e; a non-empty row (MarshalEnvelopeFields) is written in place
// of the after map, or of the before map for a delete.
func (enc *envEncoder) appendEnvelope(b []byte, e *Envelope, row Fields) ([]byte, error) {
	rowBefore, rowAfter := len(row) > 0 && e.Op == OpDelete, len(row) > 0 && e.Op != OpDelete
	var err error
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.V), 10)
	b = append(b, `,"op":`...)
	b = AppendJSONString(b, string(e.Op))
	b = append(b, `,"source":`...)
	b = appendSource(b, &e.Source)
	if len(e.Key) > 0 {
		b = append(b, `,"key":`...)
		if b, err = enc.appendMap(b, e.Key, &enc.key, 1); err != nil {
			return b, err
		}
	}
	switch {
	case rowBefore:
		b = append(b, `,"before":`...)
		if b, err = enc.appendFields(b, row, 1); err != nil {
			return b, err
		}
	case len(e.Before) > 0:
		b = append(b, `,"before":`...)
		if b, err = enc.appendMap(b, e.Before, &enc.before, 1); err != nil {
			return b, err
		}
	}
	switch {
	case rowAfter:
		b = append(b, `,"after":`...)
		if b, err = enc.appendFields(b, row, 1); err != nil {
			return b, err
		}
	case len(e.After) > 0:
		b = append(b, `,"after":`...)
		if b, err = enc.appendMap(b, e.After, &enc.aftr, 1); err != nil {
			return b, err
		}
	}
	b = append(b, `,"schema":{"name":`...)
	b = AppendJSONString(b, e.Schema.Name)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(e.Schema.Version), 10)
	b = append(b, '}')
	if e.DDL != "" {
		b = append(b, `,"ddl":`...)
		b = AppendJSONString(b, e.DDL)
	}
	b = append(b, `,"ts_ms":`...)
	b = strconv.AppendInt(b, e.TsMs, 10)
	return append(b, '}'), nil
}

// appendSource follows Source's field order and omitempty tags.
func appendSource(b []byte, s *Source) []byte {
	b = append(b, `{"system":`...)
	b = AppendJSONString(b, s.System)
	b = append(b, `,"kind":`...)
	b = AppendJSONString(b, s.Kind)
	if s.DB != "" {
		b = append(b, `,"db":`...)
		b = AppendJSONString(b, s.DB)
	}
	b = append(b, `,"table":`...)
	b = AppendJSONString(b, s.Table)
	if s.BinlogFile != "" {
		b = append(b, `,"binlog_file":`...)
		b = AppendJSONString(b, s.BinlogFile)
	}
	if s.BinlogPos != 0 {
		b = append(b, `,"binlog_pos":`...)
		b = strconv.AppendUint(b, uint64(s.BinlogPos), 10)
	}
	if s.GTID != "" {
		b = append(b, `,"gtid":`...)
		b = AppendJSONString(b, s.GTID)
	}
	if s.LSN != "" {
		b = append(b, `,"lsn":`...)
		b = AppendJSONString(b, s.LSN)
	}
	if s.File != "" {
		b = append(b, `,"file":`...)
		b = AppendJSONString(b, s.File)
	}
	if s.Line != 0 {
		b = append(b, `,"line":`...)
		b = strconv.AppendInt(b, s.Line, 10)
	}
	if s.Watermark != "" {
		b = append(b, `,"watermark":`...)
		b = AppendJSONString(b, s.Watermark)
	}
	if s.Snapshot {
		b = append(b, `,"snapshot":true`...)
	}
	if s.CommitMs != 0 {
		b = append(b, `,"commit_ms":`...)
		b = strconv.AppendInt(b, s.CommitMs, 10)
	}
	if s.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendInt(b, s.Seq, 10)
	}
	return append(b, '}')
}

// appendMap encodes a row map with sorted keys, reusing kc's order when m has exactly
// the cached key set (checked by looking every cached key up, which also fetches the
// values in order).
func (enc *envEncoder) appendMap(b []byte, m map[string]any, kc *keyCache, depth int) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	if len(m) == 0 {
		return append(b, "{}"...), nil
	}
	vals := enc.vals[:0]
	var keys []string
	for i := range kc.sets {
		if len(kc.sets[i]) != len(m) {
			continue
		}
		vals = vals[:0]
		hit := true
		for _, k := range kc.sets[i] {
			v, ok := m[k]
			if !ok {
				hit = false
				break
			}
			vals = append(vals, v)
		}
		if hit {
			keys = kc.sets[i]
			break
		}
	}
	if keys == nil {
		keys = kc.sets[kc.next][:0]
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		kc.sets[kc.next] = keys
		kc.next = (kc.next + 1) % keySets
		vals = vals[:0]
		for _, k := range keys {
			vals = append(vals, m[k])
		}
	}
	enc.vals = vals[:0]
	b = append(b, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, k)
		b = append(b, ':')
		if b, err = enc.appendValue(b, vals[i], depth); err != nil {
			break
		}
	}
	clear(vals) // do not keep row values reachable from the pool
	if err != nil {
		return b, err
	}
	return append(b, '}'), nil
}

// appendValue encodes one value the way json.Marshal would.
func (enc *envEncoder) appendValue(b []byte, v any, depth int) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return AppendJSONString(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case float64:
		return appendFloat(b, x, 64)
	case float32:
		return appendFloat(b, float64(x), 32)
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case json.Number:
		s := string(x)
		if s == "" {
			s = "0" // encoding/json's historical zero value
		}
		if !validNumber(s) {
			return b, errors.New("envelope: invalid json.Number") // json.Marshal words the error
		}
		return append(b, s...), nil
	case []byte:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, '"'), nil
	case map[string]any:
		if depth >= maxFastDepth {
			return b, errTooDeep
		}
		return enc.appendNested(b, x, depth+1)
	case Fields:
		if x == nil {
			return append(b, "null"...), nil
		}
		if depth >= maxFastDepth {
			return b, errTooDeep
		}
		return enc.appendFields(b, x, depth+1)
	case []any:
		if x == nil {
			return append(b, "null"...), nil
		}
		if depth >= maxFastDepth {
			return b, errTooDeep
		}
		b = append(b, '[')
		var err error
		for i, el := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = enc.appendValue(b, el, depth+1); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	}
	// Anything else (time.Time, json.RawMessage, named or pointer types, structs):
	// encoding/json itself, so the bytes are its bytes.
	out, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, out...), nil
}

// appendNested encodes a map nested inside a row value; its keys are sorted every
// time (nested maps are rare: JSON columns decoded by a transform).
func (enc *envEncoder) appendNested(b []byte, m map[string]any, depth int) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	start := len(enc.nested)
	for k := range m {
		enc.nested = append(enc.nested, k)
	}
	keys := enc.nested[start:]
	slices.Sort(keys)
	defer func() { enc.nested = enc.nested[:start] }()
	b = append(b, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, k)
		b = append(b, ':')
		if b, err = enc.appendValue(b, m[k], depth); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

// appendFloat is encoding/json's floatEncoder: ES6 number formatting, exponent for
// very small and very large magnitudes without a zero-padded exponent.
func appendFloat(b []byte, f float64, bits int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, errors.New("envelope: unsupported float value") // json.Marshal words the error
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// htmlSafe marks the ASCII bytes encoding/json writes unescaped with HTML escaping on:
// printable characters except ", \, <, > and &.
var htmlSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string exactly as encoding/json writes it with
// HTML escaping on (<, > and & as \u003c…, invalid UTF-8 as \ufffd, U+2028/U+2029
// escaped). Connectors that encode rows by hand use it so their output stays
// byte-identical to json.Marshal.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if htmlSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// validNumber is the JSON number grammar (RFC 8259 section 6), as encoding/json
// checks json.Number before writing it.
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}

// MarshalMap encodes m exactly as json.Marshal(m) would (sorted keys, the same
// escaping and number formats), without reflection. Connectors use it for Kafka message
// keys, which are encoded once per captured change.
func MarshalMap(m map[string]any) ([]byte, error) {
	enc := encoderPool.Get().(*envEncoder)
	b, err := enc.appendNested(enc.buf[:0], m, 0)
	var out []byte
	if err == nil {
		out = make([]byte, len(b))
		copy(out, b)
	}
	if cap(b) <= 1<<20 {
		enc.buf = b[:0]
	}
	encoderPool.Put(enc)
	if err != nil {
		return json.Marshal(m) // too deep, NaN, an invalid json.Number: encoding/json decides
	}
	return out, nil
}
