package mapping

import "testing"

// FuzzFastDate checks the fast path against the layouts it stands in for: whatever it
// accepts, the layouts accept with the same date.
func FuzzFastDate(f *testing.F) {
	for _, s := range []string{"2024-02-29", "2023-02-29", "2024-13-01", "2024-00-10", "2024-04-31", "2024-12-31 23:59:59",
		"2024-12-31 24:00:00", "2024-1-02", "0000-01-01", "9999-12-31", "2024-06-15T10:00:00", "2024-06-15 10:00:60", "20240615",
		"2024-06-15 10:00:00.123456", "2024-06-15 10:00:00.", "2024-06-15 10:00:00.1234567", "2024-06-15 10:00:00.12a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := fastDate(s)
		if !ok {
			return
		}
		want, err := parseDateLayouts(s)
		if err != nil || got != want {
			t.Fatalf("fastDate(%q) = %q, layouts give %q, %v", s, got, want, err)
		}
	})
}

func TestFastDateForms(t *testing.T) {
	for s, want := range map[string]bool{"2024-02-29": true, "2023-02-29": false, "2024-12-31 23:59:59": true, "2024-12-31 24:00:00": false,
		"2024-1-02": false, "20240615": false,
		"2024-06-15 10:00:00.5": true, "2024-06-15 10:00:00.": false} {
		if _, ok := fastDate(s); ok != want {
			t.Errorf("fastDate(%q) ok = %v, want %v", s, ok, want)
		}
	}
}

// FuzzFastYM checks the year-month fast path against the layouts it stands in for.
func FuzzFastYM(f *testing.F) {
	for _, s := range []string{"202406", "202413", "202400", "000001", "2024-06", "2024-6", "2024-13", "2024-06-15", "2024-02-30",
		"20240", "2024年6月", "2024/06", "2024-06-15 10:00:00", "abcdef", "2024-0a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := fastYM(s)
		if !ok {
			return
		}
		want, err := parseYMLayouts(s)
		if err != nil || got != want {
			t.Fatalf("fastYM(%q) = %q, layouts give %q, %v", s, got, want, err)
		}
	})
}
