// Package pgmigrate applies jobhost's embedded PostgreSQL migrations: the
// operation store's (operations/pgstore) and the queue driver's
// (triggers/postgres).
//
// A migration set is a directory of NNNN_name.sql files, numbered
// consecutively from 1. Each file runs in a transaction of its own, under
// the advisory lock Lock, and is recorded in a jobhost_migrations table
//
//	table_name text, version integer, name text, applied_on timestamptz,
//	PRIMARY KEY (table_name, version)
//
// as one row: the set's Key, the file's number and its file name. A file
// with a row is not run again, so databases migrated before keep their
// records.
package pgmigrate

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Lock is the advisory lock key (pg_advisory_xact_lock) that serialises
// jobhost's migrations across processes: "jobhost" in ASCII.
const Lock int64 = 0x6a6f62686f7374

// Migration is one SQL file of a set.
type Migration struct {
	Version int    // the file's number, from 1
	Name    string // the file name, as recorded
	SQL     string
}

// Load reads the migrations in dir of fsys, in version order. Every file
// must be named NNNN_name (a positive number, then '_'), and the numbers
// must run from 1 without a gap; errors name the file.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d (versions are consecutive from 1)", m.Name, i+1)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no migrations in %s", dir)
	}
	return out, nil
}

// MustLoad is Load for embedded sets, read when a package initialises: it
// panics with the error, prefixed by pkg ("pgstore: ...").
func MustLoad(pkg string, fsys fs.FS, dir string) []Migration {
	ms, err := Load(fsys, dir)
	if err != nil {
		panic(pkg + ": " + err.Error())
	}
	return ms
}

// Set is what Apply migrates and where it keeps its records.
type Set struct {
	Migrations []Migration

	// Records is the quoted name of the jobhost_migrations table (it is
	// created when missing), Key the set's table_name in it.
	Records string
	Key     string

	// Target is the quoted name of the set's main table. When it does not
	// exist, the set's records are deleted first: they are left by a
	// table dropped since, and would make the migrations a no-op.
	Target string

	// Replacer, if not nil, rewrites each file's SQL before it runs (table
	// and index names for placeholders).
	Replacer *strings.Replacer
}

// Beginner starts transactions: a *pgxpool.Pool or a *pgx.Conn.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Error is a migration that failed: the caller words it with the file's
// version and name.
type Error struct {
	Migration Migration
	Err       error
}

// Error returns "version N (name): err".
func (e *Error) Error() string {
	return fmt.Sprintf("version %d (%s): %v", e.Migration.Version, e.Migration.Name, e.Err)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Apply runs the set's migrations that its records do not list, in order,
// each in its own transaction holding Lock, recording each in the same
// transaction; with all recorded it changes nothing. Concurrent Applies
// wait for each other. A failure stops it, leaving the failed migration
// unapplied and unrecorded, as an *Error.
func Apply(ctx context.Context, db Beginner, s Set) error {
	for _, m := range s.Migrations {
		if err := s.apply(ctx, db, m); err != nil {
			return &Error{Migration: m, Err: err}
		}
	}
	return nil
}

// apply runs m unless the record says it ran.
func (s Set) apply(ctx context.Context, db Beginner, m Migration) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", Lock); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.Records+` (
	table_name text NOT NULL,
	version    integer NOT NULL,
	name       text NOT NULL,
	applied_on timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (table_name, version)
)`); err != nil {
		return err
	}
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.Target).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := tx.Exec(ctx, "DELETE FROM "+s.Records+" WHERE table_name = $1", s.Key); err != nil {
			return err
		}
	}
	var done bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+s.Records+" WHERE table_name = $1 AND version = $2)", s.Key, m.Version).Scan(&done); err != nil {
		return err
	}
	if done {
		return nil
	}
	sql := m.SQL
	if s.Replacer != nil {
		sql = s.Replacer.Replace(sql)
	}
	if _, err := tx.Exec(ctx, sql); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+s.Records+" (table_name, version, name) VALUES ($1, $2, $3)", s.Key, m.Version, m.Name); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Querier runs a query: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Recorded returns the highest version recorded for key in the records
// table (quoted), 0 when there is none. The table must exist.
func Recorded(ctx context.Context, q Querier, records, key string) (int, error) {
	version := 0
	err := q.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+records+" WHERE table_name = $1", key).Scan(&version)
	return version, err
}
