package main

// Crash-safety end-to-end tests (issues #3 and #4: "kill -9 at random points during
// snapshot and streaming, restart, same final state and no gap").
//
// Each test builds the shouwang binary, runs `shouwang run --role capture` as a
// subprocess against a private database server and a kfake cluster living in the
// test process (so Kafka survives the kills), SIGKILLs it at random moments while a
// writer goroutine keeps changing the source tables, then lets a last run catch up
// and compares a replay of the raw topics with SELECT * of the source tables.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

// crashNull stands for SQL NULL / JSON null in a compared row.
const crashNull = "\x00NULL"

// crashRunnerBatch is the capture runner's default batch size: the most changes that
// can be in flight (produced but not yet saved) when the process dies.
const crashRunnerBatch = 2000

// crashRow is one row as column → text form (crashNull for NULL). Both sides of the
// comparison are brought to this form: the source through SELECT with text casts,
// the bus through the JSON values the connector emitted.
type crashRow map[string]string

// String lists the columns in name order, NULL spelled out, for failure messages.
func (r crashRow) String() string {
	cols := make([]string, 0, len(r))
	for c := range r {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString(" ")
		}
		if v := r[c]; v == crashNull {
			b.WriteString(c + "=NULL")
		} else {
			fmt.Fprintf(&b, "%s=%q", c, v)
		}
	}
	return b.String()
}

// crashOpKind is what one writer statement does.
type crashOpKind int

const (
	crashInsert crashOpKind = iota
	crashUpdate
	crashDelete
	crashMove // primary-key change: UPDATE … SET id = new WHERE id = old
)

// crashOp is one statement of a writer transaction.
type crashOp struct {
	kind   crashOpKind
	table  string
	id     int64 // the row (for a move: the old key)
	newID  int64 // move target
	values crashValues
}

// crashValues are the non-key columns in a DB-neutral form; each dialect renders
// them as SQL literals.
type crashValues struct {
	name    string
	amount  string // decimal with two places
	born    string // YYYY-MM-DD
	updated string // YYYY-MM-DD hh:mm:ss
	note    *string
	flag    bool
}

var crashNames = []string{"张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇", "周杰", "吴霞", "徐丽", "孙强", "马超", "朱红", "胡军"}

func crashRandomValues(rng *rand.Rand) crashValues {
	v := crashValues{
		name:    crashNames[rng.IntN(len(crashNames))] + strconv.Itoa(rng.IntN(100000)),
		amount:  fmt.Sprintf("%d.%02d", rng.IntN(1000000), rng.IntN(100)),
		born:    fmt.Sprintf("%04d-%02d-%02d", 1940+rng.IntN(80), 1+rng.IntN(12), 1+rng.IntN(28)),
		updated: fmt.Sprintf("2024-%02d-%02d %02d:%02d:%02d", 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60)),
		flag:    rng.IntN(2) == 1,
	}
	switch rng.IntN(10) {
	case 0, 1, 2: // NULL
	case 3: // empty string, which must stay distinct from NULL
		s := ""
		v.note = &s
	default:
		s := "备注：困难户 " + strconv.Itoa(rng.IntN(1000))
		v.note = &s
	}
	return v
}

// crashModel is the writer's picture of the source: which keys are live per table,
// and which keys the bus must carry (the "no gap" check). Keys are never reused:
// inserts and moves take fresh ids, so a key's last event on the bus is its final
// state and a moved-away key stays deleted. mu guards the model between the writer
// goroutine and the test.
type crashModel struct {
	mu     sync.Mutex
	tables []string
	nextID int64
	live   map[string][]int64
	index  map[string]map[int64]int
	// must holds, once tracking started, every key live at that moment or created
	// since: all of them existed after the capture's first saved position.
	tracking bool
	must     map[string]map[int64]bool
}

func newCrashModel(tables []string) *crashModel {
	m := &crashModel{tables: tables, nextID: 1, live: map[string][]int64{}, index: map[string]map[int64]int{}, must: map[string]map[int64]bool{}}
	for _, t := range tables {
		m.index[t] = map[int64]int{}
		m.must[t] = map[int64]bool{}
	}
	return m
}

// startTracking is called once the capture saved its first position: rows committed
// before it may legitimately never reach the bus (changed before the capture's
// starting point), every row live now or created later must.
func (m *crashModel) startTracking() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tracking {
		return
	}
	m.tracking = true
	for t, ids := range m.live {
		for _, id := range ids {
			m.must[t][id] = true
		}
	}
}

func (m *crashModel) add(table string, id int64) {
	m.index[table][id] = len(m.live[table])
	m.live[table] = append(m.live[table], id)
	if m.tracking {
		m.must[table][id] = true
	}
}

