package config

import (
	"strings"
	"testing"
	"time"
)

// baseYAML is a small valid configuration with one source of every kind; the table
// tests below break one thing in it at a time.
const baseYAML = `kafka:
  brokers: [127.0.0.1:9092]
  topic_prefix: sc
sources:
  - name: national
    kind: mysqlbinlog
    mysql:
      dsn: repl:secret@tcp(127.0.0.1:3306)/qzk
      server_id: 11
      tables: [qzk.household, qzk.person]
  - name: civil
    kind: pglogical
    postgres:
      dsn: postgres://repl:secret@127.0.0.1:5432/mz
      slot: s_civil
      publication: p_civil
      tables: [public.dibao]
  - name: housing
    kind: poll
    poll:
      dsn: host=127.0.0.1 user=ro password=secret dbname=zj
      state_dsn: postgres://shouwang@127.0.0.1/shouwang_state
      queries:
        - name: appraisal
          table_or_view: share.v_appraisal
          key: [id]
          mode: timestamp
          column: updated_at
  - name: files
    kind: filedrop
    filedrop:
      datasets:
        - name: medical
          department: 医保
          inbox: /d/in
          archive: /d/archive
          rejected: /d/rejected
          delivery: incremental
          key: [sid]
          columns:
            结算编号: sid
            身份证号: id_number
pipelines:
  - name: registry
    inputs: [national.household, sc.raw.civil.dibao]
    mapping: m.yaml
    outputs: [household]
sinks:
  - name: provincial
    kind: postgres
    dsn: postgres://u:secret@127.0.0.1:5432/fpjc
    topics: [household]
  - name: share
    kind: sharing_http
    url: https://share.example/api
    topics: [household]
checkers:
  - name: chk
    source: national
    sink: provincial
    level: county
    schedule: 1h
watchdogs:
  - name: weekly_push
    kind: push
    source: 'national'
    tables: [household]
    due: "0 12 * * 1"
    grace: 6h
  - name: quiet_civil
    kind: stalled
    source: civil
    max_silence: 10m
  - name: medical_monthly
    kind: delivery
    source: files
    tables: [medical]
    due: 744h
`

func noEnv(string) (string, bool) { return "", false }

