package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
)

// testCreate: Create sets CreatedOn and LastUpdated to now, whatever the
// caller put there, and ExpiresOn to CreatedOn + the time to live when it
// has none; it returns the record as stored.
func testCreate(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	in := newRecord("create")
	in.CreatedOn = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	in.LastUpdated = in.CreatedOn
	before := s.now()
	got := mustCreate(ctx, t, st, in)
	after := s.now()

	s.checkWithin(t, "CreatedOn", got.CreatedOn, before, after)
	if !sameTime(got.LastUpdated, got.CreatedOn) {
		t.Errorf("LastUpdated = %s, want CreatedOn %s", fmtTime(got.LastUpdated), fmtTime(got.CreatedOn))
	}
	if want := got.CreatedOn.Add(ttl); !sameTime(got.ExpiresOn, want) {
		t.Errorf("ExpiresOn = %s, want CreatedOn + %v = %s", fmtTime(got.ExpiresOn), ttl, fmtTime(want))
	}
	want := in.Clone()
	want.CreatedOn, want.LastUpdated, want.ExpiresOn = got.CreatedOn, got.LastUpdated, got.ExpiresOn
	checkRecord(t, "record Create returned", got, want)
	stored := mustGet(ctx, t, st, in.ID)
	checkRecord(t, "record Get returned", stored, got)
	checkVersionSame(t, "Get after Create", got, stored)

	// An ExpiresOn the caller gives is kept.
	in2 := newRecord("create")
	in2.ExpiresOn = s.now().Add(7*time.Hour + 123456789*time.Nanosecond).In(time.FixedZone("UTC+3", 3*3600))
	got2 := mustCreate(ctx, t, st, in2)
	if !sameTime(got2.ExpiresOn, in2.ExpiresOn) {
		t.Errorf("ExpiresOn given as %s: Create returned %s, want it kept", fmtTime(in2.ExpiresOn), fmtTime(got2.ExpiresOn))
	}
	checkRecord(t, "record with ExpiresOn, as Get returns it", mustGet(ctx, t, st, in2.ID), got2)
}

// testCreateTimeToLive: ExpiresOn follows the time to live the store was
// opened with.
func testCreateTimeToLive(t *testing.T, ctx context.Context, s *suite) {
	const odd = 3*time.Hour + 7*time.Minute + 11*time.Second + 13*time.Millisecond
	st := s.open(t, odd)
	got := mustCreate(ctx, t, st, newRecord("ttl"))
	if want := got.CreatedOn.Add(odd); !sameTime(got.ExpiresOn, want) {
		t.Errorf("ExpiresOn = %s, want CreatedOn + %v = %s", fmtTime(got.ExpiresOn), odd, fmtTime(want))
	}
	checkRecord(t, "record Get returned", mustGet(ctx, t, st, got.ID), got)
}

// testCreateExists: a taken id is ErrExists, with the stored record, and
// changes nothing.
func testCreateExists(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	first := mustCreate(ctx, t, st, newRecord("first"))

	second := newRecord("second")
	second.ID = first.ID
	second.Status = operations.Succeeded
	second.Input = json.RawMessage(`{"second":true}`)
	second.RunAs = "mallory"
	got, err := st.Create(ctx, second)
	if !errors.Is(err, operations.ErrExists) {
		t.Fatalf("Create on a taken id: error %v, want one wrapping ErrExists", err)
	}
	if got == nil {
		t.Errorf("Create on a taken id returned no record, want the stored one")
	} else {
		checkRecord(t, "record Create returned with ErrExists", got, first)
	}
	stored := mustGet(ctx, t, st, first.ID)
	checkRecord(t, "stored record after a Create on its id", stored, first)
	checkVersionSame(t, "stored record after a Create on its id", first, stored)
}