func (m *crashModel) remove(table string, id int64) {
	i, ok := m.index[table][id]
	if !ok {
		return
	}
	l := m.live[table]
	last := l[len(l)-1]
	l[i] = last
	m.index[table][last] = i
	m.live[table] = l[:len(l)-1]
	delete(m.index[table], id)
}

// randomTx plans one small transaction against the current model. The model is
// changed only by apply, after the transaction committed.
func (m *crashModel) randomTx(rng *rand.Rand) []crashOp {
	n := 1 + rng.IntN(4)
	var ops []crashOp
	touched := map[string]map[int64]bool{}
	pick := func(table string) (int64, bool) {
		l := m.live[table]
		if len(l) == 0 {
			return 0, false
		}
		for range 5 {
			id := l[rng.IntN(len(l))]
			if !touched[table][id] {
				return id, true
			}
		}
		return 0, false
	}
	for range n {
		table := m.tables[rng.IntN(len(m.tables))]
		if touched[table] == nil {
			touched[table] = map[int64]bool{}
		}
		r := rng.IntN(100)
		switch {
		case r < 35:
			id := m.nextID
			m.nextID++
			touched[table][id] = true
			ops = append(ops, crashOp{kind: crashInsert, table: table, id: id, values: crashRandomValues(rng)})
		case r < 70:
			if id, ok := pick(table); ok {
				touched[table][id] = true
				ops = append(ops, crashOp{kind: crashUpdate, table: table, id: id, values: crashRandomValues(rng)})
			}
		case r < 85:
			if id, ok := pick(table); ok {
				touched[table][id] = true
				ops = append(ops, crashOp{kind: crashDelete, table: table, id: id})
			}
		default:
			if id, ok := pick(table); ok {
				newID := m.nextID
				m.nextID++
				touched[table][id], touched[table][newID] = true, true
				ops = append(ops, crashOp{kind: crashMove, table: table, id: id, newID: newID})
			}
		}
	}
	return ops
}

// apply records a committed transaction in the model.
func (m *crashModel) apply(ops []crashOp) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range ops {
		switch op.kind {
		case crashInsert:
			m.add(op.table, op.id)
		case crashDelete:
			m.remove(op.table, op.id)
		case crashMove:
			m.remove(op.table, op.id)
			m.add(op.table, op.newID)
		}
	}
}

// crashDB is one source database dialect: how to create, seed, change and read the
// captured tables.
type crashDB interface {
	createTables(ctx context.Context, tables []string) error
	exec(ctx context.Context, ops []crashOp) error
	dump(ctx context.Context, table string) (map[string]crashRow, error)
}

// crashScenario is what differs between the source kinds.
type crashScenario struct {
	source   string   // configured source name
	tables   []string // table names (topic part) in the order of the config
	rows     int      // seeded rows per table
	config   func(stateDir string) string
	db       crashDB
	snapDone func(position []byte) bool // whether a saved position is past the initial snapshot
	after    func(t *testing.T)         // extra checks after the final comparison
}

// crashBinary builds the shouwang binary from this module into dir.
func crashBinary(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env GOMOD: %v (%s)", err, out)
	}
	root := filepath.Dir(string(bytes.TrimSpace(out)))
	bin := filepath.Join(dir, "shouwang")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/shouwang")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/shouwang in %s: %v\n%s", root, err, out)
	}
	return bin
}

// crashProc is one run of the capture worker.
type crashProc struct {
	cmd  *exec.Cmd
	done chan error
}

func startCrashProc(t *testing.T, bin, cfg string, log *os.File) *crashProc {
	t.Helper()
	fmt.Fprintf(log, "\n===== start %s =====\n", time.Now().Format(time.RFC3339Nano))
	return startCrashProcArgs(t, bin, log, "run", "--role", "capture", "-c", cfg)
}

// startCrashProcArgs starts the binary with args, output to log.
func startCrashProcArgs(t *testing.T, bin string, log *os.File, args ...string) *crashProc {
	t.Helper()
	return startCrashProcEnv(t, bin, log, nil, args...)
}

// startCrashProcEnv starts the binary with args and the environment variables env
// (NAME=value) added to the test's, output to log.
func startCrashProcEnv(t *testing.T, bin string, log *os.File, env []string, args ...string) *crashProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = log, log
	// Should the test binary die, the worker dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &crashProc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// exitedEarly reports (as an error) a worker that stopped on its own.
func (p *crashProc) exitedEarly() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("the capture worker exited on its own: %v", err)
	default:
		return nil
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *crashProc) kill() error {
	if err := p.exitedEarly(); err != nil {
		return err
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("SIGKILL the worker: %w", err)
	}
	<-p.done
	return nil
}

