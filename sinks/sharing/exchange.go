package sharing

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql" // driver "mysql"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shouwang/shouwang/internal/bus"
	"github.com/shouwang/shouwang/internal/metrics"
	"github.com/shouwang/shouwang/internal/pii"
)

// ExchangeTable and ExchangeOffsets are the tables an exchange sink keeps in the
// sharing platform's database (created when missing):
//
//	fpjc_base_data    (entity, record_key) → version, op (upsert or delete), data (the
//	                  agreed fields as JSON, ID numbers and phones protected), pushed_at
//	fpjc_push_offsets (sink, topic, part) → next_offset, written in the same
//	                  transaction as the rows (effectively once)
const (
	ExchangeTable   = "fpjc_base_data"
	ExchangeOffsets = "fpjc_push_offsets"
)

// ExchangeOptions configures an ExchangeWorker.
type ExchangeOptions struct {
	Name        string
	TopicPrefix string
	ClientID    string
	Entities    []string
	Fields      map[string][]string
	Protect     *pii.Protector
	Method      pii.Method
	// Driver is postgres or mysql; DSN the sharing platform's database.
	Driver, DSN string
	Bus         bus.Options
	Producer    *bus.Producer
	BatchSize   int
	Linger      time.Duration
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
	SetReady    func(ready bool, reason string)
	Now         func() time.Time
	// RetryInitial, RetryMax bound the backoff while the database fails.
	RetryInitial, RetryMax time.Duration
}

// ExchangeWorker upserts base data into the exchange table of the sharing platform's
// database, applying a record only when its version is newer than the stored one.
type ExchangeWorker struct {
	o ExchangeOptions
	*projector
	log      *slog.Logger
	records  *prometheus.CounterVec
	dlq      *prometheus.CounterVec
	upsert   string // the statement for one row; rows are sent in one transaction
	offsets  string
	creates  []string
	selectOf string
}

// NewExchange checks the options.
func NewExchange(o ExchangeOptions) (*ExchangeWorker, error) {
	if o.Name == "" {
		return nil, errors.New("sharing: the sink has no name (sinks[].name)")
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.Linger <= 0 {
		o.Linger = 50 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = 200 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 10 * time.Second
	}
	pr, err := newProjector(o.Name, o.TopicPrefix, o.Entities, o.Fields, o.Protect, o.Method)
	if err != nil {
		return nil, err
	}
	w := &ExchangeWorker{o: o, projector: pr, log: o.Logger.With("sink", o.Name)}
	labels := prometheus.Labels{"sink": o.Name}
	w.records = metrics.Register(o.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shouwang_sharing_exchange_rows_total",
		Help: "Base-data records written to the sharing platform's exchange table, by entity and result (applied, stale).", ConstLabels: labels}, []string{"entity", "result"}))
	w.dlq = metrics.DLQCounter(o.Registerer)
	switch o.Driver {
	case "postgres", "":
		w.o.Driver = "postgres"
		w.creates = []string{
			`CREATE TABLE IF NOT EXISTS ` + ExchangeTable + ` (entity varchar(32) NOT NULL, record_key varchar(64) NOT NULL, version bigint NOT NULL,
  op varchar(8) NOT NULL, data jsonb, pushed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (entity, record_key))`,
			`CREATE TABLE IF NOT EXISTS ` + ExchangeOffsets + ` (sink varchar(64) NOT NULL, topic varchar(255) NOT NULL, part integer NOT NULL,
  next_offset bigint NOT NULL, PRIMARY KEY (sink, topic, part))`}
		w.upsert = `INSERT INTO ` + ExchangeTable + ` AS t (entity, record_key, version, op, data, pushed_at) VALUES ($1, $2, $3, $4, $5::jsonb, now())
ON CONFLICT (entity, record_key) DO UPDATE SET version = excluded.version, op = excluded.op, data = excluded.data, pushed_at = excluded.pushed_at
WHERE t.version < excluded.version`
		w.offsets = `INSERT INTO ` + ExchangeOffsets + ` AS o (sink, topic, part, next_offset) VALUES ($1, $2, $3, $4)
ON CONFLICT (sink, topic, part) DO UPDATE SET next_offset = GREATEST(o.next_offset, excluded.next_offset)`
		w.selectOf = `SELECT next_offset FROM ` + ExchangeOffsets + ` WHERE sink = $1 AND topic = $2 AND part = $3`
	case "mysql":
		w.creates = []string{
			`CREATE TABLE IF NOT EXISTS ` + ExchangeTable + ` (entity VARCHAR(32) NOT NULL, record_key VARCHAR(64) NOT NULL, version BIGINT NOT NULL,
  op VARCHAR(8) NOT NULL, data LONGTEXT NULL, pushed_at DATETIME(3) NOT NULL, PRIMARY KEY (entity, record_key)) DEFAULT CHARSET=utf8mb4`,
			`CREATE TABLE IF NOT EXISTS ` + ExchangeOffsets + ` (sink VARCHAR(64) NOT NULL, topic VARCHAR(255) NOT NULL, part INT NOT NULL,
  next_offset BIGINT NOT NULL, PRIMARY KEY (sink, topic, part))`}
		// MySQL evaluates the assignments left to right: version is compared before
		// it is overwritten, so it comes last.
		w.upsert = `INSERT INTO ` + ExchangeTable + ` (entity, record_key, version, op, data, pushed_at) VALUES (?, ?, ?, ?, ?, NOW(3))
ON DUPLICATE KEY UPDATE op = IF(version < VALUES(version), VALUES(op), op), data = IF(version < VALUES(version), VALUES(data), data),
  pushed_at = IF(version < VALUES(version), VALUES(pushed_at), pushed_at), version = GREATEST(version, VALUES(version))`
		w.offsets = `INSERT INTO ` + ExchangeOffsets + ` (sink, topic, part, next_offset) VALUES (?, ?, ?, ?)
ON DUPLICATE KEY UPDATE next_offset = GREATEST(next_offset, VALUES(next_offset))`
		w.selectOf = `SELECT next_offset FROM ` + ExchangeOffsets + ` WHERE sink = ? AND topic = ? AND part = ?`
	default:
		return nil, fmt.Errorf("sharing %s: driver %q: use postgres or mysql", o.Name, o.Driver)
	}
	return w, nil
}

