package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
)

// listAll pages through List with the given page size and returns every
// record, checking each page: no more than the page size, full unless it
// is the last, ordered by ID, and no record twice.
func listAll(ctx context.Context, t *testing.T, st operations.Store, q operations.Query, limit int) []*operations.Record {
	t.Helper()
	q.Limit = limit
	size := q.PageSize()
	var out []*operations.Record
	for page := 1; ; page++ {
		if page > 10000 {
			t.Fatalf("List %s: more than 10000 pages; the cursor does not advance", fmtQuery(q))
		}
		p, err := st.List(ctx, q)
		if err != nil {
			t.Fatalf("List %s, page %d: %v", fmtQuery(q), page, err)
		}
		if p == nil {
			t.Fatalf("List %s, page %d: nil page", fmtQuery(q), page)
		}
		if len(p.Records) > size {
			t.Fatalf("List %s, page %d: %d records, more than the page size %d", fmtQuery(q), page, len(p.Records), size)
		}
		if p.Next != "" && len(p.Records) < size {
			t.Errorf("List %s, page %d: %d records and a Next cursor: a page short of the page size %d must be the last", fmtQuery(q), page, len(p.Records), size)
		}
		for _, r := range p.Records {
			if r == nil {
				t.Fatalf("List %s, page %d: a nil record", fmtQuery(q), page)
			}
			if n := len(out); n > 0 && r.ID <= out[n-1].ID {
				t.Fatalf("List %s, page %d: record %s after %s: not in ascending ID order, or listed twice", fmtQuery(q), page, r.ID, out[n-1].ID)
			}
			out = append(out, r)
		}
		if p.Next == "" {
			return out
		}
		if p.Next == q.Cursor {
			t.Fatalf("List %s, page %d: Next is the cursor given", fmtQuery(q), page)
		}
		q.Cursor = p.Next
	}
}

