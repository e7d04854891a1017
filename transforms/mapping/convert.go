package mapping

import (
	"encoding/json"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// Field types a mapping can convert to.
const (
	TypeText     = "text"
	TypeInt      = "int"
	TypeDecimal  = "decimal"
	TypeBool     = "bool"
	TypeDate     = "date"
	TypeYM       = "ym"
	TypeIDNumber = "id_number"
	TypePhone    = "phone"
	TypeRegion   = "region"
	TypeList     = "list"
	TypeMap      = "map"
)

var types = map[string]bool{TypeText: true, TypeInt: true, TypeDecimal: true, TypeBool: true, TypeDate: true,
	TypeYM: true, TypeIDNumber: true, TypePhone: true, TypeRegion: true, TypeList: true, TypeMap: true}

// text is the text form of a raw value: strings trimmed, numbers as written (json.Number
// keeps their digits), booleans as true/false, NULL as "".
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return strings.TrimSpace(x)
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case []byte:
		return strings.TrimSpace(string(x))
	}
	b, _ := json.Marshal(v)
	return string(b)
}

var errBad = errors.New("bad value")

// parseInt accepts "12", "12.0", " 12 " and thousands separators.
func parseInt(s string) (int, error) {
	s = stripNumber(s)
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || !r.IsInt() || !r.Num().IsInt64() {
		return 0, errBad
	}
	return int(r.Num().Int64()), nil
}

// stripNumber removes what people and spreadsheets put around numbers: spaces,
// thousands separators (ASCII and full-width commas), a leading plus, the unit 元.
func stripNumber(s string) string {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, ",， \u00a0\u3000元+") {
		s = strings.NewReplacer(",", "", "，", "", " ", "", "\u00a0", "", "\u3000", "", "元", "").Replace(s)
		s = strings.TrimPrefix(s, "+")
	}
	return s
}

// parseDecimal returns the exact decimal text of s: thousands separators and 元 are
// dropped, a 万 / 万元 suffix multiplies by 10,000, scale (when not nil) multiplies
// too, and an exponent form is expanded. The digits of a plain decimal are kept as
// written ("29545.60" stays so).
func parseDecimal(s string, scale *big.Rat) (string, error) {
	s = stripNumber(s)
	wan := false
	if strings.HasSuffix(s, "万") {
		s, wan = strings.TrimSuffix(s, "万"), true
	}
	if scale == nil && !wan && plainDecimal(s) {
		return s, nil
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || s == "" || strings.ContainsAny(s, "/") {
		return "", errBad
	}
	frac := 0
	if i := strings.IndexByte(s, '.'); i >= 0 && !strings.ContainsAny(s, "eE") {
		frac = len(s) - i - 1
	}
	if wan {
		r.Mul(r, big.NewRat(10000, 1))
		frac = max(frac-4, 0)
	}
	if scale != nil {
		r.Mul(r, scale)
	}
	return exactDecimal(r, frac), nil
}

// plainDecimal reports whether s is -?digits(.digits)? already.
func plainDecimal(s string) bool {
	i := 0
	if strings.HasPrefix(s, "-") {
		i = 1
	}
	digits, dot := 0, false
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot && digits > 0:
			dot = true
			digits = 0
		default:
			return false
		}
	}
	return digits > 0
}

// exactDecimal writes r with at least minFrac fraction digits and as many more as it
// needs to be exact (up to 12; beyond, rounded).
func exactDecimal(r *big.Rat, minFrac int) string {
	for f := minFrac; f <= 12; f++ {
		s := r.FloatString(f)
		back, _ := new(big.Rat).SetString(s)
		if back.Cmp(r) == 0 {
			return s
		}
	}
	return r.FloatString(12)
}

// parseBool accepts the national 是/否 and the usual spellings.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "是", "有", "1", "true", "t", "y", "yes", "√":
		return true, nil
	case "否", "无", "0", "false", "f", "n", "no", "×":
		return false, nil
	}
	return false, errBad
}

// Excel serial dates count days from 1899-12-30 (Lotus' leap-year bug included).
var excelEpoch = time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC)

