package pii

import (
	"bytes"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestProtectMask(t *testing.T) {
	p := newProtector(t, MethodMask, Options{})
	for _, tc := range []struct {
		kind     Kind
		in, want string
	}{
		{KindIDNumber, idA, "5101**********1230"},
		{KindIDNumber, "51070319850612104x", "5107**********104X"},
		{KindIDNumber, idA15, "5101*******1123"},
		{KindIDNumber, "bad", "***"},
		{KindPhone, phone, "138****8000"},
		{KindPhone, "１３８００１３８０００", "138****8000"},
		{KindDisabilityCert, idA + "41", "5101************3041"},
		{KindIDNumber, "", ""},
		{KindIDNumber, "5101**********1230", "5101**********1230"},
	} {
		got, err := p.ProtectWith(MethodMask, tc.kind, tc.in)
		if err != nil || got != tc.want {
			t.Errorf("mask %s %q = %q, %v; want %q", tc.kind, tc.in, got, err, tc.want)
		}
	}
}

var sm3TokenRe = regexp.MustCompile(`^sm3:h1:[0-9a-f]{64}$`)

func TestProtectSM3(t *testing.T) {
	p := newProtector(t, MethodMask, Options{})
	pseudo := func(k Kind, v string) string {
		t.Helper()
		s, err := p.ProtectWith(MethodSM3, k, v)
		if err != nil {
			t.Fatal(err)
		}
		if !sm3TokenRe.MatchString(s) {
			t.Fatalf("sm3 of %q = %q, not sm3:h1:<64 hex>", v, s)
		}
		return s
	}
	// Every spelling of one ID number gets one pseudonym.
	want := pseudo(KindIDNumber, idA)
	for _, v := range []string{idA15, "５１０１０４１９９００１０１１２３０", " 510104 19900101 1230 ", "５１０１０４９００１０１１２３"} {
		if got := pseudo(KindIDNumber, v); got != want {
			t.Errorf("sm3(%q) = %s, want %s (as %s)", v, got, want, idA)
		}
	}
	if pseudo(KindIDNumber, "51070319850612104x") != pseudo(KindIDNumber, idB) {
		t.Error("lower-case x changes the pseudonym")
	}
	if pseudo(KindIDNumber, idC) == want {
		t.Error("two ID numbers share a pseudonym")
	}
	// The documented construction: HMAC-SM3(key, "<kind>:<canonical value>") in hex.
	key := []byte("0123456789abcdef0123456789abcdef")
	if manual := "sm3:h1:" + hex.EncodeToString(manualHMAC(key, []byte("id_number:"+idA))); manual != want {
		t.Errorf("sm3 token %s, written-out construction gives %s", want, manual)
	}
	// Phones: prefixes, hyphens and full-width digits do not matter; kinds are separated.
	ph := pseudo(KindPhone, phone)
	for _, v := range []string{"+86 138-0013-8000", "008613800138000", "１３８００１３８０００"} {
		if pseudo(KindPhone, v) != ph {
			t.Errorf("phone pseudonym of %q differs", v)
		}
	}
	if pseudo(KindIDNumber, phone) == ph {
		t.Error("kinds share a pseudonym space")
	}
	// Certificates: one pseudonym per certificate, whatever the spelling.
	if pseudo(KindDisabilityCert, idA+"41") != pseudo(KindDisabilityCert, "５１０１０４１９９００１０１１２３０ 41") {
		t.Error("certificate spelling changes the pseudonym")
	}
	if Canonical(KindDisabilityCert, "51070319850612104x42b1") != idB+"42B1" {
		t.Errorf("Canonical cert = %q", Canonical(KindDisabilityCert, "51070319850612104x42b1"))
	}
	// Protecting a token again leaves it as it is.
	if again := pseudo(KindIDNumber, want); again != want {
		t.Errorf("sm3 of a token = %q", again)
	}
}

func TestProtectSM4RoundTripAndTamper(t *testing.T) {
	p := newProtector(t, MethodMask, Options{})
	tok, err := p.ProtectWith(MethodSM4, KindIDNumber, "５１０１０４１９９００１０１１２３０")
	if err != nil {
		t.Fatal(err)
	}
	if !sm4TokenRe.MatchString(tok) || !IsToken(tok) {
		t.Fatalf("token %q", tok)
	}
	tok2, _ := p.ProtectWith(MethodSM4, KindIDNumber, "５１０１０４１９９００１０１１２３０")
	if tok2 == tok {
		t.Error("two encryptions of one value are equal: the nonce is not random")
	}
	back, err := p.Reveal(tok)
	if err != nil || back != "５１０１０４１９９００１０１１２３０" {
		t.Fatalf("Reveal = %q, %v (the exact spelling must come back)", back, err)
	}
	if again, _ := p.ProtectWith(MethodSM4, KindIDNumber, tok); again != tok {
		t.Error("sm4 of a token re-encrypted it")
	}

	payload := tok[len("sm4:k2:"):]
	flip := func(i int) string {
		b := []byte(payload)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return "sm4:k2:" + string(b)
	}
	for name, bad := range map[string]string{
		"nonce changed":      flip(6),
		"ciphertext changed": flip(30),
		"tag changed":        flip(len(payload) - 2),
		"last char changed":  flip(len(payload) - 1),
		"other key id":       "sm4:k1:" + payload,
	} {
		if _, err := p.Reveal("x " + bad + " y"); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: Reveal error %v, want ErrTampered", name, err)
		}
	}
	if _, err := p.Reveal(tok[:len(tok)-3]); !errors.Is(err, ErrMalformed) {
		t.Errorf("cut token: %v, want ErrMalformed", err)
	}
	if _, err := p.Reveal(tok[:len(tok)-3] + ",rest"); !errors.Is(err, ErrMalformed) {
		t.Errorf("cut token inside text: %v, want ErrMalformed", err)
	}
	// A header claiming more plaintext than follows.
	if _, err := p.Reveal("sm4:k2:AAAZ" + payload[4:]); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTampered) {
		t.Errorf("wrong length header: %v", err)
	}
	// Text that only starts like a token is not one.
	for _, s := range []string{"sm4:", "cipher sm4:gcm used", "sm4:k2:", "sm4:k2:AA"} {
		if got, err := p.Reveal(s); err != nil || got != s {
			t.Errorf("Reveal(%q) = %q, %v", s, got, err)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	k1 := Key{ID: "k1", Purpose: MethodSM4, Secret: bytes.Repeat([]byte{1}, 16)}
	k2 := Key{ID: "k2", Purpose: MethodSM4, Secret: bytes.Repeat([]byte{2}, 16)}
	mk := func(keys ...Key) *Protector {
		ks, err := NewKeySet(keys...)
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(Options{DLQ: MethodSM4}, ks)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	before := mk(k1)
	old := before.ScrubText("row," + idA + "," + phone)
	if !strings.Contains(old, "sm4:k1:") {
		t.Fatalf("not encrypted with k1: %q", old)
	}
	k2.Active = true
	after := mk(k1, k2)
	fresh := after.ScrubText("row," + idC)
	if !strings.Contains(fresh, "sm4:k2:") {
		t.Fatalf("new values not encrypted with the active key k2: %q", fresh)
	}
	mixed := old + "|" + fresh
	got, err := after.Reveal(mixed)
	if want := "row," + idA + "," + phone + "|row," + idC; err != nil || got != want {
		t.Fatalf("Reveal after rotation = %q, %v", got, err)
	}
	k2.Active = false
	retired := mk(k2)
	_, err = retired.Reveal(mixed)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), `"k1"`) || !strings.Contains(err.Error(), "pii.keys") {
		t.Fatalf("Reveal without k1: %v; want ErrUnknownKey naming k1 and pii.keys", err)
	}
	if strings.Contains(err.Error(), idA) {
		t.Errorf("error leaks the ID number: %v", err)
	}
}

