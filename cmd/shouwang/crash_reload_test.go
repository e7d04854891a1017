package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/shouwang/shouwang/internal/gen"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// TestCrashSafetyReload kills the binlog capture worker at random moments of weekly
// national pushes (a spread push whose reload windows stay open for seconds, then a
// truncate push), with the reload collapse on: in the middle of windows, while their
// rows are compared, while the collapse is handed out. After a last run catches up,
// replaying the raw topics must give exactly the national tables, and the collapse
// must still have kept the storm of reloaded rows off the bus.
func TestCrashSafetyReload(t *testing.T) {
	crashSkip(t)
	rng := rand.New(rand.NewPCG(crashSeed(t), 0x7e10ad))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	m, db := testenv.NewMariaDBDatabase(t, testenv.MariaDBOptions{})
	cfg := gen.DefaultConfig()
	cfg.Households = 1500
	cfg.Push.ChangeRate = 0.03
	cfg.Push.NewHouseholdRate = 0.01
	cfg.Push.ChunkRows = 200
	cfg.Push.SpreadDuration = 10 * time.Second
	if _, err := gen.Generate(ctx, cfg, gen.Options{MySQLDSN: m.RootDSN(db)}); err != nil {
		t.Fatalf("generate the national database: %v", err)
	}
	dsn, err := mysql.ParseDSN(m.RootDSN(db))
	if err != nil {
		t.Fatal(err)
	}
	dsn.ParseTime = false // DATE/DATETIME as the text the connector also emits
	sqlDB, err := sql.Open("mysql", dsn.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	k := testenv.Kafka(t)

	dir := t.TempDir()
	bin := crashBinary(t, dir)
	stateDir := filepath.Join(dir, "state")
	tables := map[string]string{"household": "hh_no", "person": "person_no", "measure": "measure_id"}
	var b strings.Builder
	b.WriteString(crashKafkaYAML(k, stateDir))
	b.WriteString("sources:\n  - name: national\n    kind: mysqlbinlog\n    mysql:\n")
	fmt.Fprintf(&b, "      dsn: %q\n", m.ReplDSN(db))
	fmt.Fprintf(&b, "      flavor: %s\n      server_id: %d\n      gtid: true\n      tables:\n", m.Flavor(), m.ServerID()+100)
	for _, tb := range []string{"household", "person", "measure"} {
		fmt.Fprintf(&b, "        - %s.%s\n", db, tb)
	}
	b.WriteString("      snapshot:\n        mode: initial\n        chunk_size: 500\n      heartbeat_interval: 1s\n")
	fmt.Fprintf(&b, "      reload:\n        detect: push_log\n        push_log_table: %s.push_log\n", db)
	b.WriteString("        mass_delete:\n          max_table_share: 0.5\n          max_county_share: 1\n")
	cfgPath := filepath.Join(dir, "shouwang.yaml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath, logf, failWithLog := crashWorkerLog(t, dir, "reload")
	topicOf := func(table string) string { return schemas.RawTopic("crash", "national", table) }

	// replay applies the raw topics as a consumer would and compares with the tables;
	// it returns the differences and the number of c/u/d events per table.
	replay := func() ([]string, map[string]int) {
		var diffs []string
		changes := map[string]int{}
		for table, pk := range tables {
			evs, err := readCrashTopic(ctx, k.Brokers(), topicOf(table))
			if err != nil {
				// Not created yet by a worker that just started: not caught up.
				diffs = append(diffs, fmt.Sprintf("read %s: %v", topicOf(table), err))
				continue
			}
			got := map[string]crashRow{}
			for _, ev := range evs {
				e := ev.env
				switch e.Op {
				case schemas.OpCreate, schemas.OpUpdate, schemas.OpDelete:
					changes[table]++
				}
				switch e.Op {
				case schemas.OpTruncate:
					clear(got)
				case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
					got[crashText(e.Key[pk])] = crashRowOf(e.After)
				case schemas.OpDelete:
					delete(got, crashText(e.Key[pk]))
				}
			}
			want, err := dumpTable(ctx, sqlDB, table, pk)
			if err != nil {
				t.Fatal(err)
			}
			for key, w := range want {
				if g, ok := got[key]; !ok {
					diffs = append(diffs, fmt.Sprintf("%s %s: in the table, not on the bus", table, key))
				} else if !crashRowsEqual(w, g) {
					diffs = append(diffs, fmt.Sprintf("%s %s: table %v, bus %v", table, key, w, g))
				}
			}
			for key := range got {
				if _, ok := want[key]; !ok {
					diffs = append(diffs, fmt.Sprintf("%s %s: on the bus, not in the table", table, key))
				}
			}
		}
		return diffs, changes
	}
	catchUp := func(what string) map[string]int {
		t.Helper()
		p := startCrashProc(t, bin, cfgPath, logf)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if err := p.exitedEarly(); err != nil {
				failWithLog("%s: %v", what, err)
			}
			diffs, changes := replay()
			if len(diffs) == 0 {
				if err := p.kill(); err != nil {
					failWithLog("%s: %v", what, err)
				}
				return changes
			}
			if time.Now().After(deadline) {
				failWithLog("%s: the bus replay never matched the tables:\n%s", what, strings.Join(diffs[:min(len(diffs), 10)], "\n"))
			}
			time.Sleep(time.Second)
		}
	}
	before := catchUp("initial snapshot")

	kills := 0
	pushWithKills := func(week int, mode string) int {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			_, err := gen.Push(ctx, cfg, gen.PushOptions{Week: week, MySQLDSN: m.RootDSN(db), OutDir: dir, Mode: mode})
			done <- err
		}()
		for pushing := true; pushing; {
			p := startCrashProc(t, bin, cfgPath, logf)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("push week %d: %v", week, err)
				}
				pushing = false
				// Kill once more while the last windows close or their collapse is
				// handed out.
				time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
			case <-time.After(time.Duration(500+rng.IntN(2000)) * time.Millisecond):
			}
			if err := p.exitedEarly(); err != nil {
				failWithLog("week %d: %v", week, err)
			}
			if err := p.kill(); err != nil {
				failWithLog("week %d: %v", week, err)
			}
			kills++
		}
		raw, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("push-week-%d.manifest.jsonl", week)))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(raw), "\n")
	}
	trueChanges := pushWithKills(1, gen.PushSpread)
	trueChanges += pushWithKills(2, gen.PushTruncate)
	after := catchUp("after the pushes")
	t.Logf("%d kills during two pushes with %d true changes", kills, trueChanges)
	logText, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	opened := strings.Count(string(logText), "reload window opened")
	closed := strings.Count(string(logText), "reload window closed")
	t.Logf("worker log: %d reload windows opened, %d closed, %d state rollbacks, %d torn overlay records cut",
		opened, closed, strings.Count(string(logText), "rolling the reload state back"),
		strings.Count(string(logText), "cutting off a record torn"))
	if opened <= closed {
		t.Errorf("no kill landed inside an open reload window (%d opened, %d closed)", opened, closed)
	}

	var reloaded, emitted int
	for table := range tables {
		var n int
		if err := sqlDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		reloaded += 2 * n
		emitted += after[table] - before[table]
	}
	t.Logf("%d rows reloaded, %d changes on the bus", reloaded, emitted)
	// A kill before a collapse's position was saved hands the collapse out again
	// (at least once), so more than the true changes may come; but never the
	// reloaded rows themselves.
	if emitted > trueChanges*(kills+1) || emitted > reloaded/4 {
		t.Errorf("%d changes on the bus for %d true changes in %d reloaded rows after %d kills", emitted, trueChanges, reloaded, kills)
	}
	dlq, err := readCrashTopic(ctx, k.Brokers(), schemas.DLQTopic("crash", "capture"))
	if err == nil && len(dlq) > 0 {
		t.Errorf("%d dead letters from clean data", len(dlq))
	}
}

// dumpTable reads a table as key → row in the text forms the replay compares.
func dumpTable(ctx context.Context, db *sql.DB, table, pk string) (map[string]crashRow, error) {
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+table)
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	return scanCrashRows(table, cols, pk, rows.Next, rows.Scan, rows.Err)
}