func TestBaseIsValid(t *testing.T) {
	cfg, err := Parse("base.yaml", []byte(baseYAML), noEnv)
	if err != nil {
		t.Fatalf("base config must be valid, got:\n%v", err)
	}
	if cfg.Kafka.Partitions != DefaultPartitions || cfg.Kafka.ReplicationFactor != DefaultReplicationFactor {
		t.Errorf("kafka defaults not applied: partitions %d, replication %d", cfg.Kafka.Partitions, cfg.Kafka.ReplicationFactor)
	}
	if got := cfg.Sources[0].MySQL.HeartbeatInterval.String(); got != "30s" {
		t.Errorf("mysql heartbeat default = %s, want 30s", got)
	}
	if got := cfg.Sources[3].FileDrop.Datasets[0].Encoding; got != "auto" {
		t.Errorf("filedrop encoding default = %q, want auto", got)
	}
	if got := cfg.Sources[3].FileDrop.Datasets[0].Settle.MinAge.D(); got != time.Minute {
		t.Errorf("filedrop settle.min_age default = %s, want 1m", got)
	}
	zero, err := Parse("base.yaml", []byte(strings.Replace(baseYAML, "delivery: incremental", "delivery: incremental\n          settle: {min_age: 0s}", 1)), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := zero.Sources[3].FileDrop.Datasets[0].Settle.MinAge.D(); got != 0 {
		t.Errorf("settle.min_age: 0s written out became %s, want 0s", got)
	}
	if !cfg.Pipelines[0].DLQEnabled() {
		t.Error("pipelines default to dlq on")
	}
	if cfg.Metrics.Addr != ":9464" || cfg.Regions.Province != "51" {
		t.Errorf("metrics/regions defaults = %q/%q", cfg.Metrics.Addr, cfg.Regions.Province)
	}
	if len(cfg.Warnings()) != 0 {
		t.Errorf("base config has warnings: %v", cfg.Warnings())
	}
}

// edit is one string replacement applied to baseYAML; old must occur exactly once.
type edit struct{ old, new string }

func TestValidationRules(t *testing.T) {
	cases := []struct {
		name  string
		edits []edit
		want  string // expected substring: "key.path: message start"
	}{
		{"state positions unknown", []edit{{"kafka:\n", "state: {positions: redis}\nkafka:\n"}}, `state.positions: "redis" is not valid: use one of file, postgres`},
		{"state postgres without dsn", []edit{{"kafka:\n", "state: {positions: postgres}\nkafka:\n"}}, "state.positions_dsn: required with state.positions: postgres"},
		{"state dsn without postgres", []edit{{"kafka:\n", "state: {positions_dsn: 'postgres://h/db'}\nkafka:\n"}}, "state.positions_dsn: set only with state.positions: postgres"},
		{"standby with file positions", []edit{{"kafka:\n", "capture: {standby: true}\nkafka:\n"}}, "capture.standby: needs state.positions: postgres"},
		{"monitor as_of", []edit{{"kafka:\n", "monitor: {as_of: 2024-13-01}\nkafka:\n"}}, `monitor.as_of: "2024-13-01" is not a date YYYY-MM-DD`},
		{"monitor settle negative", []edit{{"kafka:\n", "monitor: {settle: -1s}\nkafka:\n"}}, "monitor.settle: -1s is negative"},
		{"server_id zero", []edit{{"server_id: 11", "server_id: 0"}}, "sources[0].mysql.server_id: must be a positive integer unique among mysqlbinlog sources"},
		{"server_id duplicate", []edit{{"sources:\n", "sources:\n  - name: other\n    kind: mysqlbinlog\n    mysql: {dsn: 'a:b@tcp(h:1)/d', server_id: 11, tables: [d.t]}\n"}}, `sources[1].mysql.server_id: server_id "11" is already used at sources[0].mysql.server_id`},
		{"source name charset", []edit{{"name: national", "name: National"}}, `sources[0].name: "National" is not a valid source name`},
		{"source name duplicate", []edit{{"name: civil", "name: national"}}, `sources[1].name: source name "national" is already used at sources[0].name`},
		{"source name missing", []edit{{"  - name: housing\n", "  -\n"}}, "sources[2].name: required"},
		{"startup_grace too short", []edit{{"    kind: mysqlbinlog\n", "    kind: mysqlbinlog\n    startup_grace: 10ms\n"}}, "sources[0].startup_grace: 10ms is out of range: must be between 1s and 24h"},
		{"exit_on_startup_failure type", []edit{{"    kind: mysqlbinlog\n", "    kind: mysqlbinlog\n    exit_on_startup_failure: sometimes\n"}}, "sources[0].exit_on_startup_failure"},
		{"unknown kind", []edit{{"kind: pglogical", "kind: logical"}}, `sources[1].kind: "logical" is not valid: use one of mysqlbinlog, pglogical, poll, filedrop`},
		{"block of another kind", []edit{{"kind: mysqlbinlog", "kind: pglogical"}}, `sources[0].mysql: a mysql block does not belong to a source of kind "pglogical"`},
		{"block missing", []edit{{"kind: mysqlbinlog", "kind: pglogical"}}, "sources[0].postgres: required: a source of kind pglogical needs a postgres: block"},
		{"mysql dsn malformed", []edit{{"repl:secret@tcp(127.0.0.1:3306)/qzk", "repl:secret@127.0.0.1:3306"}}, "sources[0].mysql.dsn: not a valid MySQL DSN (repl:***@127.0.0.1:3306)"},
		{"mysql dsn missing", []edit{{"      dsn: repl:secret@tcp(127.0.0.1:3306)/qzk\n", ""}}, "sources[0].mysql.dsn: required"},
		{"flavor", []edit{{"server_id: 11", "server_id: 11\n      flavor: percona"}}, `sources[0].mysql.flavor: "percona" is not valid: use one of mysql, mariadb`},
		{"table unqualified", []edit{{"[qzk.household, qzk.person]", "[household, qzk.person]"}}, `sources[0].mysql.tables[0]: "household" is not a qualified table name: write db.table`},
		{"table duplicate", []edit{{"[qzk.household, qzk.person]", "[qzk.person, qzk.person]"}}, `sources[0].mysql.tables[1]: table "qzk.person" is already used`},
		{"snapshot mode", []edit{{"server_id: 11", "server_id: 11\n      snapshot: {mode: always}"}}, `sources[0].mysql.snapshot.mode: "always" is not valid: use one of initial, when_needed, never`},
		{"snapshot chunk", []edit{{"server_id: 11", "server_id: 11\n      snapshot: {chunk_size: -1}"}}, "sources[0].mysql.snapshot.chunk_size: -1 is out of range: must be between 1 and 1000000"},
		{"snapshot parallel", []edit{{"server_id: 11", "server_id: 11\n      snapshot: {parallel: 100}"}}, "sources[0].mysql.snapshot.parallel: 100 is out of range: must be between 1 and 64"},
		{"heartbeat range", []edit{{"server_id: 11", "server_id: 11\n      heartbeat_interval: 2h"}}, "sources[0].mysql.heartbeat_interval: 2h0m0s is out of range: must be between 1s and 1h"},
		{"reload detect", []edit{{"server_id: 11", "server_id: 11\n      reload: {detect: magic}"}}, `sources[0].mysql.reload.detect: "magic" is not valid: use one of truncate, push_log, quiet_period`},
		{"reload push_log table", []edit{{"server_id: 11", "server_id: 11\n      reload: {detect: push_log}"}}, "sources[0].mysql.reload.push_log_table: required when reload.detect is push_log"},
		{"reload quiet period", []edit{{"server_id: 11", "server_id: 11\n      reload: {detect: quiet_period, quiet_period: 10s}"}}, "sources[0].mysql.reload.quiet_period: 10s is out of range: must be between 1m and 24h"},
		{"reload max window", []edit{{"server_id: 11", "server_id: 11\n      reload: {detect: truncate, max_window: 30s}"}}, "sources[0].mysql.reload.max_window: 30s is out of range: must be between 1m and 168h"},
		{"mass delete share", []edit{{"server_id: 11", "server_id: 11\n      reload: {mass_delete: {max_table_share: 1.5}}"}}, "sources[0].mysql.reload.mass_delete.max_table_share: 1.5 is out of range: must be a share greater than 0 and at most 1"},
		{"county share", []edit{{"server_id: 11", "server_id: 11\n      reload: {mass_delete: {max_county_share: -0.1}}"}}, "sources[0].mysql.reload.mass_delete.max_county_share: -0.1 is out of range"},
		{"pg slot missing", []edit{{"      slot: s_civil\n", ""}}, "sources[1].postgres.slot: required"},
		{"pg slot invalid", []edit{{"slot: s_civil", "slot: Slot-1"}}, `sources[1].postgres.slot: "Slot-1" is not a valid slot name`},
		{"pg publication missing", []edit{{"      publication: p_civil\n", ""}}, "sources[1].postgres.publication: required"},
		{"pg status interval", []edit{{"slot: s_civil", "slot: s_civil\n      status_interval: 90s"}}, "sources[1].postgres.status_interval: 1m30s is out of range: must be between 1s and 59s"},
		{"pg dsn no database", []edit{{"127.0.0.1:5432/mz", "127.0.0.1:5432"}}, "sources[1].postgres.dsn: connection string postgres://repl:***@127.0.0.1:5432 names no database"},
		{"pg dsn scheme", []edit{{"postgres://repl:secret@127.0.0.1:5432/mz", "mysql://repl:secret@127.0.0.1:5432/mz"}}, `sources[1].postgres.dsn: URL mysql://repl:***@127.0.0.1:5432/mz has scheme "mysql"`},
		{"pg tables missing", []edit{{"      tables: [public.dibao]\n", ""}}, "sources[1].postgres.tables: required: list the captured tables as schema.table"},
		{"poll dsn no host", []edit{{"host=127.0.0.1 user=ro", "user=ro"}}, "sources[2].poll.dsn: connection string user=ro password=*** dbname=zj names no host"},
		{"poll dsn bad port", []edit{{"host=127.0.0.1 user=ro", "host=127.0.0.1 port=99999 user=ro"}}, `sources[2].poll.dsn: connection string host=127.0.0.1 port=99999 user=ro password=*** dbname=zj has port "99999": must be 1..65535`},
		{"poll driver", []edit{{"    poll:\n", "    poll:\n      driver: oracle\n"}}, `sources[2].poll.driver: "oracle" is not valid: use one of postgres, mysql`},
		{"poll mysql dsn", []edit{{"    poll:\n", "    poll:\n      driver: mysql\n"}}, "sources[2].poll.dsn: not a valid MySQL DSN"},
		{"poll state dsn", []edit{{"      state_dsn: postgres://shouwang@127.0.0.1/shouwang_state\n", ""}}, "sources[2].poll.state_dsn: required"},
		{"poll safety lag on incrementing", []edit{{"mode: timestamp", "mode: incrementing\n          safety_lag: 5s"}}, "sources[2].poll.queries[0].safety_lag: only applies to mode timestamp"},
		{"poll batch size", []edit{{"mode: timestamp", "mode: timestamp\n          batch_size: -1"}}, "sources[2].poll.queries[0].batch_size: -1 is out of range"},
		{"poll max delete share", []edit{{"mode: timestamp", "mode: timestamp\n          delete_detection: {enabled: true, max_delete_share: 1.5}"}}, "sources[2].poll.queries[0].delete_detection.max_delete_share: 1.5 is out of range"},
		{"poll mode", []edit{{"mode: timestamp", "mode: rowversion"}}, `sources[2].poll.queries[0].mode: "rowversion" is not valid: use one of incrementing, timestamp`},
		{"poll key", []edit{{"          key: [id]\n", ""}}, "sources[2].poll.queries[0].key: required"},
		{"poll column", []edit{{"          column: updated_at\n", ""}}, "sources[2].poll.queries[0].column: required: the timestamp column"},
		{"poll view name", []edit{{"share.v_appraisal", "share.v appraisal"}}, `sources[2].poll.queries[0].table_or_view: "share.v appraisal" is not a table or view name`},
		{"poll interval", []edit{{"column: updated_at", "column: updated_at\n          interval: 500ms"}}, "sources[2].poll.queries[0].interval: 500ms is out of range: must be between 1s and 24h"},
		{"poll delete detection", []edit{{"column: updated_at", "column: updated_at\n          delete_detection: {enabled: true, interval: 10s}"}}, "sources[2].poll.queries[0].delete_detection.interval: 10s is out of range: must be between 1m and 168h"},
		{"poll queries missing", []edit{{"      queries:\n        - name: appraisal\n          table_or_view: share.v_appraisal\n          key: [id]\n          mode: timestamp\n          column: updated_at\n", ""}}, "sources[2].poll.queries: required"},
		{"filedrop format", []edit{{"delivery: incremental", "delivery: incremental\n          format: pdf"}}, `sources[3].filedrop.datasets[0].format: "pdf" is not valid: use one of csv, xlsx, xls, auto`},
		{"filedrop encoding", []edit{{"delivery: incremental", "delivery: incremental\n          encoding: utf-16"}}, `sources[3].filedrop.datasets[0].encoding: "utf-16" is not valid: use one of auto, utf-8, gb18030, gbk`},
		{"filedrop delimiter", []edit{{"delivery: incremental", "delivery: incremental\n          delimiter: ab"}}, `sources[3].filedrop.datasets[0].delimiter: "ab" is not valid: "auto" (sniffed from the header among , ; tab |) or one character`},
		{"filedrop delivery", []edit{{"          delivery: incremental\n", ""}}, "sources[3].filedrop.datasets[0].delivery: required: one of full, incremental"},
		{"filedrop key unmapped", []edit{{"key: [sid]", "key: [nope]"}}, `sources[3].filedrop.datasets[0].key[0]: "nope" is not one of the mapped field names in columns`},
		{"filedrop type unknown", []edit{{"key: [sid]", "key: [sid]\n          types: {sid: number}"}}, `sources[3].filedrop.datasets[0].types.sid: "number" is not valid: use one of text, integer, decimal, date, datetime, month`},
		{"filedrop type unmapped", []edit{{"key: [sid]", "key: [sid]\n          types: {nope: date}"}}, `sources[3].filedrop.datasets[0].types.nope: "nope" is not one of the mapped field names`},
		{"filedrop optional key", []edit{{"key: [sid]", "key: [sid]\n          optional: [sid]"}}, `sources[3].filedrop.datasets[0].optional[0]: "sid" is a key field`},
		{"filedrop row limit", []edit{{"key: [sid]", "key: [sid]\n          limits: {max_row_bytes: 1000000}"}}, "sources[3].filedrop.datasets[0].limits.max_row_bytes: 1000000 is out of range: must be between 1 and 262144"},
		{"filedrop field over row", []edit{{"key: [sid]", "key: [sid]\n          limits: {max_row_bytes: 100, max_field_bytes: 200}"}}, "sources[3].filedrop.datasets[0].limits.max_field_bytes: 200 is larger than limits.max_row_bytes (100)"},
		{"filedrop bad share", []edit{{"key: [sid]", "key: [sid]\n          max_bad_row_share: 2"}}, "sources[3].filedrop.datasets[0].max_bad_row_share: 2 is out of range"},
		{"mysql row limit", []edit{{"server_id: 11", "server_id: 11\n      max_row_bytes: 10"}}, "sources[0].mysql.max_row_bytes: 10 is out of range: must be between 1024 and 67108864"},
		{"pii dlq", []edit{{"kafka:\n", "pii: {dlq: sm3}\nkafka:\n"}}, "pii.dlq: sm3 pseudonyms cannot be reversed"},
		{"filedrop folder reused", []edit{{"archive: /d/archive", "archive: /d/in"}}, `sources[3].filedrop.datasets[0].archive: folder "/d/in" is already used at sources[3].filedrop.datasets[0].inbox`},
		{"filedrop department", []edit{{"department: 医保", "department: ''"}}, "sources[3].filedrop.datasets[0].department: required"},
		{"filedrop column field", []edit{{"身份证号: id_number", "身份证号: ID-Number"}}, `sources[3].filedrop.datasets[0].columns.身份证号: field name "ID-Number" is not valid`},
		{"filedrop column dup field", []edit{{"身份证号: id_number", "身份证号: sid"}}, `field name "sid" is already used at sources[3].filedrop.datasets[0].columns.`},
		{"filedrop mass delete", []edit{{"delivery: incremental", "delivery: incremental\n          mass_delete: {max_share: 2}"}}, "sources[3].filedrop.datasets[0].mass_delete.max_share: 2 is out of range"},
		{"filedrop settle", []edit{{"delivery: incremental", "delivery: incremental\n          settle: {min_age: 48h}"}}, "sources[3].filedrop.datasets[0].settle.min_age: 48h0m0s is out of range: must be between 0s and 24h"},
		{"brokers required", []edit{{"brokers: [127.0.0.1:9092]", "brokers: []"}}, "kafka.brokers: required: list the brokers as host:port; an in-memory broker (data lost on exit) needs kafka.embedded: true"},
		{"embedded and brokers", []edit{{"topic_prefix: sc", "topic_prefix: sc\n  embedded: true"}}, "kafka.embedded: embedded: true conflicts with kafka.brokers"},
		{"broker not host:port", []edit{{"brokers: [127.0.0.1:9092]", "brokers: [127.0.0.1]"}}, `kafka.brokers[0]: "127.0.0.1" is not host:port`},
		{"broker bad port", []edit{{"brokers: [127.0.0.1:9092]", "brokers: [kafka:99999]"}}, `kafka.brokers[0]: port "99999" is not valid: must be a number between 1 and 65535`},
		{"topic prefix", []edit{{"topic_prefix: sc", "topic_prefix: SC-prod"}}, `kafka.topic_prefix: "SC-prod" is not valid`},
		{"topic prefix missing", []edit{{"  topic_prefix: sc\n", ""}}, "kafka.topic_prefix: required"},
		{"partitions", []edit{{"topic_prefix: sc", "topic_prefix: sc\n  partitions: 5000"}}, "kafka.partitions: 5000 is out of range: must be between 1 and 1000"},
		{"replication", []edit{{"topic_prefix: sc", "topic_prefix: sc\n  replication_factor: -1"}}, "kafka.replication_factor: -1 is out of range: must be between 1 and 7"},
		{"session timeout", []edit{{"topic_prefix: sc", "topic_prefix: sc\n  session_timeout: 200ms"}}, "kafka.session_timeout: 200ms is out of range: must be between 1s and 5m"},
		{"sasl mechanism", []edit{{"topic_prefix: sc", "topic_prefix: sc\n  sasl: {mechanism: gssapi, username: u, password: p}"}}, `kafka.sasl.mechanism: "gssapi" is not valid: use one of plain, scram-sha-256, scram-sha-512`},
		{"sasl password", []edit{{"topic_prefix: sc", "topic_prefix: sc\n  sasl: {mechanism: plain, username: u}"}}, "kafka.sasl.password: required when SASL is configured"},
		{"tls half pair", []edit{{"topic_prefix: sc", "topic_prefix: sc\n  tls: {enabled: true, cert_file: c.pem}"}}, "kafka.tls.key_file: required when kafka.tls.cert_file is set"},
		{"tls off with settings", []edit{{"topic_prefix: sc", "topic_prefix: sc\n  tls: {ca_file: ca.pem}"}}, "kafka.tls.enabled: TLS settings are given but TLS is off"},
		{"metrics addr", []edit{{"kafka:\n", "metrics: {addr: '9464'}\nkafka:\n"}}, `metrics.addr: "9464" is not host:port`},
		{"province", []edit{{"kafka:\n", "regions: {province: '5'}\nkafka:\n"}}, `regions.province: "5" is not a 2-digit province code`},
		{"pipeline unknown table", []edit{{"inputs: [national.household,", "inputs: [national.nope,"}}, `pipelines[0].inputs[0]: source "national" has no table, query or dataset "nope" (it has: household, person)`},
		{"pipeline unknown topic", []edit{{"sc.raw.civil.dibao]", "other.topic]"}}, `pipelines[0].inputs[1]: "other.topic" is neither a source reference <source>.<table> naming a configured source nor a topic starting with "sc."`},
		{"pipeline mapping", []edit{{"    mapping: m.yaml\n", ""}}, "pipelines[0].mapping: required"},
		{"pipeline outputs", []edit{{"    outputs: [household]\n", ""}}, "pipelines[0].outputs: required"},
		{"pipeline name dup", []edit{{"pipelines:\n", "pipelines:\n  - {name: registry, inputs: [national.person], mapping: a.yaml, outputs: [person]}\n"}}, `pipelines[1].name: pipeline name "registry" is already used at pipelines[0].name`},
		{"sink kind", []edit{{"kind: postgres", "kind: oracle"}}, `sinks[0].kind: "oracle" is not valid: use one of postgres, sharing_db, sharing_http`},
		{"sink dsn", []edit{{"    dsn: postgres://u:secret@127.0.0.1:5432/fpjc\n", ""}}, "sinks[0].dsn: required"},
		{"sink url missing", []edit{{"    url: https://share.example/api\n", ""}}, "sinks[1].url: required"},
		{"sink url scheme", []edit{{"url: https://share.example/api", "url: ftp://share.example/api"}}, "sinks[1].url: URL ftp://share.example/api must start with https:// or http://"},
		{"sink http on postgres", []edit{{"    topics: [household]\n  - name: share", "    topics: [household]\n    http: {timeout: 5s}\n  - name: share"}}, "sinks[0].http: only used by sharing_http sinks"},
		{"sink http timeout", []edit{{"url: https://share.example/api", "url: https://share.example/api\n    http: {timeout: 1h}"}}, "sinks[1].http.timeout: 1h0m0s is out of range: must be between 1s and 5m"},
		{"sink batch size", []edit{{"    topics: [household]\n  - name: share", "    topics: [household]\n    batch_size: -5\n  - name: share"}}, "sinks[0].batch_size: -5 is out of range: must be between 1 and 100000"},
		{"sink table mapping", []edit{{"    topics: [household]\n  - name: share", "    topics: [household]\n    tables: {person: p}\n  - name: share"}}, `sinks[0].tables.person: "person" is not one of this sink's topics`},
		{"sharing_db driver", []edit{{"kind: postgres", "kind: sharing_db\n    driver: db2"}}, `sinks[0].driver: "db2" is not valid: use one of postgres, mysql`},
		{"checker source", []edit{{"source: national", "source: nobody"}}, `checkers[0].source: "nobody" is not a configured source name`},
		{"checker sink", []edit{{"sink: provincial", "sink: nowhere"}}, `checkers[0].sink: "nowhere" is not a configured sink name`},
		{"checker level", []edit{{"level: county", "level: district"}}, `checkers[0].level: "district" is not valid: use one of province, city, county, township, village`},
		{"checker cron range", []edit{{"schedule: 1h", "schedule: '61 * * * *'"}}, "checkers[0].schedule: cron field 1 (minute) value 61 is out of range: must be between 0 and 59"},
		{"checker cron syntax", []edit{{"schedule: 1h", "schedule: '0 2 * * MON'"}}, `checkers[0].schedule: cron field 5 (day of week) "MON" is not valid`},
		{"checker schedule", []edit{{"schedule: 1h", "schedule: sometimes"}}, `checkers[0].schedule: "sometimes" is neither a duration (1h) nor a 5-field cron expression`},
		{"checker schedule short", []edit{{"schedule: 1h", "schedule: 10s"}}, "checkers[0].schedule: 10s is out of range: must be between 1m and 168h"},
		{"checker tolerance", []edit{{"schedule: 1h", "schedule: 1h\n    tolerance: -1"}}, "checkers[0].tolerance: -1 is out of range"},
		{"watchdog kind", []edit{{"kind: push", "kind: late"}}, `watchdogs[0].kind: "late" is not valid: use one of push, delivery, stalled`},
		{"watchdog source", []edit{{"source: civil\n    max_silence", "source: nobody\n    max_silence"}}, `watchdogs[1].source: "nobody" is not a configured source name`},
		{"watchdog table", []edit{{"tables: [household]", "tables: [push_log]"}}, `watchdogs[0].tables[0]: "push_log" is not a table or dataset of source "national" (it has household, person)`},
		{"watchdog due", []edit{{"due: 744h", "due: monthly"}}, `watchdogs[2].due: "monthly" is neither a duration`},
		{"watchdog due range", []edit{{"due: 744h", "due: 9000h"}}, "watchdogs[2].due: 9000h0m0s is out of range: must be between 1h and 2232h"},
		{"watchdog due missing", []edit{{"    due: 744h\n", ""}}, "watchdogs[2].due: required"},
		{"watchdog stalled silence", []edit{{"max_silence: 10m", "max_silence: 15s"}}, `watchdogs[1].max_silence: 15s is less than twice source "civil"'s heartbeat_interval 10s`},
		{"watchdog stalled poll", []edit{{"source: civil\n    max_silence", "source: housing\n    max_silence"}}, "watchdogs[1].kind: a poll source sends nothing while nothing changes"},
		{"watchdog stalled due", []edit{{"max_silence: 10m", "max_silence: 10m\n    due: 1h"}}, "watchdogs[1].due: due, tables and grace do not apply to kind stalled"},
		{"watchdog name dup", []edit{{"name: quiet_civil", "name: weekly_push"}}, `watchdogs[1].name: watchdog name "weekly_push" is already used at watchdogs[0].name`},
		{"checker resnapshot filedrop", []edit{{"source: national", "source: files"}, {"schedule: 1h", "schedule: 1h\n    on_mismatch: resnapshot"}}, `checkers[0].on_mismatch: resnapshot is impossible for filedrop source "files"`},
		{"gen rate key", []edit{{"kafka:\n", "gen: {rates: {Q1: 0.1}}\nkafka:\n"}}, `gen.rates.Q1: "Q1" is not a supervision rule id`},
		{"gen rate value", []edit{{"kafka:\n", "gen: {rates: {Q-003: 2}}\nkafka:\n"}}, "gen.rates.Q-003: 2 is out of range: must be a share between 0 and 1"},
		{"gen signal key", []edit{{"kafka:\n", "gen: {signals: {'医保': 0.1}}\nkafka:\n"}}, `gen.signals.医保: "医保" is not a department rule name`},
		{"gen income year", []edit{{"kafka:\n", "gen: {thresholds: {monitoring_income: {1999: 6000}}}\nkafka:\n"}}, "gen.thresholds.monitoring_income.1999: year 1999 is out of range: must be between 2020 and 2100"},
		{"gen households", []edit{{"kafka:\n", "gen: {households: -3}\nkafka:\n"}}, "gen.households: -3 is out of range: must be between 1 and 10000000"},
		{"gen mysql dsn", []edit{{"kafka:\n", "gen: {mysql_dsn: 'root:pw@tcp(h:3306'}\nkafka:\n"}}, "gen.mysql_dsn: not a valid MySQL DSN (root:***@tcp(h:3306)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := baseYAML
			for _, e := range tc.edits {
				if n := strings.Count(doc, e.old); n != 1 {
					t.Fatalf("test bug: %q occurs %d times in baseYAML", e.old, n)
				}
				doc = strings.Replace(doc, e.old, e.new, 1)
			}
			_, err := Parse("c.yaml", []byte(doc), noEnv)
			if err == nil {
				t.Fatalf("want a problem containing %q, got none", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a problem containing\n  %s\ngot:\n%v", tc.want, err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("a password leaked into the message:\n%v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "c.yaml:") {
					t.Errorf("problem line does not start with file:line: %q", line)
				}
			}
		})
	}
}

