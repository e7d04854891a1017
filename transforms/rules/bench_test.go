package rules

import (
	"testing"
)

// BenchmarkEvaluate evaluates every default rule on generated households (the
// ground-truth dataset, 4,000 households, mean about 3 members) mapped from
// MariaDB: one op is one household, so ns/op is the cost per household.
func BenchmarkEvaluate(b *testing.B) {
	cfg := groundTruthConfig()
	dsn, _ := generate(b, cfg)
	hcs := loadCanonical(b, dsn).contexts()
	e, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	members := 0
	for _, hc := range hcs {
		members += len(hc.members)
	}
	b.ReportAllocs()
	b.ResetTimer()
	findings := 0
	for i := 0; i < b.N; i++ {
		findings += len(e.Evaluate(hcs[i%len(hcs)], cfg.AsOf))
	}
	b.StopTimer()
	b.ReportMetric(float64(len(e.RuleIDs())), "rules")
	b.ReportMetric(float64(members)/float64(len(hcs)), "members/household")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/household")
}

// BenchmarkEvaluateFixture is the same on the clean fixture household (3 members)
// without a database; the context is rebuilt each time (as a worker does for a
// changed household).
func BenchmarkEvaluateFixture(b *testing.B) {
	e, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	h, ps, ms := cleanHousehold(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e.Evaluate(NewHouseholdContext(h, ps, ms), asOf)
	}
}

// BenchmarkLoadDefault compiles the default rule set.
func BenchmarkLoadDefault(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Default(); err != nil {
			b.Fatal(err)
		}
	}
}
