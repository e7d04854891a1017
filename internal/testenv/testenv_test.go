package testenv_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shouwang/shouwang/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func openMySQL(dsn string) (*sql.DB, error) { return sql.Open("mysql", dsn) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestMariaDBBinlogSettingsAndAccounts(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	m, db := testenv.MariaDBDatabase(t)
	if m.Flavor() != testenv.FlavorMariaDB && m.Flavor() != testenv.FlavorMySQL {
		t.Fatalf("Flavor() = %q", m.Flavor())
	}
	if m.Port() == 3306 {
		t.Fatalf("private server took the machine's port 3306")
	}
	conn, err := m.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	want := map[string]string{
		"log_bin":             "ON",
		"binlog_format":       "ROW",
		"binlog_row_image":    "FULL",
		"binlog_row_metadata": "FULL",
		"bind_address":        "127.0.0.1",
	}
	if m.Flavor() == testenv.FlavorMariaDB {
		want["gtid_strict_mode"] = "ON"
	} else {
		want["gtid_mode"] = "ON"
	}
	for name, v := range want {
		var n, got string
		if err := conn.QueryRowContext(ctx, "SHOW VARIABLES LIKE '"+name+"'").Scan(&n, &got); err != nil {
			t.Fatalf("SHOW VARIABLES LIKE %q: %v", name, err)
		}
		if !strings.EqualFold(got, v) {
			t.Errorf("%s = %q, want %q", name, got, v)
		}
	}

	if err := m.Exec(ctx, db,
		"CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(32)) ENGINE=InnoDB; INSERT INTO person VALUES (1, '张三')"); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := conn.QueryRowContext(ctx, "SELECT name FROM person WHERE id = 1").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "张三" {
		t.Errorf("round-tripped name = %q, want 张三 (utf8mb4 broken?)", name)
	}

	// The replication account must be able to read binlog status and snapshot data.
	repl, err := openMySQL(m.ReplDSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close()
	rows, err := repl.QueryContext(ctx, "SHOW MASTER STATUS")
	if err != nil {
		t.Fatalf("SHOW MASTER STATUS as %s: %v", m.ReplUser(), err)
	}
	if !rows.Next() {
		t.Fatalf("SHOW MASTER STATUS returned no row: binlog is off")
	}
	_ = rows.Close()
	var count int
	if err := repl.QueryRowContext(ctx, "SELECT COUNT(*) FROM person").Scan(&count); err != nil || count != 1 {
		t.Fatalf("SELECT as %s: count=%d err=%v", m.ReplUser(), count, err)
	}
	if m.Flavor() == testenv.FlavorMariaDB {
		var pos string
		if err := repl.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
			t.Fatal(err)
		}
		if pos == "" {
			t.Errorf("@@gtid_binlog_pos is empty after a write")
		}
	}
}

func TestMariaDBKillKeepsData(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	m, db := testenv.NewMariaDBDatabase(t, testenv.MariaDBOptions{ServerID: 7})
	port := m.Port()
	if err := m.Exec(ctx, db, "CREATE TABLE kv (k INT PRIMARY KEY, v TEXT)", "INSERT INTO kv VALUES (1, 'before kill')"); err != nil {
		t.Fatal(err)
	}
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(ctx, db, "SELECT 1"); err == nil {
		t.Fatalf("query succeeded against a killed server")
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Port() != port {
		t.Errorf("port changed across restart: %d -> %d", port, m.Port())
	}
	if err := m.Exec(ctx, db, "INSERT INTO kv VALUES (2, 'after restart')"); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := m.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM kv").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("rows after kill + restart = %d, want 2", n)
	}
	var serverID int
	if err := conn.QueryRowContext(ctx, "SELECT @@server_id").Scan(&serverID); err != nil || serverID != 7 {
		t.Errorf("@@server_id = %d (err %v), want 7", serverID, err)
	}
}

func TestPostgresLogicalReplication(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	p, db := testenv.PostgresDatabase(t)
	if p.Port() == 5432 {
		t.Fatalf("private server took the machine's port 5432")
	}
	conn, err := p.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for name, want := range map[string]string{"wal_level": "logical", "max_replication_slots": "20", "listen_addresses": "127.0.0.1", "server_encoding": "UTF8"} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if err := p.Exec(ctx, db, "CREATE TABLE person (id int PRIMARY KEY, name text); CREATE PUBLICATION pub FOR TABLE person"); err != nil {
		t.Fatal(err)
	}

	rc, err := pgconn.Connect(ctx, p.ReplConnString(db))
	if err != nil {
		t.Fatalf("replication connection: %v", err)
	}
	defer rc.Close(context.Background())
	slot := db // slots are cluster-wide; the database name is unique
	res, err := pglogrepl.CreateReplicationSlot(ctx, rc, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{})
	if err != nil {
		t.Fatalf("create pgoutput slot: %v", err)
	}
	start, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		t.Fatal(err)
	}
	err = pglogrepl.StartReplication(ctx, rc, slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'pub'"},
	})
	if err != nil {
		t.Fatalf("start replication: %v", err)
	}
	if err := p.Exec(ctx, db, "INSERT INTO person VALUES (1, '李四')"); err != nil {
		t.Fatal(err)
	}
	got := receiveInsert(ctx, t, rc)
	if got != "李四" {
		t.Errorf("replicated name = %q, want 李四", got)
	}
}

