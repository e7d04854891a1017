package filedrop

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"github.com/xuri/excelize/v2"
	"golang.org/x/text/width"
)

// ColumnType says how the values of one field are compared between deliveries. The
// same month delivered as CSV and as XLSX spells numbers and dates differently
// ("2657.0" and "2657", "2023/5/17", "2023-05-17" and the Excel serial 45063): the
// diff compares, stores and emits each value in its type's canonical form, so a
// change of spelling is not a change. A value that does not parse as its type makes
// the row a dead letter (the row's previous version is kept).
type ColumnType string

// The column types. TypeText is the default: the value is kept as written (trimmed).
const (
	TypeText ColumnType = "text"
	// TypeInteger is a whole number: "2,657", "2657.00", "+2657", "2.657E3" and
	// full-width digits all become "2657".
	TypeInteger ColumnType = "integer"
	// TypeDecimal is an exact decimal number: trailing fraction zeros, grouping commas
	// and an exponent are removed ("1,234.50" → "1234.5", "-0.0" → "0").
	TypeDecimal ColumnType = "decimal"
	// TypeDate is a calendar date, canonically YYYY-MM-DD. Accepted: 2023-05-17,
	// 2023-5-17, 2023/5/17, 2023.5.17, 20230517, 2023年5月17日, the same with a
	// midnight time of day, and Excel serial numbers (1900 date system).
	TypeDate ColumnType = "date"
	// TypeDateTime is a date and time of day, canonically "YYYY-MM-DD HH:MM:SS"; a
	// date alone means midnight. Excel serials with a fraction are accepted.
	TypeDateTime ColumnType = "datetime"
	// TypeMonth is a calendar month, canonically YYYYMM (the national field set's
	// form): 202305, 2023-05, 2023/5, 2023年5月, or any date of that month.
	TypeMonth ColumnType = "month"
)

// ColumnTypes lists the valid column types, for validation messages.
var ColumnTypes = []ColumnType{TypeText, TypeInteger, TypeDecimal, TypeDate, TypeDateTime, TypeMonth}

// validType reports whether t is a known column type ("" means text).
func validType(t ColumnType) bool {
	if t == "" {
		return true
	}
	for _, k := range ColumnTypes {
		if t == k {
			return true
		}
	}
	return false
}

// numberSyntax accepts a plain decimal number with optional sign, optional
// thousands grouping (groups of exactly three digits), optional fraction and an
// optional exponent. It rejects what a human would not read as one number
// ("1,23", "1.2.3", "12-5").
var numberSyntax = regexp.MustCompile(`^[+-]?(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)?(?:\.[0-9]*)?(?:[eE][+-]?[0-9]{1,3})?$`)

// maxExponent bounds the exponent of a number so "1e999" cannot expand into a
// thousand-digit string.
const maxExponent = 40

// normalizeValue returns v in the canonical form of type t. v is already trimmed.
// An empty value stays empty (not recorded). The error says what was expected, for
// the dead letter's reason.
func normalizeValue(t ColumnType, v string) (string, error) {
	if v == "" || t == "" || t == TypeText {
		return v, nil
	}
	n := strings.TrimSpace(width.Narrow.String(v))
	switch t {
	case TypeInteger:
		d, err := parseNumber(n)
		if err != nil {
			return "", fmt.Errorf("%q is not a number (want digits such as 2657, 2,657 or 2657.0)", v)
		}
		if !d.IsInteger() {
			return "", fmt.Errorf("%q is not a whole number", v)
		}
		return d.String(), nil
	case TypeDecimal:
		d, err := parseNumber(n)
		if err != nil {
			return "", fmt.Errorf("%q is not a number (want digits such as 1234.5 or 1,234.50; units such as 元 or 万元 are not part of the value)", v)
		}
		return d.String(), nil
	case TypeDate:
		tm, hasTime, err := parseDateTime(n)
		if err != nil {
			return "", fmt.Errorf("%q is not a date (want YYYY-MM-DD, YYYY/M/D, YYYYMMDD, 2023年5月17日 or an Excel date serial)", v)
		}
		if hasTime && (tm.Hour() != 0 || tm.Minute() != 0 || tm.Second() != 0) {
			return "", fmt.Errorf("%q has a time of day in a date column (declare the column as datetime to keep it)", v)
		}
		return tm.Format("2006-01-02"), nil
	case TypeDateTime:
		tm, _, err := parseDateTime(n)
		if err != nil {
			return "", fmt.Errorf("%q is not a date and time (want YYYY-MM-DD HH:MM:SS, YYYY/M/D H:MM or an Excel serial)", v)
		}
		return tm.Format("2006-01-02 15:04:05"), nil
	case TypeMonth:
		tm, err := parseMonth(n)
		if err != nil {
			return "", fmt.Errorf("%q is not a month (want YYYYMM, YYYY-MM, YYYY/M, 2023年5月 or a date)", v)
		}
		return tm.Format("200601"), nil
	}
	return "", fmt.Errorf("unknown column type %q", t)
}

