package config

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnvSubstitution(t *testing.T) {
	env := envOf(map[string]string{"PW": "s3cr3t", "HOST": "10.0.0.9", "EMPTY": "", "PARTS": "12", "PREFIX": "sc"})
	cases := []struct {
		name    string
		value   string
		want    string
		problem string
	}{
		{"plain", "${HOST}", "10.0.0.9", ""},
		{"inside text", "u:${PW}@tcp(${HOST}:3306)/d", "u:s3cr3t@tcp(10.0.0.9:3306)/d", ""},
		{"default unused", "${HOST:-127.0.0.1}", "10.0.0.9", ""},
		{"default used", "${NOPE:-127.0.0.1}", "127.0.0.1", ""},
		{"empty takes default", "${EMPTY:-fallback}", "fallback", ""},
		{"empty default", "x${NOPE:-}y", "xy", ""},
		{"set but empty", "x${EMPTY}y", "xy", ""},
		{"dollar escape", "pa$$word", "pa$word", ""},
		{"lone dollar kept", "a$b", "a$b", ""},
		{"unset", "${NOPE}", "", "c.yaml:3: gen.out_dir: environment variable NOPE is not set: set it, or write ${NOPE:-default} to give a default"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := "demo: true\nkafka: {topic_prefix: x}\ngen: {out_dir: '" + tc.value + "'}\n"
			cfg, err := Parse("c.yaml", []byte(doc), env)
			if tc.problem != "" {
				if err == nil || err.Error() != tc.problem {
					t.Fatalf("want problem %q, got %v", tc.problem, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Gen.OutDir != tc.want {
				t.Fatalf("got %q, want %q", cfg.Gen.OutDir, tc.want)
			}
		})
	}
}

func TestEnvSubstitutionTypedFields(t *testing.T) {
	env := envOf(map[string]string{"PARTS": "12", "PREFIX": "sc", "EMB": "true", "HB": "45s"})
	doc := `kafka:
  embedded: ${EMB}
  topic_prefix: "${PREFIX}"
  partitions: ${PARTS}
sources:
  - name: n
    kind: mysqlbinlog
    mysql: {dsn: 'u:p@tcp(h:3306)/d', server_id: 1, tables: [d.t], heartbeat_interval: "${HB}"}
`
	cfg, err := Parse("c.yaml", []byte(doc), env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.Partitions != 12 || !cfg.Kafka.Embedded || cfg.Kafka.TopicPrefix != "sc" {
		t.Errorf("kafka = %+v", cfg.Kafka)
	}
	if got := cfg.Sources[0].MySQL.HeartbeatInterval.String(); got != "45s" {
		t.Errorf("heartbeat = %s, want 45s", got)
	}
}

func TestUnknownKeyNamesPathAndLine(t *testing.T) {
	doc := "kafka:\n  brokers: [h:9092]\n  topic_prefix: sc\n  topic_prefx: sc\nsources:\n  - name: a\n    kind: mysqlbinlog\n    mysql:\n      dsn: 'u:p@tcp(h:1)/d'\n      server_id: 1\n      serverid: 2\n      tables: [d.t]\n"
	_, err := Parse("c.yaml", []byte(doc), noEnv)
	if err == nil {
		t.Fatal("unknown keys must be errors")
	}
	want := []string{
		`c.yaml:4: kafka.topic_prefx: unknown key "topic_prefx" (valid keys here: brokers, client_id, embedded, partitions, replication_factor, sasl, session_timeout, tls, topic_prefix)`,
		`c.yaml:11: sources[0].mysql.serverid: unknown key "serverid" (valid keys here: dsn, flavor, gtid, heartbeat_interval, reload, server_id, snapshot, snapshot, tables)`,
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != 2 || got[0] != want[0] || !strings.HasPrefix(got[1], `c.yaml:11: sources[0].mysql.serverid: unknown key "serverid"`) {
		t.Fatalf("got:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestTypeErrorsNamePathAndLine(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"string into int", "kafka:\n  topic_prefix: sc\n  partitions: many\n", "c.yaml:3: kafka.partitions: cannot use the string `many` as int"},
		{"bad duration", "sources:\n  - name: a\n    kind: mysqlbinlog\n    mysql:\n      heartbeat_interval: 5 minutes\n", `c.yaml:5: sources[0].mysql.heartbeat_interval: invalid duration "5 minutes": write a Go duration like 30s, 5m or 1h30m`},
		{"number duration", "sources:\n  - name: a\n    kind: poll\n    poll:\n      queries:\n        - interval: 60\n", `c.yaml:6: sources[0].poll.queries[0].interval: invalid duration "60"`},
		{"list for string", "kafka:\n  topic_prefix: [a, b]\n", "c.yaml:2: kafka.topic_prefix: cannot use a list as string"},
		{"negative server id", "sources:\n  - mysql: {server_id: -1}\n", "c.yaml:2: sources[0].mysql.server_id: cannot use the number `-1` as uint32"},
		{"syntax", "kafka:\n  brokers: [a\n", "did not find expected ',' or ']'"},
		{"duplicate key", "kafka:\n  topic_prefix: a\n  topic_prefix: b\n", `c.yaml:3: kafka.topic_prefix: mapping key "topic_prefix" already defined at line 2`},
		{"not a mapping", "- a\n- b\n", "c.yaml:1: the document must be a mapping of sections"},
		{"empty", "", "c.yaml: the file is empty"},
		{"alias followed", "kafka: &k\n  tls: *k\n", `c.yaml:2: kafka.tls.tls: unknown key "tls"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.doc), noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
		})
	}
}

func TestMaskDSN(t *testing.T) {
	cases := []struct{ in, want string }{
		{"root:secret@tcp(10.2.3.4:3306)/qzk", "root:***@tcp(10.2.3.4:3306)/qzk"},
		{"root:se@cr/et@tcp(10.2.3.4:3306)/qzk?charset=utf8mb4", "root:***@tcp(10.2.3.4:3306)/qzk?charset=utf8mb4"},
		{"root@tcp(10.2.3.4:3306)/qzk", "root@tcp(10.2.3.4:3306)/qzk"},
		{"root:@tcp(h)/d", "root:***@tcp(h)/d"},
		{"/qzk", "/qzk"},
		{"", ""},
		{"postgres://repl:secret@10.0.0.1:5432/db?sslmode=require", "postgres://repl:***@10.0.0.1:5432/db?sslmode=require"},
		{"postgresql://repl:p@ss#w?rd@h1:5432,h2:5433/db", "postgresql://repl:***@h1:5432,h2:5433/db"},
		{"postgres://repl@h/db?password=secret&sslmode=disable", "postgres://repl@h/db?password=***&sslmode=disable"},
		{"postgres://h/db", "postgres://h/db"},
		{"postgres://u:a/b@h/db", "postgres://u:***@h/db"},
		{"postgres://u:ab@cd@h:5432/db?x=1", "postgres://u:***@h:5432/db?x=1"},
		{"https://user:secret@share.example/api?token=abc&x=1", "https://user:***@share.example/api?token=***&x=1"},
		{"host=10.0.0.1 user=u password=secret dbname=d", "host=10.0.0.1 user=u password=*** dbname=d"},
		{"host=h password='se cret \\' x' dbname=d", "host=h password=*** dbname=d"},
		{"password = secret host=h", "password = *** host=h"},
		{"host=h PASSWORD=secret", "host=h PASSWORD=***"},
	}
	for _, tc := range cases {
		if got := MaskDSN(tc.in); got != tc.want {
			t.Errorf("MaskDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPGEndpoints(t *testing.T) {
	cases := []struct {
		dsn   string
		addrs []string
		db    string
	}{
		{"postgres://u:p@h1:5433,h2/db", []string{"h1:5433", "h2:5432"}, "db"},
		{"postgres://u@[::1]:6000/db", []string{"[::1]:6000"}, "db"},
		{"postgres:///db?host=/tmp&port=5440", []string{"/tmp/.s.PGSQL.5440"}, "db"},
		{"host=a,b port=1,2 dbname='my db'", []string{"a:1", "b:2"}, "my db"},
		{"hostaddr=10.0.0.1 dbname=x", []string{"10.0.0.1:5432"}, "x"},
	}
	for _, tc := range cases {
		eps, db, err := pgEndpoints(tc.dsn)
		if err != nil {
			t.Errorf("%s: %v", tc.dsn, err)
			continue
		}
		var got []string
		for _, e := range eps {
			got = append(got, e.addr)
		}
		if strings.Join(got, " ") != strings.Join(tc.addrs, " ") || db != tc.db {
			t.Errorf("%s: got %v %q, want %v %q", tc.dsn, got, db, tc.addrs, tc.db)
		}
	}
}

func TestCheckConnectivity(t *testing.T) {
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	go func() {
		for {
			c, err := open.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closedL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := closedL.Addr().String()
	closedL.Close()
	openAddr := open.Addr().String()
	_, closedPort, _ := net.SplitHostPort(closed)

	c := &Config{
		Kafka: Kafka{Brokers: []string{openAddr, closed}, TopicPrefix: "sc"},
		Sources: []Source{
			{Name: "a", Kind: KindMySQLBinlog, MySQL: &MySQLSource{DSN: "root:topsecret@tcp(" + closed + ")/db", ServerID: 1, Tables: []string{"db.t"}}},
			{Name: "b", Kind: KindPGLogical, Postgres: &PGSource{DSN: "postgres://repl:topsecret@" + openAddr + "/db", Slot: "s", Publication: "p", Tables: []string{"public.t"}}},
			{Name: "c", Kind: KindPoll, Poll: &PollSource{Driver: "postgres", DSN: "host=127.0.0.1 port=" + closedPort + " user=ro password=topsecret dbname=d", StateDSN: "postgres://u@" + openAddr + "/state",
				Queries: []PollQuery{{Name: "q", TableOrView: "v", Key: []string{"id"}, Mode: "incrementing", Column: "id"}}}},
		},
		Sinks: []Sink{
			{Name: "s", Kind: SinkSharingHTTP, URL: "http://" + openAddr + "/api", Topics: []string{"x"}},
			{Name: "p", Kind: SinkPostgres, DSN: "postgres://u@" + closed + "/db", Topics: []string{"x"}},
		},
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	errs := c.CheckConnectivity(context.Background())
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		"kafka.brokers[1]: cannot reach " + closed + ": connection refused",
		"sources[0].mysql.dsn: cannot reach " + closed + " (user root, password ***): connection refused",
		"sources[2].poll.dsn: cannot reach " + closed + " (user ro, password ***): connection refused",
		"sinks[1].dsn: cannot reach " + closed + " (user u): connection refused",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// repoRoot walks up from the test's working directory to the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// TestDeployConfigsAreValid loads every sample under deploy/config: secrets (variables
// named *PASSWORD* or *TOKEN*) are supplied, every other variable keeps its default.
func TestDeployConfigsAreValid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "config", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("want at least the example and the demo config, found %v", files)
	}
	secrets := func(k string) (string, bool) {
		if strings.Contains(k, "PASSWORD") || strings.Contains(k, "TOKEN") || strings.Contains(k, "KEY") {
			return "from-env-" + strconv.Itoa(len(k)), true
		}
		return "", false
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(f, data, secrets)
			if err != nil {
				t.Fatalf("sample config must pass config check:\n%v", err)
			}
			if len(cfg.Sources) == 0 {
				t.Errorf("a sample should show sources")
			}
			if filepath.Base(f) != "demo.yaml" && len(cfg.Sinks) == 0 {
				// demo.yaml lists only what the demo really runs today.
				t.Errorf("a production sample should show sinks")
			}
			// Without the secrets, the only problems are the unset variables.
			if _, err := Parse(f, data, noEnv); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					if !strings.Contains(line, "environment variable") {
						t.Errorf("unexpected problem without env: %s", line)
					}
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(baseYAML)
	f.Add("kafka: {brokers: [${X:-a:1}]}\n")
	f.Add("sources: [{name: a, kind: poll, poll: {queries: [{interval: x}]}}]\n")
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := Parse("f.yaml", []byte(doc), noEnv)
		if err == nil && cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		if err != nil && cfg != nil {
			t.Fatal("Parse returned a config together with an error")
		}
	})
}

func FuzzMaskDSN(f *testing.F) {
	f.Add("p4ssw0rd", "10.0.0.1:3306")
	f.Add("abc#?/@x", "h:1")
	f.Fuzz(func(t *testing.T, pw, hostport string) {
		if len(pw) < 6 || strings.ContainsAny(pw, "'\\@/?#&=:") || strings.ContainsAny(hostport, "@/?#&='\\") ||
			strings.IndexFunc(pw+hostport, unicode.IsSpace) >= 0 || strings.Contains("tcp(user)dbname=hostpassword", pw) || strings.Contains(hostport, pw) {
			return
		}
		for _, dsn := range []string{
			"user:" + pw + "@tcp(" + hostport + ")/db",
			"postgres://user:" + pw + "@" + hostport + "/db",
			"host=" + hostport + " user=user password=" + pw + " dbname=db",
			"host=" + hostport + " password='" + pw + "' dbname=db",
		} {
			if m := MaskDSN(dsn); strings.Contains(m, pw) {
				t.Fatalf("MaskDSN(%q) = %q still shows the password", dsn, m)
			}
		}
	})
}

// BenchmarkParseExample measures loading the full production example (start-up cost).
func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "config", "shouwang.example.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	env := func(string) (string, bool) { return "x", true }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("example.yaml", data, env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMaskDSN measures masking, which runs on every logged connection error.
func BenchmarkMaskDSN(b *testing.B) {
	dsns := []string{"root:secret@tcp(10.2.3.4:3306)/qzk", "postgres://repl:secret@10.0.0.1:5432/db?sslmode=require", "host=h user=u password=secret dbname=d"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = MaskDSN(dsns[i%len(dsns)])
	}
}

// TestEveryKindOfMistakeInOnePass checks that decoding problems (wrong type, unknown
// key, bad duration, unset ${ENV}) do not hide validation problems: all come out of
// one Parse, in file order, each with its line and key path, and a key whose value
// failed to decode is not reported a second time as missing.
func TestEveryKindOfMistakeInOnePass(t *testing.T) {
	doc := `kafka:
  brokers: [127.0.0.1:9092]
  topic_prefix: SC
  partitions: many
  topic_prefx: sc
metrics:
  addr: nope
sources:
  - name: national
    kind: mysqlbinlog
    mysql:
      dsn: ${NATIONAL_DSN}
      server_id: 11
      tables: qzk.household
      heartbeat_interval: 5 minutes
  - name: Civil
    kind: pglogical
    postgres:
      dsn: postgres://repl@127.0.0.1:5432/mz
      publication: p_civil
      tables: [public.dibao]
      status_interval: 2m
`
	_, err := Parse("c.yaml", []byte(doc), noEnv)
	if err == nil {
		t.Fatal("a file full of mistakes must not load")
	}
	want := []string{
		`c.yaml:3: kafka.topic_prefix: "SC" is not valid`,
		"c.yaml:4: kafka.partitions: cannot use the string `many` as int",
		`c.yaml:5: kafka.topic_prefx: unknown key "topic_prefx"`,
		`c.yaml:7: metrics.addr: "nope" is not host:port`,
		`c.yaml:12: sources[0].mysql.dsn: environment variable NATIONAL_DSN is not set`,
		"c.yaml:14: sources[0].mysql.tables: cannot use the string `qzk.hou...` as []string",
		`c.yaml:15: sources[0].mysql.heartbeat_interval: invalid duration "5 minutes"`,
		`c.yaml:16: sources[1].name: "Civil" is not a valid source name`,
		`c.yaml:18: sources[1].postgres.slot: required`,
		`c.yaml:22: sources[1].postgres.status_interval: 2m0s is out of range`,
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("want %d problems, got %d:\n%v", len(want), len(got), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], w)
		}
	}
}