// fullRecord returns a record with every field but Version set, its times
// finer than a millisecond and not in UTC.
func fullRecord(now time.Time, status operations.Status) *operations.Record {
	zone := time.FixedZone("UTC-05:30", -(5*3600 + 1800))
	return &operations.Record{
		ID:     operations.NewID(),
		Name:   "resize-image",
		Status: status,
		// Whitespace and key order are the caller's: they must survive.
		Input:          json.RawMessage(`{"z": 1, "a": [1, 2.50, "x\u00e9"],  "nested": {"k": null}}`),
		Output:         json.RawMessage(`["out", {"b":2,"a":1}]`),
		Progress:       json.RawMessage(`{"pct": 42.5}`),
		StartTime:      now.Add(-2*time.Hour + 123456789*time.Nanosecond).In(zone),
		EndTime:        now.Add(-time.Hour + 987654321*time.Nanosecond).In(zone),
		Attempt:        3,
		ErrorCode:      "AttemptFailed",
		ErrorMessage:   "échec: 失败 — \"quoted\"\n\tsecond line 🚀",
		RunAs:          "key-ünï",
		CallbackURL:    "https://example.com/hook?x=1&y=%20z#frag",
		IdempotencyKey: "order-42/ñ",
		CreatedOn:      now.Add(-1000 * time.Hour), // the store replaces it
		LastUpdated:    now.Add(-1000 * time.Hour), // the store replaces it
		ExpiresOn:      now.Add(48*time.Hour + 555555555*time.Nanosecond).In(zone),
	}
}

// testRoundTrip: every field of a record reads back as written, in every
// status; an empty record reads back empty.
func testRoundTrip(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)

	// The fixture must set every field, so that none goes untested.
	fixture := reflect.ValueOf(fullRecord(s.now(), operations.Failed)).Elem()
	for i := range fixture.NumField() {
		if name := fixture.Type().Field(i).Name; name != "Version" && fixture.Field(i).IsZero() {
			t.Errorf("storetest: fullRecord does not set Record.%s: update the suite", name)
		}
	}

	for _, status := range operations.Statuses {
		in := fullRecord(s.now(), status)
		got := mustCreate(ctx, t, st, in)
		want := in.Clone()
		want.CreatedOn, want.LastUpdated = got.CreatedOn, got.LastUpdated
		checkRecord(t, status.String()+" record Create returned", got, want)
		stored := mustGet(ctx, t, st, in.ID)
		checkRecord(t, status.String()+" record Get returned", stored, want)
		if stored.State() != status.State() {
			t.Errorf("%s record: State %s, want %s", status, stored.State(), status.State())
		}
	}

	// A record with nothing but an id and a name.
	in := &operations.Record{ID: operations.NewID(), Name: "bare"}
	got := mustCreate(ctx, t, st, in)
	want := in.Clone()
	want.CreatedOn, want.LastUpdated, want.ExpiresOn = got.CreatedOn, got.LastUpdated, got.ExpiresOn
	stored := mustGet(ctx, t, st, in.ID)
	checkRecord(t, "bare record Get returned", stored, want)
	for name, b := range map[string]json.RawMessage{"Input": stored.Input, "Output": stored.Output, "Progress": stored.Progress} {
		if len(b) != 0 {
			t.Errorf("bare record: %s = %s, want empty", name, abbrev(b))
		}
	}
}

// bigJSON returns a JSON string value of exactly n bytes, encoded.
func bigJSON(n int) json.RawMessage {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_ "
	b := make([]byte, n)
	b[0], b[n-1] = '"', '"'
	for i := 1; i < n-1; i++ {
		b[i] = alphabet[(i*7+i/64)%len(alphabet)]
	}
	return b
}

