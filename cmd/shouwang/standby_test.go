package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// Two capture processes of one source with capture.standby: one holds the lease and
// captures, the other stands by, also across the rebalance its arrival causes; when the
// active one is killed with SIGKILL, the standby takes the lease over and resumes from
// the positions saved in PostgreSQL, so every row written before and after the kill
// reaches the raw topic.
func TestCaptureStandbyTakesOver(t *testing.T) {
	crashSkip(t)
	ctx := context.Background()
	m, db := testenv.NewMariaDBDatabase(t, testenv.MariaDBOptions{})
	sqlDB, err := m.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	if _, err := sqlDB.Exec("CREATE TABLE item (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	p, pdb := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{})
	k := testenv.Kafka(t)
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(kafkaBrokersYAML(k))
	b.WriteString("  topic_prefix: ha\n  partitions: 2\n  replication_factor: 1\n  client_id: ha\n  session_timeout: 3s\n")
	b.WriteString("metrics:\n  addr: 127.0.0.1:0\nregions:\n  province: \"51\"\n")
	fmt.Fprintf(&b, "state:\n  dir: %q\n  positions: postgres\n  positions_dsn: %q\ncapture:\n  standby: true\n", filepath.Join(dir, "state"), p.ConnString(pdb))
	b.WriteString("sources:\n  - name: national\n    kind: mysqlbinlog\n    mysql:\n")
	fmt.Fprintf(&b, "      dsn: %q\n      flavor: %s\n      server_id: %d\n      gtid: true\n      tables: [%s.item]\n", m.ReplDSN(db), m.Flavor(), m.ServerID()+100, db)
	b.WriteString("      snapshot:\n        mode: initial\n      heartbeat_interval: 1s\n")
	cfg := filepath.Join(dir, "shouwang.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := crashBinary(t, dir)
	start := func(name string) (*crashProc, string) {
		path := filepath.Join(dir, name+".log")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return startCrashProcArgs(t, bin, f, "run", "--role", "capture", "-c", cfg), path
	}
	logCount := func(path, s string) int {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), s)
	}
	logHas := func(path, s string) bool { return logCount(path, s) > 0 }
	insert := func(from, to int) {
		for i := from; i <= to; i++ {
			if _, err := sqlDB.Exec("INSERT INTO item VALUES (?, ?)", i, fmt.Sprint("v", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	topic := schemas.RawTopic("ha", "national", "item")
	captured := func() (map[string]bool, error) {
		events, err := readCrashTopic(ctx, k.Brokers(), topic)
		if err != nil {
			return nil, err
		}
		ids := map[string]bool{}
		for _, e := range events {
			if e.env != nil && e.env.Op != schemas.OpDelete {
				ids[fmt.Sprint(e.env.Key["id"])] = true
			}
		}
		return ids, nil
	}
	waitRows := func(what string, n int, logs ...string) {
		testenv.Eventually(t, 90*time.Second, what, func() (bool, string) {
			ids, err := captured()
			if err != nil {
				return false, err.Error()
			}
			for i := 1; i <= n; i++ {
				if !ids[fmt.Sprint(i)] {
					return false, fmt.Sprintf("%d of %d rows captured; first missing %d\n%s", len(ids), n, i, tails(logs))
				}
			}
			return true, ""
		})
	}

	insert(1, 50)
	a, aLog := start("a")
	testenv.Eventually(t, 60*time.Second, "A takes the lease", func() (bool, string) {
		return logHas(aLog, "capture lease acquired"), tails([]string{aLog})
	})
	waitRows("A captures the first rows", 50, aLog)
	_, bLog := start("b")
	// B's arrival rebalances the group: A joins with the higher priority and keeps the
	// lease (it acquires it a second time), B joins the new generation as a standby.
	testenv.Eventually(t, 60*time.Second, "the rebalance B causes", func() (bool, string) {
		return logCount(aLog, "capture lease acquired") >= 2 && logHas(bLog, "joined generation as standby"), tails([]string{aLog, bLog})
	})
	insert(51, 100)
	waitRows("A goes on capturing after B joined", 100, aLog, bLog)
	if logHas(bLog, "capture lease acquired") {
		t.Fatalf("B took the lease from a running A\n%s", tails([]string{aLog, bLog}))
	}
	if err := a.kill(); err != nil {
		t.Fatal(err)
	}
	insert(101, 150) // while nobody captures
	testenv.Eventually(t, 60*time.Second, "B takes the lease over", func() (bool, string) {
		return logHas(bLog, "capture lease acquired"), tails([]string{bLog})
	})
	insert(151, 200)
	waitRows("B captures what A left and what came after", 200, bLog)
	// B resumed from A's saved position: the only snapshot rows are A's first 50.
	events, err := readCrashTopic(ctx, k.Brokers(), topic)
	if err != nil {
		t.Fatal(err)
	}
	snap := 0
	for _, e := range events {
		if e.env != nil && e.env.Op == schemas.OpRead {
			snap++
		}
	}
	if snap != 50 {
		t.Errorf("%d snapshot rows in the topic, want A's 50: B did not resume from the saved position\n%s", snap, tails([]string{bLog}))
	}
}

// tails is the last lines of each log, for failure messages.
func tails(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "--- %s ---\n%s\n", filepath.Base(p), logTailOf(p, 15))
	}
	return b.String()
}
