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

// BenchmarkUnmarshalEnvelope measures the consumers' side of the streaming hot path:
// decoding (and validating) an update of a 45-column person row with before and after
// images, as the encoder writes it. "fast" is UnmarshalEnvelope, "encoding_json" the
// previous implementation (json.Decoder with UseNumber, kept as the test oracle).
func BenchmarkUnmarshalEnvelope(b *testing.B) {
	doc, err := personEnvelope(5).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, doc, "fast", func(doc []byte) error { _, err := UnmarshalEnvelope(doc); return err })
	benchDecode(b, doc, "encoding_json", func(doc []byte) error { _, err := oracleUnmarshalEnvelope(doc); return err })

	// Canonical-topic envelopes: an update whose before and after are the entity's
	// golden, decoded as maps (UnmarshalEnvelope) and typed
	// (UnmarshalEntityEnvelope), each against encoding/json doing the same.
	docs, kinds := entityEnvelopeSeeds(b)
	for i := 1; i < len(docs); i += 2 {
		name, typed := entityChecks[kinds[i]].name, entityBench[kinds[i]]
		benchDecode(b, docs[i], name+"/map/fast", func(doc []byte) error { _, err := UnmarshalEnvelope(doc); return err })
		benchDecode(b, docs[i], name+"/map/encoding_json", func(doc []byte) error { _, err := oracleUnmarshalEnvelope(doc); return err })
		benchDecode(b, docs[i], name+"/typed/fast", typed.fast)
		benchDecode(b, docs[i], name+"/typed/encoding_json", typed.oracle)
	}
}

// entityBench holds, per entity type in Entities() order, the typed envelope decode
// and its encoding/json equivalent.
var entityBench = []struct{ fast, oracle func([]byte) error }{
	typedBench[Household](), typedBench[Person](), typedBench[MonitoringEpisode](),
	typedBench[AssistanceMeasure](), typedBench[DepartmentFact](), typedBench[Warning](),
	typedBench[QualityIssue](), typedBench[Discrepancy](),
}

func typedBench[T CanonicalEntity]() struct{ fast, oracle func([]byte) error } {
	return struct{ fast, oracle func([]byte) error }{
		fast: func(doc []byte) error { _, err := UnmarshalEntityEnvelope[T](doc); return err },
		oracle: func(doc []byte) error {
			var e EntityEnvelope[T]
			if err := oracleDecode(doc, &e); err != nil {
				return err
			}
			return e.Validate()
		},
	}
}

// BenchmarkDecodeObject measures DecodeObject on the household golden (a canonical
// entity document read as a map) against encoding/json with UseNumber.
func BenchmarkDecodeObject(b *testing.B) {
	doc, err := os.ReadFile(goldenPath("household", 1))
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, doc, "fast", func(doc []byte) error { _, err := DecodeObject(doc); return err })
	benchDecode(b, doc, "encoding_json", func(doc []byte) error { var m map[string]any; return oracleDecode(doc, &m) })
}

// benchDecode runs decode on doc as the sub-benchmark name.
func benchDecode(b *testing.B, doc []byte, name string, decode func([]byte) error) {
	b.Run(name, func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			if err := decode(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
