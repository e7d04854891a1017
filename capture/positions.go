package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PositionStore keeps the last committed position of each source durably. The runner
// saves a position only after Kafka acknowledged every change up to it, and only then
// tells the source (Source.Ack), so a crash at any point replays from the saved
// position: changes may repeat (consumers drop them by version), none are lost.
type PositionStore interface {
	// Load returns the saved position of source; found is false when none was saved.
	Load(ctx context.Context, source string) (p Position, found bool, err error)
	// Save replaces the saved position of source durably before returning.
	Save(ctx context.Context, source string, p Position) error
}

var sourceNameRe = regexp.MustCompile(`^[a-z0-9_]+$`)

// FileStore keeps one file per source in a directory, replaced atomically (write to a
// temporary file, fsync, rename, fsync the directory), for single-node deployments.
type FileStore struct{ dir string }

// NewFileStore returns a store in dir, creating it when missing.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("position store: create directory %s: %w", dir, err)
	}
	return &FileStore{dir: dir}, nil
}

func (s *FileStore) path(source string) (string, error) {
	if !sourceNameRe.MatchString(source) {
		return "", fmt.Errorf("position store: source name %q must match [a-z0-9_]+", source)
	}
	return filepath.Join(s.dir, source+".position.json"), nil
}

// Load implements PositionStore.
func (s *FileStore) Load(_ context.Context, source string) (Position, bool, error) {
	p, err := s.path(source)
	if err != nil {
		return nil, false, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("position store: read %s: %w", p, err)
	}
	return Position(b), true, nil
}

// Save implements PositionStore.
func (s *FileStore) Save(_ context.Context, source string, pos Position) error {
	p, err := s.path(source)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, source+".*.tmp")
	if err != nil {
		return fmt.Errorf("position store: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(pos); err != nil {
		tmp.Close()
		return fmt.Errorf("position store: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("position store: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("position store: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("position store: replace %s: %w", p, err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("position store: open directory %s: %w", s.dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("position store: sync directory %s: %w", s.dir, err)
	}
	return nil
}

// PGStore keeps positions in a PostgreSQL table (shouwang_source_positions), for
// deployments where capture workers may move between hosts.
type PGStore struct{ pool *pgxpool.Pool }

// NewPGStore creates the table when missing and returns the store.
func NewPGStore(ctx context.Context, pool *pgxpool.Pool) (*PGStore, error) {
	_, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS shouwang_source_positions (
		source     text PRIMARY KEY,
		position   jsonb NOT NULL,
		updated_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return nil, fmt.Errorf("position store: create table shouwang_source_positions: %w", err)
	}
	return &PGStore{pool: pool}, nil
}

// Load implements PositionStore.
func (s *PGStore) Load(ctx context.Context, source string) (Position, bool, error) {
	var b []byte
	err := s.pool.QueryRow(ctx, `SELECT position::text FROM shouwang_source_positions WHERE source = $1`, source).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("position store: load %s: %w", source, err)
	}
	return Position(b), true, nil
}

// Save implements PositionStore.
func (s *PGStore) Save(ctx context.Context, source string, p Position) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO shouwang_source_positions (source, position, updated_at)
		VALUES ($1, $2::jsonb, now())
		ON CONFLICT (source) DO UPDATE SET position = excluded.position, updated_at = now()`, source, string(p))
	if err != nil {
		return fmt.Errorf("position store: save %s: %w", source, err)
	}
	return nil
}
