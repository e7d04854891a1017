package region

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDefaultCounts(t *testing.T) {
	tab, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	want := map[Level]int{Province: 1, City: 21, County: 183, Township: 3111, Village: 34412}
	total := 0
	for l, n := range want {
		if got := len(tab.Regions(l)); got != n {
			t.Errorf("level %s: %d regions, want %d", l, got, n)
		}
		total += n
	}
	if tab.Len() != total || total != 37728 {
		t.Errorf("Len = %d, want %d (37728)", tab.Len(), total)
	}
	if len(tab.Villages()) != 34412 || len(tab.Counties()) != 183 {
		t.Errorf("Villages/Counties mismatch")
	}
	vs := tab.Villages()
	for i := 1; i < len(vs); i++ {
		if vs[i-1].Code >= vs[i].Code {
			t.Fatalf("Villages not sorted at %d: %s >= %s", i, vs[i-1].Code, vs[i].Code)
		}
	}
	again, _ := Default()
	if again != tab {
		t.Error("Default must parse once and return the cached table")
	}
}

func TestTableLookups(t *testing.T) {
	tab, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	r, ok := tab.Get("510104017001")
	if !ok || r.Name != "水井坊社区居委会" || r.Level != Village || r.Parent != "510104017000" {
		t.Fatalf("Get village = %+v, %v", r, ok)
	}
	if _, ok := tab.Get("510104017999"); ok {
		t.Error("Get of unknown code must fail")
	}
	path := tab.Path("510104017001")
	var names []string
	for _, p := range path {
		names = append(names, p.Name)
	}
	if len(path) != 5 || path[0].Code != "510000000000" || path[1].Name != "成都市" || path[2].Name != "锦江区" || path[4].Code != "510104017001" {
		t.Errorf("Path = %v", names)
	}
	if a, ok := tab.Ancestor("510104017001", County); !ok || a.Name != "锦江区" {
		t.Errorf("Ancestor county = %+v %v", a, ok)
	}
	if a, ok := tab.Ancestor("510104017001", Village); !ok || a.Code != "510104017001" {
		t.Errorf("Ancestor self = %+v %v", a, ok)
	}
	if _, ok := tab.Ancestor("510104000000", Village); ok {
		t.Error("Ancestor below own level must fail")
	}
	ch := tab.Children("510100000000")
	if len(ch) != 20 || ch[0].Name != "锦江区" {
		t.Errorf("Children(成都市) = %d, first %+v", len(ch), ch)
	}
	if got := len(tab.Children("510000000000")); got != 21 {
		t.Errorf("Children(四川省) = %d, want 21", got)
	}
	// Every county's villages roll up to it by prefix, and Children agree with parent_code.
	for _, c := range tab.Counties() {
		for _, tw := range tab.Children(c.Code) {
			if tw.Level != Township || !Contains(c.Code, tw.Code) || Rollup(tw.Code, County) != c.Code {
				t.Fatalf("township %+v under %+v", tw, c)
			}
		}
	}
}

func TestPrefixRollupLevelOf(t *testing.T) {
	cases := []struct {
		code    string
		level   Level
		prefix  string
		rollup  string
		levelOf Level
	}{
		{"510104017001", Province, "51", "510000000000", Village},
		{"510104017001", City, "5101", "510100000000", Village},
		{"510104017001", County, "510104", "510104000000", Village},
		{"510104017001", Township, "510104017", "510104017000", Village},
		{"510104017001", Village, "510104017001", "510104017001", Village},
		{"510104017000", County, "510104", "510104000000", Township},
		{"510104000000", City, "5101", "510100000000", County},
		{"510100000000", Province, "51", "510000000000", City},
		{"510000000000", Province, "51", "510000000000", Province},
		{"110101001001", City, "1101", "110100000000", Village},
	}
	for _, c := range cases {
		if got := Prefix(c.code, c.level); got != c.prefix {
			t.Errorf("Prefix(%s,%s) = %q, want %q", c.code, c.level, got, c.prefix)
		}
		if got := Rollup(c.code, c.level); got != c.rollup {
			t.Errorf("Rollup(%s,%s) = %q, want %q", c.code, c.level, got, c.rollup)
		}
		if got, err := LevelOf(c.code); err != nil || got != c.levelOf {
			t.Errorf("LevelOf(%s) = %v, %v; want %s", c.code, got, err, c.levelOf)
		}
	}
	for _, bad := range []string{"", "51010401700", "5101040170011", "51010401700a", "000000000000", "51010401７001"} {
		if _, err := LevelOf(bad); err == nil {
			t.Errorf("LevelOf(%q) accepted", bad)
		}
		if Rollup(bad, County) != "" {
			t.Errorf("Rollup(%q) must be empty", bad)
		}
	}
	if Prefix("510104017001", 0) != "" || Prefix("510104017001", 6) != "" || Rollup("510104017001", 9) != "" {
		t.Error("invalid level must give empty string")
	}
}

