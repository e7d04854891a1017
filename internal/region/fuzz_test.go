package region

import (
	"strings"
	"testing"
)

// FuzzLoadCSV: the loader never panics, and whatever it accepts is a consistent tree.
func FuzzLoadCSV(f *testing.F) {
	f.Add("code,name,level,parent_code\n510000000000,四川省,1,\n510100000000,成都市,2,510000000000\n")
	f.Add("code,name,level,parent_code\n440000000000,广东省,1,\n441900000000,东莞市,2,440000000000\n441900000000,东莞市,3,441900000000\n441900003000,东城街道,4,441900000000\n")
	f.Add("code,name,level,parent_code\n\"51\"\"0000000000\",x,1,\n")
	f.Add("parent_code,code\n")
	f.Fuzz(func(t *testing.T, s string) {
		tab, err := LoadCSV(strings.NewReader(s), "fuzz.csv")
		if err != nil {
			if tab != nil {
				t.Fatal("table returned with error")
			}
			return
		}
		for l := Province; l <= Village; l++ {
			for _, r := range tab.Regions(l) {
				if got, err := LevelOf(r.Code); err != nil || got != r.Level {
					t.Fatalf("region %+v: LevelOf %v %v", r, got, err)
				}
				p := tab.Path(r.Code)
				if len(p) == 0 || p[0].Level != Province || p[len(p)-1].Code != r.Code {
					t.Fatalf("path of %s: %+v", r.Code, p)
				}
				for _, a := range p {
					if !Contains(a.Code, r.Code) {
						t.Fatalf("%s not inside its ancestor %s", r.Code, a.Code)
					}
				}
			}
		}
	})
}

// FuzzLevelOf: LevelOf, Prefix, Rollup and Contains agree with each other.
func FuzzLevelOf(f *testing.F) {
	for _, s := range []string{"510104017001", "510000000000", "000000000000", "5101", "51010401700x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		l, err := LevelOf(code)
		if err != nil {
			return
		}
		for k := Province; k <= l; k++ {
			up := Rollup(code, k)
			if got, err := LevelOf(up); err != nil || got > k {
				t.Fatalf("Rollup(%s,%s)=%s has level %v %v", code, k, up, got, err)
			}
			if !Contains(up, code) || !Contains(Prefix(code, k), code) {
				t.Fatalf("%s not inside its roll-up %s", code, up)
			}
		}
	})
}

// FuzzLoadChanges: the change-list reader never panics and returns valid changes only.
func FuzzLoadChanges(f *testing.F) {
	f.Add("old_code,new_code,effective_date,kind,note\n510132000000,510118000000,2020-06-24,rename,x\n")
	f.Add("old_code,new_code,effective_date,kind\n\"5\n")
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := LoadChanges(strings.NewReader(s), "fuzz.csv")
		if err != nil {
			if cs != nil {
				t.Fatal("changes returned with error")
			}
			return
		}
		for _, c := range cs {
			if _, err := LevelOf(c.Old); err != nil || c.Old == c.New || c.Effective.IsZero() {
				t.Fatalf("accepted invalid change %+v", c)
			}
		}
	})
}
