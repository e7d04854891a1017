package schemas

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is a reflection-free JSON decoder for Envelope and for generic JSON values.
// Every transform and sink decodes every message, and encoding/json spent about 60 µs
// on a person envelope (reflection per field, a map grown entry by entry, every column
// name allocated again). The decoder below accepts exactly the inputs that encoding/json
// (with UseNumber) accepts and builds values reflect.DeepEqual to its results:
//
//   - the RFC 8259 grammar as encoding/json's scanner checks it (whitespace is space,
//     tab, CR and LF; nesting deeper than 10000 arrays and objects is refused);
//   - objects become map[string]any, arrays []any (never nil), numbers json.Number
//     holding the literal, strings with invalid UTF-8 and unpaired surrogate escapes
//     replaced by U+FFFD, duplicate keys resolved last-wins;
//   - envelope field names match exactly or, failing that, case-insensitively with
//     encoding/json's Unicode folding; unknown fields are skipped (but still checked);
//   - null leaves a string, integer, bool or struct field unchanged and sets a map
//     field to nil; a repeated map field is merged into the existing map, a repeated
//     struct field decoded into the existing struct, as encoding/json does;
//   - integer fields take only literals strconv.ParseInt/ParseUint accept (no fraction,
//     no exponent, in range; "-0" fits a signed field but not binlog_pos).
//
// Unlike json.Decoder.Decode, which the previous implementation used, data after the
// top-level value other than whitespace is refused (as json.Unmarshal refuses it): a
// Kafka message holds exactly one envelope, and trailing bytes mean a corrupt or
// concatenated message. FuzzDecodeEnvelope and FuzzDecodeValue check all of this
// against encoding/json.

// maxDecodeDepth is encoding/json's nesting limit (maxNestingDepth in its scanner).
const maxDecodeDepth = 10000

// DecodeError reports why and where a JSON document was refused. Messages name the
// JSON kind or character found, never a string value (rows carry ID numbers and
// phones).
type DecodeError struct {
	// Offset is the byte offset of the offending byte in the input (its length when
	// the input ended early).
	Offset int
	// Field is the dotted envelope field being decoded ("source.binlog_pos"), or
	// empty outside an envelope field.
	Field string
	// Msg says what is wrong.
	Msg string
}

// Error formats the error as "field F: MSG at offset N".
func (e *DecodeError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("field %s: %s at offset %d", e.Field, e.Msg, e.Offset)
	}
	return fmt.Sprintf("%s at offset %d", e.Msg, e.Offset)
}

// member is one decoded object member, collected before the map is built so that the
// map is allocated once at its final size.
type member struct {
	k string
	v any
}

// maxInterned bounds the per-decoder table of reused strings (row column names and
// the envelope's source names); when it fills up it starts afresh, so a stream of
// ever-new names costs only the allocations encoding/json makes anyway.
const (
	maxInterned    = 4096
	maxInternedLen = 64
)

// decoder holds one input and reusable scratch space; decoders are pooled.
type decoder struct {
	data    []byte
	off     int
	members []member // stack of members of the objects being decoded
	elems   []any    // stack of elements of the arrays being decoded
	buf     []byte   // unescaped text of the last string read
	fold    []byte   // folded form of the last field name matched case-insensitively
	strs    map[string]string
	// Column names of the last key, before and after maps, in input order: the rows
	// of one table repeat them, so comparing with the expected next name is cheaper
	// than looking it up in strs.
	key, before, after []string
	// rows, when set, receives the key, before and after maps as cells
	// (UnmarshalEnvelopeCells); full records whether each map (key, before, after)
	// would be non-empty, for validation.
	rows *Rows
	// arena holds the text of the cells of one decode, each cell's string a view of
	// its bytes (see cellText); it is never reused, only appended to.
	arena []byte
	full  [3]bool
}

var decoderPool = sync.Pool{New: func() any {
	return &decoder{strs: make(map[string]string, 256)}
}}

func getDecoder(b []byte) *decoder {
	d := decoderPool.Get().(*decoder)
	d.data, d.off = b, 0
	return d
}