// logTailOf returns the last n lines of the worker's log, for failure messages.
func logTailOf(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// crashEvent is one message of a raw topic, decoded.
type crashEvent struct {
	partition int
	offset    int64
	env       *schemas.Envelope
}

// readCrashTopic reads every message of topic from offset 0 of each partition up to
// the end offsets taken first, in partition order.
func readCrashTopic(ctx context.Context, brokers []string, topic string) ([]crashEvent, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, tp := range md.Topics {
		if tp.Error != nil {
			return nil, fmt.Errorf("metadata of %s: %w", topic, tp.Error)
		}
		for _, p := range tp.Partitions {
			reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	parts := offs.Topics[topic]
	sort.Slice(parts, func(i, j int) bool { return parts[i].Partition < parts[j].Partition })
	var out []crashEvent
	for _, po := range parts {
		if po.Error != nil {
			return nil, fmt.Errorf("offsets of %s partition %d: %w", topic, po.Partition, po.Error)
		}
		if po.FirstOffset != 0 {
			return nil, fmt.Errorf("%s partition %d starts at offset %d, not 0: the replay would miss events", topic, po.Partition, po.FirstOffset)
		}
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: po.Partition,
			MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond, ReadBatchTimeout: time.Second})
		if err := r.SetOffset(po.FirstOffset); err != nil {
			r.Close()
			return nil, fmt.Errorf("seek %s partition %d: %w", topic, po.Partition, err)
		}
		for off := po.FirstOffset; off < po.LastOffset; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("read %s partition %d at offset %d: %w", topic, po.Partition, off, err)
			}
			env, err := schemas.UnmarshalEnvelope(m.Value)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("%s partition %d offset %d: %w", topic, po.Partition, m.Offset, err)
			}
			out = append(out, crashEvent{partition: po.Partition, offset: m.Offset, env: env})
			off = m.Offset + 1
		}
		r.Close()
	}
	return out, nil
}

// crashReplay is the state a consumer applying the raw topic in order ends with.
type crashReplay struct {
	state     map[string]crashRow // id → row
	seen      map[string]bool     // every id any event carried
	events    int
	snapshot  int // op r events
	snapDups  int // op r events beyond the first for an id
	streamDup int // stream events whose (position, seq, key, op) repeats an earlier one
	ops       map[schemas.Op]int
}

