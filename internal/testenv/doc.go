// Package testenv starts real servers for tests and for `shouwang demo`: private MariaDB
// (or MySQL) and PostgreSQL instances run from the machine's binaries in temporary
// directories on free loopback ports, and in-process Kafka clusters (kfake). There are no
// mocks: capture, sink and checker tests talk to the same kinds of servers as production.
//
// # In tests
//
// Add a TestMain so shared servers are stopped when the test binary ends:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Then, in a test:
//
//	m, db := testenv.MariaDBDatabase(t)   // shared server, fresh database for this test
//	dsn := m.RootDSN(db)                  // go-sql-driver DSN; m.ReplUser()/ReplPassword() for binlog readers
//	p, pdb := testenv.PostgresDatabase(t) // shared server, fresh database
//	conn := p.ConnString(pdb)             // pgx; p.ReplConnString(pdb) for pglogrepl
//	k := testenv.Kafka(t, testenv.WithAutoTopicCreation())
//	brokers := k.Brokers()
//
// The shared servers start on first use (a few seconds, once per package) and are
// shared by parallel tests, so never Kill or Restart them and keep to your own database;
// name PostgreSQL replication slots after your database (slots are cluster-wide) and give
// every binlog reader a server ID other than m.ServerID(). Tests that crash or restart a
// server use a private instance, stopped by t.Cleanup:
//
//	m := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
//	m.Kill()          // SIGKILL, data kept
//	m.Start(ctx)      // same datadir and port, after crash recovery
//
// A private Prometheus (scrape and rule evaluation every second) runs the same way:
//
//	p := testenv.NewPrometheus(t, testenv.PrometheusOptions{ScrapeTargets: []string{addr}, RuleFiles: []string{f}})
//	alerts, err := p.Alerts(ctx) // also Query, Targets, RuleGroups
//
// When a binary is missing or a server cannot start, the test is skipped with the
// apt-get command to run (mariadb-server, postgresql, prometheus); with CI or
// SHOUWANG_REQUIRE_SERVERS=1 in the environment it fails instead.
//
// # Outside tests
//
// StartMariaDB, StartPostgres and StartKafka return servers the caller must Stop/Close.
// A missing binary is reported as a *MissingBinaryError wrapping ErrBinaryNotFound.
//
// # Safety
//
// When run as root the servers run as the mysql and postgres system users. They listen
// only on 127.0.0.1, never on 3306/5432, and are killed by the kernel (Pdeathsig) if the
// process that started them dies; directories left behind by such a crash are removed the
// next time any instance starts. Defaults favour speed (no fsync) but a SIGKILLed server
// keeps every committed transaction; MariaDBOptions.Durable and PostgresOptions.Durable
// restore full durability.
package testenv