// testRoundTripLimits: the largest input, output and progress a record
// holds read back whole.
func testRoundTripLimits(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)

	in := newRecord("limits")
	in.Input = bigJSON(operations.MaxInput)
	mustCreate(ctx, t, st, in)
	if got := mustGet(ctx, t, st, in.ID); string(got.Input) != string(in.Input) {
		t.Errorf("Input of MaxInput bytes: read back %s, want %s", abbrev(got.Input), abbrev(in.Input))
	}

	// Output and progress on another record: a store may keep large values
	// apart, but need not hold the three largest at once.
	r := mustCreate(ctx, t, st, newRecord("limits"))
	mustUpdate(ctx, t, st, r.ID, operations.Started(1, s.now()))
	progress := bigJSON(operations.MaxProgress)
	mustUpdate(ctx, t, st, r.ID, operations.SetProgress(progress))
	if got := mustGet(ctx, t, st, r.ID); string(got.Progress) != string(progress) {
		t.Errorf("Progress of MaxProgress bytes: read back %s, want %s", abbrev(got.Progress), abbrev(progress))
	}
	output := bigJSON(operations.MaxOutput)
	mustUpdate(ctx, t, st, r.ID, operations.Succeed(output, s.now()))
	got := mustGet(ctx, t, st, r.ID)
	if string(got.Output) != string(output) {
		t.Errorf("Output of MaxOutput bytes: read back %s, want %s", abbrev(got.Output), abbrev(output))
	}
	if string(got.Progress) != string(progress) || got.Status != operations.Succeeded || got.ErrorCode != "" {
		t.Errorf("after Succeed: Status %s, ErrorCode %q, Progress %s; want Succeeded, no error, progress kept", got.Status, got.ErrorCode, abbrev(got.Progress))
	}
}

// testCopies: records go in and come out as copies.
func testCopies(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	in := fullRecord(s.now(), operations.InProgress)
	created := mustCreate(ctx, t, st, in)
	want := created.Clone()

	scribble := func(r *operations.Record) {
		r.Name = "scribbled"
		r.Status = operations.Failed
		r.Attempt = 99
		for _, b := range [][]byte{r.Input, r.Output, r.Progress} {
			for i := range b {
				b[i] = 'X'
			}
		}
		r.ExpiresOn = time.Time{}
	}
	scribble(in)
	scribble(created)
	checkRecord(t, "after changing the records given to and returned by Create, the stored record", mustGet(ctx, t, st, want.ID), want)

	got := mustGet(ctx, t, st, want.ID)
	scribble(got)
	checkRecord(t, "after changing the record Get returned, the stored record", mustGet(ctx, t, st, want.ID), want)

	page, err := st.List(ctx, operations.Query{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, r := range page.Records {
		scribble(r)
	}
	checkRecord(t, "after changing the records List returned, the stored record", mustGet(ctx, t, st, want.ID), want)

	// The record a change edits, and the bytes given to it, are the caller's.
	var edited *operations.Record
	progress := json.RawMessage(`{"pct":10}`)
	updated := mustUpdate(ctx, t, st, want.ID, func(r *operations.Record) (bool, error) {
		edited = r
		r.Progress = progress
		return true, nil
	})
	want = updated.Clone()
	if string(want.Progress) != `{"pct":10}` {
		t.Fatalf("Update returned Progress %s, want %s", abbrev(want.Progress), `{"pct":10}`)
	}
	scribble(edited)
	scribble(updated)
	checkRecord(t, "after changing the record a change edited, and the one Update returned, the stored record", mustGet(ctx, t, st, want.ID), want)

	output := json.RawMessage(`{"url":"https://example.com/a.png"}`)
	want = mustUpdate(ctx, t, st, want.ID, operations.Succeed(output, s.now())).Clone()
	for i := range output {
		output[i] = 'X'
	}
	if got := mustGet(ctx, t, st, want.ID); string(got.Output) != `{"url":"https://example.com/a.png"}` {
		t.Errorf("after changing the bytes given to Succeed, the stored Output = %s, want %s", abbrev(got.Output), `{"url":"https://example.com/a.png"}`)
	}
}

// testGetNotFound: an unknown id, and an expired record (not yet purged),
// are ErrNotFound.
func testGetNotFound(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	if r, err := st.Get(ctx, operations.NewID()); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Get of an unknown id: %v, %v; want ErrNotFound", r, err)
	}

	expired := newRecord("expired")
	expired.ExpiresOn = s.now().Add(-time.Hour)
	got := mustCreate(ctx, t, st, expired)
	if !sameTime(got.ExpiresOn, expired.ExpiresOn) {
		t.Errorf("ExpiresOn given as %s: Create returned %s, want it kept", fmtTime(expired.ExpiresOn), fmtTime(got.ExpiresOn))
	}
	if r, err := st.Get(ctx, expired.ID); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Get of a record that expired an hour ago: %v, %v; want ErrNotFound", r, err)
	}

	live := newRecord("live")
	live.ExpiresOn = s.now().Add(time.Hour)
	mustCreate(ctx, t, st, live)
	mustGet(ctx, t, st, live.ID)
}

