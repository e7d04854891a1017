package warnings

import (
	"testing"
	"testing/fstest"
)

func TestDefaultLoads(t *testing.T) {
	r, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.WarningRules()) < 9 || len(r.ComparisonRules()) < 9 || r.DueDays() != 15 {
		t.Errorf("default: %v %v %d", r.WarningRules(), r.ComparisonRules(), r.DueDays())
	}
}

func loadText(t *testing.T, files map[string]string, names ...string) (*Rules, error) {
	t.Helper()
	fsys := fstest.MapFS{}
	for n, b := range files {
		fsys[n] = &fstest.MapFile{Data: []byte(b)}
	}
	return Load(fsys, names...)
}
