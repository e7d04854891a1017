package schemas

import (
	"regexp"
	"strings"
	"testing"
)

// topicPartRef is the specification TopicPart implements without regexp.
func topicPartRef(s string) string {
	return regexp.MustCompile(`[^a-z0-9_]+`).ReplaceAllString(strings.ToLower(s), "_")
}

func TestTopicPart(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"person", "person"},
		{"Person", "person"},
		{"public.accounts", "public_accounts"},
		{"a..b--c", "a_b_c"},
		{"医保 结算", "_"},
		{"yibao_结算2024", "yibao__2024"},
		{"", ""},
		{"ÄBC", "_bc"},
		{"\xff\xfeab", "_ab"},
	} {
		if got := TopicPart(c.in); got != c.want {
			t.Errorf("TopicPart(%q) = %q, want %q", c.in, got, c.want)
		}
		if ref := topicPartRef(c.in); ref != c.want {
			t.Errorf("reference(%q) = %q, want %q", c.in, ref, c.want)
		}
	}
	if got := RawTopic("sc", "National", "public.Person"); got != "sc.raw.national.public_person" {
		t.Errorf("RawTopic = %q", got)
	}
}

func FuzzTopicPart(f *testing.F) {
	for _, s := range []string{"person", "A.b", "医保", "\xff", "a  b", "İ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := TopicPart(s), topicPartRef(s); got != want {
			t.Fatalf("TopicPart(%q) = %q, reference %q", s, got, want)
		}
	})
}

func BenchmarkTopicPart(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = RawTopic("sc", "national", "person")
	}
}
