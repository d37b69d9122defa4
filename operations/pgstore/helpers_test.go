package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobhost/jobhost/operations/pgstore"
	"github.com/jobhost/jobhost/triggers/postgres/pgtest"
)

var tableSeq atomic.Int64

// require returns the DSN of a reachable server, or skips the test (fails
// it with JOBHOST_REQUIRE_BROKERS=1): pgtest's rule and server, the queue
// driver's (pgstore.EnvURL is postgres.EnvURL).
func require(t testing.TB) string {
	t.Helper()
	return pgtest.Require(t)
}

// admin returns a plain connection for test setup and inspection.
func admin(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, require(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// newTable returns a table name no other test (or process) uses, dropped
// with its migration records when the test ends.
func newTable(t testing.TB) string {
	t.Helper()
	dsn := require(t)
	name := fmt.Sprintf("jhtest_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, tableSeq.Add(1))
	t.Cleanup(func() { dropTable(t, dsn, name) })
	return name
}

// dropTable removes a test table and its migration records.
func dropTable(t testing.TB, dsn, table string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Errorf("drop %s: %v", table, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()); err != nil {
		t.Errorf("drop %s: %v", table, err)
	}
	if _, err := conn.Exec(ctx, "DELETE FROM jobhost_migrations WHERE table_name = $1", table); err != nil {
		t.Errorf("drop %s's migration records: %v", table, err)
	}
}

// openStore opens a migrated store on a fresh table (unless o.Table is
// set), closed when the test ends.
func openStore(t testing.TB, o pgstore.Options) *pgstore.Store {
	t.Helper()
	dsn := require(t)
	if o.Table == "" {
		o.Table = newTable(t)
	}
	o.Migrate = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := pgstore.Open(ctx, dsn, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// clock is a settable clock for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