func fmtQuery(q operations.Query) string {
	var parts []string
	if q.Name != "" {
		parts = append(parts, fmt.Sprintf("Name=%q", q.Name))
	}
	if len(q.Status) > 0 {
		parts = append(parts, fmt.Sprintf("Status=%v", q.Status))
	}
	if !q.Since.IsZero() {
		parts = append(parts, "Since="+fmtTime(q.Since))
	}
	if q.RunAs != nil {
		parts = append(parts, fmt.Sprintf("RunAs=%q", *q.RunAs))
	}
	if q.Limit != 0 {
		parts = append(parts, fmt.Sprintf("Limit=%d", q.Limit))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// checkIDs compares listed ids with the expected ones (in ID order).
func checkIDs(t *testing.T, what string, got []*operations.Record, want []string) {
	t.Helper()
	if g := ids(got); !slices.Equal(g, want) {
		var missing, extra []string
		for _, id := range want {
			if !slices.Contains(g, id) {
				missing = append(missing, id)
			}
		}
		for _, id := range g {
			if !slices.Contains(want, id) {
				extra = append(extra, id)
			}
		}
		t.Errorf("%s: %d records, want %d; missing %v, unexpected %v", what, len(g), len(want), missing, extra)
	}
}

// shuffled returns n new records made by mk, in an order unlike their ids'.
func shuffled(n int, seed uint64, mk func(i int, r *operations.Record)) []*operations.Record {
	rs := make([]*operations.Record, n)
	for i := range rs {
		rs[i] = newRecord("list")
		mk(i, rs[i])
	}
	rand.New(rand.NewPCG(seed, seed)).Shuffle(n, func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
	return rs
}

func ptr(s string) *string { return &s }

// testListFilters: each filter, alone and together, selects exactly the
// records it should, in ID order, at any page size; expired records are
// never listed; records come back whole.
func testListFilters(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	names := []string{"alpha", "beta"}
	callers := []string{"", "alice", "bob"}
	in := shuffled(36, 1, func(i int, r *operations.Record) {
		r.Name = names[i%2]
		r.Status = operations.Statuses[(i/2)%len(operations.Statuses)]
		r.RunAs = callers[(i/4)%len(callers)]
	})
	created := createAll(ctx, t, st, in)
	// Expired records that match every query below but must not be listed.
	for _, caller := range callers {
		for _, name := range names {
			r := newRecord(name)
			r.Status, r.RunAs = operations.InProgress, caller
			r.ExpiresOn = s.now().Add(-time.Hour)
			mustCreate(ctx, t, st, r)
		}
	}

	stored := make(map[string]*operations.Record)
	for _, r := range created {
		stored[r.ID] = mustGet(ctx, t, st, r.ID)
	}
	for _, tc := range []struct {
		q    operations.Query
		want func(r *operations.Record) bool
	}{
		{operations.Query{}, func(*operations.Record) bool { return true }},
		{operations.Query{Name: "alpha"}, func(r *operations.Record) bool { return r.Name == "alpha" }},
		{operations.Query{Name: "alph"}, func(*operations.Record) bool { return false }},
		{operations.Query{Status: []operations.Status{operations.Succeeded}}, func(r *operations.Record) bool { return r.Status == operations.Succeeded }},
		{operations.Query{Status: []operations.Status{operations.Failed, operations.WaitingForResources, operations.Canceling}}, func(r *operations.Record) bool {
			return r.Status == operations.Failed || r.Status == operations.WaitingForResources || r.Status == operations.Canceling
		}},
		{operations.Query{RunAs: ptr("")}, func(r *operations.Record) bool { return r.RunAs == "" }},
		{operations.Query{RunAs: ptr("alice")}, func(r *operations.Record) bool { return r.RunAs == "alice" }},
		{operations.Query{RunAs: ptr("nobody")}, func(*operations.Record) bool { return false }},
		{operations.Query{Name: "beta", Status: []operations.Status{operations.InProgress, operations.Canceled}, RunAs: ptr("bob")}, func(r *operations.Record) bool {
			return r.Name == "beta" && (r.Status == operations.InProgress || r.Status == operations.Canceled) && r.RunAs == "bob"
		}},
		{operations.Query{Name: "alpha", RunAs: ptr("")}, func(r *operations.Record) bool { return r.Name == "alpha" && r.RunAs == "" }},
	} {
		var want []string
		for _, r := range created {
			if tc.want(r) {
				want = append(want, r.ID)
			}
		}
		slices.Sort(want)
		for _, limit := range []int{operations.MaxPage, 4, 1} {
			got := listAll(ctx, t, st, tc.q, limit)
			checkIDs(t, fmt.Sprintf("List %s, %d a page", fmtQuery(tc.q), limit), got, want)
			if limit == operations.MaxPage {
				for _, r := range got {
					if w := stored[r.ID]; w != nil {
						checkRecord(t, "listed record "+r.ID+" against Get's", r, w)
					}
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("records (id name status runAs):")
		for _, id := range sortedIDs(created) {
			r := stored[id]
			t.Logf("\t%s %s %s %q", r.ID, r.Name, r.Status, r.RunAs)
		}
	}
}

// testListSince: Since selects records created at or after it.
func testListSince(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	var created []*operations.Record
	for range 6 { // one by one: on a clock that moves, each at its own time
		created = append(created, mustCreate(ctx, t, st, newRecord("since")))
	}
	for _, c := range created {
		since := c.CreatedOn
		var want []string
		for _, r := range created {
			if !r.CreatedOn.Before(since) {
				want = append(want, r.ID)
			}
		}
		slices.Sort(want)
		q := operations.Query{Since: since}
		checkIDs(t, "List "+fmtQuery(q), listAll(ctx, t, st, q, 0), want)
	}
	latest := slices.MaxFunc(created, func(a, b *operations.Record) int { return a.CreatedOn.Compare(b.CreatedOn) })
	q := operations.Query{Since: latest.CreatedOn.Add(time.Hour)}
	checkIDs(t, "List "+fmtQuery(q), listAll(ctx, t, st, q, 0), nil)
	earliest := slices.MinFunc(created, func(a, b *operations.Record) int { return a.CreatedOn.Compare(b.CreatedOn) })
	q = operations.Query{Since: earliest.CreatedOn.Add(-time.Hour).In(time.FixedZone("UTC+9", 9*3600))}
	checkIDs(t, "List "+fmtQuery(q), listAll(ctx, t, st, q, 0), sortedIDs(created))
}

// testListPaging: paging with a cursor returns every record exactly once,
// in ID order, in full pages.
func testListPaging(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	created := createAll(ctx, t, st, shuffled(25, 2, func(int, *operations.Record) {}))
	want := sortedIDs(created)

	var got []*operations.Record
	q := operations.Query{Limit: 7}
	var sizes []int
	for page := 1; ; page++ {
		if page > 5 {
			t.Fatalf("paging through 25 records 7 at a time took more than 5 pages (sizes %v)", sizes)
		}
		p, err := st.List(ctx, q)
		if err != nil {
			t.Fatalf("List page %d: %v", page, err)
		}
		sizes = append(sizes, len(p.Records))
		got = append(got, p.Records...)
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	if !slices.Equal(sizes, []int{7, 7, 7, 4}) {
		t.Errorf("pages of 25 records 7 at a time had %v records, want [7 7 7 4]", sizes)
	}
	checkIDs(t, "paging through 25 records 7 at a time", got, want)

	// listAll checks the same at other page sizes.
	for _, limit := range []int{1, 5, 24, 25, 26} {
		checkIDs(t, fmt.Sprintf("paging through 25 records %d at a time", limit), listAll(ctx, t, st, operations.Query{}, limit), want)
	}

	// A record created between pages does not disturb the ones already
	// there.
	first, err := st.List(ctx, operations.Query{Limit: 10})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	late := mustCreate(ctx, t, st, newRecord("list"))
	rest := listAll(ctx, t, st, operations.Query{Cursor: first.Next}, 10)
	all := append(slices.Clone(first.Records), rest...)
	var gotIDs []string
	for _, id := range ids(all) {
		if id != late.ID {
			gotIDs = append(gotIDs, id)
		}
	}
	if !slices.Equal(gotIDs, want) {
		t.Errorf("paging while a record was created: got %d of the %d records there before, want all", len(gotIDs), len(want))
	}
}

// testListDefaultLimit: Limit 0 means DefaultPage.
func testListDefaultLimit(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	created := createAll(ctx, t, st, shuffled(operations.DefaultPage+10, 3, func(int, *operations.Record) {}))
	want := sortedIDs(created)
	p, err := st.List(ctx, operations.Query{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	checkIDs(t, "first page with Limit 0", p.Records, want[:operations.DefaultPage])
	if p.Next == "" {
		t.Fatalf("first page with Limit 0 of %d records has no Next", len(want))
	}
	p, err = st.List(ctx, operations.Query{Cursor: p.Next})
	if err != nil {
		t.Fatalf("List second page: %v", err)
	}
	checkIDs(t, "second page with Limit 0", p.Records, want[operations.DefaultPage:])
	if p.Next != "" {
		t.Errorf("last page has Next %q, want none", p.Next)
	}
}

// testListMaxLimit: a Limit above MaxPage gives MaxPage.
func testListMaxLimit(t *testing.T, ctx context.Context, s *suite) {
	if testing.Short() {
		t.Skipf("creates %d records", operations.MaxPage+1)
	}
	st := s.open(t, ttl)
	created := createAll(ctx, t, st, shuffled(operations.MaxPage+1, 4, func(int, *operations.Record) {}))
	want := sortedIDs(created)
	for _, limit := range []int{operations.MaxPage, operations.MaxPage + 1, 100 * operations.MaxPage} {
		p, err := st.List(ctx, operations.Query{Limit: limit})
		if err != nil {
			t.Fatalf("List with Limit %d: %v", limit, err)
		}
		checkIDs(t, fmt.Sprintf("first page with Limit %d", limit), p.Records, want[:operations.MaxPage])
		if p.Next == "" {
			t.Fatalf("first page with Limit %d of %d records has no Next", limit, len(want))
		}
		p, err = st.List(ctx, operations.Query{Limit: limit, Cursor: p.Next})
		if err != nil {
			t.Fatalf("List second page with Limit %d: %v", limit, err)
		}
		checkIDs(t, fmt.Sprintf("second page with Limit %d", limit), p.Records, want[operations.MaxPage:])
	}
}

// testListBadCursor: a cursor the store did not make is an error, not a
// panic; a well-formed one from nowhere is an error or a position.
func testListBadCursor(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	created := createAll(ctx, t, st, shuffled(5, 5, func(int, *operations.Record) {}))
	for _, cursor := range []string{
		"garbage",
		"not a cursor!",
		"%zz",
		"\x00\xff\xfe",
		"'; DROP TABLE operations; --",
		strings.Repeat("9", 4096),
	} {
		func() {
			defer func() {
				if v := recover(); v != nil {
					t.Errorf("List with cursor %s panicked: %v", abbrev([]byte(cursor)), v)
				}
			}()
			p, err := st.List(ctx, operations.Query{Cursor: cursor})
			if err == nil {
				t.Errorf("List with cursor %s: %d records and no error, want an error", abbrev([]byte(cursor)), len(p.Records))
			} else if !errors.Is(err, operations.ErrInvalidCursor) {
				t.Errorf("List with cursor %s: %v, want an error wrapping operations.ErrInvalidCursor", abbrev([]byte(cursor)), err)
			}
		}()
	}
	// An id made after every record: as a cursor, it is not one the store
	// made (an error), or a position after every record (an empty page).
	cursor := operations.NewID()
	p, err := st.List(ctx, operations.Query{Cursor: cursor})
	if err == nil {
		for _, r := range p.Records {
			if r.ID <= cursor {
				t.Errorf("List with cursor %s returned record %s, which is not after it", cursor, r.ID)
			}
		}
	}
	// The store still lists.
	checkIDs(t, "List after bad cursors", listAll(ctx, t, st, operations.Query{}, 0), sortedIDs(created))
}

// testPurge: Purge deletes at most limit records that expired before the
// now it is given, returns how many, and leaves the rest; repeated calls
// drain.
func testPurge(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	base := s.now()
	var live []*operations.Record
	for i := range 5 {
		r := newRecord("purge")
		r.ExpiresOn = base.Add(-time.Hour - time.Duration(i)*time.Minute)
		mustCreate(ctx, t, st, r)
	}
	for i := range 3 {
		r := newRecord("purge")
		r.ExpiresOn = base.Add(24*time.Hour + time.Duration(i)*time.Minute)
		live = append(live, mustCreate(ctx, t, st, r))
	}

	purge := func(now time.Time, limit int) int {
		t.Helper()
		n, err := st.Purge(ctx, now, limit)
		if err != nil {
			t.Fatalf("Purge(%s, %d): %v", fmtTime(now), limit, err)
		}
		return n
	}
	// The now given, not the store's clock: two hours ago, nothing had
	// expired.
	if n := purge(base.Add(-2*time.Hour), 10); n != 0 {
		t.Errorf("Purge two hours back deleted %d records, want 0 (none had expired then)", n)
	}
	var counts []int
	for range 5 {
		counts = append(counts, purge(base, 2))
	}
	if !slices.Equal(counts, []int{2, 2, 1, 0, 0}) {
		t.Errorf("Purge(now, 2) repeated over 5 expired and 3 live records deleted %v, want [2 2 1 0 0]", counts)
	}
	for _, r := range live {
		checkRecord(t, "live record after Purge", mustGet(ctx, t, st, r.ID), r)
	}
	checkIDs(t, "List after Purge", listAll(ctx, t, st, operations.Query{}, 0), sortedIDs(live))

	// In two days the live ones have expired too: Purge deletes them, and
	// they are gone even on the store's clock, by which they have not.
	if n := purge(base.Add(48*time.Hour), 10); n != len(live) {
		t.Errorf("Purge two days on deleted %d records, want %d", n, len(live))
	}
	for _, r := range live {
		if got, err := st.Get(ctx, r.ID); !errors.Is(err, operations.ErrNotFound) {
			t.Errorf("Get of a purged record: %v, %v; want ErrNotFound", got, err)
		}
	}
	if n := purge(base.Add(48*time.Hour), 10); n != 0 {
		t.Errorf("Purge of an empty store deleted %d records", n)
	}
}