// receiveInsert reads the replication stream until an INSERT arrives and returns its
// second column.
func receiveInsert(ctx context.Context, t *testing.T, rc *pgconn.PgConn) string {
	t.Helper()
	for {
		msg, err := rc.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive replication message: %v", err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			continue
		}
		if len(cd.Data) == 0 || cd.Data[0] != pglogrepl.XLogDataByteID {
			continue
		}
		x, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			t.Fatal(err)
		}
		lm, err := pglogrepl.Parse(x.WALData)
		if err != nil {
			t.Fatal(err)
		}
		if ins, ok := lm.(*pglogrepl.InsertMessage); ok {
			return string(ins.Tuple.Columns[1].Data)
		}
	}
}

func TestPostgresKillKeepsData(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	p, db := testenv.NewPostgresDatabase(t, testenv.PostgresOptions{Settings: map[string]string{"wal_sender_timeout": "5s"}})
	if err := p.Exec(ctx, db, "CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'before kill')"); err != nil {
		t.Fatal(err)
	}
	// Hold a connection open so Kill must take a backend down too.
	held, err := p.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := held.Ping(ctx); err == nil {
		t.Errorf("backend connection survived Kill")
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, db, "INSERT INTO kv VALUES (2, 'after restart')"); err != nil {
		t.Fatal(err)
	}
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := p.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	var timeout string
	if err := conn.QueryRow(ctx, "SELECT count(*), current_setting('wal_sender_timeout') FROM kv").Scan(&n, &timeout); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("rows after kill + restart = %d, want 2", n)
	}
	if timeout != "5s" {
		t.Errorf("wal_sender_timeout = %q, want the configured 5s", timeout)
	}
}

func TestKafkaProduceConsume(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	k := testenv.Kafka(t, testenv.WithBrokers(2))
	if len(k.Brokers()) != 2 {
		t.Fatalf("Brokers() = %v, want 2 addresses", k.Brokers())
	}
	const topic = "p.raw.test.person"
	if err := k.CreateTopics(ctx, 3, topic); err != nil {
		t.Fatal(err)
	}
	if err := k.CreateTopics(ctx, 3, topic); err != nil {
		t.Fatalf("creating an existing topic must not fail: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k1"), Value: []byte("hello 守望")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	for {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("fetch: %v", err)
		}
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if string(recs[0].Key) != "k1" || string(recs[0].Value) != "hello 守望" {
			t.Fatalf("consumed %q=%q, want k1=hello 守望", recs[0].Key, recs[0].Value)
		}
		return
	}
}