// crashText is a JSON value (decoded with UseNumber) in the text form SELECT gives.
func crashText(v any) string {
	switch x := v.(type) {
	case nil:
		return crashNull
	case json.Number:
		return x.String()
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func crashRowOf(m map[string]any) crashRow {
	r := crashRow{}
	for k, v := range m {
		r[k] = crashText(v)
	}
	return r
}

// replayCrashTopic applies events as a consumer would: c/u/r upsert, d delete, t
// clear, per key in partition order. A key change (u whose before carries another
// id) deletes the old id for good: the writer never reuses ids.
func replayCrashTopic(events []crashEvent) (*crashReplay, error) {
	r := &crashReplay{state: map[string]crashRow{}, seen: map[string]bool{}, ops: map[schemas.Op]int{}}
	movedAway := map[string]bool{}
	snapSeen := map[string]bool{}
	streamSeen := map[string]bool{}
	for _, ev := range events {
		e := ev.env
		r.events++
		r.ops[e.Op]++
		if e.Op == schemas.OpSchema {
			continue
		}
		if e.Op == schemas.OpTruncate {
			clear(r.state)
			continue
		}
		id := crashText(e.Key["id"])
		if id == crashNull || id == "" {
			return nil, fmt.Errorf("partition %d offset %d: op %s without key.id: %v", ev.partition, ev.offset, e.Op, e.Key)
		}
		r.seen[id] = true
		if e.Op == schemas.OpRead {
			r.snapshot++
			if snapSeen[id] {
				r.snapDups++
			}
			snapSeen[id] = true
		} else {
			s := e.Source
			ident := fmt.Sprintf("%s|%s:%d|%s|%s|%d|%s", e.Op, s.BinlogFile, s.BinlogPos, s.GTID, s.LSN, s.Seq, id)
			if streamSeen[ident] {
				r.streamDup++
			}
			streamSeen[ident] = true
		}
		switch e.Op {
		case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
			r.state[id] = crashRowOf(e.After)
			if e.Op == schemas.OpUpdate && e.Before != nil {
				if old := crashText(e.Before["id"]); old != crashNull && old != id {
					movedAway[old] = true
					r.seen[old] = true
				}
			}
		case schemas.OpDelete:
			delete(r.state, id)
		}
	}
	for id := range movedAway {
		delete(r.state, id)
	}
	return r, nil
}

// diffCrashState describes how got (the replay) differs from want (the source), at
// most max lines.
func diffCrashState(want, got map[string]crashRow, max int) []string {
	var out []string
	ids := map[string]bool{}
	for id := range want {
		ids[id] = true
	}
	for id := range got {
		ids[id] = true
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, _ := strconv.ParseInt(sorted[i], 10, 64)
		b, _ := strconv.ParseInt(sorted[j], 10, 64)
		return a < b
	})
	for _, id := range sorted {
		w, inW := want[id]
		g, inG := got[id]
		var line string
		switch {
		case !inG:
			line = fmt.Sprintf("id %s: in the source, missing from the bus replay: %v", id, w)
		case !inW:
			line = fmt.Sprintf("id %s: on the bus, not in the source: %v", id, g)
		case !crashRowsEqual(w, g):
			line = fmt.Sprintf("id %s: source %v, bus %v", id, w, g)
		default:
			continue
		}
		out = append(out, line)
		if len(out) == max {
			out = append(out, "…")
			break
		}
	}
	return out
}

func crashRowsEqual(a, b crashRow) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// runCrashScenario is the scenario common to every source kind.
func runCrashScenario(t *testing.T, k *testenv.KafkaCluster, sc crashScenario) {
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	dir := t.TempDir()
	start := time.Now()
	bin := crashBinary(t, dir)
	t.Logf("built %s in %s", bin, time.Since(start).Round(time.Millisecond))
	stateDir := filepath.Join(dir, "state")
	cfgPath := filepath.Join(dir, "shouwang.yaml")
	if err := os.WriteFile(cfgPath, []byte(sc.config(stateDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, logf, failWithLog := crashWorkerLog(t, dir, sc.source)

	// Seed the tables.
	model := newCrashModel(sc.tables)
	if err := sc.db.createTables(ctx, sc.tables); err != nil {
		t.Fatal(err)
	}
	for _, table := range sc.tables {
		var ops []crashOp
		for range sc.rows {
			ops = append(ops, crashOp{kind: crashInsert, table: table, id: model.nextID, values: crashRandomValues(rng)})
			model.nextID++
		}
		for len(ops) > 0 {
			n := min(len(ops), 500)
			if err := sc.db.exec(ctx, ops[:n]); err != nil {
				t.Fatalf("seed %s: %v", table, err)
			}
			model.apply(ops[:n])
			ops = ops[n:]
		}
	}

	// The writer: small random transactions until told to stop.
	writerRng := rand.New(rand.NewPCG(seed, 0x3717e))
	stopWriter := make(chan struct{})
	writerDone := make(chan error, 1)
	var txs int
	go func() {
		for {
			select {
			case <-stopWriter:
				writerDone <- nil
				return
			default:
			}
			ops := model.randomTx(writerRng)
			if len(ops) > 0 {
				if err := sc.db.exec(ctx, ops); err != nil {
					writerDone <- fmt.Errorf("writer transaction %d: %w", txs+1, err)
					return
				}
				model.apply(ops)
				txs++
			}
			time.Sleep(time.Duration(2+writerRng.IntN(15)) * time.Millisecond)
		}
	}()
	writerStopped := false
	stop := func() {
		if !writerStopped {
			writerStopped = true
			close(stopWriter)
			if err := <-writerDone; err != nil {
				t.Fatal(err)
			}
		}
	}
	defer stop()

	posPath := filepath.Join(stateDir, "positions", sc.source+".position.json")
	snapshotDone := func() bool {
		b, err := os.ReadFile(posPath)
		return err == nil && sc.snapDone(b)
	}
	const kills = 8
	var inSnapshot, inStream int
	for i := range kills {
		before, _ := os.ReadFile(posPath)
		p := startCrashProc(t, bin, cfgPath, logf)
		switch {
		case i == kills/2 || i == kills-1:
			// Let this run finish the initial snapshot, so that streaming is killed too.
			deadline := time.Now().Add(90 * time.Second)
			for !snapshotDone() {
				if err := p.exitedEarly(); err != nil {
					failWithLog("run %d: %v", i+1, err)
				}
				if time.Now().After(deadline) {
					failWithLog("run %d: the initial snapshot did not finish within 90s (position file %s)", i+1, posPath)
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(time.Duration(100+rng.IntN(1900)) * time.Millisecond)
		case i == 0:
			// Early: often before the first position is saved.
			time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		case !snapshotDone():
			// The snapshot of a few thousand rows takes well under a second here, so
			// aim: wait until this run saved a position, then kill shortly after.
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if now, _ := os.ReadFile(posPath); !bytes.Equal(now, before) {
					break
				}
				if err := p.exitedEarly(); err != nil {
					failWithLog("run %d: %v", i+1, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		default:
			time.Sleep(time.Duration(100+rng.IntN(1900)) * time.Millisecond)
		}
		if err := p.kill(); err != nil {
			failWithLog("run %d: %v", i+1, err)
		}
		if _, err := os.Stat(posPath); err == nil {
			model.startTracking()
		}
		if snapshotDone() {
			inStream++
		} else {
			inSnapshot++
		}
	}
	if _, err := os.Stat(posPath); err != nil {
		failWithLog("no position was ever saved at %s: %v", posPath, err)
	}
	stop()
	// A kill counts as "during the snapshot" when the saved position it left still
	// holds unfinished table cursors (or nothing was saved yet).
	t.Logf("%d kills (%d during the initial snapshot, %d while streaming); writer committed %d transactions", kills, inSnapshot, inStream, txs)
	if inStream == 0 {
		t.Errorf("no kill happened while streaming")
	}
	if inSnapshot < 2 {
		t.Logf("warning: only %d kill(s) landed inside the initial snapshot (it was faster than the kills)", inSnapshot)
	}

	want := map[string]map[string]crashRow{}
	for _, table := range sc.tables {
		var err error
		if want[table], err = sc.db.dump(ctx, table); err != nil {
			t.Fatal(err)
		}
	}

	// The last run: wait until every topic's replay equals the source.
	p := startCrashProc(t, bin, cfgPath, logf)
	topicOf := func(table string) string { return schemas.RawTopic("crash", sc.source, table) }
	replays := map[string]*crashReplay{}
	const catchUp = 2 * time.Minute
	deadline := time.Now().Add(catchUp)
	for {
		if err := p.exitedEarly(); err != nil {
			failWithLog("final run: %v", err)
		}
		var diffs []string
		for _, table := range sc.tables {
			evs, err := readCrashTopic(ctx, k.Brokers(), topicOf(table))
			if err != nil {
				failWithLog("replay %s: %v", topicOf(table), err)
			}
			r, err := replayCrashTopic(evs)
			if err != nil {
				failWithLog("replay %s: %v", topicOf(table), err)
			}
			replays[table] = r
			for _, d := range diffCrashState(want[table], r.state, 10) {
				diffs = append(diffs, table+": "+d)
			}
		}
		if len(diffs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			failWithLog("the bus replay never matched the source tables (%s after the last start):\n%s", catchUp, strings.Join(diffs, "\n"))
		}
		time.Sleep(time.Second)
	}
	if err := p.exitedEarly(); err != nil {
		failWithLog("final run: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			failWithLog("after SIGTERM the worker exited with %v, want status 0", err)
		}
	case <-time.After(time.Minute):
		failWithLog("the worker did not exit within a minute of SIGTERM")
	}

	// No gap: every key ever committed was carried by some event.
	for _, table := range sc.tables {
		r := replays[table]
		var missing []int64
		for id := range model.must[table] {
			if !r.seen[strconv.FormatInt(id, 10)] {
				missing = append(missing, id)
			}
		}
		sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
		if len(missing) > 0 {
			t.Errorf("%s: %d keys that were committed never appeared on the bus (gap), e.g. %v", table, len(missing), missing[:min(len(missing), 10)])
		}
		// Duplicates come only from the window between Kafka's ack and the saved
		// position at each kill: at most one runner batch per kill.
		dups := r.snapDups + r.streamDup
		limit := kills * crashRunnerBatch
		t.Logf("%s: %d events %v; %d rows at the end; %d ids checked for gaps; duplicates: %d snapshot re-reads, %d repeated stream events (limit %d)",
			table, r.events, r.ops, len(r.state), len(model.must[table]), r.snapDups, r.streamDup, limit)
		if dups > limit {
			t.Errorf("%s: %d duplicate events after %d kills, more than %d", table, dups, kills, limit)
		}
		if r.snapshot < sc.rows/2 {
			t.Errorf("%s: only %d snapshot reads for %d seeded rows", table, r.snapshot, sc.rows)
		}
	}
	dlq, err := readCrashTopic(ctx, k.Brokers(), schemas.DLQTopic("crash", "capture"))
	if err == nil && len(dlq) > 0 {
		t.Errorf("%d dead letters from clean data", len(dlq))
	}
	if sc.after != nil {
		sc.after(t)
	}
}

// crashWorkerLog creates the log file every run of the worker writes to, and returns
// a Fatalf that shows its last lines. With SHOUWANG_CRASH_KEEP_LOG=DIR a copy is kept
// in DIR as NAME-worker.log for post-mortems.
func crashWorkerLog(t *testing.T, dir, name string) (string, *os.File, func(format string, args ...any)) {
	t.Helper()
	logPath := filepath.Join(dir, "worker.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logf.Close()
		if keep := os.Getenv("SHOUWANG_CRASH_KEEP_LOG"); keep != "" {
			if b, err := os.ReadFile(logPath); err == nil {
				_ = os.WriteFile(filepath.Join(keep, name+"-worker.log"), b, 0o644)
			}
		}
	})
	return logPath, logf, func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\n--- last lines of the worker log ---\n%s", fmt.Sprintf(format, args...), logTailOf(logPath, 40))
	}
}

// crashSeed is the random seed of a crash test: SHOUWANG_CRASH_SEED, or the clock.
func crashSeed(t *testing.T) uint64 {
	t.Helper()
	return envSeed(t, "SHOUWANG_CRASH_SEED")
}

// envSeed is a random seed from the environment variable name, or the clock; it is
// logged with the command that replays it.
func envSeed(t *testing.T, name string) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(name); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, s, err)
		}
		seed = v
	}
	t.Logf("random seed %d (rerun with %s=%d)", seed, name, seed)
	return seed
}

// crashKafkaYAML is the kafka/state/metrics part of every scenario's config.
func crashKafkaYAML(k *testenv.KafkaCluster, stateDir string) string {
	var b strings.Builder
	b.WriteString(kafkaBrokersYAML(k))
	b.WriteString("  topic_prefix: crash\n  partitions: 3\n  replication_factor: 1\n  client_id: crash\n")
	b.WriteString("metrics:\n  addr: 127.0.0.1:0\n")
	fmt.Fprintf(&b, "regions:\n  province: \"51\"\nstate:\n  dir: %q\n  positions: file\n", stateDir)
	return b.String()
}

// kafkaBrokersYAML opens a configuration's kafka section with the cluster's brokers.
func kafkaBrokersYAML(k *testenv.KafkaCluster) string {
	var b strings.Builder
	b.WriteString("kafka:\n  brokers:\n")
	for _, a := range k.Brokers() {
		fmt.Fprintf(&b, "    - %q\n", a)
	}
	return b.String()
}

func crashSkip(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("crash-safety end-to-end test skipped with -short")
	}
}

// TestCrashSafetyMySQLBinlog kills the binlog capture worker at random points of its
// snapshot and stream while a writer changes the tables, and checks that the raw
// topics replay to exactly the final tables with no key missing.
func TestCrashSafetyMySQLBinlog(t *testing.T) {
	crashSkip(t)
	m, db := testenv.NewMariaDBDatabase(t, testenv.MariaDBOptions{})
	// Text protocol without parseTime: DATE and DATETIME come back as the text the
	// connector also emits.
	dsn, err := mysql.ParseDSN(m.RootDSN(db))
	if err != nil {
		t.Fatal(err)
	}
	dsn.ParseTime = false
	sqlDB, err := sql.Open("mysql", dsn.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	k := testenv.Kafka(t)
	tables := []string{"person", "household"}
	var qualified []string
	for _, tb := range tables {
		qualified = append(qualified, db+"."+tb)
	}
	sc := crashScenario{
		source: "national", tables: tables, rows: 4000,
		db: &crashMySQL{db: sqlDB},
		snapDone: func(b []byte) bool {
			var p struct {
				Snapshot []json.RawMessage `json:"snapshot"`
				File     string            `json:"file"`
			}
			return json.Unmarshal(b, &p) == nil && p.File != "" && len(p.Snapshot) == 0
		},
	}
	sc.config = func(stateDir string) string {
		var b strings.Builder
		b.WriteString(crashKafkaYAML(k, stateDir))
		b.WriteString("sources:\n  - name: national\n    kind: mysqlbinlog\n    mysql:\n")
		fmt.Fprintf(&b, "      dsn: %q\n", m.ReplDSN(db))
		fmt.Fprintf(&b, "      flavor: %s\n      server_id: %d\n      gtid: true\n      tables:\n", m.Flavor(), m.ServerID()+100)
		for _, q := range qualified {
			fmt.Fprintf(&b, "        - %s\n", q)
		}
		b.WriteString("      snapshot:\n        mode: initial\n        chunk_size: 20\n      heartbeat_interval: 1s\n")
		return b.String()
	}
	runCrashScenario(t, k, sc)
}

// TestCrashSafetyPGLogical is the same for PostgreSQL logical replication; it also
// checks that the replication slot survived every kill.
func TestCrashSafetyPGLogical(t *testing.T) {
	crashSkip(t)
	p, db := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{})
	ctx := context.Background()
	conn, err := p.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	k := testenv.Kafka(t)
	tables := []string{"person", "household"}
	const slot = "crash_slot"
	sc := crashScenario{
		source: "departments", tables: tables, rows: 4000,
		db: &crashPG{conn: conn},
		snapDone: func(b []byte) bool {
			var pos struct {
				Snapshot *struct {
					Done bool `json:"done"`
				} `json:"snapshot"`
			}
			return json.Unmarshal(b, &pos) == nil && (pos.Snapshot == nil || pos.Snapshot.Done)
		},
		after: func(t *testing.T) {
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("replication slot %s: %d found after the kills, want 1 (it must never be dropped)", slot, n)
			}
		},
	}
	sc.config = func(stateDir string) string {
		var b strings.Builder
		b.WriteString(crashKafkaYAML(k, stateDir))
		b.WriteString("sources:\n  - name: departments\n    kind: pglogical\n    postgres:\n")
		fmt.Fprintf(&b, "      dsn: %q\n      slot: %s\n      publication: crash_pub\n      create_slot: true\n      create_publication: true\n      tables:\n", p.ConnString(db), slot)
		for _, tb := range tables {
			fmt.Fprintf(&b, "        - public.%s\n", tb)
		}
		b.WriteString("      snapshot:\n        mode: initial\n        chunk_size: 20\n")
		return b.String()
	}
	runCrashScenario(t, k, sc)
}

