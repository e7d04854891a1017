package pii

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestLoadKeysEncodings(t *testing.T) {
	dir := t.TempDir()
	raw := []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\r\n ") // 16 bytes, ends in white space
	hmacRaw := bytes.Repeat([]byte{0xfe}, 32)
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("raw.key", raw)
	write("hex.key", []byte(hex.EncodeToString(raw)+"\n"))
	write("b64.key", []byte(base64.StdEncoding.EncodeToString(raw)+"\n"))
	write("hmac.key", hmacRaw)
	write("forced.key", []byte("00112233445566778899aabbccddeeff")) // 32 bytes of text taken as-is
	t.Setenv("PII_TEST_HEX", hex.EncodeToString(raw))
	t.Setenv("PII_TEST_B64URL", base64.RawURLEncoding.EncodeToString(raw))

	keys := []KeyOptions{
		{ID: "raw", Purpose: MethodSM4, File: "raw.key", Active: true},
		{ID: "hex", Purpose: MethodSM4, File: filepath.Join(dir, "hex.key")},
		{ID: "b64", Purpose: MethodSM4, File: "b64.key", Encoding: "base64"},
		{ID: "envhex", Purpose: MethodSM4, Env: "PII_TEST_HEX"},
		{ID: "envb64", Purpose: MethodSM4, Env: "PII_TEST_B64URL", Encoding: "auto"},
		{ID: "h", Purpose: MethodSM3, File: "hmac.key"},
		{ID: "forced", Purpose: MethodSM3, File: "forced.key", Encoding: "raw", Active: true},
	}
	if err := (&Options{Keys: keys}).Validate("pii"); err != nil {
		t.Fatal(err)
	}
	ks, err := LoadKeys("pii.keys", keys, dir)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := ks.Active(MethodSM4); id != "raw" {
		t.Errorf("active sm4 = %s", id)
	}
	if id, _ := ks.Active(MethodSM3); id != "forced" {
		t.Errorf("active sm3 = %s", id)
	}
	if got := strings.Join(ks.IDs(MethodSM4), ","); got != "b64,envb64,envhex,hex,raw" {
		t.Errorf("sm4 ids = %s", got)
	}
	// Every spelling of the one key decrypts what another made.
	p, err := New(Options{DLQ: MethodSM4}, ks)
	if err != nil {
		t.Fatal(err)
	}
	tok := p.ScrubText(idA)
	for _, id := range []string{"hex", "b64", "envhex", "envb64"} {
		if back, err := p.Reveal(strings.Replace(tok, "sm4:raw:", "sm4:"+id+":", 1)); err != nil && !errors.Is(err, ErrTampered) {
			t.Errorf("%s: %v", id, err)
		} else if err == nil {
			t.Errorf("%s: key id is not authenticated (decrypted %q)", id, back)
		}
	}
	if !bytes.Equal(ks.sm3["h"], hmacRaw) || string(ks.sm3["forced"]) != "00112233445566778899aabbccddeeff" {
		t.Error("HMAC keys not read as given")
	}
}

// The error messages name the key path and a command that makes a valid key; running
// that command must give a key LoadKeys accepts.
func TestLoadKeysErrorsNameAWorkingCommand(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	for _, purpose := range []Method{MethodSM4, MethodSM3} {
		name := filepath.Join(dir, string(purpose)+".key")
		keys := []KeyOptions{{ID: "a", Purpose: MethodSM4, File: filepath.Join(dir, "unused")}, {ID: "k", Purpose: purpose, File: name}}
		_, err := LoadKeys("pii.keys", keys[1:], "")
		var pr *Problem
		if !errors.As(err, &pr) || pr.Path != "pii.keys[0].file" || !strings.Contains(pr.Msg, name+": no such file") {
			t.Fatalf("missing file: %v", err)
		}
		m := regexp.MustCompile(`create a key with: (.*)$`).FindStringSubmatch(pr.Msg)
		if m == nil {
			t.Fatalf("no command in %q", pr.Msg)
		}
		if out, err := exec.Command("sh", "-c", m[1]).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", m[1], err, out)
		}
		if _, err := LoadKeys("pii.keys", keys[1:], ""); err != nil {
			t.Fatalf("key made by %q refused: %v", m[1], err)
		}
		if fi, _ := os.Stat(name); fi.Mode().Perm() != 0o600 {
			t.Errorf("command leaves mode %v", fi.Mode().Perm())
		}
	}

	// The environment hint's command works too.
	t.Setenv("PII_TEST_UNSET", "")
	_, err := LoadKeys("pii.keys", []KeyOptions{{ID: "e", Purpose: MethodSM4, Env: "PII_TEST_UNSET"}}, "")
	var pr *Problem
	if !errors.As(err, &pr) || pr.Path != "pii.keys[0].env" {
		t.Fatalf("unset env: %v", err)
	}
	m := regexp.MustCompile(`PII_TEST_UNSET=\$\((.*)\)$`).FindStringSubmatch(pr.Msg)
	if m == nil {
		t.Fatalf("no command in %q", pr.Msg)
	}
	out, err := exec.Command("sh", "-c", m[1]).Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PII_TEST_UNSET", strings.TrimSpace(string(out)))
	if _, err := LoadKeys("pii.keys", []KeyOptions{{ID: "e", Purpose: MethodSM4, Env: "PII_TEST_UNSET"}}, ""); err != nil {
		t.Fatalf("key made by %q refused: %v", m[1], err)
	}
}

func TestLoadKeysErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "short.key"), []byte("abcd\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "hex15.key"), []byte(strings.Repeat("ab", 15)), 0o600)
	os.WriteFile(filepath.Join(dir, "bad.hex"), []byte("zz"), 0o600)
	t.Setenv("PII_TEST_JUNK", "not a key!")
	keys := []KeyOptions{
		{ID: "a", Purpose: MethodSM4, File: "short.key"},
		{ID: "b", Purpose: MethodSM4, File: "hex15.key"},
		{ID: "c", Purpose: MethodSM3, File: "short.key"},
		{ID: "d", Purpose: MethodSM4, File: "bad.hex", Encoding: "hex"},
		{ID: "e", Purpose: MethodSM4, Env: "PII_TEST_JUNK"},
		{ID: "f", Purpose: MethodSM4, File: "missing.key"},
	}
	_, err := LoadKeys("pii.keys", keys, dir)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"pii.keys[0].file: " + filepath.Join(dir, "short.key") + ": an SM4 key has 16 bytes, this one has 2 (read as hex); make one with: (umask 077 && head -c16 /dev/urandom > ",
		"pii.keys[1].file: " + filepath.Join(dir, "hex15.key") + ": an SM4 key has 16 bytes, this one has 15 (read as hex)",
		"pii.keys[2].file: " + filepath.Join(dir, "short.key") + ": an HMAC-SM3 key needs at least 16 bytes",
		"pii.keys[3].file: " + filepath.Join(dir, "bad.hex") + ": not valid hex",
		"pii.keys[4].env: PII_TEST_JUNK: neither hex nor base64",
		"pii.keys[5].file: " + filepath.Join(dir, "missing.key") + ": no such file; create a key with: (umask 077 && head -c16 /dev/urandom > ",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

func TestNewKeySetErrors(t *testing.T) {
	k := func(id string, p Method, n int, active bool) Key {
		return Key{ID: id, Purpose: p, Secret: bytes.Repeat([]byte{7}, n), Active: active}
	}
	for _, tc := range []struct {
		name string
		keys []Key
		want string
	}{
		{"bad id", []Key{k("a:b", MethodSM4, 16, false)}, `id "a:b" is not valid`},
		{"duplicate", []Key{k("a", MethodSM4, 16, true), k("a", MethodSM3, 16, false)}, `id "a" is used twice`},
		{"sm4 length", []Key{k("a", MethodSM4, 32, false)}, "an SM4 key has 16 bytes, got 32"},
		{"hmac length", []Key{k("a", MethodSM3, 8, false)}, "at least 16 bytes, got 8"},
		{"purpose", []Key{k("a", MethodMask, 16, false)}, `purpose "mask" is not sm4 or sm3`},
		{"none active", []Key{k("a", MethodSM4, 16, false), k("b", MethodSM4, 16, false)}, "2 keys have purpose sm4 and none is active"},
		{"two active", []Key{k("a", MethodSM3, 16, true), k("b", MethodSM3, 16, true)}, "keys a, b are all marked active for sm3"},
	} {
		if _, err := NewKeySet(tc.keys...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