// parseNumber parses a number written as numberSyntax describes; the result's
// String() is its canonical form (no trailing fraction zeros, no exponent).
func parseNumber(s string) (decimal.Decimal, error) {
	mant, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	if !numberSyntax.MatchString(s) || !strings.ContainsAny(mant, "0123456789") {
		return decimal.Decimal{}, fmt.Errorf("not a number")
	}
	if hasExp {
		if e, err := strconv.Atoi(exp); err != nil || e > maxExponent || e < -maxExponent {
			return decimal.Decimal{}, fmt.Errorf("exponent out of range")
		}
	}
	return decimal.NewFromString(strings.ReplaceAll(s, ",", ""))
}

// Date limits: a value outside them is a typing error, not a date of this data.
const (
	minYear = 1850
	maxYear = 2150
)

// dateRe matches year, month and day separated by -, /, . or 年月日, with an optional
// time of day (H:MM, H:MM:SS or H:MM:SS.fff, after a space or T).
var dateRe = regexp.MustCompile(`^([0-9]{4})(?:[-/.]|年)([0-9]{1,2})(?:[-/.]|月)([0-9]{1,2})日?(?:[ T]+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]{1,9})?)?)?$`)

// monthRe matches year and month: 2023-05, 2023/5, 2023.05, 2023年5月.
var monthRe = regexp.MustCompile(`^([0-9]{4})(?:[-/.]|年)([0-9]{1,2})月?$`)

// Excel serial bounds: 1 is 1900-01-01, 2958465 is 9999-12-31.
const maxExcelSerial = 2958465

// parseDateTime reads a date with an optional time of day. hasTime reports whether a
// time of day was written (or an Excel serial had a fraction).
func parseDateTime(s string) (t time.Time, hasTime bool, err error) {
	if m := dateRe.FindStringSubmatch(s); m != nil {
		y, _ := strconv.Atoi(m[1])
		mo, _ := strconv.Atoi(m[2])
		d, _ := strconv.Atoi(m[3])
		var h, mi, sec int
		if m[4] != "" {
			hasTime = true
			h, _ = strconv.Atoi(m[4])
			mi, _ = strconv.Atoi(m[5])
			if m[6] != "" {
				sec, _ = strconv.Atoi(m[6])
			}
		}
		t, err = civil(y, mo, d, h, mi, sec)
		return t, hasTime, err
	}
	if len(s) == 8 && allDigits(s) {
		y, _ := strconv.Atoi(s[:4])
		mo, _ := strconv.Atoi(s[4:6])
		d, _ := strconv.Atoi(s[6:])
		t, err = civil(y, mo, d, 0, 0, 0)
		return t, false, err
	}
	return excelSerial(s)
}

// excelSerial reads an Excel date serial of the 1900 date system (what CSV exports
// of a date cell formatted as General contain). Only plain numbers of at most seven
// integer digits qualify, so an 8-digit YYYYMMDD is never read as a serial.
func excelSerial(s string) (time.Time, bool, error) {
	intPart, frac, _ := strings.Cut(s, ".")
	if intPart == "" || len(intPart) > 7 || !allDigits(intPart) || (frac != "" && !allDigits(frac)) {
		return time.Time{}, false, fmt.Errorf("not a date")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 1 || f > maxExcelSerial {
		return time.Time{}, false, fmt.Errorf("not a date")
	}
	t, err := excelize.ExcelDateToTime(f, false)
	if err != nil {
		return time.Time{}, false, err
	}
	// Serials carry fractions of a day as binary floats: round to the second.
	t = t.Round(time.Second).UTC()
	if t.Year() < minYear || t.Year() > maxYear {
		return time.Time{}, false, fmt.Errorf("year %d out of range", t.Year())
	}
	return t, f != math.Trunc(f), nil
}

// parseMonth reads a month, or a date whose month is taken.
func parseMonth(s string) (time.Time, error) {
	if m := monthRe.FindStringSubmatch(s); m != nil {
		y, _ := strconv.Atoi(m[1])
		mo, _ := strconv.Atoi(m[2])
		return civil(y, mo, 1, 0, 0, 0)
	}
	if len(s) == 6 && allDigits(s) {
		y, _ := strconv.Atoi(s[:4])
		mo, _ := strconv.Atoi(s[4:])
		return civil(y, mo, 1, 0, 0, 0)
	}
	t, _, err := parseDateTime(s)
	return t, err
}

// civil builds a time from calendar fields, refusing what time.Date would normalise
// (2023-02-30 is not March 2nd).
func civil(y, mo, d, h, mi, s int) (time.Time, error) {
	if y < minYear || y > maxYear || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59 {
		return time.Time{}, fmt.Errorf("out of range")
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC)
	if t.Day() != d {
		return time.Time{}, fmt.Errorf("no such day")
	}
	return t, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
