package timerpg

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobhost/jobhost/timer"
)

// DefaultConnection is the app setting holding the database URL when the
// host names none (the one the PostgreSQL operations store reads).
const DefaultConnection = "JOBHOST_POSTGRES_URL"

// Open connects to the database whose URL the app setting connection
// holds (DefaultConnection when empty) and returns the Store of hostID in
// its search_path's schema. The tables must have been created by Migrate
// (jobhost operations migrate does it). Errors never hold the URL.
func Open(ctx context.Context, connection string, lookup func(string) (string, bool), hostID string) (*Store, error) {
	pool, err := connect(ctx, connection, lookup)
	if err != nil {
		return nil, err
	}
	return New(pool, "", hostID)
}

// connect opens a pool on the URL the app setting connection holds.
func connect(ctx context.Context, connection string, lookup func(string) (string, bool)) (*pgxpool.Pool, error) {
	if connection == "" {
		connection = DefaultConnection
	}
	url, ok := lookup(connection)
	if !ok || url == "" {
		return nil, fmt.Errorf("timerpg: app setting %s is not set (the PostgreSQL URL for timer statuses and leases)", connection)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("timerpg: app setting %s does not hold a valid PostgreSQL URL", connection)
	}
	return pool, nil
}

func init() {
	timer.RegisterMigration("postgres", func(ctx context.Context, connection string, lookup func(string) (string, bool)) error {
		pool, err := connect(ctx, connection, lookup)
		if err != nil {
			return err
		}
		defer pool.Close()
		return Migrate(ctx, pool, "")
	})
	timer.RegisterStore("postgres", func(ctx context.Context, connection string, lookup func(string) (string, bool), hostID string) (timer.Store, error) {
		return Open(ctx, connection, lookup, hostID)
	})
}
