// Package storetest is the conformance suite every operations.Store passes.
// A store's tests give Run a Harness that opens a new, empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			Open: func(t *testing.T, ttl time.Duration) operations.Store {
//				return memstore.New(memstore.Options{TimeToLive: ttl})
//			},
//		})
//	}
//
// The suite checks every point of the contract in operations.Store's doc
// comment, and holds stores to these details of it:
//
//   - Times round-trip to the millisecond, in UTC: a time read back is
//     within a millisecond of the instant written (a store may truncate or
//     round to the millisecond, or keep more), and its zone is UTC
//     (offset 0, named "UTC") whatever zone it was written in. A zero
//     time (StartTime before the operation started) stays zero.
//   - Input, Output and Progress round-trip byte for byte, whitespace and
//     key order included (a column that normalises JSON, as PostgreSQL's
//     jsonb does, fails), at their largest sizes (operations.MaxInput,
//     MaxOutput, MaxProgress); an empty one comes back empty.
//   - Every other Record field round-trips exactly. Version is the
//     store's own: when a store fills it, it changes on each write and
//     only then.
//   - Records come out as copies: changing a record Create, Get, Update
//     or List returned, the record given to Create, the record a Change
//     edited, or the bytes given to a Change, does not change the store.
//   - Update does not call the change for an unknown or expired id.
//   - A page of List holds Limit records (DefaultPage for 0, at most
//     MaxPage) unless it is the last page, whose Next is "". A cursor the
//     store did not make (garbage) is an error.
//   - Purge uses the now it is given, not the store's clock.
//
// Expiry is tested with records created with an ExpiresOn already in the
// past, so nothing waits: the suite never sleeps. When the harness gives
// the store's clock (Harness.Now) the checks on the times a store sets are
// exact (to the millisecond); otherwise they allow a minute either way, for
// a server's clock.
//
// Subtests run in parallel, each on a store of its own. The suite closes
// every store it opens.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
)

// Harness opens stores for the suite.
type Harness struct {
	// Open returns a new, empty store (its own table, schema or prefix)
	// whose time to live is ttl; the suite closes it. It is called from
	// parallel subtests and reports failures through t (t.Fatal).
	Open func(t *testing.T, ttl time.Duration) operations.Store
	// Now, if set, is the store's clock (stores that take an injected
	// clock): the suite reads it to know what time the store sees. It must
	// be safe for concurrent use and never go backwards; it may advance on
	// each call. Nil: the store uses real time, and the suite checks the
	// times it sets with generous margins.
	Now func() time.Time
}

// Precision is how close a time read back must be to the one written.
const Precision = time.Millisecond

const (
	// realClockMargin is the slack allowed on times a store sets when the
	// suite does not know its clock.
	realClockMargin = time.Minute
	// ttl is the time to live of the stores most subtests open.
	ttl = 30 * 24 * time.Hour
	// subtestTimeout bounds one subtest.
	subtestTimeout = 2 * time.Minute
)

// suite is the state the subtests share.
type suite struct {
	h Harness
}

// Run runs the suite on stores h opens.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("storetest: Harness.Open is nil")
	}
	s := &suite{h: h}
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, s *suite)
	}{
		{"Create", testCreate},
		{"CreateTimeToLive", testCreateTimeToLive},
		{"CreateExists", testCreateExists},
		{"RoundTrip", testRoundTrip},
		{"RoundTripLimits", testRoundTripLimits},
		{"Copies", testCopies},
		{"GetNotFound", testGetNotFound},
		{"ExpiresByTimeToLive", testExpiresByTimeToLive},
		{"Update", testUpdate},
		{"UpdateNoChange", testUpdateNoChange},
		{"UpdateChangeError", testUpdateChangeError},
		{"UpdateNotFound", testUpdateNotFound},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"ConcurrentCancelAndSucceed", testConcurrentCancelAndSucceed},
		{"ChangesNeverBackwards", testChangesNeverBackwards},
		{"ChangesScrambled", testChangesScrambled},
		{"ListFilters", testListFilters},
		{"ListSince", testListSince},
		{"ListPaging", testListPaging},
		{"ListDefaultLimit", testListDefaultLimit},
		{"ListMaxLimit", testListMaxLimit},
		{"ListBadCursor", testListBadCursor},
		{"Purge", testPurge},
		{"CountByStatus", testCountByStatus},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), subtestTimeout)
			defer cancel()
			tc.fn(t, ctx, s)
		})
	}
}

