package filedrop

import (
	"strings"
	"testing"
)

func TestNormalizeValue(t *testing.T) {
	for _, tc := range []struct {
		typ     ColumnType
		in, out string
		err     string
	}{
		{TypeText, "2657.0", "2657.0", ""},
		{"", "00123", "00123", ""},
		{TypeInteger, "2657", "2657", ""},
		{TypeInteger, "2657.0", "2657", ""},
		{TypeInteger, "2657.000", "2657", ""},
		{TypeInteger, "2,657", "2657", ""},
		{TypeInteger, "+2657", "2657", ""},
		{TypeInteger, "-0", "0", ""},
		{TypeInteger, "0012", "12", ""},
		{TypeInteger, "２６５７", "2657", ""},
		{TypeInteger, "2.657E3", "2657", ""},
		{TypeInteger, "2657.5", "", "not a whole number"},
		{TypeInteger, "2,65", "", "not a number"},
		{TypeInteger, "12-5", "", "not a number"},
		{TypeInteger, "e5", "", "not a number"},
		{TypeInteger, ".", "", "not a number"},
		{TypeInteger, "1e999", "", "not a number"},
		{TypeDecimal, "1,234.50", "1234.5", ""},
		{TypeDecimal, "2657.0", "2657", ""},
		{TypeDecimal, "-0.00", "0", ""},
		{TypeDecimal, ".5", "0.5", ""},
		{TypeDecimal, "5.", "5", ""},
		{TypeDecimal, "1.2345E+02", "123.45", ""},
		{TypeDecimal, "12345678901234567890.123", "12345678901234567890.123", ""},
		{TypeDecimal, "1.2万", "", "万元 are not part of the value"},
		{TypeDecimal, "1.2.3", "", "not a number"},
		{TypeDate, "2023-05-17", "2023-05-17", ""},
		{TypeDate, "2023-5-7", "2023-05-07", ""},
		{TypeDate, "2023/5/17", "2023-05-17", ""},
		{TypeDate, "2023.05.17", "2023-05-17", ""},
		{TypeDate, "2023年5月17日", "2023-05-17", ""},
		{TypeDate, "20230517", "2023-05-17", ""},
		{TypeDate, "2023-05-17 00:00:00", "2023-05-17", ""},
		{TypeDate, "2023/5/17 0:00", "2023-05-17", ""},
		{TypeDate, "45063", "2023-05-17", ""},
		{TypeDate, "45063.0", "2023-05-17", ""},
		{TypeDate, "2023-05-17 08:30", "", "time of day"},
		{TypeDate, "45063.5", "", "time of day"},
		{TypeDate, "2023-02-30", "", "not a date"},
		{TypeDate, "2023-13-01", "", "not a date"},
		{TypeDate, "17/05/2023", "", "not a date"},
		{TypeDate, "1700-01-01", "", "not a date"},
		{TypeDate, "0", "", "not a date"},
		{TypeDateTime, "2023-05-17 08:30", "2023-05-17 08:30:00", ""},
		{TypeDateTime, "2023/5/17 8:30:05.250", "2023-05-17 08:30:05", ""},
		{TypeDateTime, "2023-05-17", "2023-05-17 00:00:00", ""},
		{TypeDateTime, "45063.5", "2023-05-17 12:00:00", ""},
		{TypeDateTime, "2023-05-17 24:00", "", "not a date and time"},
		{TypeMonth, "202305", "202305", ""},
		{TypeMonth, "2023-05", "202305", ""},
		{TypeMonth, "2023/5", "202305", ""},
		{TypeMonth, "2023年5月", "202305", ""},
		{TypeMonth, "2023-05-17", "202305", ""},
		{TypeMonth, "202313", "", "not a month"},
		{TypeDate, "", "", ""},
	} {
		got, err := normalizeValue(tc.typ, tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s %q: got %q, %v; want error %q", tc.typ, tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.out):
			t.Errorf("%s %q: got %q, %v; want %q", tc.typ, tc.in, got, err, tc.out)
		}
	}
}

// Normalising is idempotent: the canonical form of a value is its own canonical form,
// so a state written by one delivery compares equal with itself in the next.
func FuzzNormalizeValue(f *testing.F) {
	for _, s := range []string{"2657.0", "1,234.50", "2023/5/17", "45063.25", "2023年5月", "-0", "1e5", "２６５７"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, typ := range ColumnTypes {
			out, err := normalizeValue(typ, strings.TrimSpace(v))
			if err != nil {
				continue
			}
			again, err := normalizeValue(typ, out)
			if err != nil || again != out {
				t.Fatalf("%s: %q → %q → %q, %v", typ, v, out, again, err)
			}
			if len(out) > len(v)+64 {
				t.Fatalf("%s: %q grew to %d bytes", typ, v, len(out))
			}
		}
	})
}
