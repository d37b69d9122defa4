package dashboard_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/dashboard"
	"github.com/jobhost/jobhost/operations"
)

// With 10,000 poison messages a page reads one page of them (one List of
// the page size) and one count, and later pages reuse the count.
func TestPoisonPageWith10000Messages(t *testing.T) {
	e := newEnv(t, nil)
	q := e.src.broker.Queue("orders-poison")
	for i := range 10_000 {
		q.Send([]byte(`{"order":`+itoa(i)+`}`), map[string]string{"x-jobhost-reason": "validation failed"})
	}
	start := time.Now()
	resp, page := e.browser.get("/poison/ProcessOrder")
	took := time.Since(start)
	wantStatus(t, resp, page, 200)
	if got := strings.Count(page, `<li class="message"`); got != dashboard.DefaultPageSize {
		t.Errorf("rendered %d messages, want a page of %d", got, dashboard.DefaultPageSize)
	}
	if !strings.Contains(page, "About <b>10000</b> message(s)") {
		t.Error("the page does not show the count of 10000")
	}
	if e.src.lists.Load() != 1 || e.src.listN.Load() != dashboard.DefaultPageSize {
		t.Errorf("List called %d times (last n=%d), want once with n=%d", e.src.lists.Load(), e.src.listN.Load(), dashboard.DefaultPageSize)
	}
	if e.src.counts.Load() != 1 {
		t.Errorf("Count called %d times, want once", e.src.counts.Load())
	}
	// Ten more views within the count interval count nothing again.
	for range 10 {
		e.browser.get("/poison/ProcessOrder")
		e.browser.get("/")
	}
	if n := e.src.counts.Load(); n != 1 {
		t.Errorf("after 20 more pages Count was called %d times, want 1 (cached)", n)
	}
	_, page = e.browser.get("/poison/ProcessOrder?limit=" + itoa(dashboard.MaxPageSize))
	if got := strings.Count(page, `<li class="message"`); got != dashboard.MaxPageSize {
		t.Errorf("limit=%d rendered %d", dashboard.MaxPageSize, got)
	}
	t.Logf("poison page with 10,000 messages: first render %v, %d bytes", took, len(page))
}

// With 100,000 operation records a page is one List of the page size and
// the counts one CountByStatus, cached.
func TestOperationsPageWith100000Records(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	statuses := []operations.Status{operations.WaitingForResources, operations.InProgress, operations.Succeeded, operations.Failed}
	for i := range 100_000 {
		r := &operations.Record{ID: operations.NewID(), Name: "Provision", Status: statuses[i%len(statuses)]}
		if _, err := e.store.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	resp, page := e.browser.get("/operations")
	took := time.Since(start)
	wantStatus(t, resp, page, 200)
	if got := strings.Count(page, `<tr data-id=`); got != dashboard.DefaultPageSize {
		t.Errorf("rendered %d operations, want %d", got, dashboard.DefaultPageSize)
	}
	if !strings.Contains(page, "100000 in all") || !strings.Contains(page, "Succeeded <b>25000</b>") {
		t.Error("the counts of 100000 records are missing")
	}
	if !strings.Contains(page, `class="next"`) {
		t.Error("no next page")
	}
	if n := e.ops.lists.Load(); n != 1 {
		t.Errorf("List called %d times, want 1", n)
	}
	for range 5 {
		e.browser.get("/operations")
		e.browser.get("/")
	}
	if n := e.counter.calls.Load(); n != 1 { // the list and the overview share the count of all
		t.Errorf("CountByStatus called %d times after 11 pages, want 1 (cached)", n)
	}
	e.clock.Advance(dashboard.DefaultCountInterval)
	e.browser.get("/operations") // serves the cached counts and counts again in the background
	waitFor(t, func() bool { return e.counter.calls.Load() == 2 }, "a background recount after the interval")
	t.Logf("operations page with 100,000 records: first render %v (List + CountByStatus), %d bytes", took, len(page))
}

func itoa(i int) string { return strconv.Itoa(i) }

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not synchronising
	}
}
