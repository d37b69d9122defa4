package timerpg_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobhost/jobhost/timer"
	"github.com/jobhost/jobhost/timer/timerpg"
	"github.com/jobhost/jobhost/timer/timertest"
	"github.com/jobhost/jobhost/triggers/postgres/pgtest"
)

// backend returns stores on a new, migrated schema with one host id.
func backend(t *testing.T, lease time.Duration) timertest.Backend {
	pool := pgtest.Admin(t)
	schema := pgtest.SchemaName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := timerpg.Migrate(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	open := func(t *testing.T) *timerpg.Store {
		s, err := timerpg.New(pool, schema, "testhost")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return timertest.Backend{
		NewLocker:      func(t *testing.T) timer.Locker { return open(t) },
		NewStatusStore: func(t *testing.T) timer.StatusStore { return open(t) },
		Lease:          lease,
	}
}

func TestLocker(t *testing.T)      { timertest.TestLocker(t, backend(t, 2*time.Second)) }
func TestStatusStore(t *testing.T) { timertest.TestStatusStore(t, backend(t, 2*time.Second)) }

func TestRunners(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time: about 25 s")
	}
	timertest.TestRunners(t, backend(t, 3*time.Second))
}

func TestMigrateIsIdempotentAndRequired(t *testing.T) {
	pool := pgtest.Admin(t)
	schema := pgtest.SchemaName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := timerpg.New(pool, schema, "h")
	if err != nil {
		t.Fatal(err)
	}
	// Not migrated: the error says what to do, nothing is created.
	if _, err := s.Load(ctx, "F"); err == nil || !strings.Contains(err.Error(), timerpg.Hint) {
		t.Fatalf("load before migrating: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := timerpg.Migrate(ctx, pool, schema); err != nil {
			t.Fatalf("migrate %d: %v", i, err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "jobhost_migrations"}.Sanitize()+" WHERE table_name = $1", timerpg.StatusTable).Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration records: %d, %v", n, err)
	}
	if _, err := s.Load(ctx, "F"); !errors.Is(err, timer.ErrNoStatus) {
		t.Fatalf("load after migrating: %v", err)
	}
	if _, err := timerpg.New(pool, "Bad-Schema", "h"); err == nil {
		t.Error("a bad schema name was accepted")
	}
}

// Host ids separate statuses and leases.
func TestHostIDs(t *testing.T) {
	pool := pgtest.Admin(t)
	schema := pgtest.SchemaName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := timerpg.Migrate(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	a, _ := timerpg.New(pool, schema, "a")
	c, _ := timerpg.New(pool, schema, "c")
	if _, err := a.Acquire(ctx, "F", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(ctx, "F", time.Minute); err != nil {
		t.Fatalf("another host id's lease: %v", err)
	}
	if err := a.Save(ctx, "F", timer.Status{Next: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(ctx, "F"); !errors.Is(err, timer.ErrNoStatus) {
		t.Fatalf("another host id's status: %v", err)
	}
}
