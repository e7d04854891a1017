package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shouwang/shouwang/internal/pii"
)

// Defaults applied by SetDefaults; documented on the fields they fill.
const (
	DefaultPartitions        = 6
	DefaultReplicationFactor = 3
	DefaultMetricsAddr       = ":9464"
	DefaultProvince          = "51"
	DefaultClientID          = "shouwang"
	DefaultStateDir          = "/var/lib/shouwang"
	DefaultChunkSize         = 10000
	DefaultBatchSize         = 500
	DefaultStartupGrace      = 2 * time.Minute
	DefaultHouseholds        = 1000
	DefaultSessionTimeout    = 10 * time.Second
)

// SetDefaults fills every unset field that has a default. Parse calls it before
// Validate; a Config built in code should call it too.
func (c *Config) SetDefaults() {
	c.PII.SetDefaults()
	k := &c.Kafka
	if k.Partitions == 0 {
		k.Partitions = DefaultPartitions
	}
	if k.ReplicationFactor == 0 {
		k.ReplicationFactor = DefaultReplicationFactor
		if k.Embedded || (c.Demo && len(k.Brokers) == 0) {
			k.ReplicationFactor = 1
		}
	}
	if k.ClientID == "" {
		k.ClientID = DefaultClientID
	}
	if k.SessionTimeout == 0 {
		k.SessionTimeout = Duration(DefaultSessionTimeout)
	}
	if c.Metrics.Addr == "" {
		c.Metrics.Addr = DefaultMetricsAddr
	}
	if c.Regions.Province == "" {
		c.Regions.Province = DefaultProvince
	}
	setStr(&c.State.Dir, DefaultStateDir)
	// Every command (worker, held, dlq) must find the same state wherever it runs from.
	c.State.Dir = c.ResolvePath(c.State.Dir)
	setStr(&c.State.Positions, "file")
	for i := range c.Sources {
		s := &c.Sources[i]
		setDur(&s.StartupGrace, DefaultStartupGrace)
		if m := s.MySQL; m != nil {
			if m.Flavor == "" {
				m.Flavor = "mysql"
			}
			m.Snapshot.setDefaults()
			setDur(&m.HeartbeatInterval, 30*time.Second)
			if m.Reload.Detect == "quiet_period" {
				setDur(&m.Reload.QuietPeriod, 10*time.Minute)
			}
			if m.Reload.Detect != "" {
				setDur(&m.Reload.MaxWindow, 12*time.Hour)
			}
			setFloat(&m.Reload.MassDelete.MaxTableShare, 0.2)
			setFloat(&m.Reload.MassDelete.MaxCountyShare, 0.5)
		}
		if p := s.Postgres; p != nil {
			p.Snapshot.setDefaults()
			setDur(&p.HeartbeatInterval, 10*time.Second)
			setDur(&p.StatusInterval, 10*time.Second)
		}
		if p := s.Poll; p != nil {
			if p.Driver == "" {
				p.Driver = "postgres"
			}
			for j := range p.Queries {
				q := &p.Queries[j]
				setDur(&q.Interval, time.Minute)
				setFloat(&q.DeleteDetection.MaxDeleteShare, 0.2)
				if q.DeleteDetection.Enabled {
					setDur(&q.DeleteDetection.Interval, time.Hour)
				}
			}
		}
		if f := s.FileDrop; f != nil {
			for j := range f.Datasets {
				d := &f.Datasets[j]
				setStr(&d.Format, "auto")
				setStr(&d.Encoding, "auto")
				setStr(&d.Delimiter, "auto")
				// 0s written out means "read at once" (with require_done_marker, or a
				// writer that renames finished files in); only a missing key gets 1m.
				if _, given := c.lines[fmt.Sprintf("sources[%d].filedrop.datasets[%d].settle.min_age", i, j)]; !given {
					setDur(&d.Settle.MinAge, time.Minute)
				}
				setFloat(&d.MassDelete.MaxShare, 0.2)
				setFloat(&d.MaxBadRowShare, 0.5)
				setInt(&d.Limits.MaxFieldBytes, 8<<10)
				setInt(&d.Limits.MaxRowBytes, 64<<10)
				if d.SummaryLabels == nil {
					d.SummaryLabels = []string{"合计", "总计", "小计"}
				}
			}
		}
	}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if s.BatchSize == 0 {
			s.BatchSize = DefaultBatchSize
		}
		if s.Kind == SinkSharingDB {
			setStr(&s.Driver, "postgres")
			setStr(&s.Protect, "mask")
		}
		if s.Kind == SinkPostgres {
			setStr(&s.Delete, "soft")
			setStr(&s.Truncate, "ignore")
			setInt(&s.Lanes, 4)
			setInt(&s.StopAfterRefusals, 100)
		}
		if s.Kind == SinkSharingHTTP {
			if s.HTTP == nil {
				s.HTTP = &HTTP{}
			}
			setDur(&s.HTTP.Timeout, 10*time.Second)
			setStr(&s.Protect, "mask")
			setDur(&s.HTTP.Retry.MaxElapsed, 5*time.Minute)
		}
	}
	for i := range c.Checkers {
		setStr(&c.Checkers[i].OnMismatch, "alert")
	}
	if c.Gen.Households == 0 {
		c.Gen.Households = DefaultHouseholds
	}
}

func (s *Snapshot) setDefaults() {
	setStr(&s.Mode, "initial")
	if s.ChunkSize == 0 {
		s.ChunkSize = DefaultChunkSize
	}
	if s.Parallel == 0 {
		s.Parallel = 1
	}
}

func setDur(d *Duration, v time.Duration) {
	if *d == 0 {
		*d = Duration(v)
	}
}