func TestKafkaAutoTopicCreationIsOptional(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, auto := range []bool{false, true} {
		t.Run(fmt.Sprintf("auto=%v", auto), func(t *testing.T) {
			var opts []testenv.KafkaOption
			if auto {
				opts = append(opts, testenv.WithAutoTopicCreation())
			}
			k := testenv.Kafka(t, opts...)
			cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...), kgo.AllowAutoTopicCreation(),
				kgo.RecordDeliveryTimeout(3*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			err = cl.ProduceSync(ctx, &kgo.Record{Topic: "missing", Value: []byte("x")}).FirstErr()
			if auto && err != nil {
				t.Errorf("produce with auto creation: %v", err)
			}
			if !auto && err == nil {
				t.Errorf("produce to a missing topic succeeded without auto creation")
			}
		})
	}
}

func TestMissingBinaryIsTyped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := testenv.StartPostgres(ctx, testenv.PostgresOptions{BinDir: t.TempDir()})
	checkMissing(t, err, "postgresql")
	_, err = testenv.StartMariaDB(ctx, testenv.MariaDBOptions{ServerBinary: "/nonexistent/mariadbd"})
	checkMissing(t, err, "mariadb-server")
	_, err = testenv.StartPrometheus(ctx, testenv.PrometheusOptions{Binary: "/nonexistent/prometheus"})
	checkMissing(t, err, "prometheus")
}

func checkMissing(t *testing.T, err error, pkg string) {
	t.Helper()
	if !errors.Is(err, testenv.ErrBinaryNotFound) {
		t.Fatalf("error %v does not wrap ErrBinaryNotFound", err)
	}
	var mb *testenv.MissingBinaryError
	if !errors.As(err, &mb) || mb.Package != pkg {
		t.Fatalf("error %v is not a *MissingBinaryError for package %s", err, pkg)
	}
	if !strings.Contains(err.Error(), "apt-get install -y "+pkg) {
		t.Errorf("error %q does not say how to install %s", err, pkg)
	}
}

func TestPostgresDropDatabaseWithActiveSlot(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	p := testenv.Postgres(t)
	db := testenv.DatabaseName(t)
	if err := p.CreateDatabase(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateDatabase(ctx, db); err != nil {
		t.Fatalf("CreateDatabase on an existing database: %v", err)
	}
	rc, err := pgconn.Connect(ctx, p.ReplConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(context.Background())
	res, err := pglogrepl.CreateReplicationSlot(ctx, rc, db, "pgoutput", pglogrepl.CreateReplicationSlotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lsn, _ := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err := p.Exec(ctx, db, "CREATE PUBLICATION pub FOR ALL TABLES"); err != nil {
		t.Fatal(err)
	}
	// An active walsender holds the slot; DropDatabase must still succeed.
	if err := pglogrepl.StartReplication(ctx, rc, db, lsn, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'pub'"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.DropDatabase(ctx, db); err != nil {
		t.Fatal(err)
	}
	conn, err := p.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var dbs, slots int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1), (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1)", db).Scan(&dbs, &slots); err != nil {
		t.Fatal(err)
	}
	if dbs != 0 || slots != 0 {
		t.Errorf("after DropDatabase: %d databases and %d slots named %s remain", dbs, slots, db)
	}
}

// BenchmarkStartMariaDB measures what a private server costs a test (install + start + stop).
func BenchmarkStartMariaDB(b *testing.B) {
	for b.Loop() {
		m := testenv.NewMariaDB(b, testenv.MariaDBOptions{})
		if err := m.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStartPostgres measures what a private server costs a test (initdb + start + stop).
func BenchmarkStartPostgres(b *testing.B) {
	for b.Loop() {
		p := testenv.NewPostgres(b, testenv.PostgresOptions{})
		if err := p.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMariaDBDatabase measures the per-test cost of a fresh database on the shared server.
func BenchmarkMariaDBDatabase(b *testing.B) {
	m := testenv.MariaDB(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("bench_%d", i)
		if err := m.CreateDatabase(ctx, name); err != nil {
			b.Fatal(err)
		}
		if err := m.DropDatabase(ctx, name); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPostgresDatabase measures the per-test cost of a fresh database on the shared server.
func BenchmarkPostgresDatabase(b *testing.B) {
	p := testenv.Postgres(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("bench_%d", i)
		if err := p.CreateDatabase(ctx, name); err != nil {
			b.Fatal(err)
		}
		if err := p.DropDatabase(ctx, name); err != nil {
			b.Fatal(err)
		}
	}
}
