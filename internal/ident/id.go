package ident

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Error kinds of ParseID and ParseDisabilityCert. Match them with errors.Is; the
// concrete *Error carries the position and a message.
var (
	// ErrLength: the number has the wrong number of characters.
	ErrLength = errors.New("wrong length")
	// ErrChars: a character is not allowed at its position.
	ErrChars = errors.New("invalid character")
	// ErrBirthDate: the embedded birth date is not a real date, before 1900 or in the future.
	ErrBirthDate = errors.New("invalid birth date")
	// ErrChecksum: the 18th character does not match the GB 11643 check digit.
	ErrChecksum = errors.New("check digit mismatch")
	// ErrPlaceholder: a filler number (region 000000 or 999999, or one digit repeated)
	// that data entry used instead of a real ID (quality rule Q-008).
	ErrPlaceholder = errors.New("placeholder number")
	// ErrCertCode: a disability certificate's type or grade digit is out of range.
	ErrCertCode = errors.New("invalid disability type or grade")
)

// Error is a validation failure of an identifier. Pos is the 1-based character position
// in the normalised input the problem refers to (0 when it concerns the whole value).
// The input itself is not kept, so the error can be logged without leaking the number.
type Error struct {
	Kind error
	Pos  int
	Msg  string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Pos > 0 {
		return fmt.Sprintf("%s at position %d: %s", e.Kind, e.Pos, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Msg)
}

// Unwrap makes errors.Is(err, ErrChecksum) and friends work.
func (e *Error) Unwrap() error { return e.Kind }

func fail(kind error, pos int, format string, args ...any) error {
	return &Error{Kind: kind, Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// ID is a parsed, valid resident ID number.
type ID struct {
	// Number is the 18-character form (upgraded when the input had 15 digits).
	Number string
	// Region is the 6-digit area code of first registration (it may no longer exist).
	Region string
	// Birth is the birth date at midnight UTC.
	Birth time.Time
	// Male is true when the 17th digit is odd.
	Male bool
	// Upgraded is true when the input was a 15-digit number.
	Upgraded bool
}

var weights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const checkChars = "10X98765432"

// CheckDigit computes the GB 11643 check character ('0'..'9' or 'X') of the first 17
// digits: sum of digit×weight mod 11, mapped through "10X98765432".
func CheckDigit(first17 string) (byte, error) {
	if len(first17) != 17 {
		return 0, fail(ErrLength, 0, "check digit needs 17 digits, got %d characters", len(first17))
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := first17[i]
		if c < '0' || c > '9' {
			return 0, fail(ErrChars, i+1, "%q is not a digit", c)
		}
		sum += int(c-'0') * weights[i]
	}
	return checkChars[sum%11], nil
}

// Upgrade15 converts a 15-digit ID (region 6, birth YYMMDD, sequence 3) to the 18-digit
// form by inserting the century 19 and appending the check digit. 15-digit numbers were
// issued until 1999, so their birth years are 19xx. The input is normalised first.
func Upgrade15(s string) (string, error) {
	s = Normalize(s)
	if len(s) != 15 {
		return "", fail(ErrLength, 0, "a 15-digit ID has 15 characters, got %d", len(s))
	}
	for i := 0; i < 15; i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", fail(ErrChars, i+1, "%q is not a digit (a 15-digit ID is all digits)", s[i])
		}
	}
	first17 := s[:6] + "19" + s[6:]
	c, err := CheckDigit(first17)
	if err != nil {
		return "", err
	}
	return first17 + string(c), nil
}

// ParseID normalises s and validates it as a resident ID number of 18 characters (17
// digits and a check character) or 15 digits (upgraded to 18). Errors wrap ErrLength,
// ErrChars, ErrPlaceholder, ErrBirthDate or ErrChecksum, in that order of checking, and
// say which position is wrong; they never contain the number itself.
func ParseID(s string) (ID, error) {
	s = Normalize(s)
	upgraded := false
	switch len(s) {
	case 18:
		for i := 0; i < 17; i++ {
			if s[i] < '0' || s[i] > '9' {
				return ID{}, fail(ErrChars, i+1, "%s is not a digit", quoteChar(s, i))
			}
		}
		if c := s[17]; (c < '0' || c > '9') && c != 'X' {
			return ID{}, fail(ErrChars, 18, "%s is not a digit or X", quoteChar(s, 17))
		}
	case 15:
		u, err := Upgrade15(s)
		if err != nil {
			return ID{}, err
		}
		s, upgraded = u, true
	default:
		if err := nonASCII(s); err != nil {
			return ID{}, err
		}
		return ID{}, fail(ErrLength, 0, "an ID number has 18 characters (or 15 digits for old numbers), got %d", utf8.RuneCountInString(s))
	}
	if err := checkPlaceholder(s[:17]); err != nil {
		return ID{}, err
	}
	birth, err := parseBirth(s[6:14])
	if err != nil {
		return ID{}, err
	}
	want, _ := CheckDigit(s[:17])
	if s[17] != want {
		return ID{}, fail(ErrChecksum, 18, "check character is %c, the first 17 digits give %c; a digit was probably mistyped", s[17], want)
	}
	return ID{
		Number:   s,
		Region:   s[:6],
		Birth:    birth,
		Male:     (s[16]-'0')%2 == 1,
		Upgraded: upgraded,
	}, nil
}

// nonASCII reports the first non-ASCII character of s as ErrChars when s has 15 or 18
// characters, so that "the length is wrong" is not reported for a mistyped character.
func nonASCII(s string) error {
	n := utf8.RuneCountInString(s)
	if n != 15 && n != 18 {
		return nil
	}
	for i, r := range []rune(s) {
		if r >= utf8.RuneSelf {
			return fail(ErrChars, i+1, "a non-ASCII character where a digit belongs")
		}
	}
	return nil
}

func quoteChar(s string, i int) string {
	if s[i] < 0x80 {
		return fmt.Sprintf("%q", s[i])
	}
	return "a non-ASCII character"
}

func checkPlaceholder(first17 string) error {
	switch first17[:6] {
	case "000000", "999999":
		return fail(ErrPlaceholder, 1, "region %s is a placeholder, not an area code; the real ID number is missing", first17[:6])
	}
	same := true
	for i := 1; i < 17; i++ {
		if first17[i] != first17[0] {
			same = false
			break
		}
	}
	if same {
		return fail(ErrPlaceholder, 1, "the number repeats one digit; the real ID number is missing")
	}
	return nil
}

// parseBirth checks YYYYMMDD (positions 7..14 of the 18-character form).
func parseBirth(d string) (time.Time, error) {
	const pos = 7 // the date starts at position 7 in both the 15- and the 18-character form
	t, err := time.Parse("20060102", d)
	if err != nil {
		return time.Time{}, fail(ErrBirthDate, pos, "birth date %s-%s-%s is not a calendar date", d[:4], d[4:6], d[6:])
	}
	if t.Year() < 1900 {
		return time.Time{}, fail(ErrBirthDate, pos, "birth year %d is before 1900", t.Year())
	}
	if t.After(time.Now()) {
		return time.Time{}, fail(ErrBirthDate, pos, "birth date %s is in the future", t.Format(time.DateOnly))
	}
	return t, nil
}

// MakeID generates a valid 18-character ID number, for synthetic data and tests. seq
// (0..999) is the order code; its last digit is made odd for men and even for women by
// flipping the lowest bit when needed, so the result always agrees with male.
func MakeID(region6 string, birth time.Time, seq int, male bool) (string, error) {
	if len(region6) != 6 {
		return "", fail(ErrLength, 0, "region must have 6 digits, got %d characters", len(region6))
	}
	for i := 0; i < 6; i++ {
		if region6[i] < '0' || region6[i] > '9' {
			return "", fail(ErrChars, i+1, "region %s is not a digit", quoteChar(region6, i))
		}
	}
	if region6 == "000000" || region6 == "999999" {
		return "", fail(ErrPlaceholder, 1, "region %s is a placeholder", region6)
	}
	if y := birth.Year(); y < 1900 || y > 9999 {
		return "", fail(ErrBirthDate, 7, "birth year %d outside 1900..9999", y)
	}
	if seq < 0 || seq > 999 {
		return "", fmt.Errorf("ident: sequence %d outside 0..999", seq)
	}
	if (seq%2 == 1) != male {
		seq ^= 1
	}
	first17 := fmt.Sprintf("%s%s%03d", region6, birth.Format("20060102"), seq)
	c, err := CheckDigit(first17)
	if err != nil {
		return "", err
	}
	return first17 + string(c), nil
}

// AgeAt returns the completed years of age of the holder at t (the birthday itself
// counts; someone born on 29 February turns a year older on 1 March in common years).
// Dates before the birth give 0. Only the calendar date of t matters.
func AgeAt(id ID, t time.Time) int {
	b := id.Birth
	age := t.Year() - b.Year()
	if t.Month() < b.Month() || (t.Month() == b.Month() && t.Day() < b.Day()) {
		age--
	}
	return max(age, 0)
}
