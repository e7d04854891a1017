package ident

import (
	"fmt"
	"strings"
)

// DisabilityCert is a parsed second-generation disability certificate number (残疾人证号):
// the holder's 18-character ID number followed by the disability type digit and the
// grade digit.
type DisabilityCert struct {
	// ID is the holder's validated ID number.
	ID ID
	// Type is 1 视力, 2 听力, 3 言语, 4 肢体, 5 智力, 6 精神, 7 多重.
	Type int
	// Grade is 1..4 (一级 most severe .. 四级).
	Grade int
	// Suffix holds the two extra characters of a 22-character number (see
	// ParseDisabilityCert); empty for the standard 20 characters.
	Suffix string
}

var typeNames = [...]string{"", "视力", "听力", "言语", "肢体", "智力", "精神", "多重"}
var gradeNames = [...]string{"", "一级", "二级", "三级", "四级"}

// DisabilityTypeName returns the Chinese name of a disability type (视力 … 多重), or ""
// when t is not 1..7.
func DisabilityTypeName(t int) string {
	if t < 1 || t >= len(typeNames) {
		return ""
	}
	return typeNames[t]
}

// DisabilityGradeName returns the Chinese name of a disability grade (一级 … 四级), or ""
// when g is not 1..4.
func DisabilityGradeName(g int) string {
	if g < 1 || g >= len(gradeNames) {
		return ""
	}
	return gradeNames[g]
}

// ParseDisabilityCert normalises and validates a disability certificate number.
//
// Accepted lengths follow quality rule Q-004 (18, 20 or 22):
//   - 20 characters: a valid 18-character ID + type digit 1–7 + grade digit 1–4 (the
//     standard form);
//   - 22 characters: the 20-character form followed by two letters or digits. Registry
//     exports carry such suffixes on reissued certificates (e.g. "B1" for the first
//     reissue); we accept any two ASCII letters/digits, keep them in Suffix and otherwise
//     treat the number exactly as its first 20 characters;
//   - 18 characters (a bare ID number, without type and grade) is not a certificate
//     number: it fails with ErrLength so that Q-005 reports it.
//
// Errors wrap the ParseID kinds for the ID part (positions 1..18) and ErrCertCode for
// the type (position 19) and grade (position 20).
func ParseDisabilityCert(s string) (DisabilityCert, error) {
	s = Normalize(s)
	var suffix string
	switch len(s) {
	case 20:
	case 22:
		suffix = s[20:]
		for i := 20; i < 22; i++ {
			c := s[i]
			if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
				return DisabilityCert{}, fail(ErrChars, i+1, "%s is not a letter or digit in the 2-character suffix", quoteChar(s, i))
			}
		}
		suffix = strings.ToUpper(suffix)
	default:
		return DisabilityCert{}, fail(ErrLength, 0, "a disability certificate number has 20 characters (ID number + type + grade) or 22 with a suffix, got %d", len([]rune(s)))
	}
	id, err := ParseID(s[:18])
	if err != nil {
		return DisabilityCert{}, err
	}
	typ, grade := int(s[18]-'0'), int(s[19]-'0')
	if s[18] < '1' || s[18] > '7' {
		return DisabilityCert{}, fail(ErrCertCode, 19, "disability type %s is not 1–7 (视力, 听力, 言语, 肢体, 智力, 精神, 多重)", quoteChar(s, 18))
	}
	if s[19] < '1' || s[19] > '4' {
		return DisabilityCert{}, fail(ErrCertCode, 20, "disability grade %s is not 1–4", quoteChar(s, 19))
	}
	return DisabilityCert{ID: id, Type: typ, Grade: grade, Suffix: suffix}, nil
}

// MakeDisabilityCert builds the 20-character certificate number from an ID number and a
// type and grade, for synthetic data. It does not validate (ParseDisabilityCert does):
// a generator may want to produce invalid numbers on purpose.
func MakeDisabilityCert(id string, typ, grade int) string {
	return fmt.Sprintf("%s%d%d", id, typ, grade)
}
