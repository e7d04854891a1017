package rules

import "testing"

func TestSmokeDefault(t *testing.T) {
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	t.Log(e.Version(), len(e.RuleIDs()))
}