func putDecoder(d *decoder) {
	d.data = nil
	d.rows, d.full, d.arena = nil, [3]bool{}, nil
	// Do not keep decoded values reachable from the pool; an error may have left
	// members or elements on the stacks.
	clear(d.members[:cap(d.members)])
	clear(d.elems[:cap(d.elems)])
	d.members, d.elems = d.members[:0], d.elems[:0]
	if cap(d.buf) > 64<<10 {
		d.buf = nil // do not keep the scratch of a freak string alive in the pool
	}
	for _, names := range []*[]string{&d.key, &d.before, &d.after} {
		if cap(*names) > maxInterned {
			*names = nil // nor the names of a freak row
		}
	}
	decoderPool.Put(d)
}

// DecodeValue decodes one JSON value as json.Unmarshal into an any would with
// json.Decoder.UseNumber: objects as map[string]any, arrays as []any, numbers as
// json.Number, strings, bools, and nil for null (so "null" gives nil and no error).
// Whitespace around the value is allowed, anything else after it is an error.
func DecodeValue(b []byte) (any, error) {
	d := getDecoder(b)
	defer putDecoder(d)
	d.skipSpace()
	v, err := d.value(0)
	if err == nil {
		err = d.end()
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// DecodeObject decodes a JSON object (a canonical entity document, a row) with the
// semantics of DecodeValue. Any other top-level value, null included, is an error:
// a caller that wants a document must not get a nil map without one.
func DecodeObject(b []byte) (map[string]any, error) {
	d := getDecoder(b)
	defer putDecoder(d)
	d.skipSpace()
	if d.off >= len(d.data) {
		return nil, d.eof()
	}
	if d.data[d.off] != '{' {
		return nil, d.mismatch("", "an object")
	}
	m, err := d.object(0)
	if err == nil {
		err = d.end()
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// decodeEnvelope decodes b into e as a json.Decoder with UseNumber would, except
// that trailing non-whitespace is refused. e is filled, not reset: like
// encoding/json, fields absent from b keep their values.
func decodeEnvelope(b []byte, e *Envelope) error {
	d := getDecoder(b)
	defer putDecoder(d)
	return d.decodeEnvelopeInto(e)
}

func (d *decoder) decodeEnvelopeInto(e *Envelope) error {
	d.skipSpace()
	if d.off >= len(d.data) {
		return d.eof()
	}
	var err error
	switch d.data[d.off] {
	case '{':
		err = d.envelope(e)
	case 'n':
		err = d.null() // encoding/json leaves the envelope untouched; Validate refuses it
	default:
		err = d.mismatch("", "an object")
	}
	if err != nil {
		return err
	}
	return d.end()
}

// Envelope, Source and SchemaRef field names as their json tags spell them, and their
// case-folded forms for the case-insensitive match.
var (
	envelopeFields = []string{"v", "op", "source", "key", "before", "after", "schema", "ddl", "ts_ms"}
	sourceFields   = []string{"system", "kind", "db", "table", "binlog_file", "binlog_pos", "gtid",
		"lsn", "file", "line", "watermark", "snapshot", "commit_ms", "seq"}
	schemaRefFields = []string{"name", "version"}

	envelopeFolded  = foldAll(envelopeFields)
	sourceFolded    = foldAll(sourceFields)
	schemaRefFolded = foldAll(schemaRefFields)
)

func foldAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = string(appendFolded(nil, []byte(n)))
	}
	return out
}

// appendFolded is encoding/json's appendFoldedName: ASCII letters upper-cased, other
// runes replaced by the smallest rune of their case-folding orbit (so "ſ" matches "s"
// and the Kelvin sign "K" matches "k", as they do for encoding/json).
func appendFolded(out, in []byte) []byte {
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		out = utf8.AppendRune(out, r)
		i += n
	}
	return out
}

// field returns the index of key in names: the exact match, else the case-insensitive
// one, else -1 (an unknown field).
func (d *decoder) field(key []byte, names, folded []string) int {
	for i, n := range names {
		if string(key) == n {
			return i
		}
	}
	d.fold = appendFolded(d.fold[:0], key)
	for i, n := range folded {
		if string(d.fold) == n {
			return i
		}
	}
	return -1
}

// envelope decodes the members of an envelope object; d.off is at '{'.
func (d *decoder) envelope(e *Envelope) error {
	return d.fields(1, func(key []byte) error {
		switch d.field(key, envelopeFields, envelopeFolded) {
		case 0:
			return d.intField(&e.V, "v")
		case 1:
			return d.opField(&e.Op)
		case 2:
			return d.structField("source", "an object (source)", func() error { return d.source(&e.Source) })
		case 3:
			return d.mapField(&e.Key, "key", &d.key)
		case 4:
			return d.mapField(&e.Before, "before", &d.before)
		case 5:
			return d.mapField(&e.After, "after", &d.after)
		case 6:
			return d.structField("schema", "an object (schema)", func() error { return d.schemaRef(&e.Schema) })
		case 7:
			return d.stringField(&e.DDL, "ddl", false)
		case 8:
			return d.int64Field(&e.TsMs, "ts_ms")
		}
		return d.skip(1)
	})
}

func (d *decoder) source(s *Source) error {
	return d.fields(2, func(key []byte) error {
		switch d.field(key, sourceFields, sourceFolded) {
		case 0:
			return d.stringField(&s.System, "source.system", true)
		case 1:
			return d.stringField(&s.Kind, "source.kind", true)
		case 2:
			return d.stringField(&s.DB, "source.db", true)
		case 3:
			return d.stringField(&s.Table, "source.table", true)
		case 4:
			return d.stringField(&s.BinlogFile, "source.binlog_file", true)
		case 5:
			return d.uint32Field(&s.BinlogPos, "source.binlog_pos")
		case 6:
			return d.stringField(&s.GTID, "source.gtid", false)
		case 7:
			return d.stringField(&s.LSN, "source.lsn", false)
		case 8:
			return d.stringField(&s.File, "source.file", true)
		case 9:
			return d.int64Field(&s.Line, "source.line")
		case 10:
			return d.stringField(&s.Watermark, "source.watermark", false)
		case 11:
			return d.boolField(&s.Snapshot, "source.snapshot")
		case 12:
			return d.int64Field(&s.CommitMs, "source.commit_ms")
		case 13:
			return d.int64Field(&s.Seq, "source.seq")
		}
		return d.skip(2)
	})
}

func (d *decoder) schemaRef(s *SchemaRef) error {
	return d.fields(2, func(key []byte) error {
		switch d.field(key, schemaRefFields, schemaRefFolded) {
		case 0:
			return d.stringField(&s.Name, "schema.name", true)
		case 1:
			return d.intField(&s.Version, "schema.version")
		}
		return d.skip(2)
	})
}

// fields walks the members of the object at d.off ('{', which opens nesting level
// depth) and calls member with each unescaped key; member must consume the value,
// which starts at d.off.
func (d *decoder) fields(depth int, member func(key []byte) error) error {
	if depth > maxDecodeDepth {
		return d.tooDeep()
	}
	d.off++ // '{'
	d.skipSpace()
	if d.off < len(d.data) && d.data[d.off] == '}' {
		d.off++
		return nil
	}
	for {
		key, err := d.objectKey()
		if err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		if done, err := d.objectNext(); done || err != nil {
			return err
		}
	}
}

// objectKey reads a member's key and the colon after it, leaving d.off at the value.
// The key is valid until the next string is read.
func (d *decoder) objectKey() ([]byte, error) {
	if d.off >= len(d.data) {
		return nil, d.eof()
	}
	if d.data[d.off] != '"' {
		return nil, d.syntax("looking for beginning of object key string")
	}
	key, err := d.str()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.off >= len(d.data) {
		return nil, d.eof()
	}
	if d.data[d.off] != ':' {
		return nil, d.syntax("after object key")
	}
	d.off++
	d.skipSpace()
	if d.off >= len(d.data) {
		return nil, d.eof()
	}
	return key, nil
}

// objectNext consumes the ',' or '}' after a member's value.
func (d *decoder) objectNext() (done bool, err error) {
	d.skipSpace()
	if d.off >= len(d.data) {
		return false, d.eof()
	}
	switch d.data[d.off] {
	case ',':
		d.off++
		d.skipSpace()
		return false, nil
	case '}':
		d.off++
		return true, nil
	}
	return false, d.syntax("after object key:value pair")
}

// structField decodes an object into an existing struct (repeated keys fill the same
// struct, as in encoding/json); null leaves it unchanged.
func (d *decoder) structField(field, want string, decode func() error) error {
	switch d.data[d.off] {
	case '{':
		return inField(decode(), field)
	case 'n':
		return d.null()
	}
	return inField(d.mismatch(field, want), field)
}

// mapField decodes a row map (depth 2). Like encoding/json it merges into a map
// already set by an earlier member with the same name, and null sets it to nil.
// names holds the column names of the previous map in this role.
func (d *decoder) mapField(dst *map[string]any, field string, names *[]string) error {
	if d.rows != nil {
		return d.cellField(field)
	}
	switch d.data[d.off] {
	case '{':
		start := len(d.members)
		if err := d.objectMembers(2, *names); err != nil {
			return inField(err, field)
		}
		*names = (*names)[:0]
		for _, mb := range d.members[start:] {
			*names = append(*names, mb.k)
		}
		m := *dst
		if m == nil {
			m = make(map[string]any, len(d.members)-start)
			*dst = m
		}
		d.popMembers(m, start)
		return nil
	case 'n':
		if err := d.null(); err != nil {
			return inField(err, field)
		}
		*dst = nil
		return nil
	}
	return d.mismatch(field, "an object")
}

// stringField decodes a string; intern reuses the string of an earlier envelope for
// names that repeat from message to message (system, table, ...).
func (d *decoder) stringField(dst *string, field string, intern bool) error {
	switch d.data[d.off] {
	case '"':
		b, err := d.str()
		if err != nil {
			return inField(err, field)
		}
		if intern {
			*dst = d.intern(b)
		} else {
			*dst = string(b)
		}
		return nil
	case 'n':
		return inField(d.null(), field)
	}
	return d.mismatch(field, "a string")
}

func (d *decoder) opField(dst *Op) error {
	if d.data[d.off] != '"' {
		return d.stringField((*string)(dst), "op", false)
	}
	b, err := d.str()
	if err != nil {
		return inField(err, "op")
	}
	switch string(b) {
	case "c":
		*dst = OpCreate
	case "u":
		*dst = OpUpdate
	case "d":
		*dst = OpDelete
	case "r":
		*dst = OpRead
	case "t":
		*dst = OpTruncate
	case "s":
		*dst = OpSchema
	default:
		*dst = Op(b)
	}
	return nil
}

func (d *decoder) boolField(dst *bool, field string) error {
	switch d.data[d.off] {
	case 't', 'f':
		v, err := d.boolean()
		if err != nil {
			return inField(err, field)
		}
		*dst = v
		return nil
	case 'n':
		return inField(d.null(), field)
	}
	return d.mismatch(field, "a bool")
}

// integer reads the number at d.off for an integer field. It returns ok false (and no
// error) for null, which leaves the field unchanged.
func (d *decoder) integer(field, want string) (lit []byte, ok bool, err error) {
	switch c := d.data[d.off]; {
	case c == '-' || '0' <= c && c <= '9':
		start := d.off
		lit, err := d.number()
		if err != nil {
			return nil, false, inField(err, field)
		}
		// encoding/json parses the literal with strconv, which takes no fraction and
		// no exponent.
		for _, c := range lit {
			if c == '.' || c == 'e' || c == 'E' {
				return nil, false, &DecodeError{Offset: start, Field: field, Msg: "number " + string(lit) + " is not " + want}
			}
		}
		return lit, true, nil
	case c == 'n':
		return nil, false, inField(d.null(), field)
	}
	return nil, false, d.mismatch(field, want)
}

func (d *decoder) int64Field(dst *int64, field string) error {
	start := d.off
	lit, ok, err := d.integer(field, "an int64")
	if !ok {
		return err
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	if err != nil {
		return &DecodeError{Offset: start, Field: field, Msg: "number " + string(lit) + " overflows int64"}
	}
	*dst = n
	return nil
}

func (d *decoder) intField(dst *int, field string) error {
	start := d.off
	lit, ok, err := d.integer(field, "an int")
	if !ok {
		return err
	}
	n, err := strconv.ParseInt(string(lit), 10, strconv.IntSize)
	if err != nil {
		return &DecodeError{Offset: start, Field: field, Msg: "number " + string(lit) + " overflows int"}
	}
	*dst = int(n)
	return nil
}

func (d *decoder) uint32Field(dst *uint32, field string) error {
	start := d.off
	lit, ok, err := d.integer(field, "a uint32")
	if !ok {
		return err
	}
	n, err := strconv.ParseUint(string(lit), 10, 32)
	if err != nil {
		// ParseUint refuses a sign, "-0" included, as encoding/json does.
		return &DecodeError{Offset: start, Field: field, Msg: "number " + string(lit) + " is not a uint32"}
	}
	*dst = uint32(n)
	return nil
}

// value decodes any JSON value at d.off; depth is the number of arrays and objects
// enclosing it.
func (d *decoder) value(depth int) (any, error) {
	if d.off >= len(d.data) {
		return nil, d.eof()
	}
	switch c := d.data[d.off]; c {
	case '{':
		return d.object(depth)
	case '[':
		return d.array(depth)
	case '"':
		b, err := d.str()
		if err != nil {
			return nil, err
		}
		return string(b), nil
	case 't', 'f':
		v, err := d.boolean()
		return v, err
	case 'n':
		return nil, d.null()
	default:
		if c == '-' || '0' <= c && c <= '9' {
			lit, err := d.number()
			if err != nil {
				return nil, err
			}
			return json.Number(lit), nil
		}
	}
	return nil, d.syntax("looking for beginning of value")
}

// object decodes the object at d.off into a new map; depth encloses the object.
func (d *decoder) object(depth int) (map[string]any, error) {
	start := len(d.members)
	if err := d.objectMembers(depth+1, nil); err != nil {
		return nil, err
	}
	m := make(map[string]any, len(d.members)-start)
	d.popMembers(m, start)
	return m, nil
}

// objectMembers pushes the members of the object at d.off (which opens nesting level
// depth) onto d.members. names are the keys expected in this order (those of the
// previous row), reused without a lookup where they match.
func (d *decoder) objectMembers(depth int, names []string) error {
	if depth > maxDecodeDepth {
		return d.tooDeep()
	}
	start := len(d.members)
	d.off++ // '{'
	d.skipSpace()
	if d.off < len(d.data) && d.data[d.off] == '}' {
		d.off++
		return nil
	}
	for {
		kb, err := d.objectKey()
		if err != nil {
			return err
		}
		var k string
		if n := len(d.members) - start; n < len(names) && names[n] == string(kb) {
			k = names[n]
		} else {
			k = d.intern(kb)
		}
		v, err := d.value(depth)
		if err != nil {
			return err
		}
		d.members = append(d.members, member{k, v})
		if done, err := d.objectNext(); done || err != nil {
			return err
		}
	}
}

// popMembers stores the members from start on into m in input order (so a repeated
// key keeps its last value) and pops them.
func (d *decoder) popMembers(m map[string]any, start int) {
	for _, mb := range d.members[start:] {
		m[mb.k] = mb.v
	}
	clear(d.members[start:])
	d.members = d.members[:start]
}

// array decodes the array at d.off; depth encloses the array.
func (d *decoder) array(depth int) ([]any, error) {
	if depth+1 > maxDecodeDepth {
		return nil, d.tooDeep()
	}
	d.off++ // '['
	d.skipSpace()
	if d.off < len(d.data) && d.data[d.off] == ']' {
		d.off++
		return []any{}, nil
	}
	start := len(d.elems)
	for {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		d.elems = append(d.elems, v)
		d.skipSpace()
		if d.off >= len(d.data) {
			return nil, d.eof()
		}
		switch d.data[d.off] {
		case ',':
			d.off++
			d.skipSpace()
			continue
		case ']':
			d.off++
			out := make([]any, len(d.elems)-start)
			copy(out, d.elems[start:])
			clear(d.elems[start:])
			d.elems = d.elems[:start]
			return out, nil
		}
		return nil, d.syntax("after array element")
	}
}

// skip checks and skips the value at d.off (an unknown field's), depth being the
// nesting around it. It decodes the value and drops it: unknown fields are rare (a
// newer envelope version is refused by Validate anyway), so a second, allocation-free
// grammar is not worth its code.
func (d *decoder) skip(depth int) error {
	_, err := d.value(depth)
	return err
}

// str reads the string at d.off ('"') and returns its unescaped text, which points
// into the input or into d.buf and is valid until the next string is read.
func (d *decoder) str() ([]byte, error) {
	data := d.data
	start := d.off + 1
	i := start
	var high uint64
	// Eight bytes at a time while none is a quote, a backslash or a control
	// character (the usual bit tricks; a hit is exact for the first such byte, which
	// the byte loop below then finds).
	for ; i+8 <= len(data); i += 8 {
		x := binary.LittleEndian.Uint64(data[i:])
		q := x ^ (swarOnes * '"')
		bs := x ^ (swarOnes * '\\')
		if ((q-swarOnes)&^q|(bs-swarOnes)&^bs|(x-swarOnes*' ')&^x)&swarHigh != 0 {
			break
		}
		high |= x
	}
	for ; i < len(data); i++ {
		c := data[i]
		if c == '"' {
			s := data[start:i]
			if high&swarHigh != 0 && !utf8.Valid(s) {
				break // replace invalid UTF-8 below
			}
			d.off = i + 1
			return s, nil
		}
		if c == '\\' || c < ' ' {
			break
		}
		high |= uint64(c)
	}
	return d.unescape(start)
}

const (
	swarOnes = 0x0101010101010101
	swarHigh = 0x8080808080808080
)

// unescape is the slow path of str: escapes, invalid UTF-8 (each bad byte becomes
// U+FFFD, as utf8.DecodeRune reports it) and the errors, exactly as encoding/json's
// scanner and unquote treat them.
func (d *decoder) unescape(start int) ([]byte, error) {
	b := d.buf[:0]
	data := d.data
	i := start
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			d.buf = b
			d.off = i + 1
			return b, nil
		case c < ' ':
			d.off = i
			return nil, d.syntax("in string literal")
		case c == '\\':
			if i+1 >= len(data) {
				d.off = len(data)
				return nil, d.eof()
			}
			switch e := data[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, err := d.hex4(i + 2)
				if err != nil {
					return nil, err
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// A pair only if a valid \u escape of the other half follows; else
					// U+FFFD, and whatever follows is read on its own.
					if r2, ok := peekU4(data, i); ok {
						if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
							b = utf8.AppendRune(b, dec)
							i += 6
							continue
						}
					}
					r = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, r)
				continue
			default:
				d.off = i + 1
				return nil, d.syntax("in string escape code")
			}
			i += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, "\uFFFD"...)
			} else {
				b = append(b, data[i:i+size]...)
			}
			i += size
		}
	}
	d.buf = b
	d.off = len(data)
	return nil, d.eof()
}

