package main

// Kill -9 of `shouwang run --role sink` as its own process, under load (issue #9: "kill
// -9 the sink under load, restart, provincial tables equal the expected state"). Kafka
// (kfake) lives in the test process so it survives the kills; the canonical topic is
// filled first with several versions per key and deletes, the sink is killed several
// times while it applies, and a last run catches up.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func TestSinkKill9ConvergesToTheSource(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it several times")
	}
	k := testenv.Kafka(t)
	pg, db := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{})
	dir := t.TempDir()
	bin := crashBinary(t, dir)
	topic := schemas.CanonicalTopic("tk", "person")
	opts := bus.Options{Brokers: k.Brokers()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := bus.EnsureTopics(ctx, opts, bus.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	// 20,000 persons, each created, updated to version 2, and every tenth deleted at
	// version 3: the expected state is each key's last change.
	const persons = 20000
	type final struct {
		version int64
		name    string
		deleted bool
	}
	want := map[string]final{}
	var msgs []bus.Message
	add := func(op schemas.Op, no string, version int64, name string) {
		p := schemas.Person{Meta: schemas.Meta{Key: no, Version: version, Source: schemas.SourceRef{System: "national", Table: "person"}, UpdatedMs: version},
			PersonNo: no, HouseholdNo: "H" + no[:4], RegionCode: "110105001001", Name: name}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := schemas.DecodeObject(b)
		if err != nil {
			t.Fatal(err)
		}
		e := schemas.Envelope{V: 1, Op: op, Source: schemas.Source{System: "transform", Kind: "transform", Table: "person"},
			Key: map[string]any{"key": no}, Schema: schemas.SchemaRef{Name: "person", Version: 1}, TsMs: 1}
		if op == schemas.OpDelete {
			e.Before = doc
		} else {
			e.After = doc
		}
		v, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, bus.Message{Topic: topic, Key: []byte(no), Value: v})
		prev := want[no]
		want[no] = final{version: version, name: name, deleted: op == schemas.OpDelete}
		if op == schemas.OpDelete {
			want[no] = final{version: version, name: prev.name, deleted: true} // soft: last values kept
		}
	}
	for round := int64(1); round <= 3; round++ {
		for i := range persons {
			no := fmt.Sprintf("%08d", i)
			switch {
			case round < 3:
				add(schemas.OpUpdate, no, round, fmt.Sprintf("v%d-%d", round, i))
			case i%10 == 0:
				add(schemas.OpDelete, no, round, "")
			}
		}
	}
	total := int64(len(msgs))
	p, err := bus.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	for lo := 0; lo < len(msgs); lo += 2000 {
		if err := p.Produce(ctx, msgs[lo:min(lo+2000, len(msgs))]...); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()

	var cfg strings.Builder
	cfg.WriteString("kafka:\n  brokers:\n")
	for _, a := range k.Brokers() {
		fmt.Fprintf(&cfg, "    - %q\n", a)
	}
	fmt.Fprintf(&cfg, "  topic_prefix: tk\n  session_timeout: 1s\n  partitions: 2\n  replication_factor: 1\nmetrics:\n  addr: 127.0.0.1:0\nregions:\n  province: \"11\"\nstate:\n  dir: ./state\n"+
		"sinks:\n  - name: provincial\n    kind: postgres\n    dsn: %q\n    topics: [person]\n    batch_size: 1000\n", pg.ConnString(db))
	cfgPath := filepath.Join(dir, "sink.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "sink.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	pool, err := pgxpool.New(ctx, pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	stored := func() int64 {
		var n int64
		// Before the first run has migrated, the table does not exist: 0.
		_ = pool.QueryRow(ctx, "SELECT coalesce(sum(next_offset), 0) FROM fpjc.sink_offsets WHERE sink = 'provincial'").Scan(&n)
		return n
	}

	rng := rand.New(rand.NewPCG(9, 1))
	kills := 0
	var prev int64
	for round := 0; round < 6 && kills < 3; round++ {
		proc := startRoleProc(t, bin, "sink", cfgPath, log)
		for deadline := time.Now().Add(time.Minute); stored() <= prev; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no progress past %d stored offsets in a minute\n%s", round, prev, logTailOf(logPath, 30))
			}
			if err := proc.exitedEarly(); err != nil {
				t.Fatalf("%v\n%s", err, logTailOf(logPath, 30))
			}
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		if err := proc.kill(); err != nil {
			t.Fatalf("%v\n%s", err, logTailOf(logPath, 30))
		}
		c := stored()
		t.Logf("round %d: killed with %d of %d changes stored", round, c, total)
		if c >= total {
			break
		}
		kills++
		prev = c
	}
	if kills == 0 {
		t.Fatal("no kill landed mid-stream: the sink finished before the first kill")
	}
	proc := startRoleProc(t, bin, "sink", cfgPath, log)
	for deadline := time.Now().Add(2 * time.Minute); stored() < total; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("last run: %d of %d stored\n%s", stored(), total, logTailOf(logPath, 30))
		}
		if err := proc.exitedEarly(); err != nil {
			t.Fatalf("%v\n%s", err, logTailOf(logPath, 30))
		}
	}
	if got := stored(); got != total {
		t.Errorf("stored offsets sum to %d, want exactly %d", got, total)
	}
	rows, err := pool.Query(ctx, "SELECT key, version, coalesce(name, ''), deleted FROM fpjc.person")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]final{}
	for rows.Next() {
		var key string
		var f final
		if err := rows.Scan(&key, &f.version, &f.name, &f.deleted); err != nil {
			t.Fatal(err)
		}
		got[key] = f
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d rows, want %d", len(got), len(want))
	}
	bad := 0
	for key, w := range want {
		if g := got[key]; g != w && bad < 10 {
			bad++
			t.Errorf("%s: stored %+v, want %+v", key, g, w)
		}
	}
	t.Logf("%d kills; %d changes, %d rows equal to the expected state", kills, total, len(got))
}
