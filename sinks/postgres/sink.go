// Package postgres is the provincial database sink: it upserts the canonical topics
// into the provincial PostgreSQL schema (fpjc, created by the embedded migrations)
// effectively once.
//
// A batch is applied in one transaction: its changes are copied (COPY) into per-entity
// staging tables, several changes of one key collapse to the newest version, and one
// INSERT … ON CONFLICT DO UPDATE per table applies a change only where the stored
// version is older — a redelivered or reordered change never regresses a row. The next
// consumer offset of every partition in the batch is written in the same transaction
// (fpjc.sink_offsets), and a partition assigned to the sink resumes from there, so a
// crash between the database commit and the Kafka commit neither loses nor re-applies
// anything. A change that cannot be applied — a malformed payload, an unknown schema
// version, a value PostgreSQL refuses or a violated constraint — goes to
// <prefix>.dlq.sink with the reason (constraint failures are isolated by bisecting the
// batch under savepoints) and the rest of the batch lands. Any other failure (database
// down, read-only, a lost connection) rolls the whole batch back and retries it with
// backoff; nothing is skipped.
package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/pii"
	"github.com/shouwang/shouwang/schemas"
)

// Delete and truncate handling (sinks[].delete, sinks[].truncate).
const (
	// DeleteSoft keeps a deleted row with deleted = true and its last values.
	DeleteSoft = "soft"
	// DeleteHard removes the row and keeps its deleted version in
	// fpjc.sink_tombstones, so that an older change arriving later cannot resurrect it.
	DeleteHard = "hard"
	// TruncateIgnore logs and counts a truncate and changes nothing (the default: a
	// canonical topic is not emptied by accident of one source table).
	TruncateIgnore = "ignore"
	// TruncateApply empties the table (soft: marks every row deleted; hard: deletes).
	TruncateApply = "apply"
)

// Options configures a Sink.
type Options struct {
	// Name is the sink's name (sinks[].name): the key of its stored offsets and the
	// suffix of its consumer group.
	Name string
	// TopicPrefix is kafka.topic_prefix; ClientID prefixes the consumer group.
	TopicPrefix string
	ClientID    string
	// Entities are the canonical entities to store (household, person, …, warning,
	// quality_issue, discrepancy); every one when empty.
	Entities []string
	// Tables maps an entity to a table other than fpjc.<entity> ("schema.table"); the
	// table must have the columns of fpjc.<entity>.
	Tables map[string]string
	// Delete is DeleteSoft (default) or DeleteHard; Truncate is TruncateIgnore
	// (default) or TruncateApply.
	Delete   string
	Truncate string
	// Bus reaches Kafka; Producer sends dead letters (acks=all). Without a Producer a
	// record that cannot be applied stops the sink instead.
	Bus      bus.Options
	Producer *bus.Producer
	// Protect scrubs ID numbers and phones out of dead-letter reasons and payloads (nil:
	// as they are).
	Protect *pii.Protector
	// BatchSize is the most changes per transaction (default 2000); Linger how long a
	// batch waits to fill (default 20ms).
	BatchSize int
	Linger    time.Duration
	// RetryInitial and RetryMax bound the backoff between attempts at a batch whose
	// database work failed for a reason other than its records (default 200ms, 10s).
	RetryInitial time.Duration
	RetryMax     time.Duration
	// StopAfterRefusals is how many changes of one table in a row the database may
	// refuse for the same reason (SQLSTATE, constraint and column) before the sink
	// takes it for the table, not the changes: a NOT NULL, CHECK or type the table
	// has and the canonical entity does not. The batch that reaches it is rolled
	// back and retried with backoff, nothing more is dead-lettered, until the table
	// is fixed (default 100; sinks[].stop_after_refusals).
	StopAfterRefusals int
	// Logger (nil: slog.Default()); Now stamps dead letters (nil: time.Now).
	Logger *slog.Logger
	Now    func() time.Time
}

