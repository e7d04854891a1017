package monitor

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/shouwang/shouwang/schemas"
	"github.com/shouwang/shouwang/transforms/mapping"
)

// TestApplyRowsEqualsApply maps every raw change of the generated province (and, for
// each, a copy with one read column removed, one with a read value spoiled, one with
// the value as a number, an object and null, and one turned into a delete) once
// decoded whole through Apply and once decoded into cells through ApplyRows, as the
// transform pipeline does: outputs and errors must be the same.
func TestApplyRowsEqualsApply(t *testing.T) {
	d := generated(t)
	set, err := mapping.Load(mapping.Embedded, &mapping.Env{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	rows := new(schemas.Rows)
	var mapped, failed int
	check := func(mp *mapping.Mapping, b []byte) {
		t.Helper()
		whole, werr := schemas.UnmarshalEnvelope(b)
		rows.Index = mp.Index()
		cells, cerr := schemas.UnmarshalEnvelopeCells(b, rows)
		if (werr == nil) != (cerr == nil) {
			t.Fatalf("decode %s: whole %v, cells %v", b, werr, cerr)
		}
		if werr != nil {
			return
		}
		wo, werr := mp.Apply(whole, 9, "p", 1)
		co, cerr := mp.ApplyRows(cells, rows, 9, "p", 1)
		if !reflect.DeepEqual(wo, co) || !reflect.DeepEqual(werr, cerr) {
			t.Fatalf("%s %s:\nApply     %v / %v\nApplyRows %v / %v", mp.Name, b, wo, werr, co, cerr)
		}
		// The pipeline's path: the document as sorted Fields, encoded without a map,
		// gives the bytes of the map document.
		fo, ferr := mp.ApplyFields(cells, rows, 9, "p", 1, nil)
		if !reflect.DeepEqual(ferr, cerr) {
			t.Fatalf("%s %s: ApplyFields error %v, ApplyRows error %v", mp.Name, b, ferr, cerr)
		}
		if werr == nil {
			ce := schemas.Envelope{V: 1, Op: wo.Op, Source: cells.Source, Key: map[string]any{"key": wo.Key}, Schema: schemas.SchemaRef{Name: "x", Version: 1}, TsMs: 1}
			bare := ce
			if wo.Op == schemas.OpDelete {
				ce.Before = wo.Doc
			} else {
				ce.After = wo.Doc
			}
			want, err := ce.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := schemas.MarshalEnvelopeFields(&bare, fo.Fields)
			if err != nil || !bytes.Equal(got, want) || fo.Key != wo.Key || fo.Op != wo.Op {
				t.Fatalf("%s %s: ApplyFields encodes as\n%s (%v, key %s)\nthe map document as\n%s (key %s)", mp.Name, b, got, err, fo.Key, want, wo.Key)
			}
		}
		if werr != nil {
			failed++
		} else {
			mapped++
		}
	}
	for _, m := range d.raw {
		src, tbl, _ := strings.Cut(strings.TrimPrefix(m.Topic, prefix+".raw."), ".")
		mp, ok := set.For(src, tbl)
		if !ok {
			t.Fatalf("no mapping for %s", m.Topic)
		}
		check(mp, m.Value)
		env, err := schemas.UnmarshalEnvelope(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for c := range mp.Index() {
			if _, ok := env.After[c]; ok {
				names = append(names, c)
			}
		}
		if len(names) == 0 {
			continue
		}
		c := names[rng.IntN(len(names))]
		for _, variant := range []func(e *schemas.Envelope){
			func(e *schemas.Envelope) { delete(e.After, c) },
			func(e *schemas.Envelope) { e.After[c] = " 无效值 x " },
			func(e *schemas.Envelope) { e.After[c] = 12.5 },
			func(e *schemas.Envelope) { e.After[c] = map[string]any{"a": []any{1, "x"}} },
			func(e *schemas.Envelope) { e.After[c] = nil },
			func(e *schemas.Envelope) { e.After[c] = true },
			func(e *schemas.Envelope) { e.Key = nil },
			func(e *schemas.Envelope) { e.Op, e.Before, e.After = schemas.OpDelete, e.After, nil },
		} {
			e, _ := schemas.UnmarshalEnvelope(m.Value)
			variant(e)
			b, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			check(mp, b)
		}
	}
	if mapped == 0 || failed == 0 {
		t.Fatalf("mapped %d, failed %d: the comparison needs both", mapped, failed)
	}
	t.Logf("%d changes mapped alike, %d refused alike", mapped, failed)
}

// BenchmarkDecodeRaw decodes the stage benchmark's raw changes whole (maps) and into
// the cells of the columns their mapping reads (what the transform pipeline does).
func BenchmarkDecodeRaw(b *testing.B) {
	benchDataset(b)
	set, err := mapping.Load(mapping.Embedded, &mapping.Env{})
	if err != nil {
		b.Fatal(err)
	}
	index := make([]map[string]int, len(benchData.raw))
	for i, m := range benchData.raw {
		src, tbl, _ := strings.Cut(strings.TrimPrefix(m.Topic, prefix+".raw."), ".")
		mp, _ := set.For(src, tbl)
		index[i] = mp.Index()
	}
	per := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(benchData.raw))/float64(b.N), "ns/event")
	}
	b.Run("maps", func(b *testing.B) {
		for range b.N {
			for _, m := range benchData.raw {
				if _, err := schemas.UnmarshalEnvelope(m.Value); err != nil {
					b.Fatal(err)
				}
			}
		}
		per(b)
	})
	b.Run("cells", func(b *testing.B) {
		rows := new(schemas.Rows)
		for range b.N {
			for i, m := range benchData.raw {
				rows.Index = index[i]
				if _, err := schemas.UnmarshalEnvelopeCells(m.Value, rows); err != nil {
					b.Fatal(err)
				}
			}
		}
		per(b)
	})
}