func TestProtectWithoutKeys(t *testing.T) {
	p, err := New(Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Method{MethodSM4, MethodSM3} {
		if _, err := p.ProtectWith(m, KindIDNumber, idA); !errors.Is(err, ErrNoKey) {
			t.Errorf("%s without keys: %v, want ErrNoKey", m, err)
		}
	}
	if _, err := p.ProtectWith("rot13", KindIDNumber, idA); err == nil {
		t.Error("unknown method accepted")
	}
	if _, err := p.ProtectWith("rot13", KindIDNumber, ""); err == nil {
		t.Error("unknown method accepted for an empty value")
	}
	if _, err := p.ProtectWith(MethodMask, Kind(9), idA); err == nil {
		t.Error("unknown kind accepted")
	}
	if got, _ := p.ProtectWith(MethodRaw, KindIDNumber, idA); got != idA {
		t.Errorf("raw = %q", got)
	}
	if _, err := New(Options{DLQ: MethodSM4, Topics: map[string]Methods{"person": {Phone: MethodSM3}}}, nil); err == nil ||
		!strings.Contains(err.Error(), "pii.dlq") || !strings.Contains(err.Error(), "pii.topics.person.phone") {
		t.Errorf("New without keys for sm4/sm3: %v", err)
	}
}

func TestMethodsResolution(t *testing.T) {
	p := newProtector(t, MethodMask, Options{
		Default: Methods{Phone: MethodMask},
		Topics: map[string]Methods{
			"person":                 {IDNumber: MethodSM3},
			"sc.canonical.household": {IDNumber: MethodSM4, DisabilityCert: MethodMask},
			"sc.warning":             {IDNumber: MethodMask, Phone: MethodRaw},
		},
	})
	for _, tc := range []struct {
		topic string
		want  Methods
	}{
		{"sc.canonical.person", Methods{MethodSM3, MethodMask, MethodSM3}},
		{"person", Methods{MethodSM3, MethodMask, MethodSM3}},
		{"sc.prod.canonical.person", Methods{MethodSM3, MethodMask, MethodSM3}},
		{"sc.canonical.household", Methods{MethodSM4, MethodMask, MethodMask}},
		{"sc.warning", Methods{MethodMask, MethodRaw, MethodMask}},
		{"sc.raw.national.person", Methods{MethodRaw, MethodMask, MethodRaw}},
		{"sc.canonical.episode", Methods{MethodRaw, MethodMask, MethodRaw}},
	} {
		if got := p.Methods(tc.topic); got != tc.want {
			t.Errorf("Methods(%s) = %+v, want %+v", tc.topic, got, tc.want)
		}
	}
	got, err := p.Protect("sc.canonical.person", KindPhone, phone)
	if err != nil || got != "138****8000" {
		t.Errorf("Protect phone = %q, %v", got, err)
	}
	got, err = p.Protect("sc.canonical.person", KindIDNumber, idA15)
	if err != nil || !sm3TokenRe.MatchString(got) {
		t.Errorf("Protect id = %q, %v", got, err)
	}
}

// One Protector shared by goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	p := newProtector(t, MethodSM4, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				in := "row," + idA + "," + phone
				back, err := p.Reveal(p.ScrubText(in))
				if err == nil && back != in {
					err = errors.New("round trip changed the row")
				}
				if err == nil {
					_, err = p.ProtectWith(MethodSM3, KindIDNumber, idB)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
