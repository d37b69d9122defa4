package pgstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/pgstore"
	"github.com/jobhost/jobhost/operations/storetest"
)

// harness opens each of the suite's stores on a table of its own, with a
// small pool (the suite runs its subtests in parallel).
func harness(now func() time.Time) storetest.Harness {
	return storetest.Harness{
		Now: now,
		Open: func(t *testing.T, ttl time.Duration) operations.Store {
			dsn := require(t)
			sep := " " // key=value connection string
			if strings.Contains(dsn, "://") {
				sep = "?"
				if strings.Contains(dsn, "?") {
					sep = "&"
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := pgstore.Open(ctx, dsn+sep+"pool_max_conns=3", pgstore.Options{Table: newTable(t), TimeToLive: ttl, Now: now, Migrate: true})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

// TestConformance runs the suite with the store on the real clock.
func TestConformance(t *testing.T) {
	require(t)
	storetest.Run(t, harness(nil))
}

// TestConformanceClock runs it with the store's clock given to the suite,
// so that it checks the times the store sets exactly.
func TestConformanceClock(t *testing.T) {
	require(t)
	storetest.Run(t, harness(time.Now))
}
