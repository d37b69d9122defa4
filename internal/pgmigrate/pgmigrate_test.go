package pgmigrate_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobhost/jobhost/internal/pgmigrate"
	"github.com/jobhost/jobhost/triggers/postgres/pgtest"
)

func TestLoad(t *testing.T) {
	ms, err := pgmigrate.Load(fstest.MapFS{
		"m/0002_second.sql": {Data: []byte("two")},
		"m/0001_first.sql":  {Data: []byte("one")},
		"m/3_third.sql":     {Data: []byte("three")},
	}, "m")
	if err != nil {
		t.Fatal(err)
	}
	want := []pgmigrate.Migration{{1, "0001_first.sql", "one"}, {2, "0002_second.sql", "two"}, {3, "3_third.sql", "three"}}
	if len(ms) != len(want) {
		t.Fatalf("Load = %v, want %v", ms, want)
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("migration %d = %+v, want %+v", i, ms[i], want[i])
		}
	}

	for name, tc := range map[string]struct {
		fs   fstest.MapFS
		want string
	}{
		"no number":   {fstest.MapFS{"m/first.sql": {}}, "migration file first.sql is not named NNNN_name.sql"},
		"zero":        {fstest.MapFS{"m/0000_zero.sql": {}}, "migration file 0000_zero.sql is not named NNNN_name.sql"},
		"a gap":       {fstest.MapFS{"m/0001_a.sql": {}, "m/0003_c.sql": {}}, "migration 0003_c.sql: want version 2 (versions are consecutive from 1)"},
		"a twin":      {fstest.MapFS{"m/0001_a.sql": {}, "m/0001_b.sql": {}}, "migration 0001_b.sql: want version 2 (versions are consecutive from 1)"},
		"empty":       {fstest.MapFS{"m": {Mode: fs.ModeDir | 0o755}}, "no migrations in m"},
		"no such dir": {fstest.MapFS{}, "open m: file does not exist"},
	} {
		if _, err := pgmigrate.Load(tc.fs, "m"); err == nil || err.Error() != tc.want {
			t.Errorf("%s: Load error = %v, want %q", name, err, tc.want)
		}
	}
}

func TestMustLoad(t *testing.T) {
	defer func() {
		if r := recover(); r != "pkg: migration file x.sql is not named NNNN_name.sql" {
			t.Errorf("MustLoad panicked with %v", r)
		}
	}()
	pgmigrate.MustLoad("pkg", fstest.MapFS{"m/x.sql": {}}, "m")
	t.Error("MustLoad did not panic")
}

func TestErrorWording(t *testing.T) {
	base := errors.New("boom")
	err := error(&pgmigrate.Error{Migration: pgmigrate.Migration{Version: 2, Name: "0002_x.sql"}, Err: base})
	if err.Error() != "version 2 (0002_x.sql): boom" || !errors.Is(err, base) {
		t.Errorf("Error = %q, errors.Is(base) = %v", err, errors.Is(err, base))
	}
}

// fixture is a schema of its own with a set migrating a table "items" in
// it.
type fixture struct {
	pool    *pgxpool.Pool
	records string // quoted
	target  string // quoted
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	pool := pgtest.Admin(t)
	schema := pgtest.SchemaName(t)
	if _, err := pool.Exec(ctxT(t), "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return fixture{
		pool:    pool,
		records: pgx.Identifier{schema, "jobhost_migrations"}.Sanitize(),
		target:  pgx.Identifier{schema, "items"}.Sanitize(),
	}
}

var files = []pgmigrate.Migration{
	{1, "0001_items.sql", "CREATE TABLE {{t}} (id int PRIMARY KEY)"},
	{2, "0002_name.sql", "ALTER TABLE {{t}} ADD COLUMN name text; INSERT INTO {{t}} VALUES (1, 'one')"},
	{3, "0003_more.sql", "INSERT INTO {{t}} VALUES (2, 'two')"},
}

func (f fixture) set(n int) pgmigrate.Set {
	return pgmigrate.Set{Migrations: files[:n], Records: f.records, Key: "items", Target: f.target,
		Replacer: strings.NewReplacer("{{t}}", f.target)}
}

