package pii

import (
	"bytes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/emmansun/gmsm/sm4"
)

// Key lengths.
const (
	// SM4KeySize is the length of an SM4 key in bytes.
	SM4KeySize = 16
	// MinHMACKeySize is the shortest HMAC-SM3 key accepted (128 bits, like SM4).
	MinHMACKeySize = 16
)

// Key is one key in memory, for NewKeySet.
type Key struct {
	// ID is the key id written into tokens ([A-Za-z0-9_-], 1..32 characters).
	ID string
	// Purpose is MethodSM4 or MethodSM3.
	Purpose Method
	// Secret is the key material: 16 bytes for sm4, at least 16 for sm3.
	Secret []byte
	// Active marks the key that protects new values; a purpose with one key needs no mark.
	Active bool
}

// KeySet holds the keys of both purposes, by id. It is safe for concurrent use.
type KeySet struct {
	sm4       map[string]cipher.AEAD
	sm3       map[string][]byte
	activeSM4 string
	activeSM3 string
}

// NewKeySet builds a key set from keys in memory. It checks ids, purposes and
// lengths, and that each purpose in use has one active key: the one marked Active,
// or the only key of that purpose.
func NewKeySet(keys ...Key) (*KeySet, error) {
	ks := &KeySet{sm4: map[string]cipher.AEAD{}, sm3: map[string][]byte{}}
	var errs []error
	marked := map[Method][]string{}
	for i, k := range keys {
		if err := ks.add(k); err != nil {
			errs = append(errs, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		if k.Active {
			marked[k.Purpose] = append(marked[k.Purpose], k.ID)
		}
	}
	for _, p := range []Method{MethodSM4, MethodSM3} {
		ids := ks.IDs(p)
		var active string
		switch m := marked[p]; {
		case len(m) > 1:
			errs = append(errs, fmt.Errorf("keys %s are all marked active for %s: mark only one", strings.Join(m, ", "), p))
		case len(m) == 1:
			active = m[0]
		case len(ids) == 1:
			active = ids[0]
		case len(ids) > 1:
			errs = append(errs, fmt.Errorf("%d keys have purpose %s and none is active: mark the one new values should use", len(ids), p))
		}
		if p == MethodSM4 {
			ks.activeSM4 = active
		} else {
			ks.activeSM3 = active
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ks, nil
}

func (ks *KeySet) add(k Key) error {
	if !keyIDRe.MatchString(k.ID) {
		return fmt.Errorf("id %q is not valid: use 1–32 letters, digits, '_' or '-'", k.ID)
	}
	_, dup4 := ks.sm4[k.ID]
	_, dup3 := ks.sm3[k.ID]
	if dup4 || dup3 {
		return fmt.Errorf("id %q is used twice", k.ID)
	}
	switch k.Purpose {
	case MethodSM4:
		if len(k.Secret) != SM4KeySize {
			return fmt.Errorf("key %q: an SM4 key has %d bytes, got %d", k.ID, SM4KeySize, len(k.Secret))
		}
		block, err := sm4.NewCipher(k.Secret)
		if err != nil {
			return fmt.Errorf("key %q: %w", k.ID, err)
		}
		// Standard 12-byte nonce and 16-byte tag; crypto/cipher picks gmsm's
		// assembler GCM through the block's NewGCM method.
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return fmt.Errorf("key %q: %w", k.ID, err)
		}
		ks.sm4[k.ID] = aead
		return nil
	case MethodSM3:
		if len(k.Secret) < MinHMACKeySize {
			return fmt.Errorf("key %q: an HMAC-SM3 key needs at least %d bytes, got %d", k.ID, MinHMACKeySize, len(k.Secret))
		}
		ks.sm3[k.ID] = bytes.Clone(k.Secret)
		return nil
	}
	return fmt.Errorf("key %q: purpose %q is not sm4 or sm3", k.ID, k.Purpose)
}

// active returns the id of the active key of purpose p, "" when there is none.
func (ks *KeySet) active(p Method) string {
	if p == MethodSM3 {
		return ks.activeSM3
	}
	return ks.activeSM4
}

// Active returns the id of the key that protects new values with method p (MethodSM4
// or MethodSM3); ok is false when the set has none.
func (ks *KeySet) Active(p Method) (id string, ok bool) {
	if ks == nil {
		return "", false
	}
	id = ks.active(p)
	return id, id != ""
}

// IDs returns the ids of the keys of purpose p, sorted.
func (ks *KeySet) IDs(p Method) []string {
	if ks == nil {
		return nil
	}
	var ids []string
	if p == MethodSM4 {
		for id := range ks.sm4 {
			ids = append(ids, id)
		}
	} else if p == MethodSM3 {
		for id := range ks.sm3 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// LoadKeys reads every key of keys (from files or environment variables) and builds
// the key set. path is the key path of the list in the configuration ("pii.keys")
// and dir the directory relative file names are resolved against (the config file's
// directory; "" for the working directory). Every problem is reported, each naming
// its key path and what to do. Call Options.Validate first: LoadKeys assumes the
// structure is valid.
func LoadKeys(path string, keys []KeyOptions, dir string) (*KeySet, error) {
	var mem []Key
	var errs []error
	for i, k := range keys {
		p := fmt.Sprintf("%s[%d]", path, i)
		secret, err := loadSecret(p, k, dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		mem = append(mem, Key{ID: k.ID, Purpose: k.Purpose, Secret: secret, Active: k.Active})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ks, err := NewKeySet(mem...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ks, nil
}

func loadSecret(p string, k KeyOptions, dir string) ([]byte, error) {
	if k.Env != "" {
		v, ok := os.LookupEnv(k.Env)
		if !ok || v == "" {
			return nil, &Problem{Path: p + ".env", Msg: fmt.Sprintf("environment variable %s is not set; set it to the key as hex or base64, e.g. %s=$(%s | base64)", k.Env, k.Env, genCommand(k.Purpose))}
		}
		secret, err := decodeSecret(k.Purpose, k.Encoding, []byte(v), "")
		if err != nil {
			return nil, &Problem{Path: p + ".env", Msg: fmt.Sprintf("%s: %v", k.Env, err)}
		}
		return secret, nil
	}
	name := k.File
	if dir != "" && !filepath.IsAbs(name) {
		name = filepath.Join(dir, name)
	}
	data, err := os.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &Problem{Path: p + ".file", Msg: fmt.Sprintf("%s: no such file; create a key with: (umask 077 && %s > %s)", name, genCommand(k.Purpose), name)}
	case errors.Is(err, fs.ErrPermission):
		return nil, &Problem{Path: p + ".file", Msg: fmt.Sprintf("%s: permission denied; make it readable by the user shouwang runs as (and nobody else): chown and chmod 600", name)}
	case err != nil:
		return nil, &Problem{Path: p + ".file", Msg: fmt.Sprintf("%s: %v", name, err)}
	}
	secret, err := decodeSecret(k.Purpose, k.Encoding, data, name)
	if err != nil {
		return nil, &Problem{Path: p + ".file", Msg: fmt.Sprintf("%s: %v", name, err)}
	}
	return secret, nil
}

// genCommand is a shell command that prints a fresh key of the purpose's size.
func genCommand(purpose Method) string {
	if purpose == MethodSM3 {
		return "head -c32 /dev/urandom"
	}
	return "head -c16 /dev/urandom"
}

// decodeSecret turns key material into key bytes and checks its length, with
// messages that say how to produce a valid key. file is the key file's name, "" for
// an environment variable.
func decodeSecret(purpose Method, encoding string, data []byte, file string) ([]byte, error) {
	text := bytes.TrimSpace(data)
	mkCmd := genCommand(purpose) + " | base64"
	if file != "" {
		mkCmd = fmt.Sprintf("(umask 077 && %s > %s)", genCommand(purpose), file)
	}
	var secret []byte
	used := encoding
	switch encoding {
	case "raw":
		secret = data
	case "hex":
		var err error
		if secret, err = hex.DecodeString(string(text)); err != nil {
			return nil, fmt.Errorf("not valid hex (%v); write the key as hex digits, e.g. %s | od -An -tx1 | tr -d ' \\n'", err, genCommand(purpose))
		}
	case "base64":
		var err error
		if secret, err = decodeBase64(string(text)); err != nil {
			return nil, fmt.Errorf("not valid base64; write the key as base64, e.g. %s | base64", genCommand(purpose))
		}
	default: // auto
		switch b, err := decodeBase64(string(text)); {
		case file != "" && purpose == MethodSM4 && len(data) == SM4KeySize:
			secret, used = data, "raw bytes"
		case isHex(text):
			secret, _ = hex.DecodeString(string(text))
			used = "hex"
		case err == nil && len(text) > 0:
			secret, used = b, "base64"
		case file != "":
			secret, used = data, "raw bytes"
		default:
			return nil, fmt.Errorf("neither hex nor base64; set the key as base64, e.g. $(%s | base64)", genCommand(purpose))
		}
	}
	switch purpose {
	case MethodSM4:
		if len(secret) != SM4KeySize {
			return nil, fmt.Errorf("an SM4 key has %d bytes, this one has %d (read as %s); make one with: %s", SM4KeySize, len(secret), used, mkCmd)
		}
	case MethodSM3:
		if len(secret) < MinHMACKeySize {
			return nil, fmt.Errorf("an HMAC-SM3 key needs at least %d bytes, this one has %d (read as %s); make one with: %s", MinHMACKeySize, len(secret), used, mkCmd)
		}
	}
	return secret, nil
}

func isHex(b []byte) bool {
	if len(b) == 0 || len(b)%2 != 0 {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// decodeBase64 accepts the standard and the URL alphabet, with or without padding.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
