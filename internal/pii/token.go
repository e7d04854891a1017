package pii

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/sm3"
)

// Token layout (see the package documentation):
//
//	sm4:<key id>:<base64url, no padding, of header(3) || nonce(12) || ciphertext || tag(16)>
//	sm3:<key id>:<64 lower-case hex digits of HMAC-SM3>
//
// The 3-byte big-endian header holds the plaintext length. It makes an sm4 token
// self-delimiting, so that Reveal finds its end inside free text even when letters or
// digits follow it directly (base64url has no terminator of its own). The header and
// the key id are authenticated as additional data, so neither can be altered.
const (
	sm4Prefix   = "sm4:"
	sm3Prefix   = "sm3:"
	headerSize  = 3
	nonceSize   = 12
	tagSize     = 16
	headerChars = 4 // base64 of the 3 header bytes, exactly
	macHexLen   = 2 * sm3.Size
	maxSealed   = 1<<24 - 1
	maxKeyIDLen = 32
)

// Errors of Reveal and of decrypting single tokens; match them with errors.Is.
var (
	// ErrUnknownKey: a token names a key id that is not in the key set (a retired
	// key was removed, or the record comes from another deployment).
	ErrUnknownKey = errors.New("token key not in the key set")
	// ErrTampered: an sm4 token fails authentication: it was altered or truncated, or
	// the key under its id is not the key it was made with.
	ErrTampered = errors.New("token fails authentication")
	// ErrMalformed: text starts like an sm4 token but cannot be one.
	ErrMalformed = errors.New("malformed token")
)

// b64 is strict so that a token differing in the unused low bits of its last
// character is refused instead of decoding to the same bytes.
var b64 = base64.RawURLEncoding.Strict()

// seal encrypts plaintext under key id into an sm4 token. Failing to read random bytes
// is fatal in Go (crypto/rand.Read never returns an error), so seal cannot fail for a
// key that is in the set; the caller ensures that and the size limit.
func (ks *KeySet) seal(id string, plaintext string) string {
	aead := ks.sm4[id]
	n := len(plaintext)
	buf := make([]byte, headerSize+nonceSize, headerSize+nonceSize+n+tagSize)
	buf[0], buf[1], buf[2] = byte(n>>16), byte(n>>8), byte(n)
	rand.Read(buf[headerSize : headerSize+nonceSize])
	buf = aead.Seal(buf, buf[headerSize:headerSize+nonceSize], []byte(plaintext), sm4AAD(id, buf[:headerSize]))
	out := make([]byte, 0, len(sm4Prefix)+len(id)+1+b64.EncodedLen(len(buf)))
	out = append(out, sm4Prefix...)
	out = append(out, id...)
	out = append(out, ':')
	out = b64.AppendEncode(out, buf)
	return string(out)
}

func sm4AAD(id string, header []byte) []byte {
	aad := make([]byte, 0, len(sm4Prefix)+len(id)+1+len(header))
	aad = append(aad, sm4Prefix...)
	aad = append(aad, id...)
	aad = append(aad, ':')
	return append(aad, header...)
}

// sm4Token is a well-formed sm4 token found in a text: s[start:end], key id and the
// base64 payload.
type sm4Token struct {
	start, end int
	id         string
	payload    string
}

// parseKeyID reads "<id>:" at s[i:] and returns the id and the index after the colon.
func parseKeyID(s string, i int) (id string, next int, ok bool) {
	j := i
	for j < len(s) && j-i <= maxKeyIDLen && isKeyIDChar(s[j]) {
		j++
	}
	if j == i || j-i > maxKeyIDLen || j >= len(s) || s[j] != ':' {
		return "", 0, false
	}
	return s[i:j], j + 1, true
}

func isKeyIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func isB64Char(c byte) bool { return isKeyIDChar(c) }