func TestContains(t *testing.T) {
	cases := []struct {
		scope, code string
		want        bool
	}{
		{"510000000000", "510104017001", true},
		{"510100000000", "510104017001", true},
		{"510104000000", "510104017001", true},
		{"510104017000", "510104017001", true},
		{"510104017001", "510104017001", true},
		{"510105000000", "510104017001", false},
		{"520000000000", "510104017001", false},
		{"5101", "510104017001", true},
		{"510104017", "510104017001", true},
		{"510105", "510104017001", false},
		{"510104017001", "510104017000", false}, // a village does not contain its township
		{"", "510104017001", false},
		{"000000000000", "000000000001", false},
		{"00", "000000000001", false},
		{"510000000000", "51010401700x", false},
		{"51x0", "510104017001", false},
	}
	for _, c := range cases {
		if got := Contains(c.scope, c.code); got != c.want {
			t.Errorf("Contains(%q,%q) = %v, want %v", c.scope, c.code, got, c.want)
		}
	}
}

// The whole country loads, including the NBS quirks (cities without counties and 金门县
// repeated one level lower with themselves as parent).
func TestNationalTable(t *testing.T) {
	if testing.Short() {
		t.Skip("national table: 665k rows")
	}
	tab, err := LoadFile("testdata/china-divisions-2023.csv.gz")
	if err != nil {
		t.Fatal(err)
	}
	// 665,276 rows, of which 5 are stand-in rows repeating a code one level lower.
	want := map[Level]int{Province: 31, City: 342, County: 2975, Township: 41351, Village: 620572}
	for l, n := range want {
		if got := len(tab.Regions(l)); got != n {
			t.Errorf("level %s: %d, want %d", l, got, n)
		}
	}
	if tab.Len() != 665271 {
		t.Errorf("Len = %d, want 665271", tab.Len())
	}
	// 东莞: township directly under the city; the city stands in for the county level.
	r, ok := tab.Get("441900003001")
	if !ok {
		t.Fatal("东莞 village missing")
	}
	if a, ok := tab.Ancestor(r.Code, County); !ok || a.Code != "441900000000" || a.Level != City {
		t.Errorf("Ancestor(东莞 village, County) = %+v %v", a, ok)
	}
	if p := tab.Path(r.Code); len(p) != 4 || p[1].Name != "东莞市" {
		t.Errorf("Path(东莞 village) = %+v", p)
	}
	if a, ok := tab.Ancestor("350527000000", Village); !ok || a.Name != "金门县" {
		t.Errorf("金门县 stands in for its own villages: %+v %v", a, ok)
	}
	if r, _ := tab.Get("110100000000"); r.Name != "市辖区" || r.Level != City {
		t.Errorf("Beijing 市辖区 = %+v", r)
	}
}

func loadString(s string) (*Table, error) { return LoadCSV(strings.NewReader(s), "bad.csv") }