func setStr(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

func setInt(n *int, v int) {
	if *n == 0 {
		*n = v
	}
}

func setFloat(f *float64, v float64) {
	if *f == 0 {
		*f = v
	}
}

var (
	nameRe        = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
	topicPrefixRe = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*$`)
	topicRe       = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*$`)
	qualifiedRe   = regexp.MustCompile(`^[A-Za-z0-9_$]+\.[A-Za-z0-9_$]+$`)
	identRe       = regexp.MustCompile(`^[a-z_][a-z0-9_$]{0,62}$`)
	relationRe    = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z_][A-Za-z0-9_$]*$`)
	columnRe      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*$`)
	provinceRe    = regexp.MustCompile(`^[1-9][0-9]$`)
	ruleRe        = regexp.MustCompile(`^Q-[0-9]{3}$`)
	signalRe      = regexp.MustCompile(`^[a-z0-9_]+\.[a-z0-9_]+$`)
	numberRe      = regexp.MustCompile(`[0-9]+`)
	cronFieldRe   = regexp.MustCompile(`^(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?(,(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?)*$`)
)

// validator collects problems with their key paths.
type validator struct {
	c        *Config
	problems []error
}

func (v *validator) addf(path, format string, args ...any) {
	v.problems = append(v.problems, &Problem{File: v.c.file, Line: v.c.lineOf(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(path, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	if val == "" {
		v.addf(path, "required: one of %s", strings.Join(allowed, ", "))
		return
	}
	v.addf(path, "%q is not valid: use one of %s", val, strings.Join(allowed, ", "))
}

func (v *validator) durRange(path string, d Duration, lo, hi time.Duration) {
	if d.D() < lo || d.D() > hi {
		v.addf(path, "%s is out of range: must be between %s and %s", d, fmtDur(lo), fmtDur(hi))
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	s = strings.TrimSuffix(s, "0m")
	if s == "" {
		return d.String()
	}
	return s
}

func (v *validator) intRange(path string, n, lo, hi int) {
	if n < lo || n > hi {
		v.addf(path, "%d is out of range: must be between %d and %d", n, lo, hi)
	}
}

// share checks a fraction in (0, 1].
func (v *validator) share(path string, f float64) {
	if math.IsNaN(f) || f <= 0 || f > 1 {
		v.addf(path, "%v is out of range: must be a share greater than 0 and at most 1 (0.2 = 20%%)", f)
	}
}

func (v *validator) name(path, n, what string) {
	if n == "" {
		v.addf(path, "required: the %s name ([a-z0-9_], at most 64 characters)", what)
	} else if !nameRe.MatchString(n) {
		v.addf(path, "%q is not a valid %s name: use lower-case letters, digits and _ only, at most 64 characters", n, what)
	}
}

func (v *validator) unique(path, val string, seen map[string]string, what string) {
	if val == "" {
		return
	}
	if first, dup := seen[val]; dup {
		v.addf(path, "%s %q is already used at %s: must be unique", what, val, first)
		return
	}
	seen[val] = path
}

func (v *validator) mysqlDSN(path, dsn string) {
	if dsn == "" {
		v.addf(path, "required: user:password@tcp(host:3306)/db (give the password as ${ENV})")
		return
	}
	if _, _, err := mysqlEndpoint(dsn); err != nil {
		v.addf(path, "%v", err)
	}
}

func (v *validator) pgDSN(path, dsn string, needDB bool) {
	if dsn == "" {
		v.addf(path, "required: postgres://user:password@host:5432/db or host=… dbname=… (give the password as ${ENV})")
		return
	}
	_, db, err := pgEndpoints(dsn)
	if err != nil {
		v.addf(path, "%v", err)
		return
	}
	if needDB && db == "" {
		v.addf(path, "connection string %s names no database: add /dbname or dbname=…", MaskDSN(dsn))
	}
}

func (v *validator) hostPort(path, addr string, allowEmptyHost bool) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		v.addf(path, "%q is not host:port: %v", addr, strings.TrimPrefix(err.Error(), "address "+addr+": "))
		return
	}
	if h == "" && !allowEmptyHost {
		v.addf(path, "%q names no host: write host:port", addr)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 || (n == 0 && !allowEmptyHost) {
		v.addf(path, "port %q is not valid: must be a number between 1 and 65535", p)
	}
}

// Validate checks the whole configuration and returns every problem found, each a
// *Problem naming its key path, joined with errors.Join; nil means valid. It does no
// I/O: files and servers are checked by CheckConnectivity and at start-up.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.kafka()
	v.hostPort("metrics.addr", c.Metrics.Addr, true)
	if !provinceRe.MatchString(c.Regions.Province) {
		v.addf("regions.province", "%q is not a 2-digit province code (e.g. \"51\" for Sichuan)", c.Regions.Province)
	}
	v.state()
	v.sources()
	v.pipelines()
	v.monitor()
	v.sinks()
	v.checkers()
	v.watchdogs()
	v.gen()
	v.pii()
	return errors.Join(v.problems...)
}

// pii adds the PII section's problems, keeping their key paths and lines.
func (v *validator) pii() {
	err := v.c.PII.Validate("pii")
	if err == nil {
		return
	}
	var errs []error
	if multi, ok := err.(interface{ Unwrap() []error }); ok {
		errs = multi.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var p *pii.Problem
		if errors.As(e, &p) {
			v.addf(p.Path, "%s", p.Msg)
		} else {
			v.addf("pii", "%v", e)
		}
	}
}

func (v *validator) state() {
	st := &v.c.State
	if st.Dir == "" {
		v.addf("state.dir", "must name a local directory for worker state (default %s)", DefaultStateDir)
	}
	v.oneOf("state.positions", st.Positions, "file", "postgres")
	switch {
	case st.Positions == "postgres" && st.PositionsDSN == "":
		v.addf("state.positions_dsn", "required with state.positions: postgres (a PostgreSQL connection string)")
	case st.Positions == "postgres":
		v.pgDSN("state.positions_dsn", st.PositionsDSN, true)
	case st.PositionsDSN != "":
		v.addf("state.positions_dsn", "set only with state.positions: postgres")
	}
	if v.c.Capture.Standby {
		if st.Positions != "postgres" {
			v.addf("capture.standby", "needs state.positions: postgres (and state.positions_dsn), so that the process taking over resumes from the positions the active one saved")
		}
		if v.c.Kafka.Embedded || (v.c.Demo && len(v.c.Kafka.Brokers) == 0) {
			v.addf("capture.standby", "needs a Kafka cluster (kafka.brokers): the lease is a consumer group, and an embedded broker lives in one process")
		}
	}
}

func (v *validator) kafka() {
	k := &v.c.Kafka
	switch {
	case k.Embedded && len(k.Brokers) > 0:
		v.addf("kafka.embedded", "embedded: true conflicts with kafka.brokers: remove one of them")
	case !k.Embedded && !v.c.Demo && len(k.Brokers) == 0:
		v.addf("kafka.brokers", "required: list the brokers as host:port; an in-memory broker (data lost on exit) needs kafka.embedded: true")
	}
	for i, b := range k.Brokers {
		v.hostPort(fmt.Sprintf("kafka.brokers[%d]", i), b, false)
	}
	if k.TopicPrefix == "" {
		v.addf("kafka.topic_prefix", "required: the prefix of every topic, e.g. \"sc\" or \"sc.prod\"")
	} else if !topicPrefixRe.MatchString(k.TopicPrefix) {
		v.addf("kafka.topic_prefix", "%q is not valid: use lower-case letters, digits, _ and dots between parts", k.TopicPrefix)
	}
	v.intRange("kafka.partitions", k.Partitions, 1, 1000)
	v.intRange("kafka.replication_factor", k.ReplicationFactor, 1, 7)
	v.durRange("kafka.session_timeout", k.SessionTimeout, time.Second, 5*time.Minute)
	if k.TLS.CertFile != "" && k.TLS.KeyFile == "" {
		v.addf("kafka.tls.key_file", "required when kafka.tls.cert_file is set (mutual TLS needs both)")
	}
	if k.TLS.KeyFile != "" && k.TLS.CertFile == "" {
		v.addf("kafka.tls.cert_file", "required when kafka.tls.key_file is set (mutual TLS needs both)")
	}
	if !k.TLS.Enabled && (k.TLS.CAFile != "" || k.TLS.CertFile != "" || k.TLS.InsecureSkipVerify) {
		v.addf("kafka.tls.enabled", "TLS settings are given but TLS is off: set enabled: true or remove them")
	}
	if s := k.SASL; s.Mechanism != "" || s.Username != "" || s.Password != "" {
		v.oneOf("kafka.sasl.mechanism", s.Mechanism, "plain", "scram-sha-256", "scram-sha-512")
		if s.Username == "" {
			v.addf("kafka.sasl.username", "required when SASL is configured")
		}
		if s.Password == "" {
			v.addf("kafka.sasl.password", "required when SASL is configured (give it as ${ENV})")
		}
	}
}

func (v *validator) sources() {
	names := map[string]string{}
	serverIDs := map[string]string{}
	slots := map[string]string{}
	for i := range v.c.Sources {
		s := &v.c.Sources[i]
		p := fmt.Sprintf("sources[%d]", i)
		v.name(p+".name", s.Name, "source")
		v.unique(p+".name", s.Name, names, "source name")
		blocks := map[string]bool{KindMySQLBinlog: s.MySQL != nil, KindPGLogical: s.Postgres != nil, KindPoll: s.Poll != nil, KindFileDrop: s.FileDrop != nil}
		blockKey := map[string]string{KindMySQLBinlog: "mysql", KindPGLogical: "postgres", KindPoll: "poll", KindFileDrop: "filedrop"}
		v.oneOf(p+".kind", s.Kind, KindMySQLBinlog, KindPGLogical, KindPoll, KindFileDrop)
		v.durRange(p+".startup_grace", s.StartupGrace, time.Second, 24*time.Hour)
		for _, kind := range []string{KindMySQLBinlog, KindPGLogical, KindPoll, KindFileDrop} {
			if blocks[kind] && kind != s.Kind {
				v.addf(p+"."+blockKey[kind], "a %s block does not belong to a source of kind %q: remove it or set kind: %s", blockKey[kind], s.Kind, kind)
			}
		}
		if bk, ok := blockKey[s.Kind]; ok && !blocks[s.Kind] {
			v.addf(p+"."+bk, "required: a source of kind %s needs a %s: block", s.Kind, bk)
		}
		switch {
		case s.Kind == KindMySQLBinlog && s.MySQL != nil:
			v.mysqlSource(p+".mysql", s.MySQL, serverIDs)
		case s.Kind == KindPGLogical && s.Postgres != nil:
			v.pgSource(p+".postgres", s.Postgres, slots)
		case s.Kind == KindPoll && s.Poll != nil:
			v.pollSource(p+".poll", s.Poll)
		case s.Kind == KindFileDrop && s.FileDrop != nil:
			v.fileDropSource(p+".filedrop", s.FileDrop)
		}
	}
}

func (v *validator) snapshot(p string, s *Snapshot) {
	v.oneOf(p+".mode", s.Mode, "initial", "when_needed", "never")
	v.intRange(p+".chunk_size", s.ChunkSize, 1, 1000000)
	v.intRange(p+".parallel", s.Parallel, 1, 64)
}

func (v *validator) tableList(p string, tables []string, form string) {
	if len(tables) == 0 {
		v.addf(p, "required: list the captured tables as %s", form)
	}
	seen := map[string]string{}
	for j, t := range tables {
		tp := fmt.Sprintf("%s[%d]", p, j)
		if !qualifiedRe.MatchString(t) {
			v.addf(tp, "%q is not a qualified table name: write %s", t, form)
			continue
		}
		v.unique(tp, t, seen, "table")
	}
}

func (v *validator) mysqlSource(p string, m *MySQLSource, serverIDs map[string]string) {
	v.rowLimit(p+".max_row_bytes", m.MaxRowBytes)
	v.mysqlDSN(p+".dsn", m.DSN)
	v.oneOf(p+".flavor", m.Flavor, "mysql", "mariadb")
	if m.ServerID == 0 {
		v.addf(p+".server_id", "must be a positive integer unique among mysqlbinlog sources (and all replicas of the server)")
	} else {
		v.unique(p+".server_id", strconv.FormatUint(uint64(m.ServerID), 10), serverIDs, "server_id")
	}
	v.tableList(p+".tables", m.Tables, "db.table")
	v.snapshot(p+".snapshot", &m.Snapshot)
	v.durRange(p+".heartbeat_interval", m.HeartbeatInterval, time.Second, time.Hour)
	r := &m.Reload
	if r.Detect != "" {
		v.oneOf(p+".reload.detect", r.Detect, "truncate", "push_log", "quiet_period")
	}
	switch r.Detect {
	case "push_log":
		if r.PushLogTable == "" {
			v.addf(p+".reload.push_log_table", "required when reload.detect is push_log: the db.table the push writes its log into")
		} else if !qualifiedRe.MatchString(r.PushLogTable) {
			v.addf(p+".reload.push_log_table", "%q is not a qualified table name: write db.table", r.PushLogTable)
		}
	case "quiet_period":
		v.durRange(p+".reload.quiet_period", r.QuietPeriod, time.Minute, 24*time.Hour)
	}
	if r.Detect != "" {
		v.durRange(p+".reload.max_window", r.MaxWindow, time.Minute, 7*24*time.Hour)
	}
	if r.Detect != "push_log" && r.PushLogTable != "" {
		v.addf(p+".reload.push_log_table", "only used with reload.detect: push_log: remove it or set detect")
	}
	v.share(p+".reload.mass_delete.max_table_share", r.MassDelete.MaxTableShare)
	v.share(p+".reload.mass_delete.max_county_share", r.MassDelete.MaxCountyShare)
}

func (v *validator) pgSource(p string, s *PGSource, slots map[string]string) {
	v.rowLimit(p+".max_row_bytes", s.MaxRowBytes)
	v.pgDSN(p+".dsn", s.DSN, true)
	if s.Slot == "" {
		v.addf(p+".slot", "required: the replication slot name ([a-z0-9_], at most 63 characters)")
	} else if !identRe.MatchString(s.Slot) || strings.Contains(s.Slot, "$") {
		v.addf(p+".slot", "%q is not a valid slot name: use lower-case letters, digits and _ only, at most 63 characters", s.Slot)
	} else {
		v.unique(p+".slot", s.Slot, slots, "replication slot")
	}
	if s.Publication == "" {
		v.addf(p+".publication", "required: the publication listing the captured tables")
	} else if !identRe.MatchString(s.Publication) {
		v.addf(p+".publication", "%q is not a valid publication name: use lower-case letters, digits and _", s.Publication)
	}
	v.tableList(p+".tables", s.Tables, "schema.table")
	v.snapshot(p+".snapshot", &s.Snapshot)
	v.durRange(p+".heartbeat_interval", s.HeartbeatInterval, time.Second, time.Hour)
	v.durRange(p+".status_interval", s.StatusInterval, time.Second, 59*time.Second)
}

func (v *validator) pollSource(p string, s *PollSource) {
	v.rowLimit(p+".max_row_bytes", s.MaxRowBytes)
	v.oneOf(p+".driver", s.Driver, "postgres", "mysql")
	switch s.Driver {
	case "postgres":
		v.pgDSN(p+".dsn", s.DSN, true)
	case "mysql":
		v.mysqlDSN(p+".dsn", s.DSN)
	}
	if s.StateDSN == "" {
		v.addf(p+".state_dsn", "required: a PostgreSQL database owned by Shouwang for the poller's key store")
	} else {
		v.pgDSN(p+".state_dsn", s.StateDSN, true)
	}
	if len(s.Queries) == 0 {
		v.addf(p+".queries", "required: list at least one polled table or view")
	}
	names := map[string]string{}
	for j := range s.Queries {
		q := &s.Queries[j]
		qp := fmt.Sprintf("%s.queries[%d]", p, j)
		v.name(qp+".name", q.Name, "query")
		v.unique(qp+".name", q.Name, names, "query name")
		if q.TableOrView == "" {
			v.addf(qp+".table_or_view", "required: the table or view to poll")
		} else if !relationRe.MatchString(q.TableOrView) {
			v.addf(qp+".table_or_view", "%q is not a table or view name: write name or schema.name", q.TableOrView)
		}
		v.columns(qp+".key", q.Key, true)
		v.oneOf(qp+".mode", q.Mode, "incrementing", "timestamp")
		if q.Column == "" {
			v.addf(qp+".column", "required: the %s column the poll advances on", orDefault(q.Mode, "incrementing or timestamp"))
		} else if !columnRe.MatchString(q.Column) {
			v.addf(qp+".column", "%q is not a column name", q.Column)
		}
		v.durRange(qp+".interval", q.Interval, time.Second, 24*time.Hour)
		if q.BatchSize < 0 || q.BatchSize > 100000 {
			v.addf(qp+".batch_size", "%d is out of range: 1..100000 (0 means the default 1000)", q.BatchSize)
		}
		if q.SafetyLag != nil && q.Mode != "timestamp" {
			v.addf(qp+".safety_lag", "only applies to mode timestamp")
		} else if q.SafetyLag != nil {
			v.durRange(qp+".safety_lag", *q.SafetyLag, 0, time.Hour)
		}
		v.share(qp+".delete_detection.max_delete_share", q.DeleteDetection.MaxDeleteShare)
		if q.DeleteDetection.Enabled {
			v.durRange(qp+".delete_detection.interval", q.DeleteDetection.Interval, time.Minute, 7*24*time.Hour)
		} else if q.DeleteDetection.Interval != 0 {
			v.addf(qp+".delete_detection.interval", "set but delete_detection.enabled is false: enable it or remove the interval")
		}
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (v *validator) columns(p string, cols []string, required bool) {
	if len(cols) == 0 && required {
		v.addf(p, "required: list the column(s) that identify a row")
	}
	seen := map[string]string{}
	for j, c := range cols {
		cp := fmt.Sprintf("%s[%d]", p, j)
		if !columnRe.MatchString(c) {
			v.addf(cp, "%q is not a column name", c)
			continue
		}
		v.unique(cp, c, seen, "key column")
	}
}

func (v *validator) fileDropSource(p string, s *FileDropSource) {
	if len(s.Datasets) == 0 {
		v.addf(p+".datasets", "required: list at least one delivered dataset")
	}
	names := map[string]string{}
	folders := map[string]string{}
	for j := range s.Datasets {
		d := &s.Datasets[j]
		dp := fmt.Sprintf("%s.datasets[%d]", p, j)
		v.name(dp+".name", d.Name, "dataset")
		v.unique(dp+".name", d.Name, names, "dataset name")
		if strings.TrimSpace(d.Department) == "" {
			v.addf(dp+".department", "required: the delivering department (e.g. 医保, 残联)")
		}
		if d.Inbox == "" {
			v.addf(dp+".inbox", "required: the folder the department drops files into")
		}
		// archive and rejected default to sub-folders of the inbox.
		for _, f := range []struct{ key, val string }{{"inbox", d.Inbox}, {"archive", d.Archive}, {"rejected", d.Rejected}} {
			if f.val == "" {
				continue
			}
			v.unique(dp+"."+f.key, v.c.ResolvePath(f.val), folders, "folder")
		}
		v.oneOf(dp+".format", d.Format, "csv", "xlsx", "xls", "auto")
		v.oneOf(dp+".encoding", d.Encoding, "auto", "utf-8", "gb18030", "gbk")
		if d.Delimiter != "auto" && (utf8.RuneCountInString(d.Delimiter) != 1 || d.Delimiter == "\"" || d.Delimiter == "\n") {
			v.addf(dp+".delimiter", "%q is not valid: \"auto\" (sniffed from the header among , ; tab |) or one character other than a quote or newline (e.g. \",\", \"\\t\", \"|\")", d.Delimiter)
		}
		v.oneOf(dp+".delivery", d.Delivery, "full", "incremental")
		if len(d.Columns) == 0 {
			v.addf(dp+".columns", "required: map each delivered header to a field name (身份证号: id_number)")
		}
		fields := map[string]string{}
		headers := make([]string, 0, len(d.Columns))
		for h := range d.Columns {
			headers = append(headers, h)
		}
		sort.Strings(headers)
		for _, h := range headers {
			f := d.Columns[h]
			cp := dp + ".columns." + h
			if strings.TrimSpace(h) == "" {
				v.addf(cp, "empty header: remove it")
			}
			if !nameRe.MatchString(f) {
				v.addf(cp, "field name %q is not valid: use lower-case letters, digits and _", f)
				continue
			}
			v.unique(cp, f, fields, "field name")
		}
		if len(d.Key) == 0 {
			v.addf(dp+".key", "required: the field name(s) that identify a row")
		}
		for k, f := range d.Key {
			if _, ok := fields[f]; !ok && len(d.Columns) > 0 {
				v.addf(fmt.Sprintf("%s.key[%d]", dp, k), "%q is not one of the mapped field names in columns", f)
			}
		}
		v.durRange(dp+".settle.min_age", d.Settle.MinAge, 0, 24*time.Hour)
		v.share(dp+".mass_delete.max_share", d.MassDelete.MaxShare)
		v.share(dp+".max_bad_row_share", d.MaxBadRowShare)
		if d.Held != "" {
			v.unique(dp+".held", v.c.ResolvePath(d.Held), folders, "folder")
		}
		v.datasetFields(dp, d, fields)
	}
}

// rowLimit checks a source's max_row_bytes: 0 (the default, 4 MiB) or 1 KiB..64 MiB.
func (v *validator) rowLimit(path string, n int) {
	if n != 0 {
		v.intRange(path, n, 1<<10, 64<<20)
	}
}

// columnTypes are the values of a dataset's types map.
var columnTypes = []string{"text", "integer", "decimal", "date", "datetime", "month"}

// datasetFields checks the dataset keys that name fields or headers, and the limits.
func (v *validator) datasetFields(dp string, d *Dataset, fields map[string]string) {
	mapped := func(f string) bool { _, ok := fields[f]; return ok || len(d.Columns) == 0 }
	for _, f := range slices.Sorted(maps.Keys(d.Types)) {
		tp := dp + ".types." + f
		if !mapped(f) {
			v.addf(tp, "%q is not one of the mapped field names in columns", f)
		}
		v.oneOf(tp, d.Types[f], columnTypes...)
	}
	for k, f := range d.Optional {
		if !mapped(f) {
			v.addf(fmt.Sprintf("%s.optional[%d]", dp, k), "%q is not one of the mapped field names in columns", f)
		}
		if slices.Contains(d.Key, f) {
			v.addf(fmt.Sprintf("%s.optional[%d]", dp, k), "%q is a key field: a key column cannot be optional", f)
		}
	}
	for k, h := range d.Ignore {
		if _, ok := d.Columns[h]; ok {
			v.addf(fmt.Sprintf("%s.ignore[%d]", dp, k), "header %q is also mapped in columns: keep it in one of the two", h)
		}
	}
	if d.OpColumn != "" {
		if _, ok := d.Columns[d.OpColumn]; ok {
			v.addf(dp+".op_column", "header %q is also mapped in columns: the op column only marks deletions", d.OpColumn)
		}
		if d.Delivery == "full" {
			v.addf(dp+".op_column", "only incremental deliveries have an op column (delivery is full: a missing row is the deletion)")
		}
	}
	const limit = 256 << 10
	v.intRange(dp+".limits.max_field_bytes", d.Limits.MaxFieldBytes, 1, limit)
	v.intRange(dp+".limits.max_row_bytes", d.Limits.MaxRowBytes, 1, limit)
	if d.Limits.MaxFieldBytes > d.Limits.MaxRowBytes {
		v.addf(dp+".limits.max_field_bytes", "%d is larger than limits.max_row_bytes (%d): a field cannot be longer than its row", d.Limits.MaxFieldBytes, d.Limits.MaxRowBytes)
	}
	for k, l := range d.SummaryLabels {
		if strings.TrimSpace(l) == "" {
			v.addf(fmt.Sprintf("%s.summary_labels[%d]", dp, k), "empty label: remove it")
		}
	}
}

func (v *validator) pipelines() {
	names := map[string]string{}
	prefix := v.c.Kafka.TopicPrefix
	for i := range v.c.Pipelines {
		pl := &v.c.Pipelines[i]
		p := fmt.Sprintf("pipelines[%d]", i)
		v.name(p+".name", pl.Name, "pipeline")
		v.unique(p+".name", pl.Name, names, "pipeline name")
		if len(pl.Inputs) == 0 {
			v.addf(p+".inputs", "required: list topics or source references like national.household")
		}
		for j, in := range pl.Inputs {
			v.input(fmt.Sprintf("%s.inputs[%d]", p, j), in, prefix)
		}
		if pl.Mapping == "" {
			v.addf(p+".mapping", "required: the field-mapping file")
		}
		if len(pl.Outputs) == 0 {
			v.addf(p+".outputs", "required: list the canonical entities (household, person, …) or topics written")
		}
		for j, out := range pl.Outputs {
			if !topicRe.MatchString(out) {
				v.addf(fmt.Sprintf("%s.outputs[%d]", p, j), "%q is not an entity or topic name: use [a-z0-9_.]", out)
			}
		}
	}
}

// input checks a pipeline input: a source reference "<source>.<table>" or a topic
// under the topic prefix.
func (v *validator) input(p, in, prefix string) {
	srcName, table, ok := strings.Cut(in, ".")
	if ok {
		if src, found := v.c.SourceByName(srcName); found {
			tables := src.Tables()
			for _, t := range tables {
				if strings.EqualFold(t, table) {
					return
				}
			}
			v.addf(p, "source %q has no table, query or dataset %q (it has: %s)", srcName, table, strings.Join(tables, ", "))
			return
		}
	}
	if prefix != "" && strings.HasPrefix(in, prefix+".") && topicRe.MatchString(in) {
		return
	}
	v.addf(p, "%q is neither a source reference <source>.<table> naming a configured source nor a topic starting with %q", in, prefix+".")
}

func (v *validator) monitor() {
	m := &v.c.Monitor
	if m.Settle < 0 {
		v.addf("monitor.settle", "%s is negative: give a duration like 500ms", m.Settle)
	}
	if m.MaxDelay < 0 {
		v.addf("monitor.max_delay", "%s is negative: give a duration like 30s", m.MaxDelay)
	}
	if m.AsOf != "" {
		if _, err := time.Parse("2006-01-02", m.AsOf); err != nil {
			v.addf("monitor.as_of", "%q is not a date YYYY-MM-DD (remove it to evaluate at today's date)", m.AsOf)
		}
	}
}

func (v *validator) sinks() {
	names := map[string]string{}
	for i := range v.c.Sinks {
		s := &v.c.Sinks[i]
		p := fmt.Sprintf("sinks[%d]", i)
		v.name(p+".name", s.Name, "sink")
		v.unique(p+".name", s.Name, names, "sink name")
		v.oneOf(p+".kind", s.Kind, SinkPostgres, SinkSharingDB, SinkSharingHTTP)
		switch s.Kind {
		case SinkPostgres:
			v.pgDSN(p+".dsn", s.DSN, true)
			if s.Driver != "" {
				v.addf(p+".driver", "only used by sharing_db sinks: remove it")
			}
			v.oneOf(p+".delete", s.Delete, "soft", "hard")
			v.oneOf(p+".truncate", s.Truncate, "ignore", "apply")
			v.intRange(p+".lanes", s.Lanes, 1, 16)
			v.intRange(p+".stop_after_refusals", s.StopAfterRefusals, 1, 1000000)
		case SinkSharingDB:
			v.oneOf(p+".driver", s.Driver, "postgres", "mysql")
			if s.Driver == "mysql" {
				v.mysqlDSN(p+".dsn", s.DSN)
			} else if s.Driver == "postgres" {
				v.pgDSN(p+".dsn", s.DSN, true)
			}
		case SinkSharingHTTP:
			if s.URL == "" {
				v.addf(p+".url", "required: the sharing platform API URL (https://…)")
			} else if _, err := httpEndpoint(s.URL); err != nil {
				v.addf(p+".url", "%v", err)
			}
			if s.DSN != "" {
				v.addf(p+".dsn", "a sharing_http sink has no dsn: use url")
			}
			if s.HTTP != nil {
				v.durRange(p+".http.timeout", s.HTTP.Timeout, time.Second, 5*time.Minute)
				v.durRange(p+".http.retry.max_elapsed", s.HTTP.Retry.MaxElapsed, 0, 24*time.Hour)
			}
		}
		if s.Kind == SinkSharingDB || s.Kind == SinkSharingHTTP {
			v.oneOf(p+".protect", s.Protect, "mask", "sm3", "sm4", "raw")
		}
		if s.Kind == SinkPostgres && (len(s.Fields) > 0 || s.Protect != "") {
			v.addf(p+".fields", "fields and protect are settings of sharing sinks: remove them (the provincial database keeps every field)")
		}
		if s.Kind != SinkPostgres && s.Kind != "" && (s.Delete != "" || s.Truncate != "" || s.Lanes != 0 || s.StopAfterRefusals != 0) {
			v.addf(p+".delete", "delete, truncate, lanes and stop_after_refusals are settings of postgres sinks: remove them")
		}
		if s.Kind != SinkSharingHTTP && s.Kind != "" {
			if s.URL != "" {
				v.addf(p+".url", "only used by sharing_http sinks: use dsn")
			}
			if s.HTTP != nil {
				v.addf(p+".http", "only used by sharing_http sinks: remove it")
			}
		}
		if len(s.Topics) == 0 {
			v.addf(p+".topics", "required: list the canonical entities or topics to write")
		}
		topics := map[string]bool{}
		for j, t := range s.Topics {
			topics[t] = true
			if !topicRe.MatchString(t) {
				v.addf(fmt.Sprintf("%s.topics[%d]", p, j), "%q is not an entity or topic name: use [a-z0-9_.]", t)
			}
		}
		keys := make([]string, 0, len(s.Tables))
		for t := range s.Tables {
			keys = append(keys, t)
		}
		sort.Strings(keys)
		for _, t := range keys {
			tp := p + ".tables." + t
			if !topics[t] {
				v.addf(tp, "%q is not one of this sink's topics: add it to topics or remove the mapping", t)
			}
			if !relationRe.MatchString(s.Tables[t]) {
				v.addf(tp, "%q is not a table name: write table or schema.table", s.Tables[t])
			}
		}
		v.intRange(p+".batch_size", s.BatchSize, 1, 100000)
	}
}

func (v *validator) checkers() {
	names := map[string]string{}
	for i := range v.c.Checkers {
		ch := &v.c.Checkers[i]
		p := fmt.Sprintf("checkers[%d]", i)
		v.name(p+".name", ch.Name, "checker")
		v.unique(p+".name", ch.Name, names, "checker name")
		src, srcOK := v.c.SourceByName(ch.Source)
		if ch.Source == "" {
			v.addf(p+".source", "required: the name of the compared source")
		} else if !srcOK {
			v.addf(p+".source", "%q is not a configured source name", ch.Source)
		} else if src.Kind != KindMySQLBinlog {
			v.addf(p+".source", "%q is a %s source: the totals check counts the national front-end database, a mysqlbinlog source", ch.Source, src.Kind)
		}
		if ch.Sink == "" {
			v.addf(p+".sink", "required: the name of the compared sink")
		} else if snk, ok := v.c.SinkByName(ch.Sink); !ok {
			v.addf(p+".sink", "%q is not a configured sink name", ch.Sink)
		} else if snk.Kind != SinkPostgres && snk.Kind != SinkSharingDB {
			v.addf(p+".sink", "%q is a %s sink, which has no table to count: compare a postgres or sharing_db sink", ch.Sink, snk.Kind)
		}
		v.oneOf(p+".level", ch.Level, "province", "city", "county", "township", "village")
		v.schedule(p+".schedule", ch.Schedule)
		if ch.Tolerance < 0 {
			v.addf(p+".tolerance", "%d is out of range: must be 0 or more (rows of difference per region)", ch.Tolerance)
		}
		v.oneOf(p+".on_mismatch", ch.OnMismatch, "alert", "resnapshot")
		if ch.OnMismatch == "resnapshot" && srcOK && src.Kind == KindFileDrop {
			v.addf(p+".on_mismatch", "resnapshot is impossible for filedrop source %q (files cannot be re-read on demand): use alert", src.Name)
		}
	}
}

func (v *validator) watchdogs() {
	names := map[string]string{}
	for i := range v.c.Watchdogs {
		wd := &v.c.Watchdogs[i]
		p := fmt.Sprintf("watchdogs[%d]", i)
		v.name(p+".name", wd.Name, "watchdog")
		v.unique(p+".name", wd.Name, names, "watchdog name")
		v.oneOf(p+".kind", wd.Kind, "push", "delivery", "stalled")
		src, ok := v.c.SourceByName(wd.Source)
		if wd.Source == "" {
			v.addf(p+".source", "required: the name of the watched source")
		} else if !ok {
			v.addf(p+".source", "%q is not a configured source name", wd.Source)
		}
		switch wd.Kind {
		case "push", "delivery":
			if wd.Due == "" {
				v.addf(p+".due", "required: the longest gap between arrivals (744h) or the deadlines as a cron expression (\"0 12 * * 1\")")
			} else if d, err := time.ParseDuration(wd.Due); err == nil {
				v.durRange(p+".due", Duration(d), time.Hour, 93*24*time.Hour)
			} else {
				v.schedule(p+".due", wd.Due)
			}
			v.durRange(p+".grace", wd.Grace, 0, 31*24*time.Hour)
			if wd.MaxSilence != 0 {
				v.addf(p+".max_silence", "only applies to kind stalled: remove it or use due")
			}
			if ok {
				tables := map[string]bool{}
				for _, t := range src.Tables() {
					tables[t] = true
				}
				for j, t := range wd.Tables {
					if !tables[t] {
						v.addf(fmt.Sprintf("%s.tables[%d]", p, j), "%q is not a table or dataset of source %q (it has %s)", t, wd.Source, strings.Join(src.Tables(), ", "))
					}
				}
			}
		case "stalled":
			if wd.Due != "" || len(wd.Tables) > 0 || wd.Grace != 0 {
				v.addf(p+".due", "due, tables and grace do not apply to kind stalled: it watches max_silence only")
			}
			if wd.MaxSilence == 0 {
				v.addf(p+".max_silence", "required for kind stalled: the longest time without a change or heartbeat, e.g. 10m")
				break
			}
			v.durRange(p+".max_silence", wd.MaxSilence, 10*time.Second, 24*time.Hour)
			if !ok {
				break
			}
			var hb Duration
			switch {
			case src.MySQL != nil:
				hb = src.MySQL.HeartbeatInterval
			case src.Postgres != nil:
				hb = src.Postgres.HeartbeatInterval
			default:
				v.addf(p+".kind", "a %s source sends nothing while nothing changes, so silence is no sign of a stall: watch it with kind delivery and due", src.Kind)
			}
			if hb > 0 && wd.MaxSilence.D() < 2*hb.D() {
				v.addf(p+".max_silence", "%s is less than twice source %q's heartbeat_interval %s: a quiet source would look stalled", wd.MaxSilence, wd.Source, hb)
			}
		}
	}
}

// schedule accepts a Go duration (1m..7 days) or a 5-field cron expression.
func (v *validator) schedule(p, s string) {
	if s == "" {
		v.addf(p, "required: a duration like 1h or a cron expression like \"0 2 * * *\"")
		return
	}
	if d, err := time.ParseDuration(s); err == nil {
		v.durRange(p, Duration(d), time.Minute, 7*24*time.Hour)
		return
	}
	fields := strings.Fields(s)
	limits := [5][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}}
	names := [5]string{"minute", "hour", "day of month", "month", "day of week"}
	if len(fields) != 5 {
		v.addf(p, "%q is neither a duration (1h) nor a 5-field cron expression (minute hour day-of-month month day-of-week)", s)
		return
	}
	for i, f := range fields {
		if !cronFieldRe.MatchString(f) {
			v.addf(p, "cron field %d (%s) %q is not valid: use *, n, n-m, */k or lists", i+1, names[i], f)
			continue
		}
		for _, num := range numberRe.FindAllString(strings.Split(f, "/")[0], -1) {
			n, _ := strconv.Atoi(num)
			if n < limits[i][0] || n > limits[i][1] {
				v.addf(p, "cron field %d (%s) value %d is out of range: must be between %d and %d", i+1, names[i], n, limits[i][0], limits[i][1])
			}
		}
	}
}

func (v *validator) gen() {
	g := &v.c.Gen
	v.intRange("gen.households", g.Households, 1, 10000000)
	if g.MySQLDSN != "" {
		v.mysqlDSN("gen.mysql_dsn", g.MySQLDSN)
	}
	if g.PGDSN != "" {
		v.pgDSN("gen.pg_dsn", g.PGDSN, true)
	}
	for _, k := range sortedKeys(g.Rates) {
		p := "gen.rates." + k
		if !ruleRe.MatchString(k) {
			v.addf(p, "%q is not a supervision rule id: write Q-001 … (see quality-rules)", k)
		}
		v.shareOrZero(p, g.Rates[k])
	}
	for _, k := range sortedKeys(g.Signals) {
		p := "gen.signals." + k
		if !signalRe.MatchString(k) {
			v.addf(p, "%q is not a department rule name: write department.rule, e.g. medical.out_of_pocket", k)
		}
		v.shareOrZero(p, g.Signals[k])
	}
	years := make([]int, 0, len(g.Thresholds.MonitoringIncome))
	for y := range g.Thresholds.MonitoringIncome {
		years = append(years, y)
	}
	sort.Ints(years)
	for _, y := range years {
		p := fmt.Sprintf("gen.thresholds.monitoring_income.%d", y)
		if y < 2020 || y > 2100 {
			v.addf(p, "year %d is out of range: must be between 2020 and 2100", y)
		}
		if inc := g.Thresholds.MonitoringIncome[y]; inc <= 0 || inc > 100000 {
			v.addf(p, "%v is out of range: must be between 0 and 100000 yuan per person per year", inc)
		}
	}
	if t := g.Thresholds.MedicalOutOfPocketMonitored; t < 0 {
		v.addf("gen.thresholds.medical_out_of_pocket_monitored", "%v is out of range: must be 0 or more yuan", t)
	}
	if t := g.Thresholds.MedicalOutOfPocketOthers; t < 0 {
		v.addf("gen.thresholds.medical_out_of_pocket_others", "%v is out of range: must be 0 or more yuan", t)
	}
}

func (v *validator) shareOrZero(p string, f float64) {
	if math.IsNaN(f) || f < 0 || f > 1 {
		v.addf(p, "%v is out of range: must be a share between 0 and 1", f)
	}
}

func sortedKeys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Warnings lists settings that are valid but risky in production (replication factor
// 1, TLS verification off, SASL PLAIN without TLS, the in-memory broker), each with
// its key path. `config check` prints them without failing.
func (c *Config) Warnings() []string {
	var w []string
	k := &c.Kafka
	at := func(path, msg string) {
		w = append(w, (&Problem{File: c.file, Line: c.lineOf(path), Path: path, Msg: msg}).Error())
	}
	if len(k.Brokers) == 0 && !c.Demo {
		at("kafka.embedded", "the embedded broker keeps data in memory only: every event not yet in a sink is lost on exit")
	}
	if len(k.Brokers) > 0 && k.ReplicationFactor == 1 {
		at("kafka.replication_factor", "1 means losing one broker loses data: use 3 in production")
	}
	if k.TLS.InsecureSkipVerify {
		at("kafka.tls.insecure_skip_verify", "server certificates are not verified: anyone on the path can read the data")
	}
	if k.SASL.Mechanism == "plain" && !k.TLS.Enabled {
		at("kafka.sasl.mechanism", "SASL PLAIN without TLS sends the password in clear text: enable kafka.tls")
	}
	for i := range c.Sinks {
		if s := &c.Sinks[i]; s.Kind == SinkSharingHTTP && strings.HasPrefix(s.URL, "http://") && s.HTTP != nil && s.HTTP.AuthToken != "" {
			at(fmt.Sprintf("sinks[%d].url", i), "the auth token is sent over plain http: use https")
		}
	}
	return w
}
