package schemas

import (
	"fmt"
	"strings"
	"testing"
)

// TestCheckCompatibleCases proves the checker both passes harmless changes and
// catches each kind of breaking change, with the JSON path of the change.
func TestCheckCompatibleCases(t *testing.T) {
	const base = `{"type":"object","additionalProperties":true,
		"required":["key"],
		"properties":{
			"key":{"type":"string","minLength":1},
			"status":{"type":"string","enum":["open","closed"]},
			"count":{"type":"integer","minimum":0,"maximum":10},
			"day":{"type":"string","format":"date"},
			"code":{"type":"string","pattern":"^[0-9]{12}$"},
			"tags":{"type":"array","items":{"type":"string","enum":["a","b"]},"maxItems":5},
			"source":{"type":"object","properties":{"system":{"type":"string"}}},
			"values":{"type":"object","additionalProperties":{"type":"string"}},
			"free":{"type":"string"}
		}}`
	cases := []struct {
		name string
		edit func(string) string
		want []string // substrings, one per expected problem; nil = compatible
	}{
		{"identical", func(s string) string { return s }, nil},
		{"optional property added", func(s string) string {
			return strings.Replace(s, `"free":{"type":"string"}`, `"free":{"type":"string"},"extra":{"type":"integer"}`, 1)
		}, nil},
		{"enum value added", func(s string) string {
			return strings.Replace(s, `["open","closed"]`, `["open","closed","archived"]`, 1)
		}, nil},
		{"description edited", func(s string) string {
			return strings.Replace(s, `"free":{"type":"string"}`, `"free":{"type":"string","description":"now documented"}`, 1)
		}, nil},
		{"bounds widened and format dropped", func(s string) string {
			s = strings.Replace(s, `"minimum":0,"maximum":10`, `"minimum":-1,"maximum":20`, 1)
			return strings.Replace(s, `,"format":"date"`, ``, 1)
		}, nil},
		{"property removed", func(s string) string {
			return strings.Replace(s, `,
			"free":{"type":"string"}`, ``, 1)
		}, []string{"$.free: property removed"}},
		{"nested property removed", func(s string) string {
			return strings.Replace(s, `{"system":{"type":"string"}}`, `{}`, 1)
		}, []string{"$.source.system: property removed"}},
		{"type changed", func(s string) string {
			return strings.Replace(s, `"count":{"type":"integer"`, `"count":{"type":"number"`, 1)
		}, []string{"$.count: type changed from [integer] to [number]"}},
		{"type made nullable", func(s string) string {
			return strings.Replace(s, `"free":{"type":"string"}`, `"free":{"type":["string","null"]}`, 1)
		}, []string{"$.free: type changed"}},
		{"item type changed", func(s string) string {
			return strings.Replace(s, `"items":{"type":"string","enum":["a","b"]}`, `"items":{"type":"integer"}`, 1)
		}, []string{"$.tags[]: type changed"}},
		{"map value type changed", func(s string) string {
			return strings.Replace(s, `"additionalProperties":{"type":"string"}`, `"additionalProperties":{"type":"integer"}`, 1)
		}, []string{"$.values.*: type changed"}},
		{"property became required", func(s string) string {
			return strings.Replace(s, `"required":["key"]`, `"required":["key","status"]`, 1)
		}, []string{"$.status: property became required"}},
		{"new required property", func(s string) string {
			s = strings.Replace(s, `"required":["key"]`, `"required":["key","extra"]`, 1)
			return strings.Replace(s, `"free":{"type":"string"}`, `"free":{"type":"string"},"extra":{"type":"string"}`, 1)
		}, []string{"$.extra: property became required"}},
		{"enum value removed", func(s string) string {
			return strings.Replace(s, `["open","closed"]`, `["open"]`, 1)
		}, []string{`$.status: enum value closed removed`}},
		{"item enum value removed", func(s string) string {
			return strings.Replace(s, `["a","b"]`, `["a"]`, 1)
		}, []string{`$.tags[]: enum value b removed`}},
		{"enum added to free text", func(s string) string {
			return strings.Replace(s, `"free":{"type":"string"}`, `"free":{"type":"string","enum":["x"]}`, 1)
		}, []string{"$.free: enum [x] added"}},
		{"format changed", func(s string) string {
			return strings.Replace(s, `"format":"date"`, `"format":"date-time"`, 1)
		}, []string{"$.day: format changed from date to date-time"}},
		{"format added", func(s string) string {
			return strings.Replace(s, `"free":{"type":"string"}`, `"free":{"type":"string","format":"email"}`, 1)
		}, []string{"$.free: format email added"}},
		{"pattern narrowed", func(s string) string {
			return strings.Replace(s, `^[0-9]{12}$`, `^51[0-9]{10}$`, 1)
		}, []string{"$.code: pattern changed"}},
		{"bounds tightened", func(s string) string {
			s = strings.Replace(s, `"minimum":0,"maximum":10`, `"minimum":1,"maximum":9`, 1)
			return strings.Replace(s, `"maxItems":5`, `"maxItems":3`, 1)
		}, []string{"$.count: minimum tightened from 0 to 1", "$.count: maximum tightened from 10 to 9", "$.tags: maxItems tightened from 5 to 3"}},
		{"bound added", func(s string) string {
			return strings.Replace(s, `"free":{"type":"string"}`, `"free":{"type":"string","maxLength":3}`, 1)
		}, []string{"$.free: maxLength 3 added"}},
		{"additionalProperties closed", func(s string) string {
			return strings.Replace(s, `{"type":"object","additionalProperties":true,`, `{"type":"object","additionalProperties":false,`, 1)
		}, []string{"$: additionalProperties closed"}},
		{"unknown keyword changed", func(s string) string {
			return strings.Replace(s, `"free":{"type":"string"}`, `"free":{"type":"string","oneOf":[{"minLength":1}]}`, 1)
		}, []string{"$.free: keyword oneOf changed"}},
		{"several breaks reported together", func(s string) string {
			s = strings.Replace(s, `["open","closed"]`, `["open"]`, 1)
			return strings.Replace(s, `"count":{"type":"integer"`, `"count":{"type":"string"`, 1)
		}, []string{"$.count: type changed", "$.status: enum value closed removed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckCompatible([]byte(base), []byte(tc.edit(base)))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems %q, want %d matching %q", len(got), got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestCheckCompatibleBadInput(t *testing.T) {
	got := CheckCompatible([]byte(`{"type":"object"}`), []byte(`{not json`))
	if len(got) != 1 || !strings.Contains(got[0], "new schema") {
		t.Fatalf("got %q, want one problem naming the new schema", got)
	}
}

// TestSchemaVersionsCompatible is the CI guard the issue asks for: for every schema
// name, versions must be 1..N without gaps and each version must be a compatible
// successor of the one before. Changing a published file in place is caught by
// TestGoTypesMatchLatestSchema and the golden tests instead.
func TestSchemaVersionsCompatible(t *testing.T) {
	names := SchemaNames()
	if len(names) == 0 {
		t.Fatal("no embedded schema files")
	}
	for _, name := range names {
		vs := SchemaVersions(name)
		for i, v := range vs {
			if v != i+1 {
				t.Fatalf("schema %s: versions %v, want 1..%d without gaps", name, vs, len(vs))
			}
		}
		for v := 2; v <= len(vs); v++ {
			old := mustSchema(t, name, v-1)
			cur := mustSchema(t, name, v)
			for _, p := range CheckCompatible(old, cur) {
				t.Errorf("schema %s v%d breaks readers of v%d: %s", name, v, v-1, p)
			}
		}
	}
}

func mustSchema(t *testing.T, name string, v int) []byte {
	t.Helper()
	b, err := SchemaFile(name, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSchemaFileUnknown(t *testing.T) {
	_, err := SchemaFile("household", 99)
	if err == nil || !strings.Contains(err.Error(), "household.v99.json") || !strings.Contains(err.Error(), "[1]") {
		t.Fatalf("err = %v, want it to name the file and the known versions", err)
	}
}

func ExampleCheckCompatible() {
	v1 := `{"type":"object","properties":{"status":{"type":"string","enum":["open","closed"]}}}`
	v2 := `{"type":"object","required":["status"],"properties":{"status":{"type":"string","enum":["open"]}}}`
	for _, p := range CheckCompatible([]byte(v1), []byte(v2)) {
		fmt.Println(p)
	}
	// Output:
	// $.status: enum value closed removed
	// $.status: property became required
}