func TestLoadErrors(t *testing.T) {
	const head = "code,name,level,parent_code\n510000000000,四川省,1,\n510100000000,成都市,2,510000000000\n"
	cases := []struct {
		name, body string
		want       []string // substrings that must all appear
	}{
		{"missing parent", head + "510104000000,锦江区,3,510100000000\n510105001000,某街道,4,510105000000\n",
			[]string{"bad.csv:5", "parent 510105000000 not found"}},
		{"duplicate", head + "510104000000,锦江区,3,510100000000\n510104000000,锦江区,3,510100000000\n",
			[]string{"bad.csv:5", "duplicate of line 4"}},
		{"malformed code", head + "51010400000,锦江区,3,510100000000\n",
			[]string{"bad.csv:4", "has 11 characters"}},
		{"letters in code", head + "5101040000O0,锦江区,3,510100000000\n",
			[]string{"bad.csv:4", "want a digit"}},
		{"wrong level", head + "510104000000,锦江区,4,510100000000\n",
			[]string{"bad.csv:4", "level column says 4"}},
		{"bad level value", head + "510104000000,锦江区,x,510100000000\n",
			[]string{"bad.csv:4", "not 1–5"}},
		{"parent at wrong level", head + "510104000000,锦江区,3,510100000000\n510104017001,村,5,510104000000\n",
			[]string{"bad.csv:5", "is a county, want a township"}},
		{"parent not a prefix", head + "510200000000,某市,2,510000000000\n510104000000,锦江区,3,510200000000\n",
			[]string{"bad.csv:5", "does not start with its parent's digits 5102"}},
		{"province with parent", "code,name,level,parent_code\n510000000000,四川省,1,520000000000\n",
			[]string{"bad.csv:2", "has no parent"}},
		{"missing header column", "code,name,level\n510000000000,四川省,1\n",
			[]string{"bad.csv:1", `lacks column "parent_code"`}},
		{"empty", "", []string{"empty file"}},
		{"header only", "code,name,level,parent_code\n", []string{"no rows"}},
		{"stand-in without unit", head + "441900000000,东莞市,3,441900000000\n",
			[]string{"bad.csv:4", "has no row of its own"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab, err := loadString(c.body)
			if err == nil || tab != nil {
				t.Fatalf("loaded %v, want error", tab)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadErrorsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("code,name,level,parent_code\n")
	for i := 0; i < 50; i++ {
		b.WriteString("x,bad,1,\n")
	}
	_, err := loadString(b.String())
	if err == nil {
		t.Fatal("want error")
	}
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) || len(j.Unwrap()) != maxProblems+1 {
		t.Fatalf("want %d problems plus a summary, got %v", maxProblems, err)
	}
	if !strings.Contains(err.Error(), "30 more problems") || !strings.Contains(err.Error(), "bad.csv:2:") {
		t.Errorf("summary missing: %v", err)
	}
}

func TestLoadColumnOrderAndBOM(t *testing.T) {
	tab, err := loadString("\ufeffparent_code,level,code,name,extra\n,1,510000000000,四川省,x\n510000000000,2,510100000000,成都市,y\n")
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := tab.Get("510100000000"); !ok || r.Name != "成都市" || r.Parent != "510000000000" {
		t.Errorf("got %+v", r)
	}
}

func TestLoadFileErrors(t *testing.T) {
	if _, err := LoadFile("testdata/nope.csv"); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := LoadFile("testdata/changes-example.csv"); err == nil || !strings.Contains(err.Error(), "lacks column") {
		t.Errorf("wrong file: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/x.csv.gz", []byte("not gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(dir + "/x.csv.gz"); err == nil || !strings.Contains(err.Error(), "not a gzip") {
		t.Errorf("bad gzip: %v", err)
	}
}

func date(s string) time.Time {
	d, err := time.Parse(DateLayout, s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestMapper(t *testing.T) {
	tab, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/changes-example.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	changes, err := LoadChanges(f, "changes-example.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 6 || changes[0].Kind != KindRename || !changes[0].Effective.Equal(date("2015-12-03")) {
		t.Fatalf("changes = %+v", changes)
	}
	m, err := NewMapper(tab, changes)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		code, at, want string
		ok             bool
	}{
		{"510132000000", "2020-06-23", "510132000000", true},
		{"510132000000", "2020-06-24", "510118000000", true},
		{"510104017901", "2018-12-31", "510104017901", true},
		{"510104017901", "2019-01-01", "510104017801", true},
		{"510104017901", "2021-07-01", "510104017001", true}, // chain old→mid→new
		{"510104017801", "2025-01-01", "510104017001", true},
		{"510104017902", "2023-01-01", "510104017002", true},
		{"510104017001", "2023-01-01", "510104017001", true}, // unchanged code
		{"519999999999", "2023-01-01", "519999999999", false},
	}
	for _, c := range cases {
		got, ok := m.Map(c.code, date(c.at))
		if got != c.want || ok != c.ok {
			t.Errorf("Map(%s, %s) = %s,%v; want %s,%v", c.code, c.at, got, ok, c.want, c.ok)
		}
	}
}

func TestMapperErrors(t *testing.T) {
	tab, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	ch := func(old, nw, d string) Change { return Change{Old: old, New: nw, Effective: date(d), Kind: KindMerge} }
	cases := []struct {
		name    string
		changes []Change
		want    string
	}{
		{"cycle", []Change{ch("510104017901", "510104017902", "2020-01-01"), ch("510104017902", "510104017901", "2021-01-01"),
			ch("510104017902", "510104017001", "2019-01-01")}, "cycle 510104017901→510104017902→510104017901"},
		{"unknown new", []Change{ch("510104017901", "510104017999", "2020-01-01")}, "510104017999 (2020-01-01): new code is not in table"},
		{"same day", []Change{ch("510104017901", "510104017001", "2020-01-01"), ch("510104017901", "510104017002", "2020-01-01")}, "two changes effective 2020-01-01"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := NewMapper(tab, c.changes)
			if err == nil || m != nil {
				t.Fatal("want error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q lacks %q", err, c.want)
			}
		})
	}
}

func TestLoadChangesErrors(t *testing.T) {
	body := "old_code,new_code,effective_date,kind,note\n" +
		"510132000000,510118000000,2020-06-24,rename,ok\n" +
		"51013200000,510118000000,2020-06-24,rename,short\n" +
		"510132000000,510118000000,2020/06/24,rename,bad date\n" +
		"510132000000,510118000000,2020-06-24,swap,bad kind\n" +
		"510132000000,510132000000,2020-06-24,rename,same\n"
	_, err := LoadChanges(strings.NewReader(body), "ch.csv")
	if err == nil {
		t.Fatal("want error")
	}
	for _, w := range []string{"ch.csv:3: old_code", "ch.csv:4: effective_date", "ch.csv:5: kind \"swap\"", "ch.csv:6: old_code and new_code"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if _, err := LoadChanges(strings.NewReader("old,new\n"), "h.csv"); err == nil || !strings.Contains(err.Error(), "h.csv:1") {
		t.Errorf("bad header: %v", err)
	}
}

func BenchmarkDefaultParse(b *testing.B) {
	b.SetBytes(int64(len(sichuanCSV)))
	for b.Loop() {
		if _, err := LoadCSV(strings.NewReader(string(sichuanCSV)), "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkContains(b *testing.B) {
	for b.Loop() {
		Contains("510104000000", "510104017001")
	}
}
