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

// mergedFS serves the embedded default rules plus extra files (name, content pairs).
func mergedFS(t testing.TB, extra ...string) fstest.MapFS {
	t.Helper()
	b, err := defaultFS.ReadFile(DefaultFile)
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{DefaultFile: &fstest.MapFile{Data: b}}
	for i := 0; i+1 < len(extra); i += 2 {
		fsys[extra[i]] = &fstest.MapFile{Data: []byte(extra[i+1])}
	}
	return fsys
}
