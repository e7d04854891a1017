package schemas

import (
	"strings"
	"testing"
)

func TestValidateDocument(t *testing.T) {
	const schema = `{"type":"object","additionalProperties":true,"required":["key","version"],
		"properties":{
			"key":{"type":"string","minLength":1},
			"version":{"type":"integer","minimum":1},
			"amount":{"type":"string","pattern":"^-?[0-9]+(\\.[0-9]+)?$"},
			"day":{"type":"string","format":"date"},
			"at":{"type":"string","format":"date-time"},
			"status":{"type":"string","enum":["open","closed"]},
			"category":{"type":"integer","enum":[1,2,3]},
			"risks":{"type":"array","maxItems":2,"items":{"type":"string","enum":["因病","因残"]}},
			"flag":{"type":"boolean"},
			"values":{"type":"object","additionalProperties":{"type":"string"}},
			"source":{"type":"object","required":["system"],"properties":{"system":{"type":"string","minLength":1}}}
		}}`
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"valid", `{"key":"k","version":3,"amount":"12.50","day":"2024-05-17","at":"2024-06-01T08:00:01.5+08:00",
			"status":"open","category":2,"risks":["因病"],"flag":false,"values":{"a":"b"},"source":{"system":"s"},"unknown":1}`, nil},
		{"required missing", `{"key":"k"}`, []string{"$.version: required property missing"}},
		{"wrong type", `{"key":"k","version":"3"}`, []string{"$.version: type string, want [integer]"}},
		{"fraction is not an integer", `{"key":"k","version":1.5}`, []string{"$.version: type number, want [integer]"}},
		{"minimum", `{"key":"k","version":0}`, []string{"$.version: minimum 1 violated by 0"}},
		{"minLength counts characters", `{"key":"","version":1}`, []string{"$.key: minLength 1 violated"}},
		{"pattern", `{"key":"k","version":1,"amount":"1,000"}`, []string{`$.amount: value "1,000" does not match pattern`}},
		{"date", `{"key":"k","version":1,"day":"2024-13-01"}`, []string{`$.day: value "2024-13-01" is not a date`}},
		{"date-time", `{"key":"k","version":1,"at":"2024-06-01 08:00"}`, []string{`$.at: value "2024-06-01 08:00" is not an RFC 3339 date-time`}},
		{"enum", `{"key":"k","version":1,"status":"lost"}`, []string{`$.status: value lost is not one of [open closed]`}},
		{"numeric enum", `{"key":"k","version":1,"category":4}`, []string{`$.category: value 4 is not one of`}},
		{"array items and size", `{"key":"k","version":1,"risks":["因病","因学","因残"]}`, []string{"$.risks: maxItems 2 violated by 3", `$.risks[1]: value 因学 is not one of`}},
		{"map values", `{"key":"k","version":1,"values":{"a":1}}`, []string{"$.values.a: type number, want [string]"}},
		{"nested required", `{"key":"k","version":1,"source":{}}`, []string{"$.source.system: required property missing"}},
		{"not an object", `[]`, []string{"$: type array, want [object]"}},
		{"bad json", `{`, []string{"$: document: decode JSON"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ValidateDocument([]byte(schema), []byte(tc.doc))
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %d problems like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestValidateDocumentRefusesUnknownKeywords(t *testing.T) {
	got := ValidateDocument([]byte(`{"type":"object","oneOf":[{"required":["a"]}]}`), []byte(`{}`))
	if len(got) != 1 || !strings.Contains(got[0], "schema keyword oneOf is not supported") {
		t.Fatalf("got %q, want the unsupported keyword reported", got)
	}
}

// TestEntitySchemasRejectBadEntities checks that the published entity schemas carry
// the constraints consumers rely on, by breaking a golden document.
func TestEntitySchemasRejectBadEntities(t *testing.T) {
	cases := []struct {
		entity, from, to, want string
	}{
		{"household", `"region_code": "513423101200"`, `"region_code": "5134231012"`, "$.region_code: value"},
		{"household", `"annual_income": "31260.00"`, `"annual_income": 31260.00`, "$.annual_income: type number, want [string]"},
		{"household", `"version": 8589939300,`, ``, "$.version: required property missing"},
		{"monitoring_episode", `"status": "eliminated"`, `"status": "done"`, "$.status: value done is not one of"},
		{"quality_issue", `"rule_id": "Q-022"`, `"rule_id": "Q22"`, "$.rule_id:"},
		{"warning", `"period": "202405"`, `"period": "202413"`, "$.period:"},
	}
	for _, tc := range cases {
		t.Run(tc.entity+" "+tc.want, func(t *testing.T) {
			golden := string(mustRead(t, goldenPath(tc.entity, 1)))
			if !strings.Contains(golden, tc.from) {
				t.Fatalf("golden %s lacks %s", tc.entity, tc.from)
			}
			doc := strings.Replace(golden, tc.from, tc.to, 1)
			got := ValidateDocument(mustSchema(t, tc.entity, 1), []byte(doc))
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("got %q, want one problem containing %q", got, tc.want)
			}
		})
	}
}
