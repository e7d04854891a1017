package gen

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/shouwang/shouwang/internal/ident"
	"github.com/shouwang/shouwang/internal/testenv"
)

// TestMigrantIDsUnique stresses the ID slot scheme where it used to break: every
// person of 3,000 villages of one prefecture (成都, the largest) asks for an ID from
// another county of the prefecture, so all villages compete for the migrant slots of
// the same 21 origin counties. Every true ID must still be unique, and most persons
// must really get a migrant ID (otherwise the test proves nothing).
func TestMigrantIDsUnique(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Households = 60000
	cfg.HouseholdsPerVillage = 20
	cfg.PrefectureWeights = map[string]float64{"5101": 1e9}
	cfg.MigrantIDShare = 1
	ids := make(map[string]string, 4*cfg.Households)
	var persons, migrants int
	villages := map[string]bool{}
	collect(t, cfg, func(h *Household, _ []ManifestLine) {
		villages[h.VillageCode] = true
		for _, p := range h.Members {
			persons++
			if p.idRegion != h.VillageCode[:6] {
				migrants++
			}
			if prev, dup := ids[p.ID18]; dup {
				t.Errorf("ID %s of %s duplicates %s", ident.MaskID(p.ID18), p.PersonNo, prev)
			}
			ids[p.ID18] = p.PersonNo
		}
	})
	if len(villages) < 2900 {
		t.Fatalf("only %d villages populated; the test needs almost all of 成都's 3,047", len(villages))
	}
	if migrants < persons*9/10 {
		t.Errorf("only %d of %d persons got a migrant ID; the stress test needs most of them", migrants, persons)
	}
	t.Logf("%d persons in %d villages, %d with migrant IDs, all IDs unique", persons, len(villages), migrants)
}

// TestIDsUniqueInMariaDB generates 200,000 households (about 660,000 persons) into a
// private MariaDB with three times the default migrant share and asks the database
// for duplicate id_no values. The generator never injects Q-001, so a
// duplicate is allowed only when every person holding it carries an injected id_no
// defect in the manifest (the "999999" placeholder region of Q-008 can coincide).
func TestIDsUniqueInMariaDB(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 200k households")
	}
	cfg := DefaultConfig()
	cfg.Households = 200_000
	cfg.MigrantIDShare = 0.1
	m, mdb := testenv.MariaDBDatabase(t)
	dir := t.TempDir()
	ctx := context.Background()
	sum, err := Generate(ctx, cfg, Options{MySQLDSN: m.RootDSN(mdb), OutDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Households != int64(cfg.Households) {
		t.Fatalf("%d households generated, want %d", sum.Households, cfg.Households)
	}
	idDefect := map[string]bool{}
	f, err := os.Open(filepath.Join(dir, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l ManifestLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("manifest.jsonl: %v", err)
		}
		if l.Kind == "defect" && l.Subject == "person" && l.Field == "id_no" {
			idDefect[l.Key] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	db, err := OpenMySQL(ctx, m.RootDSN(mdb))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var persons int
	if err := db.QueryRow("SELECT COUNT(*) FROM person").Scan(&persons); err != nil {
		t.Fatal(err)
	}
	if persons < 3*cfg.Households {
		t.Fatalf("only %d persons for %d households", persons, cfg.Households)
	}
	rows, err := db.Query(`SELECT p.id_no, p.person_no FROM person p JOIN (
		SELECT id_no FROM person WHERE id_no IS NOT NULL AND id_no <> '' GROUP BY id_no HAVING COUNT(*) > 1
	) d ON d.id_no = p.id_no ORDER BY p.id_no, p.person_no`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	dups := 0
	for rows.Next() {
		var id, pno string
		if err := rows.Scan(&id, &pno); err != nil {
			t.Fatal(err)
		}
		dups++
		if !idDefect[pno] {
			t.Errorf("person %s shares ID %s with another person and has no id_no defect in the manifest", pno, ident.MaskID(id))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d persons, %d id_no defects in the manifest, %d rows with a duplicated id_no (all injected)", persons, len(idDefect), dups)
}
