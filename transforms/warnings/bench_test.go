package warnings

import (
	"fmt"
	"testing"
	"time"

	"github.com/shouwang/shouwang/schemas"
)

// BenchmarkApplyFact applies 医保 settlements (the most frequent department fact, and
// the one with a windowed aggregate) to an engine holding a registry of 10,000 persons
// in 2,500 households with the default rules. Keys cycle so each person holds about 12
// settlements, later rounds re-deliver them with a new version and amount; ns/op is
// ns per fact, including the re-evaluation of the person's and household's rules.
func BenchmarkApplyFact(b *testing.B) {
	r, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	e := New(r, NewMemoryStore(), func() time.Time { return testNow })
	const persons = 10000
	ids := make([]string, persons)
	for i := 0; i < persons; i++ {
		hno := fmt.Sprintf("H%05d", i/4)
		if i%4 == 0 {
			typ, cat := "脱贫户", 0
			if i%40 == 0 {
				typ, cat = "监测户", 1
			}
			if _, err := e.ApplyHousehold(hno, 1, hh(hno, "510114001010", typ, cat), false); err != nil {
				b.Fatal(err)
			}
		}
		ids[i] = fmt.Sprintf("510114%08d%04d", 19600101+i%28, i)
		if _, err := e.ApplyPerson(fmt.Sprintf("P%05d", i), 1, person(fmt.Sprintf("P%05d", i), hno, ids[i]), false); err != nil {
			b.Fatal(err)
		}
	}
	const perPerson = 12
	facts := make([]*schemas.DepartmentFact, persons*perPerson)
	keys := make([]string, len(facts))
	for i := range facts {
		month := i / persons % 12
		facts[i] = settlement(ids[i%persons], fmt.Sprintf("2023-%02d-15", month+1), "住院", fmt.Sprintf("%d.50", 200+(i*37)%900))
		keys[i] = fmt.Sprintf("S%07d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	events := 0
	for i := 0; i < b.N; i++ {
		k := i % len(facts)
		f := *facts[k]
		if round := i / len(facts); round > 0 {
			f.Amount = schemas.Decimal(fmt.Sprintf("%d.00", 100+round%7*150))
		}
		ev, err := e.ApplyFact(keys[k], int64(i/len(facts)+1), &f, false)
		if err != nil {
			b.Fatal(err)
		}
		events += len(ev)
	}
	b.ReportMetric(float64(events)/float64(b.N), "events/fact")
}