// target is one consumed topic and the table it is written to.
type target struct {
	*table
	topic string
	// rel is the target table, quoted; relName the same unquoted (tombstones).
	rel, relName string
	stage        string // temporary staging table, quoted
	history      string // lifecycle history table, quoted ("" when none)
	keyCol       int
	versionCol   int

	upsert, deleteSoft, deleteHard, recordHistory, truncateSoft, truncateHard, createStage, copyStage string
}

// Sink applies batches of canonical changes to the provincial database.
type Sink struct {
	o       Options
	log     *slog.Logger
	targets map[string]*target // by topic
	order   []*target          // fixed order of application

	mu   sync.Mutex
	runs map[*target]refusalRun // committed refusals in a row, by table
}

// refusalRun counts the changes of a table refused in a row for one reason.
type refusalRun struct {
	reason string
	n      int
}

// New validates the options and prepares the statements; it does no I/O.
func New(o Options) (*Sink, error) {
	if o.Name == "" {
		return nil, errors.New("sinks/postgres: the sink has no name (sinks[].name)")
	}
	switch o.Delete {
	case "":
		o.Delete = DeleteSoft
	case DeleteSoft, DeleteHard:
	default:
		return nil, fmt.Errorf("sinks/postgres: delete %q: use soft or hard", o.Delete)
	}
	switch o.Truncate {
	case "":
		o.Truncate = TruncateIgnore
	case TruncateIgnore, TruncateApply:
	default:
		return nil, fmt.Errorf("sinks/postgres: truncate %q: use ignore or apply", o.Truncate)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 2000
	}
	if o.Linger <= 0 {
		o.Linger = 20 * time.Millisecond
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = 200 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 10 * time.Second
	}
	if o.StopAfterRefusals <= 0 {
		o.StopAfterRefusals = 100
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	tables := entityTables()
	if len(o.Entities) == 0 {
		for _, e := range schemas.Entities() {
			o.Entities = append(o.Entities, e.Name)
		}
	}
	s := &Sink{o: o, log: o.Logger.With("sink", o.Name), targets: map[string]*target{}, runs: map[*target]refusalRun{}}
	infos := map[string]schemas.EntityInfo{}
	for _, e := range schemas.Entities() {
		infos[e.Name] = e
	}
	for _, name := range o.Entities {
		tb, ok := tables[name]
		if !ok {
			return nil, fmt.Errorf("sinks/postgres: %q is not a canonical entity (one of %s)", name, strings.Join(entityNames(), ", "))
		}
		rel := Schema + "." + name
		if t, ok := o.Tables[name]; ok {
			rel = t
		}
		tgt := newTarget(tb, infos[name].Topic(o.TopicPrefix), rel)
		if o.Delete == DeleteHard {
			tgt.upsert = refuseTombstoned(tgt.upsert)
		}
		if _, dup := s.targets[tgt.topic]; dup {
			return nil, fmt.Errorf("sinks/postgres: entity %s listed twice", name)
		}
		s.targets[tgt.topic] = tgt
		s.order = append(s.order, tgt)
	}
	for name := range o.Tables {
		if _, ok := tables[name]; !ok {
			return nil, fmt.Errorf("sinks/postgres: tables: %q is not a canonical entity", name)
		}
	}
	return s, nil
}

func entityNames() []string {
	var out []string
	for _, e := range schemas.Entities() {
		out = append(out, e.Name)
	}
	return out
}

// Topics are the topics the sink consumes.
func (s *Sink) Topics() []string {
	var out []string
	for _, t := range s.order {
		out = append(out, t.topic)
	}
	return out
}

func quoteRel(rel string) string {
	return pgx.Identifier(strings.Split(rel, ".")).Sanitize()
}

func newTarget(tb *table, topic, rel string) *target {
	t := &target{table: tb, topic: topic, rel: quoteRel(rel), relName: rel,
		stage: pgx.Identifier{"sw_stage_" + tb.entity}.Sanitize(), keyCol: -1, versionCol: -1}
	var names, casts, sets, stageCols []string
	for i, c := range tb.cols {
		q := pgx.Identifier{c.name}.Sanitize()
		names = append(names, q)
		stageCols = append(stageCols, q+" text")
		if c.pgType == "text" {
			casts = append(casts, "s."+q)
		} else {
			casts = append(casts, "s."+q+"::"+c.pgType)
		}
		switch c.name {
		case "key":
			t.keyCol = i
		case "version":
			t.versionCol = i
			sets = append(sets, q+" = excluded."+q)
		default:
			sets = append(sets, q+" = excluded."+q)
		}
	}
	if t.keyCol < 0 || t.versionCol < 0 {
		panic("sinks/postgres: entity " + tb.entity + " has no key or version field")
	}
	// _ord numbers the staged rows; _grp is the _ord of the change that superseded a
	// row in its batch (its own _ord for the newest change of a key). The merges read
	// rows by _ord range, which only the newest changes occupy; the history reads by
	// _grp range, so that it records every change of a key, superseded or not.
	t.copyStage = fmt.Sprintf("COPY %s (_ord, _grp, _deleted, %s) FROM STDIN", t.stage, strings.Join(names, ", "))
	t.createStage = fmt.Sprintf("CREATE TEMPORARY TABLE IF NOT EXISTS %s (_ord integer NOT NULL, _grp integer NOT NULL, _deleted boolean NOT NULL, %s) ON COMMIT DELETE ROWS",
		t.stage, strings.Join(stageCols, ", "))
	t.upsert = fmt.Sprintf(`INSERT INTO %[1]s AS t (%[2]s, deleted, applied_at)
SELECT %[3]s, false, now() FROM %[4]s s
WHERE NOT s._deleted AND s._ord BETWEEN $1 AND $2
ON CONFLICT (key) DO UPDATE SET %[5]s, deleted = false, applied_at = excluded.applied_at
WHERE t.version < excluded.version`, t.rel, strings.Join(names, ", "), strings.Join(casts, ", "), t.stage, strings.Join(sets, ", "))
	t.deleteSoft = fmt.Sprintf(`INSERT INTO %[1]s AS t (key, version, deleted, applied_at)
SELECT s.key, s.version::bigint, true, now() FROM %[2]s s WHERE s._deleted AND s._ord BETWEEN $1 AND $2
ON CONFLICT (key) DO UPDATE SET version = excluded.version, deleted = true, applied_at = excluded.applied_at
WHERE t.version < excluded.version`, t.rel, t.stage)
	t.deleteHard = fmt.Sprintf(`WITH d AS (SELECT s.key, s.version::bigint AS version FROM %[2]s s WHERE s._deleted AND s._ord BETWEEN $1 AND $2),
gone AS (DELETE FROM %[1]s t USING d WHERE t.key = d.key AND t.version < d.version RETURNING t.key),
tomb AS (INSERT INTO %[3]s.sink_tombstones AS b (entity_table, key, version) SELECT $3, d.key, d.version FROM d
  ON CONFLICT (entity_table, key) DO UPDATE SET version = excluded.version, deleted_at = now() WHERE b.version < excluded.version)
SELECT count(*) FROM gone`, t.rel, t.stage, Schema)
	if tb.lifecycle {
		t.history = pgx.Identifier{Schema, tb.entity + "_history"}.Sanitize()
		t.recordHistory = fmt.Sprintf(`INSERT INTO %s (key, version, status, changed_ms)
SELECT s.key, s.version::bigint, s.status, s.updated_ms::bigint FROM %s s WHERE NOT s._deleted AND s._grp BETWEEN $1 AND $2
ON CONFLICT (key, version) DO NOTHING`, t.history, t.stage)
	}
	t.truncateSoft = fmt.Sprintf("UPDATE %s SET deleted = true, applied_at = now() WHERE NOT deleted", t.rel)
	t.truncateHard = "DELETE FROM " + t.rel
	return t
}

// refuseTombstoned makes an upsert statement of hard-delete mode also refuse changes
// no newer than the key's tombstone (the table's name is parameter $3).
func refuseTombstoned(upsert string) string {
	return strings.Replace(upsert, "s._ord BETWEEN $1 AND $2\n",
		fmt.Sprintf("s._ord BETWEEN $1 AND $2 AND NOT EXISTS (SELECT 1 FROM %s.sink_tombstones b WHERE b.entity_table = $3 AND b.key = s.key AND b.version >= s.version::bigint)\n", Schema), 1)
}

// AfterConnect creates the staging tables on a new connection; give it to the pool's
// configuration (pgxpool.Config.AfterConnect).
func (s *Sink) AfterConnect(ctx context.Context, c *pgx.Conn) error {
	for _, t := range s.order {
		if _, err := c.Exec(ctx, t.createStage); err != nil {
			return fmt.Errorf("sinks/postgres: create staging table for %s: %w", t.entity, err)
		}
	}
	return nil
}

// Check verifies that every target table exists with every column the sink writes,
// so that a wrong tables: mapping is reported at start-up with what to do.
func (s *Sink) Check(ctx context.Context, pool *pgxpool.Pool) error {
	var errs []error
	for _, t := range s.order {
		rows, err := pool.Query(ctx, `SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, t.rel)
		if err != nil {
			return fmt.Errorf("sinks/postgres: read the columns of %s: %w", t.relName, err)
		}
		have := map[string]bool{}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			have[n] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(have) == 0 {
			errs = append(errs, fmt.Errorf("table %s (entity %s) does not exist: create it like %s.%s (CREATE TABLE %s (LIKE %s.%s INCLUDING ALL)) or remove its tables: entry",
				t.relName, t.entity, Schema, t.entity, t.relName, Schema, t.entity))
			continue
		}
		var missing []string
		for _, c := range append(append([]column{}, t.cols...), column{name: "deleted"}, column{name: "applied_at"}) {
			if !have[c.name] {
				missing = append(missing, c.name)
			}
		}
		if len(missing) > 0 {
			errs = append(errs, fmt.Errorf("table %s (entity %s) lacks columns %s: give it the columns of %s.%s", t.relName, t.entity, strings.Join(missing, ", "), Schema, t.entity))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sinks/postgres %s: %w", s.o.Name, errors.Join(errs...))
	}
	return nil
}

// Decode reads consumed messages into records (a message of a topic the sink does not
// consume, or that it cannot read, gets Err).
func (s *Sink) Decode(m bus.Message) Record {
	t, ok := s.targets[m.Topic]
	if !ok {
		return Record{Msg: m, Err: contractf("topic %s is not one of this sink's topics", m.Topic)}
	}
	return t.decode(m)
}

// Counts are what happened to a batch's changes: Applied rows were inserted or
// updated; Stale changes were not newer than the stored version (nothing changed);
// Deleted rows were deleted (or marked so); Collapsed changes were superseded by a
// newer change of the same key in the batch.
type Counts struct {
	Applied, Stale, Deleted, Collapsed int
}

func (c *Counts) add(d Counts) {
	c.Applied += d.Applied
	c.Stale += d.Stale
	c.Deleted += d.Deleted
	c.Collapsed += d.Collapsed
}

// Result counts what a batch did.
type Result struct {
	// Counts are the batch's totals; PerEntity the same by entity.
	Counts
	PerEntity map[string]*Counts
	// Truncated counts truncates applied; TruncatesIgnored those ignored by config.
	Truncated, TruncatesIgnored int
	// Dead are the records sent to the dead-letter topic, with their reasons.
	Dead []Record
}

// count adds c to the totals and to entity's counts.
func (r *Result) count(entity string, c Counts) {
	r.Counts.add(c)
	pe := r.PerEntity[entity]
	if pe == nil {
		pe = &Counts{}
		r.PerEntity[entity] = pe
	}
	pe.add(c)
}

// recordError reports whether a database error concerns the rows of a statement (a value
// PostgreSQL refuses or a violated constraint), not the database.
func recordError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23")
}

// Apply writes one batch in one transaction: the changes, the dead letters (sent
// before the commit) and the next offset of every partition in recs. recs must be in
// consumption order (per partition, by offset). An error means nothing of the batch
// is committed; call Apply again with the same records.
func (s *Sink) Apply(ctx context.Context, pool *pgxpool.Pool, recs []Record) (Result, error) {
	res := Result{PerEntity: map[string]*Counts{}}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("sinks/postgres %s: begin: %w", s.o.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit

	var seg []Record
	first := true
	for _, r := range recs {
		switch {
		case r.Err != nil:
			res.Dead = append(res.Dead, r)
		case r.op == opTruncate:
			if err := s.applySegment(ctx, tx, seg, first, &res); err != nil {
				return res, err
			}
			seg, first = seg[:0], false
			if err := s.truncate(ctx, tx, r, &res); err != nil {
				return res, err
			}
		default:
			seg = append(seg, r)
		}
	}
	if err := s.applySegment(ctx, tx, seg, first, &res); err != nil {
		return res, err
	}
	type tp struct {
		topic     string
		partition int
	}
	next := map[tp]int64{}
	for _, r := range recs {
		k := tp{r.Msg.Topic, r.Msg.Partition}
		if r.Msg.Offset+1 > next[k] {
			next[k] = r.Msg.Offset + 1
		}
	}
	var topics []string
	var parts []int32
	var offs []int64
	for k, o := range next {
		topics, parts, offs = append(topics, k.topic), append(parts, int32(k.partition)), append(offs, o)
	}
	if len(topics) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO `+Schema+`.sink_offsets AS o (sink, topic, partition, next_offset)
SELECT $1, u.t, u.p, u.o FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS u(t, p, o)
ON CONFLICT (sink, topic, partition) DO UPDATE SET next_offset = GREATEST(o.next_offset, excluded.next_offset), applied_at = now()`,
			s.o.Name, topics, parts, offs); err != nil {
			return res, fmt.Errorf("sinks/postgres %s: store offsets: %w", s.o.Name, err)
		}
	}
	runs, err := s.refusalRuns(recs, &res)
	if err != nil {
		return res, err
	}
	if len(res.Dead) > 0 {
		if err := s.sendDead(ctx, res.Dead); err != nil {
			return res, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("sinks/postgres %s: commit: %w", s.o.Name, err)
	}
	s.mu.Lock()
	maps.Copy(s.runs, runs)
	s.mu.Unlock()
	return res, nil
}

// refusalRuns are the refusal runs of the tables recs touch once this batch commits,
// or the error that stops the batch when one reaches StopAfterRefusals.
func (s *Sink) refusalRuns(recs []Record, res *Result) (map[*target]refusalRun, error) {
	type tally struct {
		reasons map[string]int
		first   error
	}
	refused := map[*target]*tally{}
	for _, r := range res.Dead {
		var rf *refusal
		if !errors.As(r.Err, &rf) {
			continue
		}
		tl := refused[r.tgt]
		if tl == nil {
			tl = &tally{reasons: map[string]int{}, first: rf.err}
			refused[r.tgt] = tl
		}
		tl.reasons[refusalReason(rf.err)]++
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	runs := map[*target]refusalRun{}
	for _, r := range recs {
		if r.tgt != nil && r.Err == nil {
			runs[r.tgt] = refusalRun{}
		}
	}
	for t := range runs {
		pe := res.PerEntity[t.entity]
		if pe != nil && pe.Applied+pe.Stale+pe.Deleted > 0 {
			continue // a change landed: the table takes the entity's changes
		}
		tl := refused[t]
		if tl == nil || len(tl.reasons) != 1 {
			continue
		}
		var run refusalRun
		for reason, n := range tl.reasons {
			run = refusalRun{reason: reason, n: n}
		}
		if prev := s.runs[t]; prev.reason == run.reason {
			run.n += prev.n
		}
		if run.n >= s.o.StopAfterRefusals {
			return nil, fmt.Errorf("sinks/postgres %s: %d %s changes in a row refused by %s for the same reason, which is the table's, not theirs: %v — "+
				"make %s fit the canonical entity %s (the columns and constraints of migrations/00001_provincial.sql, or drop the constraint); "+
				"until then this batch is retried with backoff and nothing more goes to the dead letters",
				s.o.Name, run.n, t.entity, t.relName, tl.first, t.relName, t.entity)
		}
		runs[t] = run
	}
	return runs, nil
}

// refusalReason is what makes two refusals the same: SQLSTATE, table, column and
// constraint.
func refusalReason(err error) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	return pe.Code + "/" + pe.TableName + "/" + pe.ColumnName + "/" + pe.ConstraintName
}

// applySegment applies changes with no truncate among them: per table, collapsed to
// the newest version of each key, staged with COPY and merged.
func (s *Sink) applySegment(ctx context.Context, tx pgx.Tx, seg []Record, first bool, res *Result) error {
	if len(seg) == 0 {
		return nil
	}
	byTarget := map[*target][]Record{}
	for _, r := range seg {
		byTarget[r.tgt] = append(byTarget[r.tgt], r)
	}
	for _, t := range s.order {
		rs := byTarget[t]
		if len(rs) == 0 {
			continue
		}
		if !first {
			if _, err := tx.Exec(ctx, "TRUNCATE "+t.stage); err != nil {
				return fmt.Errorf("sinks/postgres %s: clear staging of %s: %w", s.o.Name, t.entity, err)
			}
		}
		// Rounds: the newest change of every key is merged; where the database refuses
		// it, the key's next older change of the batch is merged instead (as if the
		// changes had come one by one), until a change of the key lands or none is left.
		base := 0
		for round := 0; len(rs) > 0; round++ {
			rows, older := collapse(rs)
			if round == 0 {
				res.count(t.entity, Counts{Collapsed: len(rs) - len(rows)})
			} else {
				res.count(t.entity, Counts{Collapsed: -len(rows)}) // superseded before, merged now
			}
			if err := s.stage(ctx, tx, t, rows, older, base); err != nil {
				return err
			}
			var refused []int
			if err := s.applyRange(ctx, tx, t, rows, base, 0, len(rows)-1, res, &refused); err != nil {
				return err
			}
			base += len(rows)
			for _, o := range older {
				base += len(o)
			}
			rs = rs[:0:0]
			for _, i := range refused {
				rs = append(rs, older[i]...)
			}
		}
	}
	return nil
}

// stage copies a round's changes into t's staging table: rows (the newest change of
// each key) at _ord base.., then the changes each one superseded (older[i] for
// rows[i]), numbered after them, with _grp pointing at their row.
func (s *Sink) stage(ctx context.Context, tx pgx.Tx, t *target, rows []Record, older [][]Record, base int) error {
	// COPY in text format from a buffer written here: the values are text already,
	// and pgx's per-value encoding (CopyFromRows) cost more client CPU than the
	// server's whole COPY (BenchmarkUpsert: 65,000 → 80,000 rows/s).
	buf := make([]byte, 0, 1024*len(rows))
	add := func(ord, grp int, r Record) {
		buf = strconv.AppendInt(buf, int64(ord), 10)
		buf = append(buf, '\t')
		buf = strconv.AppendInt(buf, int64(grp), 10)
		if r.op == opDelete {
			buf = append(buf, "\tt"...)
		} else {
			buf = append(buf, "\tf"...)
		}
		for _, v := range r.vals {
			buf = append(buf, '\t')
			if v == nil {
				buf = append(buf, `\N`...)
				continue
			}
			buf = appendCopyText(buf, v.(string))
		}
		buf = append(buf, '\n')
	}
	for i, r := range rows {
		add(base+i, base+i, r)
	}
	ord := base + len(rows)
	for i, o := range older {
		for _, r := range o {
			add(ord, base+i, r)
			ord++
		}
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(buf), t.copyStage); err != nil {
		return fmt.Errorf("sinks/postgres %s: stage %d %s rows: %w", s.o.Name, ord-base, t.entity, err)
	}
	return nil
}

// appendCopyText appends v as a field of COPY's text format.
func appendCopyText(buf []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			buf = append(buf, `\\`...)
		case '\t':
			buf = append(buf, `\t`...)
		case '\n':
			buf = append(buf, `\n`...)
		case '\r':
			buf = append(buf, `\r`...)
		default:
			buf = append(buf, c)
		}
	}
	return buf
}

