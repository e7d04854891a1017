package pii

import (
	"errors"
	"strings"
	"testing"

	"github.com/shouwang/shouwang/internal/ident"
)

// validIDIn returns a valid 18-character ID number that ident.ParseID would accept in
// some substring of s, or "". Normalize maps rune by rune, so the normalised forms of
// the substrings of s are exactly the substrings of Normalize(s): checking every
// 18-byte window of it covers them all.
func validIDIn(s string) string {
	n := ident.Normalize(s)
	for i := 0; i+18 <= len(n); i++ {
		if _, err := ident.ParseID(n[i : i+18]); err == nil {
			return n[i : i+18]
		}
	}
	return ""
}

var fuzzSeeds = []string{
	"张三,510104199001011230,13800138000,2024-01-02,1234.50",
	"id 51010419900101123x phone 138 0013 8000",
	"５１０１０４１９９００１０１１２３０",
	"510104 19900101 1230 and 510104900101123",
	"cert 51010419900101123041, card 6222021234567890123",
	"12345678901234 510104199001011230 12345678901234",
	"1510104199001011230",
	"5101041990\u200b01011230",
	"\xff51010419900101123\xfe0",
	"sm4:k2:AAAA",
	"",
}

// FuzzScrubText: no panic; with mask no valid 18-character ID number survives; with
// sm4, Reveal gives back the input exactly.
func FuzzScrubText(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	p := newProtector(f, MethodSM4, Options{})
	f.Fuzz(func(t *testing.T, s string) {
		masked := MaskText(s)
		enc := p.ScrubText(s)
		if strings.Contains(s, "sm4:") || strings.Contains(s, "sm3:") {
			return // pre-existing tokens are opaque to ScrubText and decrypted by Reveal
		}
		if id := validIDIn(masked); id != "" {
			t.Fatalf("MaskText(%q) = %q still holds the ID number %s", s, masked, id)
		}
		back, err := p.Reveal(enc)
		if err != nil {
			t.Fatalf("Reveal(ScrubText(%q)): %v", s, err)
		}
		if back != s {
			t.Fatalf("Reveal(ScrubText(%q)) = %q", s, back)
		}
	})
}

// FuzzReveal: the token parser never panics on what a dead-letter record may hold,
// text without "sm4:" comes back unchanged, and text with a real token never fails
// for a reason other than the three token errors.
func FuzzReveal(f *testing.F) {
	p := newProtector(f, MethodSM4, Options{})
	tok := p.ScrubText(idA)
	for _, s := range []string{tok, "x" + tok + "y", tok[:len(tok)-1], "sm4:k2:AAAA", "sm4:k1:" + tok[7:], "sm4:" + strings.Repeat("a", 40) + ":AAAA", "sm3:h1:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := p.Reveal(s)
		if !strings.Contains(s, "sm4:") && (err != nil || out != s) {
			t.Fatalf("Reveal(%q) = %q, %v", s, out, err)
		}
		if err != nil && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrTampered) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Reveal(%q): unexpected error %v", s, err)
		}
	})
}
