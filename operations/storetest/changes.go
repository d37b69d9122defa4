package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
)

// concurrentWriters is how many goroutines update one record at once.
const concurrentWriters = 20

// counter is the Progress the concurrency tests count in.
type counter struct {
	N int `json:"n"`
}

// increment is a change that adds one to the counter in Progress.
func increment(r *operations.Record) (bool, error) {
	var c counter
	if err := json.Unmarshal(r.Progress, &c); err != nil {
		return false, fmt.Errorf("storetest: reading the counter in Progress %s: %w", abbrev(r.Progress), err)
	}
	runtime.Gosched() // let the other writers read the same version
	c.N++
	b, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	r.Progress = b
	return true, nil
}

func readCounter(t *testing.T, r *operations.Record) int {
	t.Helper()
	var c counter
	if err := json.Unmarshal(r.Progress, &c); err != nil {
		t.Fatalf("reading the counter in Progress %s: %v", abbrev(r.Progress), err)
	}
	return c.N
}

// testConcurrentUpdates is optimistic concurrency: writers that update one
// record at once lose no update, and each one's Update returns its own
// write.
func testConcurrentUpdates(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	const rounds = 3
	for round := range rounds {
		in := newRecord("counter")
		in.Progress = json.RawMessage(`{"n":0}`)
		created := mustCreate(ctx, t, st, in)

		start := make(chan struct{})
		got := make([]*operations.Record, concurrentWriters)
		errs := make([]error, concurrentWriters)
		var wg sync.WaitGroup
		for i := range concurrentWriters {
			wg.Go(func() {
				<-start
				got[i], errs[i] = st.Update(ctx, created.ID, increment)
			})
		}
		close(start)
		wg.Wait()

		var seen []int
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: concurrent Update %d: %v", round, i, err)
			}
			if got[i] == nil {
				t.Fatalf("round %d: concurrent Update %d returned a nil record", round, i)
			}
			seen = append(seen, readCounter(t, got[i]))
		}
		final := mustGet(ctx, t, st, created.ID)
		if n := readCounter(t, final); n != concurrentWriters {
			t.Errorf("round %d: after %d concurrent increments the counter is %d: %d updates were lost", round, concurrentWriters, n, concurrentWriters-n)
		}
		// Each Update returns the record its own write made: counts 1..N,
		// each once.
		slices.Sort(seen)
		for i, n := range seen {
			if n != i+1 {
				t.Errorf("round %d: the concurrent Updates returned counters %v, want 1..%d each once", round, seen, concurrentWriters)
				break
			}
		}
	}
}

// testConcurrentCancelAndSucceed races a Cancel against a Succeed on a
// running operation: either order is fine, a mix of both is a lost update.
func testConcurrentCancelAndSucceed(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	const rounds = 20
	for round := range rounds {
		in := newRecord("race")
		in.Status, in.Attempt, in.StartTime = operations.InProgress, 1, s.now()
		created := mustCreate(ctx, t, st, in)

		var (
			start                 = make(chan struct{})
			wg                    sync.WaitGroup
			cancelRec, succeedRec *operations.Record
			cancelErr, succeedErr error
		)
		now := s.now()
		wg.Go(func() {
			<-start
			cancelRec, cancelErr = st.Update(ctx, created.ID, yielding(operations.Cancel(now)))
		})
		wg.Go(func() {
			<-start
			succeedRec, succeedErr = st.Update(ctx, created.ID, yielding(operations.Succeed(json.RawMessage(`{"ok":true}`), now)))
		})
		close(start)
		wg.Wait()

		if succeedErr != nil {
			t.Fatalf("round %d: Succeed: %v", round, succeedErr)
		}
		final := mustGet(ctx, t, st, created.ID)
		switch final.Status {
		case operations.Succeeded: // Succeed first, then Cancel refused
			if !errors.Is(cancelErr, operations.ErrCompleted) {
				t.Errorf("round %d: ended Succeeded, but Cancel returned %v, not ErrCompleted: Cancel's write was lost", round, cancelErr)
			}
			if succeedRec.Status != operations.Succeeded {
				t.Errorf("round %d: ended Succeeded, but Succeed's Update returned %s", round, succeedRec.Status)
			}
		case operations.Canceled: // Cancel first (Canceling), then Succeed ends it Canceled
			if cancelErr != nil || cancelRec == nil || cancelRec.Status != operations.Canceling {
				t.Errorf("round %d: ended Canceled, but Cancel's Update returned %v, %v; want Canceling", round, statusOf(cancelRec), cancelErr)
			}
			if succeedRec.Status != operations.Canceled {
				t.Errorf("round %d: ended Canceled, but Succeed's Update returned %s", round, succeedRec.Status)
			}
			if len(final.Output) != 0 {
				t.Errorf("round %d: ended Canceled with Output %s, want none", round, abbrev(final.Output))
			}
		default:
			t.Errorf("round %d: a Cancel and a Succeed at once ended %s (Cancel: %v, %v; Succeed: %v), want Succeeded or Canceled: one write was lost",
				round, final.Status, statusOf(cancelRec), cancelErr, statusOf(succeedRec))
		}
	}
}

// yielding returns change, letting other goroutines run first: a store's
// read and write then straddle the other writer's.
func yielding(change operations.Change) operations.Change {
	return func(r *operations.Record) (bool, error) {
		runtime.Gosched()
		return change(r)
	}
}

