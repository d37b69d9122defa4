// Package pgtest runs tests against a real PostgreSQL server: the one
// named by JOBHOST_POSTGRES_URL, else
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable (trust
// authentication). Without a reachable server, tests are skipped with a
// loud message, or fail when JOBHOST_REQUIRE_BROKERS=1. It serves the
// queue driver's tests and operations/pgstore's (Require, Admin).
//
// Every test gets schemas of its own (NewSchema), migrated, and dropped
// with everything in them when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobhost/jobhost/internal/servertest"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/postgres"
)

const (
	// EnvRequire set to 1 turns an unreachable server into a test failure.
	EnvRequire = servertest.EnvRequire
	// DefaultURL is used when JOBHOST_POSTGRES_URL is not set.
	DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

var (
	probeURL  string        // the server that answered
	adminPool *pgxpool.Pool // a pool on it
)

// probe finds the server once: JOBHOST_POSTGRES_URL, else DefaultURL or
// the same database as root.
var probe = &servertest.Probe{Name: "POSTGRESQL", Check: func() error {
	candidates := []string{os.Getenv(postgres.EnvURL)}
	if candidates[0] == "" {
		// The machine's server trusts local users: postgres, or root.
		candidates = []string{DefaultURL, "postgres://root@127.0.0.1:5432/test?sslmode=disable"}
	}
	var first error
	for _, c := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		conn, err := pgx.Connect(ctx, c)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			pool, err := pgxpool.New(context.Background(), c)
			if err != nil {
				return err
			}
			probeURL, adminPool = c, pool
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}}

// Require skips (or, with JOBHOST_REQUIRE_BROKERS=1, fails) the test when
// the server cannot be reached, and returns the DSN.
func Require(t testing.TB) string {
	t.Helper()
	probe.Require(t, redacted(os.Getenv(postgres.EnvURL)), "Start PostgreSQL or set "+postgres.EnvURL)
	return probeURL
}

func redacted(s string) string {
	if s == "" {
		return DefaultURL
	}
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return u.Redacted()
	}
	return "(the " + postgres.EnvURL + " connection string)"
}

// Admin returns a pool for test setup and inspection, shared by the
// tests of the process.
func Admin(t testing.TB) *pgxpool.Pool {
	t.Helper()
	Require(t)
	return adminPool
}

func random() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// SchemaName returns a schema name no other test uses, without creating
// it, and drops the schema (if it was created) when the test ends.
func SchemaName(t testing.TB) string {
	t.Helper()
	pool := Admin(t)
	name := "jhq_test_" + strconv.Itoa(os.Getpid()) + "_" + random()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	return name
}

// NewSchema returns a new schema with the queue tables migrated, dropped
// when the test ends.
func NewSchema(t testing.TB) string {
	t.Helper()
	name := SchemaName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := postgres.Migrate(ctx, Require(t), name); err != nil {
		t.Fatalf("pgtest: migrate schema %s: %v", name, err)
	}
	return name
}

// QueueName returns a new queue name.
func QueueName() string { return "q-" + random() }

// Lookup returns app settings holding the DSN as JOBHOST_POSTGRES_URL.
func Lookup(dsn string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		if k == postgres.EnvURL {
			return dsn, true
		}
		return "", false
	}
}

// URL returns postgres://<queue>?schema=<schema>.
func URL(queue, schema string) *url.URL {
	return &url.URL{Scheme: postgres.Scheme, Host: queue, RawQuery: url.Values{"schema": {schema}}.Encode()}
}

// Enqueue adds a message with EnqueueTx in a transaction of its own, as an
// application producing in its transactions would.
func Enqueue(ctx context.Context, t testing.TB, schema, queue string, body []byte, props map[string]string) error {
	pool := Admin(t)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := postgres.Schema(schema).EnqueueTx(ctx, tx, queue, body, props, 0); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// PoisonRows returns the rows of poison queue poison in schema whose id is
// above after, oldest first, as messages (ID the poison row's id).
func PoisonRows(ctx context.Context, t testing.TB, schema, poison string, after int64) ([]*triggers.Message, int64, error) {
	rows, err := Admin(t).Query(ctx, "SELECT id, body, props, enqueued_at, attempts FROM "+pgx.Identifier{schema, postgres.PoisonTable}.Sanitize()+
		" WHERE queue = $1 AND id > $2 ORDER BY id", poison, after)
	if err != nil {
		return nil, after, err
	}
	defer rows.Close()
	var out []*triggers.Message
	for rows.Next() {
		var m triggers.Message
		var id int64
		if err := rows.Scan(&id, &m.Body, &m.Properties, &m.InsertionTime, &m.DequeueCount); err != nil {
			return nil, after, err
		}
		m.ID = strconv.FormatInt(id, 10)
		m.Source = poison
		after = id
		out = append(out, &m)
	}
	return out, after, rows.Err()
}

// harness implements drivertest.Harness.
type harness struct{}

// Harness returns a drivertest.Harness whose drivers each use a new queue
// in a new schema, opened through postgres.OpenURL, with messages sent by
// EnqueueTx, and publishers and poison administrations from the
// registered openers.
func Harness(t *testing.T) drivertest.Harness {
	t.Helper()
	Require(t)
	return harness{}
}

func (harness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	dsn := Require(t)
	schema := NewSchema(t)
	queue := QueueName()
	lookup := Lookup(dsn)
	u := URL(queue, schema)
	d, err := postgres.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, Prefetch: 16})
	if err != nil {
		return drivertest.Queue{}, err
	}
	var mu sync.Mutex
	var seen int64
	return drivertest.Queue{
		Driver: d,
		Send: func(ctx context.Context, body []byte, props map[string]string) error {
			return Enqueue(ctx, t, schema, queue, body, props)
		},
		ReceivePoison: func(ctx context.Context) ([]*triggers.Message, error) {
			mu.Lock()
			defer mu.Unlock()
			ms, after, err := PoisonRows(ctx, t, schema, queue+postgres.PoisonSuffix, seen)
			seen = after
			return ms, err
		},
		MissingQueue: func(ctx context.Context) (triggers.Driver, error) {
			return postgres.OpenURL(ctx, URL(QueueName(), SchemaName(t)), triggers.OpenOptions{Lookup: lookup})
		},
		OpenPublisher: func(ctx context.Context) (triggers.Publisher, error) {
			p, err := postgres.OpenPublisherURL(ctx, u, triggers.OpenOptions{Lookup: lookup})
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		OpenPoison: func(ctx context.Context) (triggers.PoisonAdmin, error) {
			p, err := postgres.OpenPoisonURL(ctx, u, triggers.OpenOptions{Lookup: lookup})
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		Capabilities: drivertest.Capabilities{Leases: true, Properties: true},
	}, nil
}
