package gen

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/shouwang/shouwang/internal/config"
	"github.com/shouwang/shouwang/schemas"
)

// CreateDepartmentTables runs schemas.DepartmentsPGDDL (idempotent).
func CreateDepartmentTables(ctx context.Context, conn *pgx.Conn) error {
	for _, stmt := range schemas.SplitSQL(schemas.DepartmentsPGDDL) {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("gen: create department tables: %w", err)
		}
	}
	return nil
}

// pgSink copies department rows with COPY in batches, one goroutine and connection.
type pgSink struct {
	conn  *pgx.Conn
	limit int
	buf   [numDatasets][]Row
	ch    chan pgBatch
	done  chan error
}

type pgBatch struct {
	ds   int
	rows []Row
}

func newPGSink(ctx context.Context, dsn string) (*pgSink, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("gen: connect PostgreSQL %s: %w", config.MaskDSN(dsn), err)
	}
	if err := CreateDepartmentTables(ctx, conn); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	s := &pgSink{conn: conn, limit: 20000, ch: make(chan pgBatch, 4), done: make(chan error, 1)}
	go s.run(ctx)
	return s, nil
}

func (s *pgSink) run(ctx context.Context) {
	var err error
	for b := range s.ch {
		if err != nil {
			continue
		}
		d := Datasets[b.ds]
		src := pgx.CopyFromSlice(len(b.rows), func(i int) ([]any, error) { return b.rows[i], nil })
		if _, e := s.conn.CopyFrom(ctx, pgx.Identifier{d.Department, d.Name}, d.Columns, src); e != nil {
			err = fmt.Errorf("gen: COPY into %s: %w", d.Table(), e)
		}
	}
	s.done <- err
}

func (s *pgSink) write(ctx context.Context, v *VillageResult) error {
	for i, rows := range v.Dept {
		s.buf[i] = append(s.buf[i], rows...)
		if len(s.buf[i]) >= s.limit {
			s.ch <- pgBatch{i, s.buf[i]}
			s.buf[i] = nil
		}
	}
	return nil
}

func (s *pgSink) close(ctx context.Context) error {
	if s.ch == nil {
		return nil
	}
	for i, rows := range s.buf {
		if len(rows) > 0 && ctx.Err() == nil {
			s.ch <- pgBatch{i, rows}
		}
	}
	close(s.ch)
	s.ch = nil
	err := <-s.done
	s.conn.Close(context.WithoutCancel(ctx))
	return err
}

// PingPG checks that the department database is reachable.
func PingPG(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("gen: connect PostgreSQL %s: %w", config.MaskDSN(dsn), err)
	}
	return conn.Close(ctx)
}
