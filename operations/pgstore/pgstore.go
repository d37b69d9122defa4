// Package pgstore keeps operation records in PostgreSQL, as an
// operations.Store (registered as the "postgres" store kind).
//
// # Schema
//
// Records live in one table (Options.Table, "jobhost_operations" by
// default), one row a record:
//
//	id              text COLLATE "C" primary key (byte order, as Go sorts)
//	name            text          the function
//	status          smallint      Dataverse status code (operations.Status)
//	state           smallint      derived from status (generated), for SQL readers
//	input, output,
//	progress        bytea         JSON, exactly the bytes written (NULL when none)
//	start_time,
//	end_time        timestamptz   NULL when not set
//	attempt         integer
//	error_code, error_message, run_as, callback_url,
//	idempotency_key text          '' when not set
//	created_on, last_updated,
//	expires_on      timestamptz
//	version         bigint        the concurrency token
//
// JSON is kept as bytea rather than jsonb because jsonb normalises it (key
// order, whitespace, duplicate keys) and the store returns what it was
// given; read it in SQL with convert_from(input, 'UTF8')::jsonb. Times are
// stored and returned in UTC at microsecond precision (the store truncates
// them before writing, so what it returns is what it stored). Text columns
// cannot hold NUL or invalid UTF-8: in the text fields each becomes U+FFFD
// (an id holding one is refused by Create and found by nothing), and an
// empty JSON value is stored as NULL and read back as nil.
//
// Indexes serve List's filters, each ordered by id for keyset pagination
// ((name, id), (status, id), (run_as, id), (created_on)), and Purge
// (expires_on).
//
// Writes are optimistic: Update reads a row, applies the change to a copy
// and writes it with UPDATE ... WHERE id = $1 AND version = $2, setting
// version = version + 1; when another write came in between no row
// matches, and Update reads again and retries (at most MaxAttempts times,
// then ErrConflict).
//
// # Migrations
//
// The schema is created and upgraded by SQL files embedded in the package
// (migrations/NNNN_name.sql), applied in order, each in one transaction
// under an advisory lock, and recorded in a jobhost_migrations table kept
// next to the operations table (same schema): one row per table and
// version applied, so applying them again is a no-op. Migrations are
// applied only when asked: by Options.Migrate, (*Store).Migrate or the
// CLI's "jobhost operations migrate". Open without them fails with an
// error wrapping ErrNotMigrated that says so.
//
// The DSN is a pgx connection string: a URL or key=value pairs, with the
// pool's settings (pool_max_conns, ...) among them.
//
// Neither errors nor anything else the package writes ever hold the DSN:
// it may carry a password.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobhost/jobhost/operations"
)

// DefaultTable is the table used when Options.Table is empty.
const DefaultTable = "jobhost_operations"

// EnvURL is the environment variable (and default app setting) holding the
// PostgreSQL connection URL.
const EnvURL = "JOBHOST_POSTGRES_URL"

// MaxAttempts bounds how many times Update reads and writes a record that
// other writers keep changing before it gives up with ErrConflict.
const MaxAttempts = 100

// Errors the store returns besides operations' own.
var (
	// ErrNotMigrated: the table does not exist or its schema is older than
	// this build's; run the migrations ("jobhost operations migrate").
	ErrNotMigrated = fmt.Errorf("pgstore: %w", operations.ErrNotMigrated)
	// ErrConflict: Update lost MaxAttempts races for one record in a row.
	ErrConflict = errors.New("pgstore: too many conflicting writes")
)

// Options configure a Store.
type Options struct {
	// Table is the table's name, a plain SQL identifier (letters, digits,
	// underscores), optionally schema-qualified ("ops.operations"). Like
	// an unquoted identifier it is folded to lower case. The name itself
	// is at most 48 characters (index names add suffixes to it). Empty
	// means DefaultTable.
	Table string
	// TimeToLive is how long a record is kept after it is created, when it
	// is created without an ExpiresOn (0 means
	// operations.DefaultTimeToLive).
	TimeToLive time.Duration
	// Now is the store's clock (nil means time.Now); tests set it.
	Now func() time.Time
	// Migrate applies the schema migrations when the store opens.
	Migrate bool
}

