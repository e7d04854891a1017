package ident

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrMobile is wrapped by every error of ValidMobile.
var ErrMobile = errors.New("invalid mobile number")

// ValidMobile checks a mainland mobile number, ^1[3-9]\d{9}$ after Normalize (so
// full-width digits and spaces are tolerated; +86 prefixes and hyphens are not). The
// error says what is wrong and where, without repeating the number.
func ValidMobile(s string) error {
	s = Normalize(s)
	if n := utf8.RuneCountInString(s); n != 11 {
		return fmt.Errorf("%w: has %d characters, want 11 digits starting with 1", ErrMobile, n)
	}
	for i := 0; i < 11; i++ {
		if s[i] < '0' || s[i] > '9' {
			return fmt.Errorf("%w: character %d is not a digit", ErrMobile, i+1)
		}
	}
	if s[0] != '1' {
		return fmt.Errorf("%w: starts with %c, mobile numbers start with 1 (is it a landline?)", ErrMobile, s[0])
	}
	if s[1] < '3' {
		return fmt.Errorf("%w: second digit %c, mobile numbers continue with 3–9", ErrMobile, s[1])
	}
	return nil
}

// MaskID hides the middle of an ID (or certificate) number for logs and public notices
// (公示 must not show ID numbers): the first 4 characters (province and city of
// registration) and the last 4 (end of the order code and check character) stay, every
// character between becomes '*', e.g. 5101**********123X. Values of 8 characters or
// fewer are masked completely, since keeping 8 would reveal all of them.
func MaskID(s string) string { return mask(Normalize(s), 4, 4) }

// MaskPhone hides the middle four digits of a mobile number: 138****5678 (first 3, last
// 4 kept). Values of 7 characters or fewer are masked completely.
func MaskPhone(s string) string { return mask(Normalize(s), 3, 4) }

func mask(s string, head, tail int) string {
	r := []rune(s)
	if len(r) <= head+tail {
		return strings.Repeat("*", len(r))
	}
	return string(r[:head]) + strings.Repeat("*", len(r)-head-tail) + string(r[len(r)-tail:])
}