// testExpiresByTimeToLive: a record expires when its time to live has
// passed on the store's clock. Only a harness that gives the clock, and a
// clock that moves, can show it without waiting.
func testExpiresByTimeToLive(t *testing.T, ctx context.Context, s *suite) {
	if s.h.Now == nil {
		t.Skip("the harness does not give the store's clock (Harness.Now); expiry is tested with past ExpiresOn times")
	}
	st := s.open(t, time.Nanosecond)
	r := mustCreate(ctx, t, st, newRecord("short-lived"))
	if now := s.now(); !now.After(r.ExpiresOn.Add(Precision)) {
		t.Skipf("the store's clock (%s) has not moved past ExpiresOn (%s)", fmtTime(now), fmtTime(r.ExpiresOn))
	}
	if got, err := st.Get(ctx, r.ID); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Get of a record past its time to live: %v, %v; want ErrNotFound", got, err)
	}
	called := false
	if _, err := st.Update(ctx, r.ID, func(*operations.Record) (bool, error) { called = true; return true, nil }); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Update of a record past its time to live: %v, want ErrNotFound", err)
	}
	if called {
		t.Errorf("Update called the change on a record past its time to live")
	}
	page, err := st.List(ctx, operations.Query{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(page.Records) != 0 {
		t.Errorf("List returned %d records past their time to live, want none", len(page.Records))
	}
}

// testUpdate: Update applies the change to the stored record, sets
// LastUpdated and returns the record as stored.
func testUpdate(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	in := newRecord("update")
	in.RunAs = "alice"
	created := mustCreate(ctx, t, st, in)

	var seen []string
	before := s.now()
	got := mustUpdate(ctx, t, st, created.ID, func(r *operations.Record) (bool, error) {
		seen = append(seen, diffRecord(r, created)...)
		r.Status, r.Attempt = operations.InProgress, 2
		r.Progress = json.RawMessage(`{"step": 1}`)
		r.ErrorCode, r.ErrorMessage = "AttemptFailed", "first try"
		return true, nil
	})
	after := s.now()
	if len(seen) > 0 {
		t.Errorf("the change was given a record unlike the stored one:\n\t%s", strings.Join(seen, "\n\t"))
	}

	want := created.Clone()
	want.Status, want.Attempt = operations.InProgress, 2
	want.Progress = json.RawMessage(`{"step": 1}`)
	want.ErrorCode, want.ErrorMessage = "AttemptFailed", "first try"
	want.LastUpdated = got.LastUpdated
	checkRecord(t, "record Update returned", got, want)
	s.checkWithin(t, "LastUpdated after Update", got.LastUpdated, before, after)
	if got.LastUpdated.Before(created.LastUpdated.Add(-Precision)) {
		t.Errorf("LastUpdated went back: %s after Update, %s before", fmtTime(got.LastUpdated), fmtTime(created.LastUpdated))
	}
	checkVersionChanged(t, "Update", created, got)
	stored := mustGet(ctx, t, st, created.ID)
	checkRecord(t, "record Get returned after Update", stored, got)
	checkVersionSame(t, "Get after Update", got, stored)

	// A second update starts from the first one's result.
	before = s.now()
	got2 := mustUpdate(ctx, t, st, created.ID, func(r *operations.Record) (bool, error) {
		if string(r.Progress) != `{"step": 1}` || r.Attempt != 2 {
			t.Errorf("second change given Progress %s, Attempt %d; want the first change's", abbrev(r.Progress), r.Attempt)
		}
		r.Progress = json.RawMessage(`{"step": 2}`)
		return true, nil
	})
	after = s.now()
	want = got.Clone()
	want.Progress, want.LastUpdated = json.RawMessage(`{"step": 2}`), got2.LastUpdated
	checkRecord(t, "record the second Update returned", got2, want)
	s.checkWithin(t, "LastUpdated after the second Update", got2.LastUpdated, before, after)
	checkVersionChanged(t, "second Update", got, got2)
	checkRecord(t, "record Get returned after the second Update", mustGet(ctx, t, st, created.ID), got2)
}

// testUpdateNoChange: a change that reports false writes nothing, even if
// it edited the record it was given.
func testUpdateNoChange(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	created := mustCreate(ctx, t, st, fullRecord(s.now(), operations.InProgress))
	calls := 0
	got := mustUpdate(ctx, t, st, created.ID, func(r *operations.Record) (bool, error) {
		calls++
		r.Name, r.Status, r.Attempt = "edited", operations.Failed, 7
		r.Progress = json.RawMessage(`{"edited":true}`)
		r.ExpiresOn = time.Time{}
		return false, nil
	})
	if calls != 1 {
		t.Errorf("the change was called %d times with no other write, want 1", calls)
	}
	checkRecord(t, "record Update returned after a change that wrote nothing", got, created)
	checkVersionSame(t, "Update that wrote nothing", created, got)
	stored := mustGet(ctx, t, st, created.ID)
	checkRecord(t, "stored record after a change that wrote nothing", stored, created)
	checkVersionSame(t, "Get after an Update that wrote nothing", created, stored)
}

// testUpdateChangeError: a change's error is returned as it is and nothing
// is written.
func testUpdateChangeError(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	created := mustCreate(ctx, t, st, newRecord("change-error"))
	sentinel := errors.New("storetest: change refused")
	_, err := st.Update(ctx, created.ID, func(r *operations.Record) (bool, error) {
		r.Name, r.Status = "edited", operations.Failed
		return true, sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Errorf("Update with a change that fails: error %v, want the change's (%v)", err, sentinel)
	}
	stored := mustGet(ctx, t, st, created.ID)
	checkRecord(t, "stored record after a change that failed", stored, created)
	checkVersionSame(t, "Get after a change that failed", created, stored)

	// Cancelling a completed operation is ErrCompleted.
	for _, status := range []operations.Status{operations.Succeeded, operations.Failed} {
		r := newRecord("cancel-completed")
		r.Status = status
		r.EndTime = s.now()
		done := mustCreate(ctx, t, st, r)
		if _, err := st.Update(ctx, done.ID, operations.Cancel(s.now())); !errors.Is(err, operations.ErrCompleted) {
			t.Errorf("Cancel of a %s record: error %v, want one wrapping ErrCompleted", status, err)
		}
		stored := mustGet(ctx, t, st, done.ID)
		checkRecord(t, "stored "+status.String()+" record after Cancel", stored, done)
		checkVersionSame(t, "Get after a refused Cancel", done, stored)
	}
}

// testUpdateNotFound: an unknown or expired id is ErrNotFound, and the
// change is not called.
func testUpdateNotFound(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	called := false
	change := func(*operations.Record) (bool, error) { called = true; return true, nil }
	if _, err := st.Update(ctx, operations.NewID(), change); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Update of an unknown id: %v, want ErrNotFound", err)
	}
	if called {
		t.Errorf("Update called the change for an unknown id")
	}

	expired := newRecord("expired")
	expired.ExpiresOn = s.now().Add(-time.Hour)
	mustCreate(ctx, t, st, expired)
	called = false
	if _, err := st.Update(ctx, expired.ID, change); !errors.Is(err, operations.ErrNotFound) {
		t.Errorf("Update of a record that expired an hour ago: %v, want ErrNotFound", err)
	}
	if called {
		t.Errorf("Update called the change for an expired record")
	}
}

// testClose: Close is idempotent.
func testClose(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl) // the cleanup closes it a third time
	mustCreate(ctx, t, st, newRecord("close"))
	if err := st.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Errorf("second Close: %v, want nil (Close is idempotent)", err)
	}
}
