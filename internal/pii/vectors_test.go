package pii

import (
	"bytes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// GB/T 32905-2016 (SM3) example 1.
func TestSM3Vector(t *testing.T) {
	got := sm3.Sum([]byte("abc"))
	want := unhex(t, "66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 5cf2f7a2 297da02b 8f4ba8e0")
	if !bytes.Equal(got[:], want) {
		t.Fatalf("SM3(abc) = %x, want %x", got, want)
	}
}

// GB/T 32907-2016 (SM4) example 1: key = plaintext = 0123456789abcdeffedcba9876543210.
func TestSM4BlockVector(t *testing.T) {
	key := unhex(t, "0123456789abcdeffedcba9876543210")
	b, err := sm4.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 16)
	b.Encrypt(out, key)
	if want := unhex(t, "681edf34d206965e86b3e94f536e4246"); !bytes.Equal(out, want) {
		t.Fatalf("SM4 = %x, want %x", out, want)
	}
	b.Decrypt(out, out)
	if !bytes.Equal(out, key) {
		t.Fatalf("SM4 decrypt = %x, want %x", out, key)
	}
}

// RFC 8998 appendix A.1 (SM4-GCM), through the same construction the key set uses
// (cipher.NewGCM over gmsm's block, which picks gmsm's own GCM code).
func TestSM4GCMVector(t *testing.T) {
	block, err := sm4.NewCipher(unhex(t, "0123456789ABCDEFFEDCBA9876543210"))
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := unhex(t, "00001234567800000000ABCD")
	aad := unhex(t, "FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
	plain := unhex(t, "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"+
		"EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA")
	want := unhex(t, "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"+
		"D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"+
		"83DE3541E4C2B58177E065A9BF7B62EC")
	got := aead.Seal(nil, nonce, plain, aad)
	if !bytes.Equal(got, want) {
		t.Fatalf("SM4-GCM = %x\nwant      %x", got, want)
	}
	back, err := aead.Open(nil, nonce, got, aad)
	if err != nil || !bytes.Equal(back, plain) {
		t.Fatalf("SM4-GCM open: %v", err)
	}
}

// GM/T 0042-2015 appendix D.3 (HMAC-SM3), vectors 1 and 2, and a cross-check of
// crypto/hmac over gmsm's SM3 against the HMAC construction written out (RFC 2104).
func TestHMACSM3Vectors(t *testing.T) {
	seq := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i + 1)
		}
		return b
	}
	abcd := "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
	for _, tc := range []struct {
		name      string
		key, msg  []byte
		wantHex   string
		fromStdGM bool
	}{
		{"D.3 #1", seq(32), []byte(abcd + abcd), "ca05e144ed05d1857840d1f318a4a8669e559fc8391f414485bfdf7bb408963a", true},
		{"D.3 #2", seq(37), bytes.Repeat([]byte{0xcd}, 50), "220bf579ded555393f0159f66c99877822a3ecf610d1552154b41d44b94db3ae", true},
		{"long key", bytes.Repeat([]byte{0xaa}, 131), []byte("510104199001011234"), "", false},
		{"short key", []byte("0123456789abcdef"), []byte("id_number:510104199001011234"), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hmac.New(sm3.New, tc.key)
			h.Write(tc.msg)
			got := h.Sum(nil)
			if manual := manualHMAC(tc.key, tc.msg); !bytes.Equal(got, manual) {
				t.Fatalf("crypto/hmac = %x, written-out HMAC = %x", got, manual)
			}
			if tc.fromStdGM && hex.EncodeToString(got) != tc.wantHex {
				t.Fatalf("HMAC-SM3 = %x, want %s", got, tc.wantHex)
			}
		})
	}
}

// manualHMAC is HMAC(K, m) = H((K' ^ opad) || H((K' ^ ipad) || m)), with K' the key
// hashed when longer than the block and zero-padded to the block size.
func manualHMAC(key, msg []byte) []byte {
	if len(key) > sm3.BlockSize {
		s := sm3.Sum(key)
		key = s[:]
	}
	k := make([]byte, sm3.BlockSize)
	copy(k, key)
	in := make([]byte, 0, sm3.BlockSize+len(msg))
	out := make([]byte, 0, sm3.BlockSize+sm3.Size)
	for _, c := range k {
		in = append(in, c^0x36)
		out = append(out, c^0x5c)
	}
	inner := sm3.Sum(append(in, msg...))
	outer := sm3.Sum(append(out, inner[:]...))
	return outer[:]
}
