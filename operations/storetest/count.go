package storetest

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
)

// testCountByStatus checks operations.Counter, for stores that have it:
// counts per function and in all, expired records left out.
func testCountByStatus(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	c, ok := st.(operations.Counter)
	if !ok {
		t.Skip("the store does not count (operations.Counter is optional)")
	}
	now := s.now()
	add := func(name string, status operations.Status, expires time.Time) {
		t.Helper()
		// Create keeps the status given (the host creates records
		// WaitingForResources; a dashboard counts what is stored).
		if _, err := st.Create(ctx, &operations.Record{ID: operations.NewID(), Name: name, Status: status, ExpiresOn: expires}); err != nil {
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
	add("Alpha", operations.Succeeded, now.Add(-time.Minute)) // expired: never counted
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
		maps.DeleteFunc(got, func(_ operations.Status, n int) bool { return n == 0 })
		if !maps.Equal(got, tc.want) {
			t.Errorf("CountByStatus(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