// crashMySQL is the MariaDB dialect.
type crashMySQL struct{ db *sql.DB }

func (d *crashMySQL) createTables(ctx context.Context, tables []string) error {
	for _, tb := range tables {
		q := "CREATE TABLE " + tb + ` (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL, amount DECIMAL(12,2) NOT NULL,
			born DATE NOT NULL, updated DATETIME NOT NULL, note TEXT NULL, flag TINYINT(1) NOT NULL) DEFAULT CHARSET=utf8mb4`
		if _, err := d.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create table %s: %w", tb, err)
		}
	}
	return nil
}

func crashQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (v crashValues) literals(boolean func(bool) string) []string {
	note := "NULL"
	if v.note != nil {
		note = crashQuote(*v.note)
	}
	return []string{crashQuote(v.name), v.amount, crashQuote(v.born), crashQuote(v.updated), note, boolean(v.flag)}
}

var crashColumns = []string{"name", "amount", "born", "updated", "note", "flag"}

// crashSQL renders ops as statements; consecutive inserts into one table become one
// multi-row INSERT.
func crashSQL(ops []crashOp, boolean func(bool) string) []string {
	var out []string
	for i := 0; i < len(ops); {
		op := ops[i]
		switch op.kind {
		case crashInsert:
			var rows []string
			for ; i < len(ops) && ops[i].kind == crashInsert && ops[i].table == op.table; i++ {
				rows = append(rows, "("+strconv.FormatInt(ops[i].id, 10)+", "+strings.Join(ops[i].values.literals(boolean), ", ")+")")
			}
			out = append(out, "INSERT INTO "+op.table+" (id, "+strings.Join(crashColumns, ", ")+") VALUES "+strings.Join(rows, ", "))
			continue
		case crashUpdate:
			lits := op.values.literals(boolean)
			var sets []string
			for j, c := range crashColumns {
				sets = append(sets, c+" = "+lits[j])
			}
			out = append(out, fmt.Sprintf("UPDATE %s SET %s WHERE id = %d", op.table, strings.Join(sets, ", "), op.id))
		case crashDelete:
			out = append(out, fmt.Sprintf("DELETE FROM %s WHERE id = %d", op.table, op.id))
		case crashMove:
			out = append(out, fmt.Sprintf("UPDATE %s SET id = %d WHERE id = %d", op.table, op.newID, op.id))
		}
		i++
	}
	return out
}

