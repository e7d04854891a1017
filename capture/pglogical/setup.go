package pglogical

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Setup creates what the source needs and is missing, as far as the options allow:
// the publication for the configured tables (CreatePublication; missing tables are
// added to an existing one) and, with SnapshotMode never, the replication slot
// (CreateSlot). With SnapshotMode initial the slot is created by the first Open, on
// the replication connection that keeps its exported snapshot alive for the initial
// load; Setup then only reports that. It returns one line per action taken or
// deferred, for the operator command to print. Nothing is ever dropped here.
func (s *Source) Setup(ctx context.Context) ([]string, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var done []string
	did, err := s.ensurePublication(ctx, conn, s.o.CreatePublication)
	if err != nil {
		return done, err
	}
	done = append(done, did...)
	exists, _, err := slotInfo(ctx, conn, s.o.Slot)
	if err != nil {
		return done, err
	}
	switch {
	case exists:
	case !s.o.CreateSlot:
		done = append(done, fmt.Sprintf("slot %s is missing and create_slot is off: create it with SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", s.o.Slot, s.o.Slot))
	case s.o.SnapshotMode == SnapshotInitial:
		done = append(done, fmt.Sprintf("slot %s will be created by the first start, with an exported snapshot for the initial load", s.o.Slot))
	default:
		if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, s.o.Slot); err != nil {
			return done, fmt.Errorf("pglogical: create slot %s: %w", s.o.Slot, err)
		}
		done = append(done, "created slot "+s.o.Slot)
	}
	return done, nil
}

// Teardown drops the slot and the publication. Only an operator command and tests
// call it: dropping the slot loses every change not yet read, and the saved position
// becomes useless (delete it to start over with a new snapshot). It fails while a
// client still streams from the slot.
func (s *Source) Teardown(ctx context.Context) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var errs []error
	exists, active, err := slotInfo(ctx, conn, s.o.Slot)
	if err != nil {
		return err
	}
	if exists {
		if active {
			errs = append(errs, fmt.Errorf("pglogical: slot %s is active: stop the capture worker first (or wait for wal_sender_timeout after it died)", s.o.Slot))
		} else if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, s.o.Slot); err != nil {
			errs = append(errs, fmt.Errorf("pglogical: drop slot %s: %w", s.o.Slot, err))
		} else {
			s.log.Warn("dropped replication slot", "slot", s.o.Slot)
		}
	}
	if _, err := conn.Exec(ctx, `DROP PUBLICATION IF EXISTS `+quoteIdent(s.o.Publication)); err != nil {
		errs = append(errs, fmt.Errorf("pglogical: drop publication %s: %w", s.o.Publication, err))
	}
	return errors.Join(errs...)
}

// slotInfo reports whether the slot exists and whether a client streams from it. A
// slot with another plugin or database is an error.
func slotInfo(ctx context.Context, conn *pgx.Conn, slot string) (exists, active bool, err error) {
	var plugin, db string
	err = conn.QueryRow(ctx, `SELECT coalesce(plugin, ''), coalesce(database, ''), active FROM pg_replication_slots WHERE slot_name = $1`, slot).
		Scan(&plugin, &db, &active)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("pglogical: look up slot %s: %w", slot, err)
	}
	if plugin != "pgoutput" {
		return true, active, fmt.Errorf("pglogical: slot %s uses plugin %q, not pgoutput: choose another slot name", slot, plugin)
	}
	var cur string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&cur); err != nil {
		return true, active, fmt.Errorf("pglogical: current database: %w", err)
	}
	if db != cur {
		return true, active, fmt.Errorf("pglogical: slot %s belongs to database %q, not %q: choose another slot name", slot, db, cur)
	}
	return true, active, nil
}

// ensurePublication checks that the publication exists and covers every configured
// table, creating it or adding tables when create is true.
func (s *Source) ensurePublication(ctx context.Context, conn *pgx.Conn, create bool) ([]string, error) {
	var exists, allTables bool
	err := conn.QueryRow(ctx, `SELECT true, puballtables FROM pg_publication WHERE pubname = $1`, s.o.Publication).Scan(&exists, &allTables)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pglogical: look up publication %s: %w", s.o.Publication, err)
	}
	quoted := make([]string, len(s.o.Tables))
	for i, t := range s.o.Tables {
		sc, rel, _ := strings.Cut(t, ".")
		quoted[i] = pgx.Identifier{sc, rel}.Sanitize()
	}
	if !exists {
		if !create {
			return nil, fmt.Errorf("pglogical: publication %s does not exist and create_publication is off: run CREATE PUBLICATION %s FOR TABLE %s (or enable create_publication)",
				s.o.Publication, s.o.Publication, strings.Join(quoted, ", "))
		}
		if _, err := conn.Exec(ctx, `CREATE PUBLICATION `+quoteIdent(s.o.Publication)+` FOR TABLE `+strings.Join(quoted, ", ")); err != nil {
			return nil, fmt.Errorf("pglogical: create publication %s: %w", s.o.Publication, err)
		}
		return []string{fmt.Sprintf("created publication %s for %s", s.o.Publication, strings.Join(s.o.Tables, ", "))}, nil
	}
	if allTables {
		return nil, nil
	}
	var missing []string
	var missingQ []string
	for i, t := range s.o.Tables {
		sc, rel, _ := strings.Cut(t, ".")
		var in bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`,
			s.o.Publication, sc, rel).Scan(&in); err != nil {
			return nil, fmt.Errorf("pglogical: read tables of publication %s: %w", s.o.Publication, err)
		}
		if !in {
			missing = append(missing, t)
			missingQ = append(missingQ, quoted[i])
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	if !create {
		return nil, fmt.Errorf("pglogical: publication %s lacks tables %s and create_publication is off: run ALTER PUBLICATION %s ADD TABLE %s",
			s.o.Publication, strings.Join(missing, ", "), s.o.Publication, strings.Join(missingQ, ", "))
	}
	if _, err := conn.Exec(ctx, `ALTER PUBLICATION `+quoteIdent(s.o.Publication)+` ADD TABLE `+strings.Join(missingQ, ", ")); err != nil {
		return nil, fmt.Errorf("pglogical: add tables %s to publication %s: %w", strings.Join(missing, ", "), s.o.Publication, err)
	}
	return []string{fmt.Sprintf("added %s to publication %s", strings.Join(missing, ", "), s.o.Publication)}, nil
}