// recordsOf returns the file names recorded for key, in version order.
func (f fixture) recordsOf(t *testing.T, key string) []string {
	t.Helper()
	rows, err := f.pool.Query(ctxT(t), "SELECT version, name FROM "+f.records+" WHERE table_name = $1 ORDER BY version", key)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		out = append(out, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// count returns the number of rows in the target table.
func (f fixture) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(ctxT(t), "SELECT count(*) FROM "+f.target).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// expect checks the rows of the target table and the records of the set.
func (f fixture) expect(t *testing.T, when string, rows, records int) {
	t.Helper()
	if n := f.count(t); n != rows {
		t.Errorf("%s: rows = %d, want %d", when, n, rows)
	}
	if n := len(f.recordsOf(t, "items")); n != records {
		t.Errorf("%s: records = %d, want %d", when, n, records)
	}
}

func TestApply(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	if err := pgmigrate.Apply(ctx, f.pool, f.set(2)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.recordsOf(t, "items"), ","); got != "0001_items.sql,0002_name.sql" {
		t.Errorf("records = %s", got)
	}
	if v, err := pgmigrate.Recorded(ctx, f.pool, f.records, "items"); err != nil || v != 2 {
		t.Errorf("Recorded = %d, %v; want 2", v, err)
	}
	if v, err := pgmigrate.Recorded(ctx, f.pool, f.records, "other"); err != nil || v != 0 {
		t.Errorf("Recorded(other) = %d, %v; want 0", v, err)
	}

	// Applied again, nothing runs (the INSERT would fail on its key).
	if err := pgmigrate.Apply(ctx, f.pool, f.set(2)); err != nil {
		t.Fatalf("Apply again: %v", err)
	}
	// A later build brings one more file: only it runs.
	if err := pgmigrate.Apply(ctx, f.pool, f.set(3)); err != nil {
		t.Fatal(err)
	}
	f.expect(t, "after a later build's Apply", 2, 3)

	// Records of a table dropped since are cleared, and it is made again.
	if _, err := f.pool.Exec(ctx, "DROP TABLE "+f.target); err != nil {
		t.Fatal(err)
	}
	if err := pgmigrate.Apply(ctx, f.pool, f.set(3)); err != nil {
		t.Fatalf("Apply after the table was dropped: %v", err)
	}
	f.expect(t, "after the table was made again", 2, 3)
}

// TestApplyKeepsExistingRecords: a database migrated before (records
// written by the code this package replaced, same table, same rows) is
// recognised, and its migrations are not run again.
func TestApplyKeepsExistingRecords(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	for _, sql := range []string{
		`CREATE TABLE ` + f.records + ` (table_name text NOT NULL, version integer NOT NULL, name text NOT NULL, applied_on timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, version))`,
		`CREATE TABLE ` + f.target + ` (id int PRIMARY KEY, name text)`,
		`INSERT INTO ` + f.records + ` (table_name, version, name) VALUES ('items', 1, '0001_items.sql'), ('items', 2, '0002_name.sql'), ('others', 1, 'x.sql')`,
	} {
		if _, err := f.pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := pgmigrate.Apply(ctx, f.pool, f.set(3)); err != nil {
		t.Fatalf("Apply on a database migrated before: %v", err)
	}
	if n := f.count(t); n != 1 {
		t.Errorf("rows = %d, want 1 (only migration 3 ran)", n)
	}
	if got := strings.Join(f.recordsOf(t, "others"), ","); got != "x.sql" {
		t.Errorf("another key's records = %s", got)
	}
}

func TestApplyFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	set := f.set(2)
	set.Migrations = append(set.Migrations[:2:2], pgmigrate.Migration{Version: 3, Name: "0003_bad.sql", SQL: "INSERT INTO {{t}} VALUES (2, 'two'); SELEC 1"})
	err := pgmigrate.Apply(ctx, f.pool, set)
	var me *pgmigrate.Error
	if !errors.As(err, &me) || me.Migration.Version != 3 || !strings.HasPrefix(err.Error(), "version 3 (0003_bad.sql): ") {
		t.Fatalf("Apply = %v, want a *pgmigrate.Error for version 3", err)
	}
	f.expect(t, "the failed migration rolled back", 1, 2)
}

func TestApplyConcurrent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := pgmigrate.Apply(ctxT(t), f.pool, f.set(3)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	f.expect(t, "after concurrent Applies", 2, 3)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
