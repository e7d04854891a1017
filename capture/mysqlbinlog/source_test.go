package mysqlbinlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shouwang/shouwang/capture"
	"github.com/shouwang/shouwang/internal/testenv"
	"github.com/shouwang/shouwang/schemas"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var serverIDs atomic.Uint32

func init() { serverIDs.Store(1000) }

func testOptions(t *testing.T, srv *testenv.MariaDBServer, db string) Options {
	return Options{
		Name: "national", TopicPrefix: "sc",
		Host: srv.Host(), Port: srv.Port(), User: srv.ReplUser(), Password: srv.ReplPassword(),
		Flavor: srv.Flavor(), ServerID: serverIDs.Add(1),
		Databases: []string{db}, StateDir: t.TempDir(), ChunkSize: 7,
		HeartbeatInterval: time.Second,
	}
}

func openSource(t *testing.T, opts Options, last capture.Position) *Source {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Open(ctx, last); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustDB(t *testing.T, srv *testenv.MariaDBServer, db string) *sql.DB {
	t.Helper()
	d, err := srv.Open(db)
	if err != nil {
		t.Fatalf("open %s: %v", db, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func exec(t *testing.T, d *sql.DB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := d.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func headPos(t testing.TB, d *sql.DB) binlogPos {
	t.Helper()
	var f string
	var p uint32
	var a, b sql.NullString
	if err := d.QueryRow("SHOW MASTER STATUS").Scan(&f, &p, &a, &b); err != nil {
		t.Fatalf("SHOW MASTER STATUS: %v", err)
	}
	return binlogPos{f, p}
}

// readUntilCaughtUp reads until a change carries a position at or after head with no
// snapshot work left, and returns every change read except position-only ones.
func readUntilCaughtUp(t *testing.T, s *Source, head binlogPos) ([]capture.Change, Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var all []capture.Change
	var last Position
	for {
		chs, err := s.ReadN(ctx, 100)
		if err != nil {
			t.Fatalf("ReadN after %d changes (want head %v): %v", len(all), head, err)
		}
		if len(chs) == 0 {
			t.Fatal("ReadN returned no changes and no error")
		}
		for _, c := range chs {
			if !c.PositionOnly {
				all = append(all, c)
			}
			if c.Position == nil {
				continue
			}
			p, ok, err := DecodePosition(c.Position)
			if err != nil || !ok {
				t.Fatalf("bad position %s: %v", c.Position, err)
			}
			last = p
		}
		if last.File != "" && (binlogPos{last.File, last.Pos}).compare(head) >= 0 && len(last.Snapshot) == 0 {
			return all, last
		}
	}
}

// apply folds changes into a map keyed by the encoded key, as an upserting sink would.
func apply(t *testing.T, state map[string]map[string]any, chs []capture.Change) {
	t.Helper()
	for _, c := range chs {
		if c.PositionOnly || c.DeadLetter != nil {
			continue
		}
		if err := c.Envelope.Validate(); err != nil {
			t.Fatalf("invalid envelope %+v: %v", c.Envelope, err)
		}
		switch c.Envelope.Op {
		case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
			if c.Envelope.Op == schemas.OpUpdate {
				delete(state, string(encodeKey(keyOf(sortedCols(c.Envelope.Key), c.Envelope.Before))))
			}
			state[string(c.Key)] = c.Envelope.After
		case schemas.OpDelete:
			delete(state, string(c.Key))
		case schemas.OpTruncate:
			for k := range state {
				delete(state, k)
			}
		}
	}
}

// tableState reads the table with the snapshot converter, keyed like the stream. d must
// be the source's own pool (text protocol without parseTime, UTC session).
func tableState(t *testing.T, d *sql.DB, db, table string) map[string]map[string]any {
	t.Helper()
	ver, err := readTableSchema(context.Background(), d, db, table)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := d.Query(fmt.Sprintf("SELECT * FROM `%s`.`%s`", db, table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]map[string]any{}
	raw := make([]sql.RawBytes, len(ver.Columns))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string]any{}
		for i, c := range ver.Columns {
			var b []byte
			if raw[i] != nil {
				b = append([]byte{}, raw[i]...)
			}
			v, err := sqlValue(specFromColumn(c), b)
			if err != nil {
				t.Fatalf("column %s: %v", c.Name, err)
			}
			row[c.Name] = v
		}
		out[string(encodeKey(keyOf(ver.PK, row)))] = row
	}
	return out
}

func jsonEqual(t *testing.T, want, got any) bool {
	t.Helper()
	a, _ := json.Marshal(want)
	b, _ := json.Marshal(got)
	return string(a) == string(b)
}

// Parallel 4 reads four chunks of the table per watermark window (ChunkSize 7).
func TestSnapshotAndStreamReproduceFinalState(t *testing.T) {
	for _, par := range []int{1, 4} {
		t.Run(fmt.Sprintf("parallel=%d", par), func(t *testing.T) {
			srv, db := testenv.MariaDBDatabase(t)
			d := mustDB(t, srv, db)
			exec(t, d, `CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, income DECIMAL(12,2), village_code CHAR(12), born DATE, updated DATETIME(3))`)
			for i := 1; i <= 200; i++ {
				exec(t, d, fmt.Sprintf("INSERT INTO person VALUES (%d, '姓名%d', %d.50, '510104%06d', '1980-01-%02d', '2024-03-01 10:00:00.123')", i, i, i*100, i, i%28+1))
			}
			opts := testOptions(t, srv, db)
			opts.Parallel = par
			s := openSource(t, opts, nil)

			// Concurrent writer: random inserts, updates (some changing the key) and deletes.
			done := make(chan struct{})
			go func() {
				defer close(done)
				r := rand.New(rand.NewPCG(1, 2))
				for i := 0; i < 300; i++ {
					id := r.IntN(260) + 1
					var q string
					switch r.IntN(4) {
					case 0:
						q = fmt.Sprintf("INSERT IGNORE INTO person VALUES (%d, 'new%d', 1.00, '510105000001', NULL, NOW(3))", id, i)
					case 1:
						q = fmt.Sprintf("DELETE FROM person WHERE id = %d", id)
					case 2:
						q = fmt.Sprintf("UPDATE IGNORE person SET id = id + 1000 WHERE id = %d", id)
					default:
						q = fmt.Sprintf("UPDATE person SET name = 'upd%d', income = income + 1 WHERE id = %d", i, id)
					}
					if _, err := d.Exec(q); err != nil {
						t.Errorf("%s: %v", q, err)
						return
					}
				}
			}()
			state := map[string]map[string]any{}
			var all []capture.Change
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for {
				select {
				case <-done:
				default:
					chs, err := s.ReadN(ctx, 50)
					if err != nil {
						t.Fatal(err)
					}
					apply(t, state, chs)
					all = append(all, chs...)
					continue
				}
				break
			}
			chs, _ := readUntilCaughtUp(t, s, headPos(t, d))
			apply(t, state, chs)
			all = append(all, chs...)
			// How much of the stream ran inside the snapshot: changes read before the
			// last snapshot row.
			interleaved, streamed := 0, 0
			for _, c := range all {
				if c.PositionOnly || c.DeadLetter != nil {
					continue
				}
				if c.Envelope.Source.Snapshot {
					interleaved = streamed
				} else {
					streamed++
				}
			}
			t.Logf("%d stream changes, %d of them before the last snapshot row", streamed, interleaved)
			want := tableState(t, s.db, db, "person")
			if len(want) != len(state) {
				t.Errorf("rows: source has %d, replayed stream has %d", len(want), len(state))
			}
			for k, w := range want {
				if !jsonEqual(t, w, state[k]) {
					g, _ := json.Marshal(state[k])
					ws, _ := json.Marshal(w)
					t.Errorf("key %s: source %s, stream %s", k, ws, g)
				}
			}
		})
	}
}

func TestValueConversionRoundTrip(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	exec(t, d, `CREATE TABLE types (
		id BIGINT UNSIGNED PRIMARY KEY, ti TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT UNSIGNED, i INT UNSIGNED,
		de DECIMAL(10,2), f FLOAT, db DOUBLE, dt DATETIME, dt6 DATETIME(6), d DATE, ts TIMESTAMP NULL, tm TIME, y YEAR,
		vc VARCHAR(20), gb VARCHAR(20) CHARACTER SET gbk, tx TEXT, bl BLOB, vb VARBINARY(8), e ENUM('脱贫户','监测户'), st SET('a','b','c'),
		j JSON, b BIT(5))`)
	insert := `INSERT INTO types VALUES (18446744073709551615, 255, -5, 16777215, 4294967295, 12.50, 1.5, 2.25,
		'2024-02-29 23:59:59', '2024-02-29 23:59:59.123456', '2024-02-29', '2024-02-29 12:00:00', '-01:02:03', 2024,
		'川A', '四川', '长文本', x'00ff10', x'0102', '监测户', 'a,c', '{"k": [1, "二"]}', b'10101')`
	exec(t, d, insert)
	s := openSource(t, testOptions(t, srv, db), nil)
	chs, _ := readUntilCaughtUp(t, s, headPos(t, d))
	exec(t, d, "UPDATE types SET si = 7 WHERE id = 18446744073709551615")
	more, _ := readUntilCaughtUp(t, s, headPos(t, d))
	chs = append(chs, more...)
	var read, upd *schemas.Envelope
	for i := range chs {
		switch chs[i].Envelope.Op {
		case schemas.OpRead:
			read = &chs[i].Envelope
		case schemas.OpUpdate:
			upd = &chs[i].Envelope
		}
	}
	if read == nil || upd == nil {
		t.Fatalf("want one r and one u, got %d changes", len(chs))
	}
	want := map[string]any{
		"id": uint64(18446744073709551615), "ti": uint64(255), "si": int64(-5), "mi": uint64(16777215), "i": uint64(4294967295),
		"de": "12.50", "f": float32(1.5), "db": 2.25, "dt": "2024-02-29 23:59:59", "dt6": "2024-02-29 23:59:59.123456",
		"d": "2024-02-29", "ts": "2024-02-29 12:00:00", "tm": "-01:02:03", "y": int64(2024), "vc": "川A", "gb": "四川",
		"tx": "长文本", "bl": []byte{0, 0xff, 0x10}, "vb": []byte{1, 2}, "e": "监测户", "st": "a,c", "j": `{"k": [1, "二"]}`, "b": int64(21),
	}
	for col, w := range want {
		if !jsonEqual(t, w, read.After[col]) {
			t.Errorf("snapshot column %s = %#v, want %#v", col, read.After[col], w)
		}
		if !jsonEqual(t, w, upd.Before[col]) {
			t.Errorf("binlog column %s = %#v, want %#v", col, upd.Before[col], w)
		}
	}
	if upd.After["si"] != int64(7) {
		t.Errorf("after.si = %#v, want 7", upd.After["si"])
	}
	if string(chs[len(chs)-1].Key) != `{"id":18446744073709551615}` {
		t.Errorf("key = %s", chs[len(chs)-1].Key)
	}
}

func TestResumeAfterCloseHasNoGap(t *testing.T) {
	srv, db := testenv.MariaDBDatabase(t)
	d := mustDB(t, srv, db)
	exec(t, d, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	opts := testOptions(t, srv, db)
	opts.SnapshotMode = SnapshotNever
	s := openSource(t, opts, nil)
	for i := 1; i <= 20; i++ {
		exec(t, d, fmt.Sprintf("INSERT INTO t VALUES (%d, 0)", i))
	}
	exec(t, d, "BEGIN", "UPDATE t SET v = 1 WHERE id <= 5", "COMMIT")
	chs, last := readUntilCaughtUp(t, s, headPos(t, d))
	// Only the transaction's last change carries a position.
	if chs[len(chs)-1].Position == nil || chs[len(chs)-2].Position != nil {
		t.Errorf("positions: want only the last change of the 5-row transaction to carry one")
	}
	s.Close()
	for i := 21; i <= 30; i++ {
		exec(t, d, fmt.Sprintf("INSERT INTO t VALUES (%d, 0)", i))
	}
	for _, useGTID := range []bool{false, true} {
		o := opts
		o.UseGTID = useGTID
		o.ServerID = serverIDs.Add(1)
		s2 := openSource(t, o, last.Encode())
		chs2, _ := readUntilCaughtUp(t, s2, headPos(t, d))
		var ids []int64
		for _, c := range chs2 {
			ids = append(ids, c.Envelope.After["id"].(int64))
		}
		if len(ids) != 10 || ids[0] != 21 || ids[9] != 30 {
			t.Errorf("gtid=%v: resumed ids = %v, want 21..30", useGTID, ids)
		}
		s2.Close()
	}
}

func TestSchemaChangesDecodeOldAndNewRows(t *testing.T) {
	for _, meta := range []string{"FULL", "MINIMAL"} {
		t.Run(meta, func(t *testing.T) {
			srv := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
			ctx := context.Background()
			db := "ddl"
			if err := srv.CreateDatabase(ctx, db); err != nil {
				t.Fatal(err)
			}
			d := mustDB(t, srv, db)
			exec(t, d, "SET GLOBAL binlog_row_metadata = "+meta)
			d.SetMaxOpenConns(1)
			exec(t, d, "CREATE TABLE h (id INT PRIMARY KEY, a VARCHAR(10), b INT)")
			opts := testOptions(t, srv, db)
			opts.SnapshotMode = SnapshotNever
			// Open once to record the schema history at the start, then read everything
			// after all DDL ran: the replay must decode old rows with old columns.
			s := openSource(t, opts, nil)
			start := s.committed.Encode()
			s.Close()
			exec(t, d,
				"INSERT INTO h VALUES (1, 'x', 10)",
				"ALTER TABLE h ADD COLUMN c VARCHAR(5) AFTER a",
				"INSERT INTO h VALUES (2, 'y', 'cc', 20)",
				"ALTER TABLE h DROP COLUMN a",
				"ALTER TABLE h RENAME COLUMN b TO bb",
				"INSERT INTO h VALUES (3, 'zz', 30)",
				"TRUNCATE TABLE h",
			)
			s2 := openSource(t, opts, start)
			chs, _ := readUntilCaughtUp(t, s2, headPos(t, d))
			var got []string
			for _, c := range chs {
				e := c.Envelope
				switch e.Op {
				case schemas.OpCreate:
					b, _ := json.Marshal(e.After)
					got = append(got, fmt.Sprintf("c v%d %s", e.Schema.Version, b))
				case schemas.OpSchema:
					got = append(got, "s "+strings.Fields(e.DDL)[3])
				case schemas.OpTruncate:
					got = append(got, "t "+e.Source.Table)
				default:
					got = append(got, string(e.Op)+" "+e.DDL)
				}
			}
			want := []string{
				`c v1 {"a":"x","b":10,"id":1}`,
				"s ADD",
				`c v2 {"a":"y","b":20,"c":"cc","id":2}`,
				"s DROP",
				"s RENAME",
				`c v4 {"bb":30,"c":"zz","id":3}`,
				"t h",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestPurgedBinlogDetectedAndHealed(t *testing.T) {
	srv := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	ctx := context.Background()
	db := "pg"
	if err := srv.CreateDatabase(ctx, db); err != nil {
		t.Fatal(err)
	}
	d := mustDB(t, srv, db)
	d.SetMaxOpenConns(1)
	exec(t, d, "CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1),(2)")
	opts := testOptions(t, srv, db)
	opts.SnapshotMode = SnapshotNever
	s := openSource(t, opts, nil)
	old := s.committed.Encode()
	s.Close()
	exec(t, d, "INSERT INTO t VALUES (3)", "FLUSH BINARY LOGS")
	cur := headPos(t, d)
	// MariaDB keeps a file until InnoDB's binlog checkpoint passes it: retry.
	for i := 0; ; i++ {
		exec(t, d, fmt.Sprintf("PURGE BINARY LOGS TO '%s'", cur.File))
		var n int
		rows, err := d.Query("SHOW BINARY LOGS")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			n++
		}
		rows.Close()
		if n == 1 {
			break
		}
		if i == 100 {
			t.Fatalf("PURGE BINARY LOGS left %d files", n)
		}
		time.Sleep(100 * time.Millisecond)
	}

	o := opts
	o.SnapshotMode = SnapshotInitial
	s2, _ := New(o)
	err := s2.Open(ctx, old)
	s2.Close()
	if !errors.Is(err, ErrBinlogPurged) {
		t.Fatalf("Open on a purged position: err = %v, want ErrBinlogPurged", err)
	}
	o.SnapshotMode = SnapshotWhenNeeded
	o.ServerID = serverIDs.Add(1)
	s3 := openSource(t, o, old)
	chs, _ := readUntilCaughtUp(t, s3, headPos(t, d))
	var ids []int64
	for _, c := range chs {
		if c.Envelope.Op != schemas.OpRead {
			t.Errorf("healing emitted op %s, want only r", c.Envelope.Op)
		}
		ids = append(ids, c.Envelope.After["id"].(int64))
	}
	if fmt.Sprint(ids) != "[1 2 3]" {
		t.Errorf("re-snapshot ids = %v, want [1 2 3]", ids)
	}
}

func TestServerKilledMidStreamReconnectsWithoutGap(t *testing.T) {
	srv := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	ctx := context.Background()
	db := "kill"
	if err := srv.CreateDatabase(ctx, db); err != nil {
		t.Fatal(err)
	}
	d := mustDB(t, srv, db)
	exec(t, d, "CREATE TABLE t (id INT PRIMARY KEY)")
	opts := testOptions(t, srv, db)
	opts.SnapshotMode = SnapshotNever
	s := openSource(t, opts, nil)
	for i := 1; i <= 10; i++ {
		exec(t, d, fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
	}
	seen := map[int64]int{}
	chs, _ := readUntilCaughtUp(t, s, headPos(t, d))
	for _, c := range chs {
		seen[c.Envelope.After["id"].(int64)]++
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	d2 := mustDB(t, srv, db)
	for i := 11; i <= 20; i++ {
		exec(t, d2, fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
	}
	chs, _ = readUntilCaughtUp(t, s, headPos(t, d2))
	for _, c := range chs {
		seen[c.Envelope.After["id"].(int64)]++
	}
	for i := int64(1); i <= 20; i++ {
		if seen[i] != 1 {
			t.Errorf("id %d seen %d times, want exactly once (reconnect resumes at the last commit)", i, seen[i])
		}
	}
}

// With parallel 4 the cut falls after the first chunk of a four-chunk group, so the
// restart resumes from the middle of a group.
func TestSnapshotResumesFromChunkCursor(t *testing.T) {
	for _, par := range []int{1, 4} {
		t.Run(fmt.Sprintf("parallel=%d", par), func(t *testing.T) {
			srv, db := testenv.MariaDBDatabase(t)
			d := mustDB(t, srv, db)
			exec(t, d, "CREATE TABLE t (a INT, b VARCHAR(5), PRIMARY KEY (a, b))")
			for i := 1; i <= 30; i++ {
				exec(t, d, fmt.Sprintf("INSERT INTO t VALUES (%d, 'x'), (%d, 'y')", i, i))
			}
			opts := testOptions(t, srv, db)
			opts.Parallel = par
			s := openSource(t, opts, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			seen := map[string]int{}
			var cut capture.Position
			for cut == nil {
				chs, err := s.ReadN(ctx, 3)
				if err != nil {
					t.Fatal(err)
				}
				// Changes after the cut are "lost in the crash": only count up to it.
				for _, c := range chs {
					if !c.PositionOnly {
						seen[string(c.Key)]++
					}
					if c.Position != nil {
						p, _, _ := DecodePosition(c.Position)
						if len(p.Snapshot) == 1 && p.Snapshot[0].Cursor != nil {
							cut = c.Position
							break
						}
					}
				}
			}
			if len(seen) != opts.ChunkSize {
				t.Errorf("the first position with a cursor came after %d rows, want one chunk (%d)", len(seen), opts.ChunkSize)
			}
			s.Close() // "crash" after the first chunk was acknowledged
			o := opts
			o.ServerID = serverIDs.Add(1)
			s2 := openSource(t, o, cut)
			chs, _ := readUntilCaughtUp(t, s2, headPos(t, d))
			for _, c := range chs {
				if c.Envelope.Op != schemas.OpRead || !c.Envelope.Source.Snapshot {
					t.Errorf("op %s snapshot=%v, want r from the snapshot", c.Envelope.Op, c.Envelope.Source.Snapshot)
				}
				seen[string(c.Key)]++
			}
			if len(seen) != 60 {
				t.Errorf("%d distinct rows, want 60", len(seen))
			}
			for k, n := range seen {
				if n != 1 {
					t.Errorf("row %s emitted %d times across the restart, want once", k, n)
				}
			}
		})
	}
}

// With parallel 4 the condition also applies to the chunk boundaries (ChunkSize 7).
func TestRequestSnapshotWithCondition(t *testing.T) {
	for _, par := range []int{1, 4} {
		t.Run(fmt.Sprintf("parallel=%d", par), func(t *testing.T) {
			srv, db := testenv.MariaDBDatabase(t)
			d := mustDB(t, srv, db)
			exec(t, d, "CREATE TABLE household (id INT PRIMARY KEY, village_code CHAR(12))")
			for i := 1; i <= 20; i++ {
				exec(t, d, fmt.Sprintf("INSERT INTO household VALUES (%d, '%s')", i, []string{"510104001001", "510105001001"}[i%2]))
			}
			opts := testOptions(t, srv, db)
			opts.SnapshotMode = SnapshotNever
			opts.Parallel = par
			s := openSource(t, opts, nil)
			if err := s.RequestSnapshot(db+".household", "village_code LIKE '510104%'"); err != nil {
				t.Fatal(err)
			}
			if err := s.RequestSnapshot("household", ""); err == nil {
				t.Error("RequestSnapshot accepted a table without database")
			}
			chs, _ := readUntilCaughtUp(t, s, headPos(t, d))
			var ids []int64
			for _, c := range chs {
				if c.Envelope.Op != schemas.OpRead || c.Envelope.After["village_code"] != "510104001001" {
					t.Errorf("unexpected change %s %v", c.Envelope.Op, c.Envelope.After)
				}
				ids = append(ids, c.Envelope.After["id"].(int64))
			}
			if len(ids) != 10 {
				t.Errorf("re-snapshot emitted ids %v, want the 10 even ids", ids)
			}
		})
	}
}