// collapse keeps, per key, the change with the highest version (the later one of
// equal versions), in first-seen order; older[i] are the changes rows[i] superseded,
// newest first.
func collapse(rs []Record) (rows []Record, older [][]Record) {
	at := make(map[string]int, len(rs))
	rows = make([]Record, 0, len(rs))
	older = make([][]Record, 0, len(rs))
	for _, r := range rs {
		i, ok := at[r.key]
		if !ok {
			at[r.key] = len(rows)
			rows = append(rows, r)
			older = append(older, nil)
			continue
		}
		if r.version >= rows[i].version {
			rows[i], r = r, rows[i]
		}
		older[i] = append(older[i], r)
	}
	for _, o := range older {
		if len(o) > 1 {
			// newest first; of equal versions the later change first (stable sort of
			// the reversed consumption order)
			slices.Reverse(o)
			slices.SortStableFunc(o, func(a, b Record) int { return cmp.Compare(b.version, a.version) })
		}
	}
	return rows, older
}

// applyRange merges the staged rows lo..hi of a round (staged at _ord base+lo ..
// base+hi) under a savepoint. When PostgreSQL refuses the rows themselves (a value or
// a constraint), the range is split in halves until the refused rows are single;
// those go to the dead letters (their indexes appended to refused) and the others
// land.
func (s *Sink) applyRange(ctx context.Context, tx pgx.Tx, t *target, rows []Record, base, lo, hi int, res *Result, refused *[]int) error {
	sp, err := tx.Begin(ctx) // a savepoint
	if err != nil {
		return fmt.Errorf("sinks/postgres %s: savepoint: %w", s.o.Name, err)
	}
	var c Counts
	err = s.merge(ctx, sp, t, base+lo, base+hi, rows[lo:hi+1], &c)
	if err == nil {
		if err = sp.Commit(ctx); err == nil {
			res.count(t.entity, c)
			return nil
		}
	}
	if rbErr := sp.Rollback(ctx); rbErr != nil && !recordError(err) {
		return fmt.Errorf("sinks/postgres %s: %s: %w", s.o.Name, t.entity, err)
	}
	if !recordError(err) {
		return fmt.Errorf("sinks/postgres %s: apply %d %s rows: %w", s.o.Name, hi-lo+1, t.entity, err)
	}
	if lo == hi {
		rec := rows[lo]
		rec.Err = &refusal{err: err}
		res.Dead = append(res.Dead, rec)
		*refused = append(*refused, lo)
		return nil
	}
	mid := lo + (hi-lo)/2
	if err := s.applyRange(ctx, tx, t, rows, base, lo, mid, res, refused); err != nil {
		return err
	}
	return s.applyRange(ctx, tx, t, rows, base, mid+1, hi, res, refused)
}

