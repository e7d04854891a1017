package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/schemas"
)

// opKind is what a record does to its table.
type opKind uint8

const (
	opUpsert opKind = iota
	opDelete
	opTruncate
)

// Record is one consumed change, decoded for its table. A change that cannot be
// decoded has Err set and goes to the dead-letter topic; the rest of its batch lands.
type Record struct {
	// Msg is the consumed message (its topic, partition and offset are what the
	// stored consumer offsets cover).
	Msg bus.Message
	// Err says why the record cannot be applied (nil: it can).
	Err error

	tgt     *target
	op      opKind
	key     string
	version int64
	// vals are the staged column values in table order: text, or nil for NULL.
	vals []any
}

// errContract marks records that break the topic's contract (malformed payload,
// unknown schema or version, unknown field, wrong field type).
var errContract = errors.New("breaks the topic contract")

func contractf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errContract, fmt.Sprintf(format, args...))
}

// decode reads one canonical change for tgt.
func (tgt *target) decode(m bus.Message) Record {
	r := Record{Msg: m, tgt: tgt}
	env, err := schemas.UnmarshalEnvelope(m.Value)
	if err != nil {
		r.Err = contractf("malformed payload: %v", err)
		return r
	}
	if env.Schema.Name != tgt.entity {
		r.Err = contractf("schema %q on the topic of entity %s (schema.name must be %q)", env.Schema.Name, tgt.entity, tgt.entity)
		return r
	}
	if env.Schema.Version < 1 || env.Schema.Version > tgt.version {
		r.Err = contractf("unknown schema version %s v%d: this build reads %s v1..v%d (upgrade the sink before its producers)",
			tgt.entity, env.Schema.Version, tgt.entity, tgt.version)
		return r
	}
	var doc map[string]any
	switch env.Op {
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
		r.op, doc = opUpsert, env.After
	case schemas.OpDelete:
		r.op, doc = opDelete, env.Before
	case schemas.OpTruncate:
		r.op = opTruncate
		return r
	default:
		r.Err = contractf("op %q has no meaning on a canonical topic", env.Op)
		return r
	}
	if doc == nil {
		doc = env.Key // a delete without a before-image: key (and version) from the envelope key
	}
	for f := range doc {
		if !tgt.fields[f] {
			r.Err = contractf("field %s is not in schema %s v%d", f, tgt.entity, env.Schema.Version)
			return r
		}
	}
	r.vals = make([]any, len(tgt.cols))
	for i, c := range tgt.cols {
		v, err := cell(lookup(doc, c.path), c.pgType)
		if err != nil {
			r.Err = contractf("field %s: %v", strings.Join(c.path, "."), err)
			return r
		}
		r.vals[i] = v
	}
	key, _ := r.vals[tgt.keyCol].(string)
	if key == "" {
		if k, ok := env.Key["key"].(string); ok {
			key = k
			r.vals[tgt.keyCol] = k
		}
	}
	if key == "" {
		r.Err = contractf("no entity key (field key of the document or of the envelope key)")
		return r
	}
	vs, _ := r.vals[tgt.versionCol].(string)
	version, err := strconv.ParseInt(vs, 10, 64)
	if err != nil || version <= 0 {
		r.Err = contractf("entity %s has no version (field version must be an integer > 0): the change cannot be ordered", key)
		return r
	}
	r.key, r.version = key, version
	return r
}

// lookup follows path through nested objects; nil when a step is missing.
func lookup(doc map[string]any, path []string) any {
	var v any = doc
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// cell is a document value as the text PostgreSQL casts to the column's type (nil
// for NULL). Empty strings are NULL: canonical entities omit unrecorded values, and
// "" of a Decimal means not recorded.
func cell(v any, pgType string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch pgType {
	case "text", "numeric":
		switch x := v.(type) {
		case string:
			if x == "" {
				return nil, nil
			}
			if strings.ContainsRune(x, 0) {
				return nil, errors.New("holds a NUL character, which PostgreSQL text cannot store")
			}
			return x, nil
		case json.Number:
			if pgType == "numeric" {
				return string(x), nil
			}
		}
		return nil, fmt.Errorf("want a string, got %s", jsonKind(v))
	case "integer", "bigint":
		if x, ok := v.(json.Number); ok {
			if _, err := strconv.ParseInt(string(x), 10, 64); err != nil {
				return nil, fmt.Errorf("want an integer, got %s", x)
			}
			return string(x), nil
		}
		return nil, fmt.Errorf("want an integer, got %s", jsonKind(v))
	case "boolean":
		if x, ok := v.(bool); ok {
			return strconv.FormatBool(x), nil
		}
		return nil, fmt.Errorf("want true or false, got %s", jsonKind(v))
	case "text[]":
		xs, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("want a list of strings, got %s", jsonKind(v))
		}
		var b strings.Builder
		b.WriteByte('{')
		for i, x := range xs {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("item %d: want a string, got %s", i, jsonKind(x))
			}
			if strings.ContainsRune(s, 0) {
				return nil, fmt.Errorf("item %d holds a NUL character, which PostgreSQL text cannot store", i)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('"')
			for _, r := range s {
				if r == '"' || r == '\\' {
					b.WriteByte('\\')
				}
				b.WriteRune(r)
			}
			b.WriteByte('"')
		}
		b.WriteByte('}')
		return b.String(), nil
	case "jsonb":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("want an object, got %s", jsonKind(v))
		}
		for k, x := range m {
			t, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("member %s: want a string, got %s", k, jsonKind(x))
			}
			if strings.ContainsRune(t+k, 0) {
				return nil, fmt.Errorf("member %s holds a NUL character, which PostgreSQL jsonb cannot store", k)
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		return string(b), nil
	}
	return nil, fmt.Errorf("no conversion to %s", pgType)
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
