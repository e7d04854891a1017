package pii

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
)

// Method is how one kind of value is protected.
type Method string

// Methods of protection. The zero value "" means "not set here": see Options for how
// unset methods fall back.
const (
	// MethodMask hides the middle of the value the way ident.MaskID and
	// ident.MaskPhone do (5101**********123X, 138****5678). Irreversible.
	MethodMask Method = "mask"
	// MethodSM4 encrypts the value with SM4-GCM under the active sm4 key, giving a
	// token sm4:<key id>:<base64url>. Reversible with the key; not joinable, since
	// every encryption uses a fresh random nonce.
	MethodSM4 Method = "sm4"
	// MethodSM3 replaces the value with its HMAC-SM3 pseudonym under the active sm3
	// key, giving a token sm3:<key id>:<64 hex digits>. Irreversible but deterministic,
	// so equal ID numbers stay joinable.
	MethodSM3 Method = "sm3"
	// MethodRaw leaves the value as it is: an explicit opt-in.
	MethodRaw Method = "raw"
)

// Options is the pii section of the configuration (see the package documentation for
// the YAML shape and the fall-back rules).
type Options struct {
	// Keys are the SM4 encryption keys and HMAC-SM3 pseudonym keys, each with an id
	// that tokens carry, so that retired keys can still decrypt old tokens.
	Keys []KeyOptions `yaml:"keys"`
	// DLQ protects ID numbers and phones inside dead-letter records and reports:
	// mask (the default), sm4 (reversible for redrive) or raw (explicit opt-in).
	DLQ Method `yaml:"dlq"`
	// Default applies to every target topic that Topics does not name, kind by kind.
	Default Methods `yaml:"default"`
	// Topics maps a target topic, or a canonical entity name (person stands for
	// <prefix>.canonical.person), to the methods of its ID numbers, phones and
	// disability certificate numbers.
	Topics map[string]Methods `yaml:"topics"`
}

// Methods names the method of each kind of value of one topic. An unset kind falls
// back to Options.Default, a still unset disability_cert to the id_number method (a
// certificate number contains the holder's ID number), and anything else unset to raw.
type Methods struct {
	// IDNumber protects resident ID numbers (居民身份证号码, 18 or 15 characters).
	IDNumber Method `yaml:"id_number"`
	// Phone protects mobile phone numbers.
	Phone Method `yaml:"phone"`
	// DisabilityCert protects disability certificate numbers (残疾人证号: ID number +
	// type + grade).
	DisabilityCert Method `yaml:"disability_cert"`
}

// For returns the method set for kind k ("" when unset or for an unknown kind).
func (m Methods) For(k Kind) Method {
	switch k {
	case KindIDNumber:
		return m.IDNumber
	case KindPhone:
		return m.Phone
	case KindDisabilityCert:
		return m.DisabilityCert
	}
	return ""
}

// KeyOptions is one key of Options.Keys. Exactly one of File and Env is set: key
// material never sits in the configuration file itself.
type KeyOptions struct {
	// ID names the key inside tokens: [A-Za-z0-9_-], 1..32 characters, unique.
	ID string `yaml:"id"`
	// Purpose is sm4 (a 16-byte SM4 encryption key) or sm3 (an HMAC-SM3 key of at
	// least 16 bytes).
	Purpose Method `yaml:"purpose"`
	// Active marks the key new values are protected with; other keys of the same
	// purpose only decrypt (sm4) or are kept for reference (sm3). A purpose with a
	// single key needs no mark.
	Active bool `yaml:"active"`
	// File holds the key: raw bytes, or hex or base64 text (see Encoding). Relative
	// paths are resolved against dir by LoadKeys.
	File string `yaml:"file"`
	// Env names an environment variable holding the key as hex or base64 text.
	Env string `yaml:"env"`
	// Encoding of the key material: auto (default), raw (files only), hex or base64.
	// auto takes a 16-byte sm4 file as raw bytes, then tries hex, then base64 (with or
	// without padding, standard or URL alphabet), and for files finally raw bytes.
	Encoding string `yaml:"encoding"`
}

// Problem is one thing wrong with Options, named by its dotted key path (e.g.
// pii.keys[1].file) so that the config package can point at the line.
type Problem struct {
	// Path is the dotted key path.
	Path string
	// Msg says what is wrong and what to do.
	Msg string
}

// Error formats the problem as "path: message".
func (p *Problem) Error() string { return p.Path + ": " + p.Msg }