// refusal is why the provincial database refused a change (a PostgreSQL error of
// class 22 or 23).
type refusal struct{ err error }

func (r *refusal) Error() string { return "refused by the provincial database: " + r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// merge runs the table's statements over the staged rows at _ord lo..hi (rows are
// those changes).
func (s *Sink) merge(ctx context.Context, tx pgx.Tx, t *target, lo, hi int, rows []Record, r *Counts) error {
	live, dels := 0, 0
	for _, x := range rows {
		if x.op == opDelete {
			dels++
		} else {
			live++
		}
	}
	if live > 0 {
		args := []any{int32(lo), int32(hi)}
		if s.o.Delete == DeleteHard {
			args = append(args, t.relName)
		}
		tag, err := tx.Exec(ctx, t.upsert, args...)
		if err != nil {
			return err
		}
		r.Applied += int(tag.RowsAffected())
		r.Stale += live - int(tag.RowsAffected())
	}
	if t.recordHistory != "" {
		// every change of the range's keys, superseded ones included (by _grp)
		if _, err := tx.Exec(ctx, t.recordHistory, int32(lo), int32(hi)); err != nil {
			return err
		}
	}
	if dels > 0 {
		var n int
		if s.o.Delete == DeleteHard {
			if err := tx.QueryRow(ctx, t.deleteHard, int32(lo), int32(hi), t.relName).Scan(&n); err != nil {
				return err
			}
		} else {
			tag, err := tx.Exec(ctx, t.deleteSoft, int32(lo), int32(hi))
			if err != nil {
				return err
			}
			n = int(tag.RowsAffected())
		}
		r.Deleted += n
		r.Stale += dels - n
	}
	return nil
}

// truncate applies or ignores a truncate record, as configured.
func (s *Sink) truncate(ctx context.Context, tx pgx.Tx, r Record, res *Result) error {
	if s.o.Truncate != TruncateApply {
		res.TruncatesIgnored++
		s.log.Warn("truncate on a canonical topic ignored (sinks[].truncate is ignore)", "topic", r.Msg.Topic, "partition", r.Msg.Partition, "offset", r.Msg.Offset)
		return nil
	}
	q := r.tgt.truncateSoft
	if s.o.Delete == DeleteHard {
		q = r.tgt.truncateHard
	}
	if _, err := tx.Exec(ctx, q); err != nil {
		return fmt.Errorf("sinks/postgres %s: truncate %s: %w", s.o.Name, r.tgt.relName, err)
	}
	res.Truncated++
	s.log.Warn("truncate applied", "table", r.tgt.relName, "delete", s.o.Delete, "topic", r.Msg.Topic, "offset", r.Msg.Offset)
	return nil
}

// sendDead produces the dead letters of a batch to <prefix>.dlq.sink (acks=all).
func (s *Sink) sendDead(ctx context.Context, dead []Record) error {
	if s.o.Producer == nil {
		r := dead[0]
		return fmt.Errorf("sinks/postgres %s: %s/%d@%d cannot be applied and no dead-letter producer is configured: %v",
			s.o.Name, r.Msg.Topic, r.Msg.Partition, r.Msg.Offset, r.Err)
	}
	msgs := make([]bus.Message, 0, len(dead))
	for _, r := range dead {
		rec := bus.DeadRecord("sink", "sink "+s.o.Name+": "+r.Err.Error(), r.Msg, s.o.Now())
		msgs = append(msgs, bus.DeadLetter(s.o.TopicPrefix, rec, s.scrub()))
	}
	if err := s.o.Producer.Produce(ctx, msgs...); err != nil {
		return fmt.Errorf("sinks/postgres %s: send %d dead letters: %w", s.o.Name, len(msgs), err)
	}
	return nil
}

// scrub is the protector's ScrubText, or nil.
func (s *Sink) scrub() func(string) string {
	if s.o.Protect == nil {
		return nil
	}
	return s.o.Protect.ScrubText
}

// StoredOffset is the next offset to read of a partition as stored with the rows;
// ok is false when the sink has stored none.
func (s *Sink) StoredOffset(ctx context.Context, pool *pgxpool.Pool, topic string, partition int) (int64, bool, error) {
	var off int64
	err := pool.QueryRow(ctx, `SELECT next_offset FROM `+Schema+`.sink_offsets WHERE sink = $1 AND topic = $2 AND partition = $3`,
		s.o.Name, topic, partition).Scan(&off)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return off, true, nil
}
