package pgstore

import (
	"context"
	"embed"
	"fmt"
	"strings"

	"github.com/jobhost/jobhost/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations are the embedded files in version order.
var migrations = pgmigrate.MustLoad("pgstore", migrationFiles, "migrations")

// SchemaVersion is the schema version this build needs: the number of the
// last embedded migration.
func SchemaVersion() int { return migrations[len(migrations)-1].Version }

// Migrate applies the migrations the table has not had yet, each in its
// own transaction, and records them in the jobhost_migrations table beside
// it (table_name the table's name as normalised, the one the store's
// records have always had); with all applied it changes nothing.
// Concurrent Migrates (several hosts starting) wait for each other. A
// migration record left by a table that was dropped since is cleared, and
// the table created again.
func (s *Store) Migrate(ctx context.Context) error {
	err := pgmigrate.Apply(ctx, s.pool, pgmigrate.Set{
		Migrations: migrations,
		Records:    s.qmigrate,
		Key:        s.table,
		Target:     s.qtable,
		Replacer:   strings.NewReplacer("{{table}}", s.qtable, "{{index}}", s.index),
	})
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s to %w", s.table, err) // "... to version N (file): ..."
	}
	return nil
}

// check returns an error wrapping ErrNotMigrated unless the table exists
// at this build's schema version or a later one.
func (s *Store) check(ctx context.Context) error {
	hint := `run "jobhost operations migrate" (or open the store with Options.Migrate)`
	var table, records bool
	err := s.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL", s.qtable, s.qmigrate).Scan(&table, &records)
	if err != nil {
		return fmt.Errorf("pgstore: check table %s: %w", s.table, err)
	}
	if !table {
		return fmt.Errorf("%w: table %s does not exist: %s to create it", ErrNotMigrated, s.table, hint)
	}
	version := 0
	if records {
		version, err = pgmigrate.Recorded(ctx, s.pool, s.qmigrate, s.table)
		if err != nil {
			return fmt.Errorf("pgstore: check table %s: %w", s.table, err)
		}
	}
	if version < SchemaVersion() {
		return fmt.Errorf("%w: table %s is at schema version %d, this build needs %d: %s", ErrNotMigrated, s.table, version, SchemaVersion(), hint)
	}
	return nil
}
