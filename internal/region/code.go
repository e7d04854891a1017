// Package region holds the 12-digit statistical division codes (统计用区划代码) of the
// National Bureau of Statistics: the table of regions, the prefix arithmetic used for
// scope checks and roll-ups (province 2 digits, city 4, county 6, township 9, village 12),
// and effective-dated code changes.
package region

import (
	"fmt"
	"strings"
)

// Level is the administrative level of a region. The numeric values are the ones used in
// the NBS files and in the level column of our CSV tables, so they can be stored as is.
type Level int

// The five NBS levels.
const (
	Province Level = 1 // 省级
	City     Level = 2 // 地级 (under municipalities: 市辖区)
	County   Level = 3 // 县级
	Township Level = 4 // 乡级 (乡/镇/街道)
	Village  Level = 5 // 村级 (村委会/居委会)
)

// sigDigits is the number of significant leading digits of a code at each level.
var sigDigits = [...]int{0, 2, 4, 6, 9, 12}

const zeros12 = "000000000000"

// String returns the English name of the level, for messages and logs.
func (l Level) String() string {
	switch l {
	case Province:
		return "province"
	case City:
		return "city"
	case County:
		return "county"
	case Township:
		return "township"
	case Village:
		return "village"
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// Valid reports whether l is one of the five NBS levels.
func (l Level) Valid() bool { return l >= Province && l <= Village }

// Digits returns the number of significant digits of a code at level l (2, 4, 6, 9, 12),
// or 0 for an invalid level.
func (l Level) Digits() int {
	if !l.Valid() {
		return 0
	}
	return sigDigits[l]
}

// Prefix returns the significant digits of code at level: 2, 4, 6, 9 or 12 leading
// digits. Scope and roll-up checks are prefix operations on these. It returns "" when
// level is invalid or code is shorter than the prefix; it does not validate the digits
// (use LevelOf for that) because it sits on hot paths.
func Prefix(code string, level Level) string {
	n := level.Digits()
	if n == 0 || len(code) < n {
		return ""
	}
	return code[:n]
}

// Rollup returns the 12-digit code of code's ancestor at level (the prefix padded with
// zeros), e.g. Rollup("510104001001", County) = "510104000000". It is pure arithmetic: the
// result need not exist in any table (cities without counties, such as 东莞, roll up to
// the city code). It returns "" for a code that is not 12 digits, has province digits
// 00, or an invalid level.
func Rollup(code string, level Level) string {
	if !isDigits(code, 12) || code[:2] == "00" {
		return ""
	}
	p := Prefix(code, level)
	if p == "" {
		return ""
	}
	return p + zeros12[len(p):]
}

// LevelOf derives the level of a 12-digit code from its zero padding: the deepest level
// whose own digits are not all zero. It rejects codes that are not 12 ASCII digits and
// codes with a zero province part, naming the problem.
func LevelOf(code string) (Level, error) {
	if len(code) != 12 {
		return 0, fmt.Errorf("region code %q: has %d characters, want 12 digits", code, len(code))
	}
	for i := 0; i < 12; i++ {
		if code[i] < '0' || code[i] > '9' {
			return 0, fmt.Errorf("region code %q: character %d is %q, want a digit", code, i+1, code[i])
		}
	}
	if code[:2] == "00" {
		return 0, fmt.Errorf("region code %q: province digits are 00, not a region", code)
	}
	for l := Village; l > Province; l-- {
		seg := code[sigDigits[l-1]:sigDigits[l]]
		if strings.Trim(seg, "0") != "" {
			return l, nil
		}
	}
	return Province, nil
}

// Contains reports whether code lies inside scope (or is scope itself). scope may be at
// any level and may be given as a 12-digit code or as its significant prefix (2, 4, 6 or
// 9 digits, e.g. "5101"). Invalid input yields false: a scope check must never grant
// access by accident.
func Contains(scope, code string) bool {
	if !isDigits(code, 12) {
		return false
	}
	var p string
	switch len(scope) {
	case 2, 4, 6, 9:
		if !isDigits(scope, len(scope)) || scope[:2] == "00" {
			return false
		}
		p = scope
	case 12:
		l, err := LevelOf(scope)
		if err != nil {
			return false
		}
		p = scope[:sigDigits[l]]
	default:
		return false
	}
	return strings.HasPrefix(code, p)
}

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < n; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