func statusOf(r *operations.Record) any {
	if r == nil {
		return "no record"
	}
	return r.Status
}

// step is one Change, by name; make returns a fresh Change each time (a
// Change may keep state between calls).
type step struct {
	name string
	make func(now time.Time) operations.Change
}

var steps = []step{
	{"Started(1)", func(now time.Time) operations.Change { return operations.Started(1, now) }},
	{"AttemptFailed(1)", func(time.Time) operations.Change { return operations.AttemptFailed(1, "attempt 1 failed") }},
	{"Started(2)", func(now time.Time) operations.Change { return operations.Started(2, now) }},
	{"SetProgress", func(time.Time) operations.Change { return operations.SetProgress(json.RawMessage(`{"pct":50}`)) }},
	{"Succeed", func(now time.Time) operations.Change { return operations.Succeed(json.RawMessage(`{"ok":true}`), now) }},
	{"Fail", func(now time.Time) operations.Change { return operations.Fail("Poisoned", "gave up", now) }},
	{"Cancel", func(now time.Time) operations.Change { return operations.Cancel(now) }},
	{"EndCanceled", func(now time.Time) operations.Change { return operations.EndCanceled(now) }},
}

func stepNamed(name string) step {
	for _, s := range steps {
		if s.name == name {
			return s
		}
	}
	panic("storetest: no step " + name)
}

// applyStep applies one step through the store and checks it against the
// same Change applied to model, the record as it should be: same error,
// same record, a write only when the change reported one, and never a
// status backwards. It returns the new model and stored record.
func (s *suite) applyStep(ctx context.Context, t *testing.T, st operations.Store, what string, sp step, model, stored *operations.Record) (*operations.Record, *operations.Record) {
	t.Helper()
	now := s.now()
	next := model.Clone()
	changed, wantErr := sp.make(now)(next)
	before := s.now()
	_, err := st.Update(ctx, model.ID, sp.make(now))
	after := s.now()
	switch {
	case wantErr != nil && err == nil:
		t.Errorf("%s: %s on %s: no error, want %v", what, sp.name, model.Status, wantErr)
	case wantErr == nil && err != nil:
		t.Fatalf("%s: %s on %s: %v", what, sp.name, model.Status, err)
	case wantErr != nil && errors.Is(wantErr, operations.ErrCompleted) && !errors.Is(err, operations.ErrCompleted):
		t.Errorf("%s: %s on %s: %v, want ErrCompleted", what, sp.name, model.Status, err)
	}
	got := mustGet(ctx, t, st, model.ID)
	if !operations.Forward(stored.Status, got.Status) {
		t.Errorf("%s: %s moved the record backwards, from %s to %s", what, sp.name, stored.Status, got.Status)
	}
	if !changed || wantErr != nil {
		checkRecord(t, fmt.Sprintf("%s: record after %s on %s, which writes nothing", what, sp.name, model.Status), got, stored)
		checkVersionSame(t, what+": "+sp.name+" writing nothing", stored, got)
		return model, got
	}
	next.LastUpdated = got.LastUpdated
	checkRecord(t, fmt.Sprintf("%s: record after %s on %s", what, sp.name, model.Status), got, next)
	s.checkWithin(t, what+": LastUpdated after "+sp.name, got.LastUpdated, before, after)
	checkVersionChanged(t, what+": "+sp.name, stored, got)
	return next, got
}

// testChangesNeverBackwards applies Changes out of order: a late Started
// after Succeeded, a second Cancel, writes nothing.
func testChangesNeverBackwards(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	for _, seq := range [][]string{
		{"Started(1)", "Succeed", "Started(1)", "Started(2)", "AttemptFailed(1)", "SetProgress", "Fail", "EndCanceled", "Cancel", "Succeed"},
		{"Started(2)", "Started(1)", "AttemptFailed(1)", "Fail", "Started(2)", "Succeed", "Cancel"},
		{"Started(1)", "Cancel", "Cancel", "SetProgress", "Started(2)", "Succeed", "Cancel", "EndCanceled"},
		{"Started(1)", "Cancel", "Succeed", "Started(1)", "Fail"},
		{"Cancel", "Started(1)", "Succeed", "Cancel", "EndCanceled"},
		{"Succeed", "Started(1)", "Started(2)"},
	} {
		created := mustCreate(ctx, t, st, newRecord("backwards"))
		model, stored := created.Clone(), created
		for i, name := range seq {
			model, stored = s.applyStep(ctx, t, st, fmt.Sprintf("%v step %d", seq, i+1), stepNamed(name), model, stored)
		}
		if !stored.Status.Final() {
			t.Errorf("%v ended %s, want a completed status", seq, stored.Status)
		}
	}
}

// testChangesScrambled applies every Change in many shuffled orders: the
// store's record matches the Changes applied in memory at each step, and
// never moves backwards.
func testChangesScrambled(t *testing.T, ctx context.Context, s *suite) {
	st := s.open(t, ttl)
	rng := rand.New(rand.NewPCG(1, 2)) // fixed: a failure repeats
	for round := range 24 {
		order := slices.Clone(steps)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		names := make([]string, len(order))
		for i, sp := range order {
			names[i] = sp.name
		}
		created := mustCreate(ctx, t, st, newRecord("scrambled"))
		model, stored := created.Clone(), created
		for i, sp := range order {
			model, stored = s.applyStep(ctx, t, st, fmt.Sprintf("round %d %v step %d", round, names, i+1), sp, model, stored)
		}
	}
}
