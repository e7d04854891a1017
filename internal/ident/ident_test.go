package ident

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"11010519491231002X", "11010519491231002X"},
		{"11010519491231002x", "11010519491231002X"},
		{"１１０１０５１９４９１２３１００２ｘ", "11010519491231002X"},
		{"１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X"},
		{" 110105 19491231 002X\t\n", "11010519491231002X"},
		{"\u200b110105\u200c1949\u200d1231\u200e002\u200fX\ufeff", "11010519491231002X"},
		{"110105\u206019491231\u00a0002X", "11010519491231002X"},
		{"110105\u300019491231002×", "11010519491231002X"},
		{"138 1234 5678", "13812345678"},
		{"", ""},
		{"abc", "abc"}, // only x is upper-cased
		{"51０1-04", "5101-04"},
	}
	for _, c := range cases {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func date(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestParseIDValid(t *testing.T) {
	cases := []struct {
		in, number, birth string
		male, upgraded    bool
	}{
		{"11010519491231002X", "11010519491231002X", "1949-12-31", false, false}, // GB 11643 example
		{"11010519491231002x", "11010519491231002X", "1949-12-31", false, false},
		{"110105491231002", "11010519491231002X", "1949-12-31", false, true}, // the same person's 15-digit number
		{"130503670401001", "130503196704010016", "1967-04-01", true, true},
		{"510104198001011236", "510104198001011236", "1980-01-01", true, false},
		{"５１３４２３１９９００２１５３６１８", "513423199002153618", "1990-02-15", true, false},
	}
	for _, c := range cases {
		id, err := ParseID(c.in)
		if err != nil {
			t.Errorf("ParseID(%q): %v", c.in, err)
			continue
		}
		if id.Number != c.number || !id.Birth.Equal(date(c.birth)) || id.Male != c.male || id.Upgraded != c.upgraded || id.Region != c.number[:6] {
			t.Errorf("ParseID(%q) = %+v", c.in, id)
		}
	}
}

func TestParseIDErrors(t *testing.T) {
	cases := []struct {
		in   string
		kind error
		pos  int
		msg  string
	}{
		{"", ErrLength, 0, "got 0"},
		{"1101051949123100", ErrLength, 0, "got 16"},
		{"11010519491231002X1", ErrLength, 0, "got 19"},
		{"1101051949123100AX", ErrChars, 17, "'A' is not a digit"},
		{"11010519491231002Y", ErrChars, 18, "not a digit or X"},
		{"11010519491231002中", ErrChars, 18, "non-ASCII"}, // 20 bytes, 18 runes
		{"1101051949123100中中中", ErrLength, 0, "got 19"},
		{"1101054912310X2", ErrChars, 14, "not a digit"},
		{"999999199001010011", ErrPlaceholder, 1, "region 999999"},
		{"000000199001010011", ErrPlaceholder, 1, "region 000000"},
		{"111111111111111111", ErrPlaceholder, 1, "repeats one digit"},
		{"110105194902301234", ErrBirthDate, 7, "1949-02-30 is not a calendar date"},
		{"110105189912311234", ErrBirthDate, 7, "before 1900"},
		{"110105209912311234", ErrBirthDate, 7, "in the future"},
		{"110105491331002", ErrBirthDate, 7, "not a calendar date"},
		{"110105194912310021", ErrChecksum, 18, "check character is 1, the first 17 digits give X"},
		{"510104198001011235", ErrChecksum, 18, "give 6"},
	}
	for _, c := range cases {
		_, err := ParseID(c.in)
		if !errors.Is(err, c.kind) {
			t.Errorf("ParseID(%q) = %v, want %v", c.in, err, c.kind)
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Pos != c.pos || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseID(%q) = %v (pos %d), want pos %d and %q", c.in, err, e.Pos, c.pos, c.msg)
		}
		if len(c.in) >= 15 && strings.Contains(err.Error(), c.in[:12]) {
			t.Errorf("error leaks the number: %v", err)
		}
	}
}

func TestCheckDigitUpgrade(t *testing.T) {
	for first17, want := range map[string]byte{
		"11010519491231002": 'X', "44052418800101001": '4', "51010419800101123": '6', "13050319670401001": '6',
	} {
		if got, err := CheckDigit(first17); err != nil || got != want {
			t.Errorf("CheckDigit(%s) = %c, %v; want %c", first17, got, err, want)
		}
	}
	if _, err := CheckDigit("1101051949123100"); !errors.Is(err, ErrLength) {
		t.Errorf("short: %v", err)
	}
	if _, err := CheckDigit("1101051949123100X"); !errors.Is(err, ErrChars) {
		t.Errorf("X inside: %v", err)
	}
	if got, err := Upgrade15("110105491231002"); err != nil || got != "11010519491231002X" {
		t.Errorf("Upgrade15 = %s, %v", got, err)
	}
	if _, err := Upgrade15("11010549123100X"); !errors.Is(err, ErrChars) {
		t.Errorf("Upgrade15 with X: %v", err)
	}
	if _, err := Upgrade15("11010519491231002X"); !errors.Is(err, ErrLength) {
		t.Errorf("Upgrade15 of 18: %v", err)
	}
}

func TestMakeIDRoundTrip(t *testing.T) {
	births := []string{"1900-01-01", "1949-12-31", "1980-02-29", "2000-02-29", "2015-07-08"}
	for _, region := range []string{"510104", "513423", "110105"} {
		for _, b := range births {
			for _, seq := range []int{0, 1, 2, 998, 999, 500} {
				for _, male := range []bool{true, false} {
					n, err := MakeID(region, date(b), seq, male)
					if err != nil {
						t.Fatalf("MakeID(%s,%s,%d,%v): %v", region, b, seq, male, err)
					}
					id, err := ParseID(n)
					if err != nil {
						t.Fatalf("ParseID(MakeID(%s,%s,%d,%v) = %s): %v", region, b, seq, male, n, err)
					}
					if id.Male != male || id.Region != region || !id.Birth.Equal(date(b)) || id.Upgraded {
						t.Errorf("round trip %s: %+v", n, id)
					}
				}
			}
		}
	}
	for _, bad := range []struct {
		region string
		birth  string
		seq    int
	}{{"51010", "1980-01-01", 1}, {"51010a", "1980-01-01", 1}, {"999999", "1980-01-01", 1}, {"510104", "1899-12-31", 1}, {"510104", "1980-01-01", 1000}, {"510104", "1980-01-01", -1}} {
		if _, err := MakeID(bad.region, date(bad.birth), bad.seq, true); err == nil {
			t.Errorf("MakeID(%+v) accepted", bad)
		}
	}
}

func TestAgeAt(t *testing.T) {
	id := ID{Birth: date("2000-02-29")}
	cases := []struct {
		at   string
		want int
	}{
		{"2000-02-29", 0}, {"1999-01-01", 0}, {"2001-02-28", 0}, {"2001-03-01", 1},
		{"2004-02-28", 3}, {"2004-02-29", 4}, {"2016-02-29", 16}, {"2060-03-01", 60},
	}
	for _, c := range cases {
		if got := AgeAt(id, date(c.at)); got != c.want {
			t.Errorf("AgeAt(2000-02-29, %s) = %d, want %d", c.at, got, c.want)
		}
	}
}

func TestDisabilityCert(t *testing.T) {
	c, err := ParseDisabilityCert("51010419800101123642")
	if err != nil || c.ID.Number != "510104198001011236" || c.Type != 4 || c.Grade != 2 || c.Suffix != "" {
		t.Fatalf("20 chars: %+v %v", c, err)
	}
	if DisabilityTypeName(c.Type) != "肢体" || DisabilityGradeName(c.Grade) != "二级" {
		t.Errorf("names %s %s", DisabilityTypeName(c.Type), DisabilityGradeName(c.Grade))
	}
	c, err = ParseDisabilityCert("11010519491231002x71b1")
	if err != nil || c.ID.Number != "11010519491231002X" || c.Type != 7 || c.Grade != 1 || c.Suffix != "B1" {
		t.Fatalf("22 chars: %+v %v", c, err)
	}
	if got := MakeDisabilityCert("510104198001011236", 6, 3); got != "51010419800101123663" {
		t.Errorf("MakeDisabilityCert = %s", got)
	}
	if c, err := ParseDisabilityCert(MakeDisabilityCert("510104198001011236", 1, 4)); err != nil || c.Type != 1 || c.Grade != 4 {
		t.Errorf("round trip: %+v %v", c, err)
	}
	bad := []struct {
		in   string
		kind error
		pos  int
	}{
		{"510104198001011236", ErrLength, 0},
		{"5101041980010112364", ErrLength, 0},
		{"51010419800101123682", ErrCertCode, 19},
		{"51010419800101123602", ErrCertCode, 19},
		{"51010419800101123645", ErrCertCode, 20},
		{"51010419800101123640", ErrCertCode, 20},
		{"51010419800101123542", ErrChecksum, 18},
		{"5101041980010112364-B1", ErrCertCode, 20},
		{"510104198001011236421-", ErrChars, 22},
	}
	for _, b := range bad {
		_, err := ParseDisabilityCert(b.in)
		var e *Error
		if !errors.Is(err, b.kind) || !errors.As(err, &e) || e.Pos != b.pos {
			t.Errorf("ParseDisabilityCert(%q) = %v, want %v at %d", b.in, err, b.kind, b.pos)
		}
	}
	for i, want := range []string{"", "视力", "听力", "言语", "肢体", "智力", "精神", "多重", ""} {
		if got := DisabilityTypeName(i); got != want {
			t.Errorf("DisabilityTypeName(%d) = %q", i, got)
		}
	}
	for i, want := range []string{"", "一级", "二级", "三级", "四级", ""} {
		if got := DisabilityGradeName(i); got != want {
			t.Errorf("DisabilityGradeName(%d) = %q", i, got)
		}
	}
}

func TestValidMobile(t *testing.T) {
	cases := []struct{ in, err string }{
		{"13812345678", ""},
		{"19912345678", ""},
		{"１３８ １２３４ ５６７８", ""},
		{"1381234567", "has 10 characters"},
		{"+8613812345678", "has 14 characters"},
		{"1381234567a", "character 11 is not a digit"},
		{"12812345678", "second digit 2"},
		{"28123456789", "starts with 2"},
		{"", "has 0 characters"},
	}
	for _, c := range cases {
		err := ValidMobile(c.in)
		if c.err == "" {
			if err != nil {
				t.Errorf("ValidMobile(%q) = %v", c.in, err)
			}
			continue
		}
		if !errors.Is(err, ErrMobile) || !strings.Contains(err.Error(), c.err) {
			t.Errorf("ValidMobile(%q) = %v, want %q", c.in, err, c.err)
		}
	}
}

func TestMask(t *testing.T) {
	cases := []struct{ got, want string }{
		{MaskID("51010419800101123X"), "5101**********123X"},
		{MaskID("5101041980010112３x"), "5101**********123X"},
		{MaskID("110105491231002"), "1101*******1002"},
		{MaskID("51010419800101123642"), "5101************3642"},
		{MaskID("12345678"), "********"},
		{MaskID(""), ""},
		{MaskPhone("13812345678"), "138****5678"},
		{MaskPhone("1381234"), "*******"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("mask = %q, want %q", c.got, c.want)
		}
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"11010519491231002X", "110105491231002", "１１０１０５１９４９１２３１００２ｘ", "999999199001010011", "", "x", "51010419800101123642"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(id.Number) != 18 {
			t.Fatalf("Number %q not 18 chars", id.Number)
		}
		if c, err := CheckDigit(id.Number[:17]); err != nil || c != id.Number[17] {
			t.Fatalf("bad check digit in %q", id.Number)
		}
		again, err := ParseID(id.Number)
		if err != nil {
			t.Fatalf("re-parse %q: %v", id.Number, err)
		}
		again.Upgraded = id.Upgraded
		if again != id {
			t.Fatalf("re-parse %+v != %+v", again, id)
		}
	})
}

func BenchmarkParseID(b *testing.B) {
	for _, c := range []struct{ name, in string }{
		{"ascii18", "11010519491231002X"},
		{"lowerx", "11010519491231002x"},
		{"fullwidth", "１１０１０５１９４９１２３１００２ｘ"},
		{"old15", "110105491231002"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := ParseID(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