func (d *crashMySQL) exec(ctx context.Context, ops []crashOp) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, q := range crashSQL(ops, func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}) {
		if res, err := tx.ExecContext(ctx, q); err != nil {
			tx.Rollback()
			return fmt.Errorf("%.200s: %w", q, err)
		} else if n, _ := res.RowsAffected(); n == 0 {
			tx.Rollback()
			return fmt.Errorf("%.200s: no row affected (the writer's model is wrong)", q)
		}
	}
	return tx.Commit()
}

func (d *crashMySQL) dump(ctx context.Context, table string) (map[string]crashRow, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT id, name, amount, born, updated, note, flag FROM "+table)
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", table, err)
	}
	defer rows.Close()
	return scanCrashRows(table, append([]string{"id"}, crashColumns...), "id", rows.Next, rows.Scan, rows.Err)
}

// scanCrashRows reads rows of the columns names as key column → row.
func scanCrashRows(table string, names []string, key string, next func() bool, scan func(...any) error, errf func() error) (map[string]crashRow, error) {
	out := map[string]crashRow{}
	for next() {
		vals := make([]sql.NullString, len(names))
		ptrs := make([]any, len(names))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := scan(ptrs...); err != nil {
			return nil, fmt.Errorf("dump %s: %w", table, err)
		}
		r := crashRow{}
		for i, n := range names {
			if vals[i].Valid {
				r[n] = vals[i].String
			} else {
				r[n] = crashNull
			}
		}
		out[r[key]] = r
	}
	if err := errf(); err != nil {
		return nil, fmt.Errorf("dump %s: %w", table, err)
	}
	return out, nil
}