// hex4 reads the four hex digits of a \u escape starting at i.
func (d *decoder) hex4(i int) (rune, error) {
	var r rune
	for j := i; j < i+4; j++ {
		if j >= len(d.data) {
			d.off = len(d.data)
			return 0, d.eof()
		}
		h, ok := hexVal(d.data[j])
		if !ok {
			d.off = j
			return 0, d.syntax("in \\u hexadecimal character escape")
		}
		r = r<<4 | h
	}
	return r, nil
}

// peekU4 reports the rune of a complete, valid \uXXXX escape at i, if there is one.
func peekU4(data []byte, i int) (rune, bool) {
	if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range data[i+2 : i+6] {
		h, ok := hexVal(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | h
	}
	return r, true
}

func hexVal(c byte) (rune, bool) {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0'), true
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10), true
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10), true
	}
	return 0, false
}

// number reads the number literal at d.off and returns its text.
func (d *decoder) number() ([]byte, error) {
	data := d.data
	start, i := d.off, d.off
	if data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		d.off = i
		return nil, d.eof()
	case data[i] == '0':
		i++
	case '1' <= data[i] && data[i] <= '9':
		i = skipDigits(data, i+1)
	default:
		d.off = i
		return nil, d.syntax("in numeric literal")
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) {
			d.off = i
			return nil, d.eof()
		}
		if !isDigit(data[i]) {
			d.off = i
			return nil, d.syntax("after decimal point in numeric literal")
		}
		i = skipDigits(data, i)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) {
			d.off = i
			return nil, d.eof()
		}
		if !isDigit(data[i]) {
			d.off = i
			return nil, d.syntax("in exponent of numeric literal")
		}
		i = skipDigits(data, i)
	}
	d.off = i
	return data[start:i], nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func skipDigits(data []byte, i int) int {
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	return i
}