// Store is a PostgreSQL operations.Store. It is safe for concurrent use.
type Store struct {
	pool      *pgxpool.Pool
	table     string // as configured, normalised: the migration record's key
	qtable    string // quoted, for statements
	index     string // unqualified name, prefixing index names
	qmigrate  string // the jobhost_migrations table, quoted
	ttl       time.Duration
	now       func() time.Time
	closeOnce sync.Once
}

var _ operations.Store = (*Store)(nil)

func init() {
	operations.RegisterStore("postgres", func(ctx context.Context, o operations.OpenOptions) (operations.Store, error) {
		setting := o.Connection
		if setting == "" {
			setting = EnvURL
		}
		var dsn string
		var ok bool
		if o.Lookup != nil {
			dsn, ok = o.Lookup(setting)
		}
		if !ok || strings.TrimSpace(dsn) == "" {
			return nil, fmt.Errorf("pgstore: the app setting %s holding the PostgreSQL connection URL is not set", setting)
		}
		return Open(ctx, dsn, Options{Table: o.Table, TimeToLive: o.TimeToLive, Migrate: o.Migrate})
	})
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// parseTable validates a table name and returns it normalised, quoted, and
// the quoted migrations table beside it.
func parseTable(name string) (norm, quoted, index, migrations string, err error) {
	if name == "" {
		name = DefaultTable
	}
	norm = strings.ToLower(name)
	parts := strings.Split(norm, ".")
	bad := len(parts) > 2
	for _, p := range parts {
		bad = bad || !identRE.MatchString(p) || len(p) > 63
	}
	index = parts[len(parts)-1]
	if bad || len(index) > 48 {
		return "", "", "", "", fmt.Errorf("pgstore: invalid table name %q: want a plain identifier of letters, digits and underscores (at most 48 characters), optionally schema-qualified (schema.table)", name)
	}
	quoted = pgx.Identifier(parts).Sanitize()
	mparts := append(append([]string(nil), parts[:len(parts)-1]...), "jobhost_migrations")
	return norm, quoted, index, pgx.Identifier(mparts).Sanitize(), nil
}

// Open connects to PostgreSQL at dsn (a URL or key=value connection
// string) and returns the store. With o.Migrate it first applies the
// schema migrations; without, a missing or outdated table is an error
// wrapping ErrNotMigrated. An unreachable server is an error too. No error
// holds the DSN.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	norm, quoted, index, qmig, err := parseTable(o.Table)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error quotes the DSN, password redaction being best
		// effort: say nothing of it.
		return nil, errors.New("pgstore: the PostgreSQL connection string cannot be parsed (it is not repeated here: it may hold a password)")
	}
	password := cfg.ConnConfig.Password
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", scrub(err, password))
	}
	s := &Store{pool: pool, table: norm, qtable: quoted, index: index, qmigrate: qmig, ttl: o.TimeToLive, now: o.Now}
	if s.ttl <= 0 {
		s.ttl = operations.DefaultTimeToLive
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: connect to %s: %w", describe(cfg), scrub(err, password))
	}
	if o.Migrate {
		err = s.Migrate(ctx)
	} else {
		err = s.check(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, scrub(err, password)
	}
	return s, nil
}

// describe names the server without the password.
func describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("PostgreSQL at %s:%d (database %q, user %q)", c.Host, c.Port, c.Database, c.User)
}

// scrubbed is an error whose text has the password masked.
type scrubbed struct {
	err      error
	password string
}

func (e *scrubbed) Error() string { return strings.ReplaceAll(e.err.Error(), e.password, "xxxxx") }
func (e *scrubbed) Unwrap() error { return e.err }

// scrub masks password in err's text, should a driver message quote it.
func scrub(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return &scrubbed{err: err, password: password}
}

// Table returns the table the store keeps records in (normalised, as
// given: possibly schema-qualified).
func (s *Store) Table() string { return s.table }

// Close releases the store's connections; it is idempotent. Calls after it
// fail.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// clock returns now in UTC, truncated to what PostgreSQL keeps.
func (s *Store) clock() time.Time { return norm(s.now()) }

// norm returns t in UTC at microsecond precision (zero stays zero).
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// fail wraps a database error for op; a missing table becomes
// ErrNotMigrated's hint.
func (s *Store) fail(op string, err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "42P01" { // undefined_table
		return fmt.Errorf("pgstore: %s: %w: table %s does not exist (%v); run \"jobhost operations migrate\" or open with Options.Migrate", op, ErrNotMigrated, s.table, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}
