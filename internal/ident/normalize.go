// Package ident parses, validates, generates and masks the identifiers that join
// departments' data: resident ID numbers (GB 11643, 18 characters, and the old 15-digit
// form), disability certificate numbers and mobile phone numbers.
package ident

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Normalize prepares an identifier typed by people or exported by spreadsheets for
// comparison: full-width digits and letters become ASCII, white space (including
// ideographic space and NBSP) and invisible format characters (zero-width space/joiners,
// U+200B..U+200F, word joiner U+2060, BOM U+FEFF, soft hyphen) are removed, a lower-case
// x becomes X (the ID check character), and the multiplication sign × — a common input
// method slip for X — becomes X. Other characters are kept, so validation can still point
// at them. Plain ASCII input without spaces or 'x' is returned without allocating.
func Normalize(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf || c == 'x' || c <= ' ' || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= 0xFF01 && r <= 0xFF5E: // full-width ASCII block
			r -= 0xFEE0
		case r == '×':
			r = 'X'
		case r == utf8.RuneError, unicode.IsSpace(r), unicode.Is(unicode.Cf, r), unicode.IsControl(r):
			continue
		}
		if r == 'x' {
			r = 'X'
		}
		b.WriteRune(r)
	}
	return b.String()
}
