package schemas

import (
	"encoding/json"
	"os"
	"testing"
)

func BenchmarkDeterministicID(b *testing.B) {
	for b.Loop() {
		DeterministicID("yibao.oop_12m", "person", "513423198503120027", "202405")
	}
}

// BenchmarkValidateHousehold measures Schema.Validate (schema parsed once) on the household golden, the
// largest entity, to judge whether a consumer can validate every message.
func BenchmarkValidateHousehold(b *testing.B) {
	schema, err := SchemaFile("household", 1)
	if err != nil {
		b.Fatal(err)
	}
	doc, err := os.ReadFile(goldenPath("household", 1))
	if err != nil {
		b.Fatal(err)
	}
	s, err := ParseSchema(schema)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if p := s.Validate(doc); len(p) != 0 {
			b.Fatal(p)
		}
	}
}

// BenchmarkDecodeHousehold is the baseline: decoding the same document into the Go
// type.
func BenchmarkDecodeHousehold(b *testing.B) {
	doc, err := os.ReadFile(goldenPath("household", 1))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		var h Household
		if err := json.Unmarshal(doc, &h); err != nil {
			b.Fatal(err)
		}
	}
}