// Name is the sink's name; Group its consumer group.
func (w *ExchangeWorker) Name() string  { return w.o.Name }
func (w *ExchangeWorker) Group() string { return w.o.ClientID + "-sink-" + w.o.Name }

func (w *ExchangeWorker) ready(v bool, reason string) {
	if w.o.SetReady != nil {
		w.o.SetReady(v, reason)
	}
}

// retry runs op until it succeeds or ctx ends (bus.RetryBatch); the database is
// waited for, never skipped.
func (w *ExchangeWorker) retry(ctx context.Context, what string, op func() error) error {
	return bus.RetryBatch(ctx, w.o.RetryInitial, w.o.RetryMax, op, nil, func(attempt int, wait time.Duration, err error) {
		w.ready(false, what+": "+err.Error())
		w.log.Error("sharing: "+what+" failed; retrying (nothing is skipped)", "attempt", attempt, "retry_in", wait, "err", err)
	})
}

// Run consumes until ctx is done.
func (w *ExchangeWorker) Run(ctx context.Context) error {
	driver := "pgx"
	if w.o.Driver == "mysql" {
		driver = "mysql"
	}
	db, err := sql.Open(driver, w.o.DSN)
	if err != nil {
		return fmt.Errorf("sharing %s: dsn: %w", w.o.Name, err)
	}
	defer db.Close()
	if err := w.retry(ctx, "creating the exchange tables", func() error {
		for _, q := range w.creates {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil // ctx ended
	}
	pc, err := bus.NewPartitionConsumer(w.o.Bus, w.Group(), w.Topics(), func(pctx context.Context, topic string, partition int) (int64, bool, error) {
		var off int64
		found := false
		err := w.retry(pctx, "reading the stored offset of "+topic, func() error {
			err := db.QueryRowContext(pctx, w.selectOf, w.o.Name, topic, partition).Scan(&off)
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			found = err == nil
			return err
		})
		if !found {
			off = bus.FirstOffset
		}
		return off, true, err
	})
	if err != nil {
		return fmt.Errorf("sharing %s: %w", w.o.Name, err)
	}
	w.ready(true, "")
	w.log.Info("sharing exchange sink started", "topics", w.Topics(), "driver", w.o.Driver, "group", w.Group())
	err = bus.Batches(ctx, pc, bus.BatchOptions[projected]{Size: w.o.BatchSize, Linger: w.o.Linger, Decode: func(m bus.Message) projected {
		it, err := w.project(m)
		return projected{it: it, err: err}
	}}, func(ctx context.Context, batch []bus.Fetched[projected]) error {
		if err := w.retry(ctx, fmt.Sprintf("writing a batch of %d records", len(batch)), func() error {
			err := w.apply(ctx, db, batch, false)
			if rowRefusal(err) {
				// One row's values were refused: write the batch again row by row,
				// each under a savepoint, and dead-letter the rows refused.
				err = w.apply(ctx, db, batch, true)
			}
			return err
		}); err != nil {
			return err
		}
		w.ready(true, "")
		if err := bus.CommitLast(batch); err != nil && ctx.Err() == nil {
			w.log.Debug("sharing: group offset commit failed (the stored offset counts)", "err", err)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("sharing %s: %w", w.o.Name, err)
	}
	return nil
}

// rowRefusal reports whether err is the database refusing one row's values
// (PostgreSQL class 22 data exceptions, NOT NULL and CHECK violations; the MySQL data
// errors) rather than a failure of the connection or the server, which is retried.
func rowRefusal(err error) bool {
	if err == nil {
		return false
	}
	// Unique and foreign-key violations are left out: with a constraint the platform
	// added they may depend on the order rows arrive in, so they are retried.
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "22") || pe.Code == "23502" || pe.Code == "23514" // data, not null, check
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1048, 1264, 1265, 1292, 1366, 1406, 3140, 3819, 4025: // null, range, truncated, value, string, too long, JSON, check (MySQL 8, MariaDB)
			return true
		}
	}
	return false
}

// apply writes one batch and its offsets in one transaction; unreadable changes go
// to the dead-letter topic before the commit. With isolate, each row is written under
// a savepoint and a row the database refuses (rowRefusal) is rolled back to it and
// dead-lettered with the database's reason, so one bad row cannot stall the sink.
func (w *ExchangeWorker) apply(ctx context.Context, db *sql.DB, batch []bus.Fetched[projected], isolate bool) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	stmt, err := tx.PrepareContext(ctx, w.upsert)
	if err != nil {
		return err
	}
	defer stmt.Close()
	type tp struct {
		topic string
		part  int
	}
	next := map[tp]int64{}
	var dead []bus.Message
	refused := 0
	applied := map[string][2]int{}
	for _, f := range batch {
		k := tp{f.Msg.Topic, f.Msg.Partition}
		next[k] = max(next[k], f.Msg.Offset+1)
		if f.V.err != nil {
			dead = append(dead, bus.DeadLetter(w.o.TopicPrefix, bus.DeadRecord("sink", "sink "+w.o.Name+": "+f.V.err.Error(), f.Msg, w.o.Now()), w.scrub()))
			continue
		}
		it := f.V.it
		var data any
		if it.Data != nil {
			b, err := json.Marshal(it.Data)
			if err != nil {
				return err
			}
			data = string(b)
		}
		if isolate {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT shouwang_row"); err != nil {
				return err
			}
		}
		res, err := stmt.ExecContext(ctx, it.Entity, it.Key, it.Version, it.Op, data)
		if err != nil && isolate && rowRefusal(err) {
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT shouwang_row"); rerr != nil {
				return rerr
			}
			reason := "sink " + w.o.Name + ": refused by the sharing platform database: " + pii.MaskText(err.Error())
			dead = append(dead, bus.DeadLetter(w.o.TopicPrefix, bus.DeadRecord("sink", reason, f.Msg, w.o.Now()), w.scrub()))
			refused++
			continue
		}
		if err != nil {
			return fmt.Errorf("upsert %s %s: %w", it.Entity, pii.MaskText(it.Key), err)
		}
		if isolate { // PostgreSQL nests savepoints of one name: release each at once
			if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT shouwang_row"); err != nil {
				return err
			}
		}
		n, _ := res.RowsAffected()
		c := applied[it.Entity]
		if n > 0 { // MySQL reports 0 for a duplicate left unchanged
			c[0]++
		} else {
			c[1]++
		}
		applied[it.Entity] = c
	}
	for k, n := range next {
		if _, err := tx.ExecContext(ctx, w.offsets, w.o.Name, k.topic, k.part, n); err != nil {
			return fmt.Errorf("store offsets: %w", err)
		}
	}
	if len(dead) > 0 {
		if w.o.Producer == nil {
			return fmt.Errorf("%d records cannot be written and no dead-letter producer is configured", len(dead))
		}
		if err := w.o.Producer.Produce(ctx, dead...); err != nil {
			return fmt.Errorf("send %d dead letters: %w", len(dead), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for e, c := range applied {
		w.records.WithLabelValues(e, "applied").Add(float64(c[0]))
		w.records.WithLabelValues(e, "stale").Add(float64(c[1]))
	}
	w.dlq.WithLabelValues("sink", "contract").Add(float64(len(dead) - refused))
	w.dlq.WithLabelValues("sink", "constraint").Add(float64(refused))
	return nil
}