func TestValidateCollectsEveryProblemWithLines(t *testing.T) {
	doc := strings.Replace(baseYAML, "server_id: 11", "server_id: 0", 1)
	doc = strings.Replace(doc, "level: county", "level: district", 1)
	doc = strings.Replace(doc, "topic_prefix: sc", "topic_prefix: SC", 1)
	_, err := Parse("c.yaml", []byte(doc), noEnv)
	if err == nil {
		t.Fatal("want problems, got none")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		"c.yaml:3: kafka.topic_prefix: ",
		"c.yaml:9: sources[0].mysql.server_id: ",
		"c.yaml:61: checkers[0].level: ",
	}
	for _, w := range want {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem starting with %q in:\n%v", w, err)
		}
	}
	// The pipeline refers to kafka.topic_prefix "sc"; with "SC" its topic input no longer
	// matches, which is a fourth, correct problem. Nothing else must be reported.
	if len(lines) != 4 {
		t.Errorf("want 4 problems, got %d:\n%v", len(lines), err)
	}
}

func TestBuiltInCodeValidates(t *testing.T) {
	c := &Config{Demo: true, Kafka: Kafka{TopicPrefix: "demo"}}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("minimal demo config built in code: %v", err)
	}
	if c.Kafka.ReplicationFactor != 1 {
		t.Errorf("demo without brokers must default replication_factor to 1, got %d", c.Kafka.ReplicationFactor)
	}
	c.Sources = []Source{{Name: "x", Kind: KindMySQLBinlog, MySQL: &MySQLSource{DSN: "u:p@tcp(h:1)/d", Tables: []string{"d.t"}}}}
	c.SetDefaults()
	err := c.Validate()
	if err == nil || err.Error() != "sources[0].mysql.server_id: must be a positive integer unique among mysqlbinlog sources (and all replicas of the server)" {
		t.Fatalf("a config without a file reports bare key paths; got %v", err)
	}
}

