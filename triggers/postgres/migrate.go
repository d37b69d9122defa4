package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jobhost/jobhost/internal/pgmigrate"
	"github.com/jobhost/jobhost/triggers"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations are the embedded files in version order.
var migrations = pgmigrate.MustLoad("postgres", migrationFiles, "migrations")

// SchemaVersion is the schema version this build needs: the number of the
// last embedded migration.
func SchemaVersion() int { return migrations[len(migrations)-1].Version }

// Table names, in the configured schema (or the connection's search_path).
const (
	MessagesTable = "jobhost_queue_messages"
	PoisonTable   = "jobhost_queue_poison"
	// migrationsTable records applied migrations, one row per table and
	// version; operations/pgstore keeps its records in the same table.
	migrationsTable = "jobhost_migrations"
	// migrationKey is this package's table_name in migrationsTable.
	migrationKey = MessagesTable
)

// Hint is what an error about missing or outdated tables tells the
// operator to do.
const Hint = "apply triggers/postgres migrations with postgres.Migrate or extensions.pubsub.createQueues"

// ErrNotMigrated means the queue tables do not exist or are older than
// this build: apply the migrations (Hint). Errors wrapping it also wrap
// triggers.ErrNotFound, so a host waits for the tables as for a missing
// queue.
var ErrNotMigrated = errors.New("queue tables not migrated")

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// tables are the quoted names of the package's tables in one schema.
type tables struct {
	schema     string // normalised; "" means the search_path
	messages   string
	poison     string
	migrations string
	display    string // messages table as written in messages
}

// newTables validates schema (a plain identifier, folded to lower case;
// empty for the connection's search_path) and names the tables in it.
func newTables(schema string) (tables, error) {
	s := strings.ToLower(strings.TrimSpace(schema))
	if s != "" && (!identRE.MatchString(s) || len(s) > 63) {
		return tables{}, fmt.Errorf("postgres: invalid schema name %q: want a plain identifier of letters, digits and underscores, at most 63 characters", schema)
	}
	q := func(name string) string {
		if s == "" {
			return pgx.Identifier{name}.Sanitize()
		}
		return pgx.Identifier{s, name}.Sanitize()
	}
	display := MessagesTable
	if s != "" {
		display = s + "." + MessagesTable
	}
	return tables{schema: s, messages: q(MessagesTable), poison: q(PoisonTable), migrations: q(migrationsTable), display: display}, nil
}

// Migrate creates or upgrades the queue tables in schema ("" for the
// connection's search_path, usually public) of the database at dsn: it
// applies the embedded migrations not yet recorded, each in its own
// transaction under an advisory lock, and records them in the
// jobhost_migrations table of the schema (the one operations/pgstore
// uses). With all applied it changes nothing; concurrent Migrates wait
// for each other. A named schema is created if missing. Errors never hold
// the DSN.
func Migrate(ctx context.Context, dsn, schema string) error {
	t, err := newTables(schema)
	if err != nil {
		return err
	}
	sc, err := acquire(dsn)
	if err != nil {
		return err
	}
	defer sc.release()
	if err := sc.migrate(ctx, t); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// migrate applies the migrations to t and marks the schema ready.
func (sc *shared) migrate(ctx context.Context, t tables) error {
	if t.schema != "" {
		if _, err := sc.pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{t.schema}.Sanitize()); err != nil {
			var pg *pgconn.PgError
			// Concurrent CREATE SCHEMA IF NOT EXISTS can race on the catalog.
			if !errors.As(err, &pg) || pg.Code != "23505" {
				return fmt.Errorf("create schema %s on %s: %w", t.schema, sc.display, sc.scrub(err))
			}
		}
	}
	// Records keep the table_name migrationKey, as they always have; the
	// lock is pgmigrate.Lock, pgstore's too.
	err := pgmigrate.Apply(ctx, sc.pool, pgmigrate.Set{
		Migrations: migrations,
		Records:    t.migrations,
		Key:        migrationKey,
		Target:     t.messages,
		Replacer:   strings.NewReplacer("{{messages}}", t.messages, "{{poison}}", t.poison),
	})
	var me *pgmigrate.Error
	if errors.As(err, &me) {
		return fmt.Errorf("migrate %s to version %d (%s) on %s: %w", t.display, me.Migration.Version, me.Migration.Name, sc.display, sc.scrub(me.Err))
	}
	if err != nil {
		return err
	}
	sc.setReady(t.schema, true)
	return nil
}

// check returns nil when t's tables exist at this build's schema version
// or a later one, and an error wrapping ErrNotMigrated and
// triggers.ErrNotFound when they do not.
func (sc *shared) check(ctx context.Context, t tables) error {
	var messages, poison, records bool
	err := sc.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL",
		t.messages, t.poison, t.migrations).Scan(&messages, &poison, &records)
	if err != nil {
		return fmt.Errorf("check table %s on %s: %w", t.display, sc.display, sc.scrub(err))
	}
	if !messages || !poison {
		return notMigrated(fmt.Sprintf("table %s does not exist", t.display))
	}
	version := 0
	if records {
		version, err = pgmigrate.Recorded(ctx, sc.pool, t.migrations, migrationKey)
		if err != nil {
			return fmt.Errorf("check table %s on %s: %w", t.display, sc.display, sc.scrub(err))
		}
	}
	if version < SchemaVersion() {
		return notMigrated(fmt.Sprintf("table %s is at schema version %d, this build needs %d", t.display, version, SchemaVersion()))
	}
	sc.setReady(t.schema, true)
	return nil
}

// notMigrated is the error for tables that are missing or outdated.
func notMigrated(what string) error {
	return fmt.Errorf("%s: %w, %w (%s)", what, ErrNotMigrated, triggers.ErrNotFound, Hint)
}

// ensure makes sure t's tables are there: migrating them when create is
// set, checking them otherwise. It asks the server once per pool and
// schema, and again after a statement found them missing.
func (sc *shared) ensure(ctx context.Context, t tables, create bool) error {
	if sc.isReady(t.schema) {
		return nil
	}
	if create {
		return sc.migrate(ctx, t)
	}
	return sc.check(ctx, t)
}

// missing reports whether err says that t's tables or schema do not
// exist; it then forgets that the schema was ready.
func (sc *shared) missing(t tables, err error) bool {
	if isMissing(err) {
		sc.setReady(t.schema, false)
		return true
	}
	return false
}

// isMissing reports whether err says that a table or schema does not exist.
func isMissing(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "42P01" || pg.Code == "3F000") // undefined_table, invalid_schema_name
}
