package pii

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Reveal decrypts every sm4 token in s with the key its id names and returns the text
// with the plaintexts in their place (for redriving a dead-letter record); sm3 tokens
// and masks stay as they are, since they cannot be reversed. It fails, naming the
// token's byte offset and key id but no content, when a key is not in the set
// (ErrUnknownKey), a token does not authenticate (ErrTampered) or is cut short
// (ErrMalformed). Text that merely starts like a token ("sm4:" without a key id and a
// length header) is left alone.
func (p *Protector) Reveal(s string) (string, error) {
	return p.keys.reveal(s)
}

func (ks *KeySet) reveal(s string) (string, error) {
	i := strings.Index(s, sm4Prefix)
	if i < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	var errs []error
	for i >= 0 {
		t, ok, err := parseSM4At(s, i)
		next := i + len(sm4Prefix)
		switch {
		case err != nil:
			errs = append(errs, revealError(i, t.id, err))
			next = t.end
		case ok:
			plain, err := ks.open(t)
			if err != nil {
				errs = append(errs, revealError(i, t.id, err))
			} else {
				b.WriteString(s[last:i])
				b.WriteString(plain)
				last = t.end
			}
			next = t.end
		}
		k := strings.Index(s[next:], sm4Prefix)
		if k < 0 {
			break
		}
		i = next + k
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	b.WriteString(s[last:])
	return b.String(), nil
}

func revealError(at int, id string, err error) error {
	switch {
	case errors.Is(err, ErrUnknownKey):
		return fmt.Errorf("token at byte %d: %w: add the retired key %q back to pii.keys (purpose: sm4, not active) to decrypt it", at, err, id)
	case errors.Is(err, ErrTampered):
		return fmt.Errorf("token at byte %d: %w: it was altered or cut, or key %q is not the key it was made with", at, err, id)
	}
	return fmt.Errorf("token at byte %d: %w", at, err)
}

// ScrubMap returns a copy of a decoded JSON row (and of the maps and lists nested in
// it) with ScrubText applied to every string value. Numbers are looked at as their
// decimal digits, since a 15-digit ID number may arrive as a JSON number: one that
// gets protected becomes a string. []byte values (TEXT columns) are treated as
// strings when they are UTF-8. Map keys are column names and stay as they are. With
// method raw the row itself is returned.
func (p *Protector) ScrubMap(m map[string]any) map[string]any {
	if p.dlq == MethodRaw || m == nil {
		return m
	}
	return scrubValue(m, p.ScrubText).(map[string]any)
}

func scrubValue(v any, text func(string) string) any {
	switch x := v.(type) {
	case string:
		return text(x)
	case []byte:
		if utf8.Valid(x) {
			if s, orig := text(string(x)), string(x); s != orig {
				return s
			}
		}
		return x
	case json.Number:
		return scrubNumber(x, string(x), text)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e21 {
			return scrubNumber(x, strconv.FormatFloat(x, 'f', -1, 64), text)
		}
		return x
	case int:
		return scrubNumber(x, strconv.Itoa(x), text)
	case int64:
		return scrubNumber(x, strconv.FormatInt(x, 10), text)
	case uint64:
		return scrubNumber(x, strconv.FormatUint(x, 10), text)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = scrubValue(e, text)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = scrubValue(e, text)
		}
		return out
	case []string:
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = text(e)
		}
		return out
	}
	return v
}

// scrubNumber keeps a number that holds nothing to protect, so rows stay typed.
func scrubNumber(orig any, digits string, text func(string) string) any {
	if s := text(digits); s != digits {
		return s
	}
	return orig
}

// RevealMap returns a copy of a row with Reveal applied to every string value, nested
// ones included. Every failure is reported, each prefixed with the key path of its
// value (e.g. after.id_no or members[2].phone).
func (p *Protector) RevealMap(m map[string]any) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	var errs []error
	out := revealValue(p.keys, "", m, &errs)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

func revealValue(ks *KeySet, path string, v any, errs *[]error) any {
	switch x := v.(type) {
	case string:
		s, err := ks.reveal(x)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
			return x
		}
		return s
	case map[string]any:
		out := make(map[string]any, len(x))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys) // errors in a stable order
		for _, k := range keys {
			out[k] = revealValue(ks, joinPath(path, k), x[k], errs)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = revealValue(ks, fmt.Sprintf("%s[%d]", path, i), e, errs)
		}
		return out
	case []string:
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = revealValue(ks, fmt.Sprintf("%s[%d]", path, i), e, errs).(string)
		}
		return out
	}
	return v
}