// open opens a store whose time to live is ttl and closes it when the test
// ends.
func (s *suite) open(t *testing.T, ttl time.Duration) operations.Store {
	t.Helper()
	st := s.h.Open(t, ttl)
	if st == nil {
		t.Fatal("Harness.Open returned nil")
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

// now returns the time the store sees (roughly, on a real clock).
func (s *suite) now() time.Time {
	if s.h.Now != nil {
		return s.h.Now()
	}
	return time.Now()
}

// margin is the slack on times the store sets, beyond Precision.
func (s *suite) margin() time.Duration {
	if s.h.Now != nil {
		return 0
	}
	return realClockMargin
}

// checkWithin checks that a time the store set lies between before and
// after, readings of its clock taken around the call.
func (s *suite) checkWithin(t *testing.T, what string, got, before, after time.Time) {
	t.Helper()
	lo, hi := before.Add(-s.margin()-Precision), after.Add(s.margin()+Precision)
	if got.Before(lo) || got.After(hi) {
		t.Errorf("%s = %s, want the store's clock during the call: between %s and %s", what, fmtTime(got), fmtTime(lo), fmtTime(hi))
	}
}

// sameTime reports whether a time read back matches the one written, to
// Precision.
func sameTime(got, want time.Time) bool {
	if got.IsZero() || want.IsZero() {
		return got.IsZero() == want.IsZero()
	}
	d := got.Sub(want)
	return d > -Precision && d < Precision
}

// isUTC reports whether t is in UTC.
func isUTC(t time.Time) bool {
	name, off := t.Zone()
	return off == 0 && name == "UTC"
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "zero time"
	}
	return t.Format(time.RFC3339Nano)
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// diffRecord lists how got differs from want, field by field, Version
// aside: times to Precision (and got's in UTC), JSON byte for byte, the
// rest exactly. It walks Record's fields, so a field added later is
// compared too.
func diffRecord(got, want *operations.Record) []string {
	if got == nil || want == nil {
		if got == want {
			return nil
		}
		return []string{fmt.Sprintf("record = %v, want %v", got, want)}
	}
	var d []string
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range gv.NumField() {
		f := gv.Type().Field(i)
		if f.Name == "Version" {
			continue
		}
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		switch f.Type {
		case timeType:
			gt, wt := g.(time.Time), w.(time.Time)
			if !sameTime(gt, wt) {
				d = append(d, fmt.Sprintf("%s = %s, want %s", f.Name, fmtTime(gt), fmtTime(wt)))
			} else if !gt.IsZero() && !isUTC(gt) {
				d = append(d, fmt.Sprintf("%s = %s, want it in UTC", f.Name, fmtTime(gt)))
			}
		case rawType:
			if gb, wb := g.(json.RawMessage), w.(json.RawMessage); !bytes.Equal(gb, wb) {
				d = append(d, fmt.Sprintf("%s = %s, want %s", f.Name, abbrev(gb), abbrev(wb)))
			}
		default:
			if !reflect.DeepEqual(g, w) {
				d = append(d, fmt.Sprintf("%s = %#v, want %#v", f.Name, g, w))
			}
		}
	}
	return d
}

// checkRecord fails the test if got differs from want (see diffRecord).
func checkRecord(t *testing.T, what string, got, want *operations.Record) {
	t.Helper()
	if d := diffRecord(got, want); len(d) > 0 {
		t.Errorf("%s differs:\n\t%s", what, strings.Join(d, "\n\t"))
	}
}

// abbrev shows JSON bytes, cut short when long.
func abbrev(b []byte) string {
	if b == nil {
		return "nil"
	}
	if len(b) > 80 {
		return fmt.Sprintf("%q... (%d bytes)", b[:60], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// newRecord returns a record, not yet created, with a new id.
func newRecord(name string) *operations.Record {
	return &operations.Record{
		ID:     operations.NewID(),
		Name:   name,
		Status: operations.WaitingForResources,
		Input:  json.RawMessage(`{"n":1}`),
	}
}

func mustCreate(ctx context.Context, t *testing.T, st operations.Store, r *operations.Record) *operations.Record {
	t.Helper()
	got, err := st.Create(ctx, r)
	if err != nil {
		t.Fatalf("Create(%s): %v", r.ID, err)
	}
	if got == nil {
		t.Fatalf("Create(%s) returned a nil record", r.ID)
	}
	return got
}

func mustGet(ctx context.Context, t *testing.T, st operations.Store, id string) *operations.Record {
	t.Helper()
	got, err := st.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	if got == nil {
		t.Fatalf("Get(%s) returned a nil record", id)
	}
	return got
}

func mustUpdate(ctx context.Context, t *testing.T, st operations.Store, id string, change operations.Change) *operations.Record {
	t.Helper()
	got, err := st.Update(ctx, id, change)
	if err != nil {
		t.Fatalf("Update(%s): %v", id, err)
	}
	if got == nil {
		t.Fatalf("Update(%s) returned a nil record", id)
	}
	return got
}

// createAll creates the records, a few at a time (a remote store is slow
// one by one), and returns them as stored, in the order given.
func createAll(ctx context.Context, t *testing.T, st operations.Store, rs []*operations.Record) []*operations.Record {
	t.Helper()
	out := make([]*operations.Record, len(rs))
	errs := make([]error, len(rs))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, r := range rs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i], errs[i] = st.Create(ctx, r)
			if errs[i] == nil && out[i] == nil {
				errs[i] = fmt.Errorf("Create returned a nil record")
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Create(%s): %v", rs[i].ID, err)
		}
	}
	return out
}

// checkVersionChanged checks that a write changed Version, when the store
// fills it.
func checkVersionChanged(t *testing.T, what string, before, after *operations.Record) {
	t.Helper()
	if before.Version != "" && after.Version == before.Version {
		t.Errorf("%s: Version is still %q after a write, want a new one", what, after.Version)
	}
}

// checkVersionSame checks that Version did not change without a write.
func checkVersionSame(t *testing.T, what string, before, after *operations.Record) {
	t.Helper()
	if after.Version != before.Version {
		t.Errorf("%s: Version = %q, want %q (nothing was written)", what, after.Version, before.Version)
	}
}

// ids returns the records' ids, in their order.
func ids(rs []*operations.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// sortedIDs returns the records' ids in ascending order.
func sortedIDs(rs []*operations.Record) []string {
	out := ids(rs)
	slices.Sort(out)
	return out
}
