package pgstore_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/pgstore"
)

func TestCountByStatus(t *testing.T) {
	c := newClock()
	s := openStore(t, pgstore.Options{Now: c.Now})
	ctx := ctxT(t)
	seedCounts(t, ctx, s, c.Now())
	checkCounts(t, ctx, s)
}

// seedCounts stores records of two functions in several statuses, and one
// expired record that no count may include.
func seedCounts(t *testing.T, ctx context.Context, s operations.Store, now time.Time) {
	t.Helper()
	add := func(name string, st operations.Status, expires time.Time) {
		t.Helper()
		// Create keeps the status given (the host creates records Ready; a
		// dashboard counts what is stored).
		if _, err := s.Create(ctx, &operations.Record{ID: operations.NewID(), Name: name, Status: st, ExpiresOn: expires}); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	live := now.Add(time.Hour)
	for range 3 {
		add("Alpha", operations.WaitingForResources, live)
	}
	add("Alpha", operations.InProgress, live)
	add("Alpha", operations.InProgress, live)
	add("Alpha", operations.Succeeded, live)
	add("Beta", operations.Failed, live)
	add("Beta", operations.Canceled, live)
	add("Alpha", operations.Succeeded, now.Add(-time.Minute)) // expired
}

// checkCounts asserts what seedCounts stored, per function and in all.
func checkCounts(t *testing.T, ctx context.Context, c operations.Counter) {
	t.Helper()
	for _, tc := range []struct {
		name string
		want map[operations.Status]int
	}{
		{"", map[operations.Status]int{operations.WaitingForResources: 3, operations.InProgress: 2, operations.Succeeded: 1, operations.Failed: 1, operations.Canceled: 1}},
		{"Alpha", map[operations.Status]int{operations.WaitingForResources: 3, operations.InProgress: 2, operations.Succeeded: 1}},
		{"Beta", map[operations.Status]int{operations.Failed: 1, operations.Canceled: 1}},
		{"Nobody", map[operations.Status]int{}},
	} {
		got, err := c.CountByStatus(ctx, tc.name)
		if err != nil {
			t.Fatalf("CountByStatus(%q): %v", tc.name, err)
		}
		for st, n := range got {
			if n == 0 {
				delete(got, st)
			}
		}
		if !maps.Equal(got, tc.want) {
			t.Errorf("CountByStatus(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
