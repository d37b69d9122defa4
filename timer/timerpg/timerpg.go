// Package timerpg keeps timer statuses and singleton leases in PostgreSQL,
// for hosts that run without Azure Storage: a status table (one row per
// host id and function, the fields of Functions' status blob) and a lease
// table (one row per host id and lock, with an owner and an expiry on the
// database's clock, so hosts' clock skew does not matter).
//
// The tables are created by Migrate, explicitly (like triggers/postgres):
// a Store never creates them, and its errors say to migrate when they are
// missing.
package timerpg

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobhost/jobhost/internal/pgmigrate"
	"github.com/jobhost/jobhost/timer"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var migrations = pgmigrate.MustLoad("timerpg", migrationFiles, "migrations")

// Table names, in the configured schema (or the connection's search_path).
const (
	StatusTable = "jobhost_timer_status"
	LocksTable  = "jobhost_timer_locks"
	// migrationsTable records applied migrations; triggers/postgres and
	// operations/pgstore keep theirs in the same table.
	migrationsTable = "jobhost_migrations"
	migrationKey    = StatusTable
)

// Hint is what an error about missing tables tells the operator to do.
const Hint = "apply the timer tables with timerpg.Migrate"

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

type tables struct {
	schema, status, locks, migrations string
}

func newTables(schema string) (tables, error) {
	s := strings.ToLower(strings.TrimSpace(schema))
	if s != "" && (!identRE.MatchString(s) || len(s) > 63) {
		return tables{}, fmt.Errorf("timerpg: invalid schema name %q: want a plain identifier of letters, digits and underscores, at most 63 characters", schema)
	}
	q := func(name string) string {
		if s == "" {
			return pgx.Identifier{name}.Sanitize()
		}
		return pgx.Identifier{s, name}.Sanitize()
	}
	return tables{schema: s, status: q(StatusTable), locks: q(LocksTable), migrations: q(migrationsTable)}, nil
}

// Migrate creates or upgrades the timer tables in schema ("" for the
// connection's search_path) of pool's database: the embedded migrations
// not yet recorded run in their own transactions under jobhost's migration
// advisory lock, recorded in the schema's jobhost_migrations table. A
// named schema is created if missing. With all applied it changes nothing.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	t, err := newTables(schema)
	if err != nil {
		return err
	}
	if t.schema != "" {
		if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{t.schema}.Sanitize()); err != nil {
			var pg *pgconn.PgError
			if !errors.As(err, &pg) || pg.Code != "23505" { // concurrent creation
				return fmt.Errorf("timerpg: create schema %s: %w", t.schema, err)
			}
		}
	}
	err = pgmigrate.Apply(ctx, pool, pgmigrate.Set{
		Migrations: migrations,
		Records:    t.migrations,
		Key:        migrationKey,
		Target:     t.status,
		Replacer:   strings.NewReplacer("{{status}}", t.status, "{{locks}}", t.locks),
	})
	if err != nil {
		return fmt.Errorf("timerpg: migrate: %w", err)
	}
	return nil
}

// Store is a timer.StatusStore and timer.Locker on one database and
// schema, for one host id. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	t      tables
	hostID string
}

var (
	_ timer.StatusStore = (*Store)(nil)
	_ timer.Locker      = (*Store)(nil)
)

// New returns a Store on pool's tables in schema for hostID. It does not
// touch the database.
func New(pool *pgxpool.Pool, schema, hostID string) (*Store, error) {
	t, err := newTables(schema)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(hostID) == "" {
		return nil, errors.New("timerpg: empty host id")
	}
	return &Store{pool: pool, t: t, hostID: hostID}, nil
}

// wrap words a database error, with the hint when the tables are missing.
func (s *Store) wrap(what string, err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && (pg.Code == "42P01" || pg.Code == "3F000") {
		return fmt.Errorf("timerpg: %s: timer tables missing (%s): %w", what, Hint, err)
	}
	return fmt.Errorf("timerpg: %s: %w", what, err)
}

func nullable(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Load implements timer.StatusStore.
func (s *Store) Load(ctx context.Context, function string) (timer.Status, error) {
	var last, next, updated *time.Time
	err := s.pool.QueryRow(ctx, "SELECT last, next, last_updated FROM "+s.t.status+" WHERE host_id = $1 AND function_name = $2",
		s.hostID, function).Scan(&last, &next, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return timer.Status{}, fmt.Errorf("%w for %s", timer.ErrNoStatus, function)
	}
	if err != nil {
		return timer.Status{}, s.wrap("load status of "+function, err)
	}
	val := func(p *time.Time) time.Time {
		if p == nil {
			return time.Time{}
		}
		return *p
	}
	return timer.Status{Last: val(last), Next: val(next), LastUpdated: val(updated)}, nil
}

// Save implements timer.StatusStore.
func (s *Store) Save(ctx context.Context, function string, st timer.Status) error {
	_, err := s.pool.Exec(ctx, "INSERT INTO "+s.t.status+" (host_id, function_name, last, next, last_updated) VALUES ($1, $2, $3, $4, $5) "+
		"ON CONFLICT (host_id, function_name) DO UPDATE SET last = EXCLUDED.last, next = EXCLUDED.next, last_updated = EXCLUDED.last_updated, saved_at = now()",
		s.hostID, function, nullable(st.Last), nullable(st.Next), nullable(st.LastUpdated))
	if err != nil {
		return s.wrap("save status of "+function, err)
	}
	return nil
}

// Acquire implements timer.Locker: it inserts the lease row, or takes it
// over when it has expired.
func (s *Store) Acquire(ctx context.Context, function string, d time.Duration) (timer.Lease, error) {
	if d <= 0 {
		return nil, fmt.Errorf("timerpg: lease duration %v must be positive", d)
	}
	name := timer.LockName(function)
	owner := timer.NewOwnerID()
	var got string
	err := s.pool.QueryRow(ctx, "INSERT INTO "+s.t.locks+" AS l (host_id, name, owner, expires_at) VALUES ($1, $2, $3, now() + $4::bigint * interval '1 microsecond') "+
		"ON CONFLICT (host_id, name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at, acquired_at = now() "+
		"WHERE l.expires_at <= now() RETURNING owner", s.hostID, name, owner, d.Microseconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s/%s", timer.ErrLeaseHeld, s.hostID, name)
	}
	if err != nil {
		return nil, s.wrap("acquire lease "+name, err)
	}
	return &pgLease{s: s, name: name, owner: owner, d: d}, nil
}

type pgLease struct {
	s     *Store
	name  string
	owner string
	d     time.Duration
}

// Renew implements timer.Lease.
func (l *pgLease) Renew(ctx context.Context) error {
	tag, err := l.s.pool.Exec(ctx, "UPDATE "+l.s.t.locks+" SET expires_at = now() + $4::bigint * interval '1 microsecond' "+
		"WHERE host_id = $1 AND name = $2 AND owner = $3", l.s.hostID, l.name, l.owner, l.d.Microseconds())
	if err != nil {
		return l.s.wrap("renew lease "+l.name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s/%s", timer.ErrLeaseLost, l.s.hostID, l.name)
	}
	return nil
}

// Release implements timer.Lease.
func (l *pgLease) Release(ctx context.Context) error {
	if _, err := l.s.pool.Exec(ctx, "DELETE FROM "+l.s.t.locks+" WHERE host_id = $1 AND name = $2 AND owner = $3", l.s.hostID, l.name, l.owner); err != nil {
		return l.s.wrap("release lease "+l.name, err)
	}
	return nil
}