// crashPG is the PostgreSQL dialect. household has REPLICA IDENTITY FULL, person the
// default (key-only before-images), so both shapes of update/delete are replayed.
type crashPG struct{ conn *pgx.Conn }

func (d *crashPG) createTables(ctx context.Context, tables []string) error {
	for i, tb := range tables {
		q := "CREATE TABLE " + tb + ` (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2) NOT NULL,
			born date NOT NULL, updated timestamp NOT NULL, note text, flag boolean NOT NULL)`
		if _, err := d.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("create table %s: %w", tb, err)
		}
		if i%2 == 1 {
			if _, err := d.conn.Exec(ctx, "ALTER TABLE "+tb+" REPLICA IDENTITY FULL"); err != nil {
				return fmt.Errorf("replica identity of %s: %w", tb, err)
			}
		}
	}
	return nil
}

func (d *crashPG) exec(ctx context.Context, ops []crashOp) error {
	tx, err := d.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, q := range crashSQL(ops, strconv.FormatBool) {
		tag, err := tx.Exec(ctx, q)
		if err != nil {
			return fmt.Errorf("%.200s: %w", q, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%.200s: no row affected (the writer's model is wrong)", q)
		}
	}
	return tx.Commit(ctx)
}

func (d *crashPG) dump(ctx context.Context, table string) (map[string]crashRow, error) {
	rows, err := d.conn.Query(ctx, "SELECT id::text, name, amount::text, born::text, updated::text, note, flag::text FROM "+table)
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", table, err)
	}
	defer rows.Close()
	return scanCrashRows(table, append([]string{"id"}, crashColumns...), "id", rows.Next, rows.Scan, rows.Err)
}

// TestCrashReplay checks the replay the crash tests rely on: upserts, deletes, key
// moves (the old key stays deleted even when a stale event for it follows in its
// partition), truncates, and the duplicate counts.
func TestCrashReplay(t *testing.T) {
	row := func(id, name string) map[string]any {
		return map[string]any{"id": json.Number(id), "name": name, "note": nil}
	}
	ev := func(part int, op schemas.Op, lsn string, seq int64, id string, before, after map[string]any) crashEvent {
		return crashEvent{partition: part, env: &schemas.Envelope{Op: op, Key: map[string]any{"id": json.Number(id)},
			Before: before, After: after, Source: schemas.Source{LSN: lsn, Seq: seq, Snapshot: op == schemas.OpRead}}}
	}
	tests := []struct {
		name                string
		events              []crashEvent
		want                map[string]string // id → name
		seen                []string
		snapDups, streamDup int
	}{
		{name: "snapshot then update",
			events: []crashEvent{ev(0, schemas.OpRead, "0/1", 1, "1", nil, row("1", "a")), ev(0, schemas.OpUpdate, "0/2", 1, "1", nil, row("1", "b"))},
			want:   map[string]string{"1": "b"}, seen: []string{"1"}},
		{name: "delete",
			events: []crashEvent{ev(0, schemas.OpCreate, "0/2", 1, "1", nil, row("1", "a")), ev(0, schemas.OpDelete, "0/3", 1, "1", row("1", "a"), nil)},
			want:   map[string]string{}, seen: []string{"1"}},
		{name: "key move deletes the old key even before its partition is read",
			events: []crashEvent{ev(0, schemas.OpUpdate, "0/5", 1, "9", row("1", "a"), row("9", "a")), ev(1, schemas.OpRead, "0/1", 1, "1", nil, row("1", "a"))},
			want:   map[string]string{"9": "a"}, seen: []string{"1", "9"}},
		{name: "truncate clears",
			events: []crashEvent{ev(0, schemas.OpCreate, "0/2", 1, "1", nil, row("1", "a")), {env: &schemas.Envelope{Op: schemas.OpTruncate}}, ev(0, schemas.OpCreate, "0/4", 1, "2", nil, row("2", "b"))},
			want:   map[string]string{"2": "b"}, seen: []string{"1", "2"}},
		{name: "duplicates after a restart",
			events: []crashEvent{ev(0, schemas.OpRead, "0/1", 1, "1", nil, row("1", "a")), ev(0, schemas.OpRead, "0/1", 1, "1", nil, row("1", "a")),
				ev(0, schemas.OpUpdate, "0/2", 1, "1", nil, row("1", "b")), ev(0, schemas.OpUpdate, "0/2", 1, "1", nil, row("1", "b")), ev(0, schemas.OpUpdate, "0/2", 2, "1", nil, row("1", "c"))},
			want: map[string]string{"1": "c"}, seen: []string{"1"}, snapDups: 1, streamDup: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := replayCrashTopic(tc.events)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for id, row := range r.state {
				got[id] = row["name"]
				if row["note"] != crashNull {
					t.Errorf("id %s: null note came back as %q", id, row["note"])
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("state %v, want %v", got, tc.want)
			}
			for _, id := range tc.seen {
				if !r.seen[id] {
					t.Errorf("id %s not marked as seen", id)
				}
			}
			if r.snapDups != tc.snapDups || r.streamDup != tc.streamDup {
				t.Errorf("duplicates: snapshot %d stream %d, want %d and %d", r.snapDups, r.streamDup, tc.snapDups, tc.streamDup)
			}
		})
	}
}
