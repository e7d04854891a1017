package pii

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/shouwang/shouwang/internal/ident"
)

// Kind is the kind of a known PII field.
type Kind uint8

// Kinds of fields Protect knows.
const (
	// KindIDNumber is a resident ID number (18 characters, or 15 digits).
	KindIDNumber Kind = iota + 1
	// KindPhone is a mobile phone number.
	KindPhone
	// KindDisabilityCert is a disability certificate number: an 18-character ID
	// number, the type and grade digits, and optionally a 2-character suffix.
	KindDisabilityCert
)

// String returns the kind's configuration name (id_number, phone, disability_cert);
// it is also the domain tag of its pseudonyms.
func (k Kind) String() string {
	switch k {
	case KindIDNumber:
		return "id_number"
	case KindPhone:
		return "phone"
	case KindDisabilityCert:
		return "disability_cert"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ErrNoKey is wrapped when a method needs a key the key set does not have.
var ErrNoKey = errors.New("no active key")

// Protector applies the configured protection: per target topic for known fields
// (Protect), and the DLQ method for free text and rows (ScrubText, ScrubMap); Reveal
// undoes sm4. It is immutable and safe for concurrent use.
type Protector struct {
	keys   *KeySet
	dlq    Method
	def    Methods
	topics map[string]Methods
}

// New builds a Protector from validated options and a key set (from LoadKeys or
// NewKeySet; nil when no method needs keys). It does no I/O. It fails when a method
// is unknown or needs a key purpose that keys has no active key for.
func New(opts Options, keys *KeySet) (*Protector, error) {
	usable := map[Method]bool{}
	for _, m := range []Method{MethodSM4, MethodSM3} {
		_, usable[m] = keys.Active(m)
	}
	v := &validator{}
	o := opts
	o.Keys = nil // the key set, not the key list, says which keys exist here
	v.methods("pii.default", o.Default, usable)
	for _, name := range slices.Sorted(maps.Keys(o.Topics)) {
		v.methods("pii.topics."+name, o.Topics[name], usable)
	}
	switch o.DLQ {
	case "", MethodMask, MethodRaw:
	case MethodSM4:
		v.needKey("pii.dlq", MethodSM4, usable)
	default:
		v.addf("pii.dlq", "%q is not valid: use mask (default), sm4 or raw", o.DLQ)
	}
	if err := errors.Join(v.problems...); err != nil {
		return nil, err
	}
	p := &Protector{keys: keys, dlq: o.DLQ, def: o.Default, topics: make(map[string]Methods, len(o.Topics))}
	if p.dlq == "" {
		p.dlq = MethodMask
	}
	for name, m := range o.Topics {
		p.topics[name] = m
	}
	return p, nil
}

// Open validates opts, loads its keys (file names relative to dir) and builds the
// Protector: the one call a worker makes at start-up. path is the options' key path
// in the configuration, normally "pii".
func Open(opts Options, path, dir string) (*Protector, error) {
	if err := opts.Validate(path); err != nil {
		return nil, err
	}
	var keys *KeySet
	if len(opts.Keys) > 0 {
		var err error
		if keys, err = LoadKeys(joinPath(path, "keys"), opts.Keys, dir); err != nil {
			return nil, err
		}
	}
	return New(opts, keys)
}

// Keys returns the key set (nil when none was given).
func (p *Protector) Keys() *KeySet { return p.keys }

// DLQMethod is the method ScrubText and ScrubMap apply: mask, sm4 or raw.
func (p *Protector) DLQMethod() Method { return p.dlq }

// Methods resolves the methods of a target topic: the entry named by the topic
// itself, else by its entity when the topic is <prefix>.canonical.<entity>, then
// Default kind by kind; an unset disability_cert follows id_number, and anything still
// unset is raw.
func (p *Protector) Methods(topic string) Methods {
	m, ok := p.topics[topic]
	if !ok {
		if i := strings.LastIndex(topic, ".canonical."); i >= 0 {
			m = p.topics[topic[i+len(".canonical."):]]
		}
	}
	m.IDNumber = firstSet(m.IDNumber, p.def.IDNumber, MethodRaw)
	m.Phone = firstSet(m.Phone, p.def.Phone, MethodRaw)
	m.DisabilityCert = firstSet(m.DisabilityCert, p.def.DisabilityCert, m.IDNumber)
	return m
}

func firstSet(ms ...Method) Method {
	for _, m := range ms {
		if m != "" {
			return m
		}
	}
	return ""
}

// Protect protects value, a field of kind k in a record bound for topic, with the
// method Methods(topic) names for k.
func (p *Protector) Protect(topic string, k Kind, value string) (string, error) {
	return p.ProtectWith(p.Methods(topic).For(k), k, value)
}

// ProtectWith protects value as kind k with method m:
//
//   - mask: ident.MaskID for ID and certificate numbers (first 4 and last 4 kept),
//     ident.MaskPhone for phones (first 3 and last 4 kept);
//   - sm4: an sm4 token encrypting the value exactly as given (Reveal gives it back);
//   - sm3: an sm3 token of the canonical value (see the package documentation), so
//     that every spelling of one ID number gets one pseudonym;
//   - raw: the value unchanged.
//
// The empty string and values that already are tokens (IsToken) are returned
// unchanged, so protecting twice is harmless. Errors: unknown method or kind,
// ErrNoKey, or a value too long for one token (16 MiB).
func (p *Protector) ProtectWith(m Method, k Kind, value string) (string, error) {
	if k < KindIDNumber || k > KindDisabilityCert {
		return "", fmt.Errorf("pii: unknown kind %d", k)
	}
	switch m {
	case MethodMask, MethodSM4, MethodSM3, MethodRaw:
	default:
		return "", fmt.Errorf("pii: unknown method %q: use mask, sm4, sm3 or raw", m)
	}
	if value == "" || m == MethodRaw || IsToken(value) {
		return value, nil
	}
	switch m {
	case MethodMask:
		return maskKind(k, value), nil
	case MethodSM4:
		id, ok := p.keys.Active(MethodSM4)
		if !ok {
			return "", fmt.Errorf("pii: %s of %s: %w for purpose sm4", m, k, ErrNoKey)
		}
		if len(value) > maxSealed {
			return "", fmt.Errorf("pii: %s of %s: value of %d bytes exceeds the token limit of %d", m, k, len(value), maxSealed)
		}
		return p.keys.seal(id, value), nil
	case MethodSM3:
		id, ok := p.keys.Active(MethodSM3)
		if !ok {
			return "", fmt.Errorf("pii: %s of %s: %w for purpose sm3", m, k, ErrNoKey)
		}
		return p.keys.mac(id, k.String(), Canonical(k, value)), nil
	}
	return value, nil // raw, handled above
}

func maskKind(k Kind, v string) string {
	if k == KindPhone {
		return ident.MaskPhone(v)
	}
	return ident.MaskID(v)
}

// Canonical is the spelling of a value that its sm3 pseudonym is computed from:
//
//   - ID number: the 18-character form of a valid number (15 digits upgraded, full-width
//     digits, spaces and a lower-case x normalised by ident.ParseID); an invalid one as
//     ident.Normalize leaves it;
//   - disability certificate: the holder's 18-character ID number + type + grade (+ the
//     upper-cased suffix) of a valid number, else ident.Normalize;
//   - phone: ident.Normalize without hyphens, and without a +86, 0086 or 86 prefix when
//     the rest is a valid mobile number.
func Canonical(k Kind, v string) string {
	switch k {
	case KindIDNumber:
		if id, err := ident.ParseID(v); err == nil {
			return id.Number
		}
	case KindDisabilityCert:
		if c, err := ident.ParseDisabilityCert(v); err == nil {
			return c.ID.Number + strconv.Itoa(c.Type) + strconv.Itoa(c.Grade) + c.Suffix
		}
	case KindPhone:
		n := strings.ReplaceAll(ident.Normalize(v), "-", "")
		for _, prefix := range []string{"+86", "0086", "86"} {
			if rest, ok := strings.CutPrefix(n, prefix); ok && ident.ValidMobile(rest) == nil {
				return rest
			}
		}
		return n
	}
	return ident.Normalize(v)
}