var (
	keyIDRe   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	topicRe   = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*$`)
)

// SetDefaults fills the defaults: dlq mask and key encoding auto. Validate and New
// also read "" as these defaults, so calling it is optional.
func (o *Options) SetDefaults() {
	if o.DLQ == "" {
		o.DLQ = MethodMask
	}
	for i := range o.Keys {
		if o.Keys[i].Encoding == "" {
			o.Keys[i].Encoding = "auto"
		}
	}
}

// Validate checks o without I/O (LoadKeys reads the keys) and returns every problem,
// each a *Problem whose path starts with path (normally "pii"), joined with
// errors.Join; nil means valid.
func (o *Options) Validate(path string) error {
	v := &validator{}
	purposes := v.keys(path, o.Keys)
	dlq := joinPath(path, "dlq")
	switch o.DLQ {
	case "", MethodMask, MethodRaw:
	case MethodSM4:
		v.needKey(dlq, MethodSM4, purposes)
	case MethodSM3:
		v.addf(dlq, "sm3 pseudonyms cannot be reversed, so a dead-letter record could never be redriven: use mask, sm4 (reversible with the key) or raw")
	default:
		v.addf(dlq, "%q is not valid: use mask (default), sm4 or raw", o.DLQ)
	}
	v.methods(joinPath(path, "default"), o.Default, purposes)
	for _, name := range slices.Sorted(maps.Keys(o.Topics)) { // problems in a stable order
		p := joinPath(joinPath(path, "topics"), name)
		if !topicRe.MatchString(name) {
			v.addf(p, "%q is neither a topic name nor an entity name: use [a-z0-9_] parts separated by dots, e.g. person or sc.canonical.person", name)
		}
		v.methods(p, o.Topics[name], purposes)
	}
	return errors.Join(v.problems...)
}

type validator struct{ problems []error }

func (v *validator) addf(path, format string, args ...any) {
	v.problems = append(v.problems, &Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// keys validates the key list and returns the purposes that have a usable active key.
func (v *validator) keys(path string, keys []KeyOptions) map[Method]bool {
	seen := map[string]int{}
	count := map[Method]int{}
	active := map[Method][]int{}
	for i, k := range keys {
		p := fmt.Sprintf("%s[%d]", joinPath(path, "keys"), i)
		switch {
		case k.ID == "":
			v.addf(p+".id", "required: a short name the tokens carry, e.g. k2026a")
		case !keyIDRe.MatchString(k.ID):
			v.addf(p+".id", "%q is not valid: use 1–32 letters, digits, '_' or '-'", k.ID)
		default:
			if j, dup := seen[k.ID]; dup {
				v.addf(p+".id", "%q is already the id of %s[%d]: key ids must be unique", k.ID, joinPath(path, "keys"), j)
			}
			seen[k.ID] = i
		}
		switch k.Purpose {
		case MethodSM4, MethodSM3:
			count[k.Purpose]++
			if k.Active {
				active[k.Purpose] = append(active[k.Purpose], i)
			}
		case "":
			v.addf(p+".purpose", "required: sm4 (a 16-byte encryption key) or sm3 (an HMAC key of at least 16 bytes)")
		default:
			v.addf(p+".purpose", "%q is not valid: use sm4 (encryption) or sm3 (HMAC pseudonyms)", k.Purpose)
		}
		switch {
		case k.File == "" && k.Env == "":
			v.addf(p, "set file (a key file) or env (an environment variable holding the key)")
		case k.File != "" && k.Env != "":
			v.addf(p, "set only one of file and env")
		case k.Env != "" && !envNameRe.MatchString(k.Env):
			v.addf(p+".env", "%q is not an environment variable name: use letters, digits and '_', not starting with a digit", k.Env)
		}
		switch k.Encoding {
		case "", "auto", "hex", "base64":
		case "raw":
			if k.Env != "" {
				v.addf(p+".encoding", "raw bytes cannot be passed in an environment variable: use hex or base64 (or auto)")
			}
		default:
			v.addf(p+".encoding", "%q is not valid: use auto (default), raw, hex or base64", k.Encoding)
		}
	}
	usable := map[Method]bool{}
	for _, purpose := range []Method{MethodSM4, MethodSM3} {
		switch a := active[purpose]; {
		case len(a) > 1:
			v.addf(fmt.Sprintf("%s[%d].active", joinPath(path, "keys"), a[1]), "%s[%d] is already the active %s key: mark only one key per purpose active", joinPath(path, "keys"), a[0], purpose)
			usable[purpose] = true
		case len(a) == 1 || count[purpose] == 1:
			usable[purpose] = true
		case count[purpose] > 1:
			v.addf(joinPath(path, "keys"), "%d keys have purpose %s and none is marked active: add active: true to the one new values should use", count[purpose], purpose)
			usable[purpose] = true // reported once here, not again at every method using it
		}
	}
	return usable
}

func (v *validator) methods(path string, m Methods, purposes map[Method]bool) {
	for _, f := range []struct {
		name string
		m    Method
	}{{"id_number", m.IDNumber}, {"phone", m.Phone}, {"disability_cert", m.DisabilityCert}} {
		p := joinPath(path, f.name)
		switch f.m {
		case "", MethodMask, MethodRaw:
		case MethodSM4, MethodSM3:
			v.needKey(p, f.m, purposes)
		default:
			v.addf(p, "%q is not valid: use mask, sm4, sm3 or raw", f.m)
		}
	}
}

func (v *validator) needKey(path string, m Method, purposes map[Method]bool) {
	if !purposes[m] {
		what := "a 16-byte encryption key"
		if m == MethodSM3 {
			what = "an HMAC key of at least 16 bytes"
		}
		v.addf(path, "%s needs a key with purpose: %s (%s) in the keys list", m, m, what)
	}
}

// joinPath appends a key to a dotted path the way the config package records map
// keys (plainly, even when the key contains dots).
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
