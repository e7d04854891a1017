package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrationsTable is goose's version table, kept in the provincial schema's database
// under the public schema (goose creates it before any migration has run).
const MigrationsTable = "fpjc_schema_migrations"

// Migrate brings the provincial schema to the newest version this build knows, with
// pressly/goose over the embedded SQL files (sinks/postgres/migrations). Concurrent
// sinks starting together are serialised by a PostgreSQL advisory lock held while the
// migrations run. It returns the versions applied (none when the schema is current).
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) ([]int64, error) {
	if log == nil {
		log = slog.Default()
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("sinks/postgres: migration lock: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithTableName(MigrationsTable), goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("sinks/postgres: migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("sinks/postgres: migrate the provincial schema: %w", err)
	}
	var done []int64
	for _, r := range res {
		done = append(done, r.Source.Version)
		log.Info("provincial schema migrated", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration)
	}
	return done, nil
}

// MigrateDSN is Migrate over a connection of its own to dsn.
func MigrateDSN(ctx context.Context, dsn string, log *slog.Logger) ([]int64, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("sinks/postgres: %w", err)
	}
	defer pool.Close()
	return Migrate(ctx, pool, log)
}