func (d *decoder) boolean() (bool, error) {
	if d.data[d.off] == 't' {
		return true, d.literal("true")
	}
	return false, d.literal("false")
}

func (d *decoder) null() error { return d.literal("null") }

// literal consumes the keyword lit (true, false or null) at d.off.
func (d *decoder) literal(lit string) error {
	for i := 0; i < len(lit); i++ {
		if d.off >= len(d.data) {
			return d.eof()
		}
		if d.data[d.off] != lit[i] {
			return d.syntax("in literal " + lit + " (expecting " + strconv.QuoteRune(rune(lit[i])) + ")")
		}
		d.off++
	}
	return nil
}

func (d *decoder) skipSpace() {
	for d.off < len(d.data) {
		switch d.data[d.off] {
		case ' ', '\t', '\n', '\r':
			d.off++
		default:
			return
		}
	}
}

// end refuses anything but whitespace after the top-level value.
func (d *decoder) end() error {
	d.skipSpace()
	if d.off < len(d.data) {
		return d.syntax("after top-level value")
	}
	return nil
}

// intern returns b as a string, reusing the string of an earlier message when the
// same text was seen (column names repeat in every row of a table).
func (d *decoder) intern(b []byte) string {
	if len(b) > maxInternedLen {
		return string(b)
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	if len(d.strs) >= maxInterned {
		clear(d.strs)
	}
	s := string(b)
	d.strs[s] = s
	return s
}

func (d *decoder) eof() error {
	return &DecodeError{Offset: len(d.data), Msg: "unexpected end of input"}
}

func (d *decoder) tooDeep() error {
	return &DecodeError{Offset: d.off, Msg: "nesting deeper than " + strconv.Itoa(maxDecodeDepth) + " arrays and objects"}
}

// syntax reports the byte at d.off as invalid in the given context.
func (d *decoder) syntax(context string) error {
	return &DecodeError{Offset: d.off, Msg: "invalid character " + quoteByte(d.data[d.off]) + " " + context}
}

// mismatch reports the value at d.off as the wrong kind for a field that wants want
// (or a syntax error if no value starts there).
func (d *decoder) mismatch(field, want string) error {
	var kind string
	switch c := d.data[d.off]; {
	case c == '{':
		kind = "an object"
	case c == '[':
		kind = "an array"
	case c == '"':
		kind = "a string"
	case c == 't' || c == 'f':
		kind = "a bool"
	case c == 'n':
		kind = "null"
	case c == '-' || '0' <= c && c <= '9':
		kind = "a number"
	default:
		return inField(d.syntax("looking for beginning of value"), field)
	}
	return &DecodeError{Offset: d.off, Field: field, Msg: "found " + kind + ", want " + want}
}

// inField names the envelope field an error happened in, unless a nested field was
// named already.
func inField(err error, field string) error {
	if de, ok := err.(*DecodeError); ok && de.Field == "" && field != "" {
		de.Field = field
	}
	return err
}

// quoteByte shows a byte for an error message: 'x', or '\x00' for controls and
// non-ASCII bytes.
func quoteByte(c byte) string {
	switch {
	case c == '\'':
		return `'\''`
	case c < ' ' || c >= 0x7f:
		return fmt.Sprintf(`'\x%02x'`, c)
	}
	return "'" + string(rune(c)) + "'"
}