func TestWarnings(t *testing.T) {
	cases := []struct {
		name string
		edit edit
		want string
	}{
		{"replication 1", edit{"topic_prefix: sc", "topic_prefix: sc\n  replication_factor: 1"}, "c.yaml:4: kafka.replication_factor: 1 means losing one broker loses data"},
		{"insecure tls", edit{"topic_prefix: sc", "topic_prefix: sc\n  tls: {enabled: true, insecure_skip_verify: true}"}, "kafka.tls.insecure_skip_verify: server certificates are not verified"},
		{"plain without tls", edit{"topic_prefix: sc", "topic_prefix: sc\n  sasl: {mechanism: plain, username: u, password: p}"}, "kafka.sasl.mechanism: SASL PLAIN without TLS"},
		{"embedded outside demo", edit{"brokers: [127.0.0.1:9092]", "embedded: true"}, "kafka.embedded: the embedded broker keeps data in memory only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("c.yaml", []byte(strings.Replace(baseYAML, tc.edit.old, tc.edit.new, 1)), noEnv)
			if err != nil {
				t.Fatalf("warnings must not be errors: %v", err)
			}
			ws := strings.Join(cfg.Warnings(), "\n")
			if !strings.Contains(ws, tc.want) {
				t.Fatalf("want warning containing %q, got:\n%s", tc.want, ws)
			}
		})
	}
}
