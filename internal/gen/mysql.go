package gen

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/schemas"
)

var loadSeq atomic.Int64

// OpenMySQL opens and pings the national front-end database.
func OpenMySQL(ctx context.Context, dsn string) (*sql.DB, error) { return openMySQL(ctx, dsn, true) }

func openMySQL(ctx context.Context, dsn string, parseTime bool) (*sql.DB, error) {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("gen: MySQL DSN %q: %w (form: user:pass@tcp(host:port)/db)", config.MaskDSN(dsn), err)
	}
	c.ParseTime = parseTime
	c.MultiStatements = false
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("gen: open MySQL %s: %w", c.Addr, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("gen: connect MySQL %s (user %s, db %s): %w", c.Addr, c.User, c.DBName, err)
	}
	return db, nil
}

// CreateNationalTables runs schemas.NationalMySQLDDL (CREATE TABLE IF NOT EXISTS).
func CreateNationalTables(ctx context.Context, db *sql.DB) error {
	for _, stmt := range schemas.SplitSQL(schemas.NationalMySQLDDL) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("gen: create national tables: %w", err)
		}
	}
	return nil
}

// loadData streams r into table with LOAD DATA LOCAL INFILE through a registered
// reader (no temporary file on the server side), in the TSV format of encode.go.
func loadData(ctx context.Context, conn interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, table string, cols []string, r io.Reader) (int64, error) {
	name := fmt.Sprintf("gen_%s_%d", table, loadSeq.Add(1))
	mysql.RegisterReaderHandler(name, func() io.Reader { return r })
	defer mysql.DeregisterReaderHandler(name)
	q := fmt.Sprintf("LOAD DATA LOCAL INFILE 'Reader::%s' INTO TABLE `%s` CHARACTER SET utf8mb4 (%s)",
		name, table, strings.Join(cols, ","))
	res, err := conn.ExecContext(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("gen: LOAD DATA into %s: %w (the server needs local_infile=ON)", table, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// mysqlSink loads the three national tables in parallel, one connection per table,
// in chunks of ChunkBytes so no statement grows without bound.
type mysqlSink struct {
	db      *sql.DB
	tables  [3]*tableLoader
	closed  bool
	closeMu sync.Mutex
}

type tableLoader struct {
	table string
	cols  []string
	limit int
	buf   []byte
	ch    chan []byte
	done  chan error
}

func newMySQLSink(ctx context.Context, dsn string, chunk int) (*mysqlSink, error) {
	if chunk <= 0 {
		chunk = 4 << 20
	}
	db, err := OpenMySQL(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := CreateNationalTables(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	s := &mysqlSink{db: db}
	for i, t := range []struct {
		name string
		cols []string
	}{{"household", HouseholdColumns}, {"person", PersonColumns}, {"measure", MeasureColumns}} {
		tl := &tableLoader{table: t.name, cols: t.cols, limit: chunk, ch: make(chan []byte, 2), done: make(chan error, 1)}
		s.tables[i] = tl
		go tl.run(ctx, db)
	}
	return s, nil
}

func (tl *tableLoader) run(ctx context.Context, db *sql.DB) {
	var err error
	for b := range tl.ch {
		if err != nil {
			continue
		}
		_, err = loadData(ctx, db, tl.table, tl.cols, bytes.NewReader(b))
	}
	tl.done <- err
}

func (tl *tableLoader) add(b []byte) {
	tl.buf = append(tl.buf, b...)
	if len(tl.buf) >= tl.limit {
		tl.ch <- tl.buf
		tl.buf = make([]byte, 0, tl.limit+tl.limit/4)
	}
}

func (s *mysqlSink) write(ctx context.Context, v *VillageResult) error {
	s.tables[0].add(v.HouseholdTSV)
	s.tables[1].add(v.PersonTSV)
	s.tables[2].add(v.MeasureTSV)
	return nil
}

func (s *mysqlSink) close(ctx context.Context) error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var first error
	for _, tl := range s.tables {
		if len(tl.buf) > 0 && ctx.Err() == nil {
			tl.ch <- tl.buf
		}
		close(tl.ch)
	}
	for _, tl := range s.tables {
		if err := <-tl.done; err != nil && first == nil {
			first = err
		}
	}
	s.db.Close()
	return first
}
