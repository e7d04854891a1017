package pii

import (
	"bytes"
	"testing"
)

// testKeys is a key set with two SM4 keys (k2 active) and one HMAC key.
func testKeys(t testing.TB) *KeySet {
	t.Helper()
	ks, err := NewKeySet(
		Key{ID: "k1", Purpose: MethodSM4, Secret: bytes.Repeat([]byte{1}, 16)},
		Key{ID: "k2", Purpose: MethodSM4, Secret: bytes.Repeat([]byte{2}, 16), Active: true},
		Key{ID: "h1", Purpose: MethodSM3, Secret: []byte("0123456789abcdef0123456789abcdef")},
	)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// newProtector builds a Protector over testKeys with the given DLQ method.
func newProtector(t testing.TB, dlq Method, opts Options) *Protector {
	t.Helper()
	opts.DLQ = dlq
	p, err := New(opts, testKeys(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
