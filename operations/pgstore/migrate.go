package pgstore

import (
	"context"
	"embed"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded SQL file.
type migration struct {
	version int
	name    string // file name
	sql     string
}

// migrations are the embedded files in version order.
var migrations = mustLoadMigrations()

func mustLoadMigrations() []migration {
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		panic(err)
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			panic("pgstore: migration file " + e.Name() + " is not named NNNN_name.sql")
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			panic(err)
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			panic(fmt.Sprintf("pgstore: migration %s: want version %d (versions are consecutive from 1)", m.name, i+1))
		}
	}
	return out
}

// SchemaVersion is the schema version this build needs: the number of the
// last embedded migration.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// migrationLock is the advisory lock key that serialises migrations
// across processes ("jobhost" in ASCII).
const migrationLock int64 = 0x6a6f62686f7374

// Migrate applies the migrations the table has not had yet, each in its
// own transaction, and records them in the jobhost_migrations table beside
// it; with all applied it changes nothing. Concurrent Migrates (several
// hosts starting) wait for each other. A migration record left by a table
// that was dropped since is cleared, and the table created again.
func (s *Store) Migrate(ctx context.Context) error {
	for _, m := range migrations {
		if err := s.apply(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// apply runs m unless the record says it ran.
func (s *Store) apply(ctx context.Context, m migration) error {
	fail := func(err error) error {
		return fmt.Errorf("pgstore: migrate %s to version %d (%s): %w", s.table, m.version, m.name, err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
		return fail(err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.qmigrate+` (
	table_name text NOT NULL,
	version    integer NOT NULL,
	name       text NOT NULL,
	applied_on timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (table_name, version)
)`); err != nil {
		return fail(err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.qtable).Scan(&exists); err != nil {
		return fail(err)
	}
	if !exists {
		// Records of a table dropped since would make this a no-op.
		if _, err := tx.Exec(ctx, "DELETE FROM "+s.qmigrate+" WHERE table_name = $1", s.table); err != nil {
			return fail(err)
		}
	}
	var done bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+s.qmigrate+" WHERE table_name = $1 AND version = $2)", s.table, m.version).Scan(&done); err != nil {
		return fail(err)
	}
	if done {
		return nil
	}
	sql := strings.NewReplacer("{{table}}", s.qtable, "{{index}}", s.index).Replace(m.sql)
	if _, err := tx.Exec(ctx, sql); err != nil {
		return fail(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+s.qmigrate+" (table_name, version, name) VALUES ($1, $2, $3)", s.table, m.version, m.name); err != nil {
		return fail(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fail(err)
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
		err = s.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+s.qmigrate+" WHERE table_name = $1", s.table).Scan(&version)
		if err != nil {
			return fmt.Errorf("pgstore: check table %s: %w", s.table, err)
		}
	}
	if version < SchemaVersion() {
		return fmt.Errorf("%w: table %s is at schema version %d, this build needs %d: %s", ErrNotMigrated, s.table, version, SchemaVersion(), hint)
	}
	return nil
}