var dateLayouts = []string{"2006-01-02", "2006/1/2", "2006-1-2", "2006.1.2", "20060102", "2006年1月2日",
	"2006-01-02 15:04:05", "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05", "2006/1/2 15:04:05", "2006-01-02 15:04:05.999999"}

// parseDate returns YYYY-MM-DD for every date form departments send, including Excel
// serial numbers (1 … 2958465) written by spreadsheets that lost the cell format.
func parseDate(s string) (string, error) {
	s = strings.TrimSpace(s)
	if d, ok := fastDate(s); ok {
		return d, nil
	}
	return parseDateLayouts(s)
}

// parseDateLayouts is parseDate without the fast path.
func parseDateLayouts(s string) (string, error) {
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.Format("2006-01-02"), nil
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 1 && f < 2958466 && !strings.ContainsAny(s, "eE") {
		return excelEpoch.AddDate(0, 0, int(f)).Format("2006-01-02"), nil
	}
	return "", errBad
}

// fastDate handles the commonest forms, YYYY-MM-DD and YYYY-MM-DD hh:mm:ss[.ffffff]
// (what capture publishes for DATE and DATETIME), without trying layouts one after another; ok is false for
// anything else, which goes through the layouts (with the same result).
func fastDate(s string) (string, bool) {
	if len(s) > 19 && s[19] == '.' && len(s) <= 26 { // fractional seconds, as capture writes DATETIME(6)
		for i := 20; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return "", false
			}
		}
		if len(s) == 20 {
			return "", false
		}
		return fastDate(s[:19])
	}
	if len(s) != 10 && len(s) != 19 {
		return "", false
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	if s[4] != '-' || s[7] != '-' {
		return "", false
	}
	y, ok1 := num(0, 4)
	m, ok2 := num(5, 7)
	d, ok3 := num(8, 10)
	if !ok1 || !ok2 || !ok3 || m < 1 || m > 12 || d < 1 || d > daysIn(time.Month(m), y) {
		return "", false
	}
	if len(s) == 19 {
		if s[10] != ' ' || s[13] != ':' || s[16] != ':' {
			return "", false
		}
		hh, ok1 := num(11, 13)
		mm, ok2 := num(14, 16)
		ss, ok3 := num(17, 19)
		if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 59 {
			return "", false
		}
	}
	return s[:10], true
}

// daysIn is the number of days of month m in year y.
func daysIn(m time.Month, y int) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

var ymLayouts = []string{"200601", "2006-01", "2006/1", "2006-1", "2006.1", "2006年1月", "2006年01月"}

// parseYM returns YYYYMM from YYYYMM, YYYY-MM, 2024年5月 or any date form.
func parseYM(s string) (string, error) {
	s = strings.TrimSpace(s)
	if ym, ok := fastYM(s); ok {
		return ym, nil
	}
	return parseYMLayouts(s)
}

// fastYM handles YYYYMM, YYYY-MM and YYYY-MM-DD (what departments and capture send
// most) without trying layouts one after another, each failure of which allocates its
// error; ok is false for anything else, which goes through the layouts (with the same
// result).
func fastYM(s string) (string, bool) {
	digits := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		return true
	}
	validMonth := func(m string) bool { return m >= "01" && m <= "12" }
	switch {
	case len(s) == 6 && digits(s) && validMonth(s[4:]):
		return s, true
	case len(s) == 7 && s[4] == '-' && digits(s[:4]) && digits(s[5:]) && validMonth(s[5:]):
		return s[:4] + s[5:], true
	case len(s) == 10 && s[4] == '-' && s[7] == '-':
		if d, ok := fastDate(s); ok {
			return d[:4] + d[5:7], true
		}
	}
	return "", false
}

// parseYMLayouts is parseYM without the fast path.
func parseYMLayouts(s string) (string, error) {
	for _, l := range ymLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.Format("200601"), nil
		}
	}
	d, err := parseDate(s)
	if err != nil {
		return "", errBad
	}
	return d[:4] + d[5:7], nil
}