// parseSM4At recognises an sm4 token starting at s[i] (which must start with
// "sm4:"). err is nil with ok for a well-formed token, ErrMalformed when the key id
// and header are there but the payload is cut short, and ok false with a nil error
// when the text does not look like a token at all.
func parseSM4At(s string, i int) (t sm4Token, ok bool, err error) {
	id, p, okID := parseKeyID(s, i+len(sm4Prefix))
	if !okID || len(s)-p < headerChars {
		return t, false, nil
	}
	for k := p; k < p+headerChars; k++ {
		if !isB64Char(s[k]) {
			return t, false, nil
		}
	}
	var hdr [headerSize]byte
	if _, err := b64.Decode(hdr[:], []byte(s[p:p+headerChars])); err != nil {
		return t, false, nil
	}
	n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	total := b64.EncodedLen(headerSize + nonceSize + n + tagSize)
	end := p + total
	if end > len(s) {
		return sm4Token{start: i, end: len(s), id: id}, false, ErrMalformed
	}
	for k := p + headerChars; k < end; k++ {
		if !isB64Char(s[k]) {
			return sm4Token{start: i, end: k, id: id}, false, ErrMalformed
		}
	}
	return sm4Token{start: i, end: end, id: id, payload: s[p:end]}, true, nil
}

// open decrypts a well-formed token.
func (ks *KeySet) open(t sm4Token) (string, error) {
	var aead interface {
		Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
	}
	if ks != nil {
		if a, ok := ks.sm4[t.id]; ok {
			aead = a
		}
	}
	if aead == nil {
		return "", fmt.Errorf("%w: sm4 key %q", ErrUnknownKey, t.id)
	}
	raw, err := b64.DecodeString(t.payload)
	if err != nil || len(raw) < headerSize+nonceSize+tagSize {
		// The structure parsed, so the characters were altered.
		return "", fmt.Errorf("%w: sm4 key %q: payload is not canonical base64url", ErrTampered, t.id)
	}
	plain, err := aead.Open(nil, raw[headerSize:headerSize+nonceSize], raw[headerSize+nonceSize:], sm4AAD(t.id, raw[:headerSize]))
	if err != nil {
		return "", fmt.Errorf("%w: sm4 key %q", ErrTampered, t.id)
	}
	return string(plain), nil
}

// mac returns the sm3 token of msg under key id (which must be in the set).
func (ks *KeySet) mac(id string, domain, msg string) string {
	h := hmac.New(sm3.New, ks.sm3[id])
	h.Write([]byte(domain))
	h.Write([]byte{':'})
	h.Write([]byte(msg))
	var sum [sm3.Size]byte
	out := make([]byte, 0, len(sm3Prefix)+len(id)+1+macHexLen)
	out = append(out, sm3Prefix...)
	out = append(out, id...)
	out = append(out, ':')
	out = hex.AppendEncode(out, h.Sum(sum[:0]))
	return string(out)
}

// parseSM3At recognises an sm3 token at s[i] (starting with "sm3:") and returns its end.
func parseSM3At(s string, i int) (end int, ok bool) {
	_, p, okID := parseKeyID(s, i+len(sm3Prefix))
	if !okID || len(s)-p < macHexLen {
		return 0, false
	}
	for k := p; k < p+macHexLen; k++ {
		if c := s[k]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return 0, false
		}
	}
	return p + macHexLen, true
}

// tokenAt returns the end of a well-formed sm3 or sm4 token starting at s[i].
func tokenAt(s string, i int) (end int, ok bool) {
	if len(s)-i < 4 || s[i] != 's' || s[i+1] != 'm' || s[i+3] != ':' {
		return 0, false
	}
	switch s[i+2] {
	case '4':
		t, ok, _ := parseSM4At(s, i)
		return t.end, ok
	case '3':
		return parseSM3At(s, i)
	}
	return 0, false
}

// IsToken reports whether s is exactly one sm4 or sm3 token (a value this package
// has already protected), so that protecting it again can be skipped.
func IsToken(s string) bool {
	end, ok := tokenAt(s, 0)
	return ok && end == len(s)
}
