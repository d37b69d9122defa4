package timer_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobhost/jobhost/timer"
	"github.com/jobhost/jobhost/timer/timertest"
)

func utc(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

type event struct {
	runner int
	info   timer.TimerInfo
	at     time.Time     // the clock when fired
	stored *timer.Status // the status stored while the function ran
}

// run starts r in a goroutine with a fire function that reports each call
// on events and returns what errFor says.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, r *timer.Runner, id int, clk timer.Clock, store timer.StatusStore, fn string, events chan<- event, errFor func(timer.TimerInfo) error) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rr.done)
		_ = r.Run(ctx, func(ctx context.Context, info timer.TimerInfo) error {
			ev := event{runner: id, info: info, at: clk.Now()}
			if store != nil {
				if st, err := store.Load(ctx, fn); err == nil {
					ev.stored = &st
				}
			}
			events <- ev
			if errFor != nil {
				return errFor(info)
			}
			return nil
		})
	}()
	t.Cleanup(func() { rr.stop(t) })
	return rr
}

func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("runner did not stop")
	}
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func recv(t *testing.T, events <-chan event) event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no fire within 10 s")
		return event{}
	}
}

func noEvent(t *testing.T, events <-chan event) {
	t.Helper()
	select {
	case ev := <-events:
		t.Fatalf("unexpected fire %+v", ev)
	default:
	}
}

// step waits until n timers are pending (the runners are idle), then fires
// the earliest.
func step(t *testing.T, clk *timertest.Clock, n int) time.Time {
	t.Helper()
	if err := clk.BlockUntil(waitCtx(t), n); err != nil {
		t.Fatalf("waiting for %d timers (have %d): %v", n, clk.Pending(), err)
	}
	at, _ := clk.AdvanceToNext()
	return at
}

func TestRunnerFiresEachOccurrenceAndSavesAfter(t *testing.T) {
	clk := timertest.NewClock(utc(2026, 5, 1, 10, 20, 0))
	store := &timer.MemoryStatusStore{}
	r, err := timer.NewRunner("Hourly", timer.MustParse("0 0 * * * *", nil), timer.Options{Status: store, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if !r.UsesMonitor() {
		t.Fatal("an hourly timer uses the monitor by default")
	}
	events := make(chan event, 10)
	start(t, r, 1, clk, store, "Hourly", events, nil)
	for i, want := range []time.Time{utc(2026, 5, 1, 11, 0, 0), utc(2026, 5, 1, 12, 0, 0), utc(2026, 5, 1, 13, 0, 0)} {
		step(t, clk, 1)
		ev := recv(t, events)
		if !ev.info.Next.Equal(want) || ev.info.IsPastDue || ev.info.Schedule != "0 0 * * * *" || !ev.at.Equal(want) {
			t.Fatalf("fire %d: %+v at %v, want Next %v", i, ev.info, ev.at, want)
		}
		if i > 0 && !ev.info.Last.Equal(want.Add(-time.Hour)) {
			t.Errorf("fire %d: Last %v, want %v", i, ev.info.Last, want.Add(-time.Hour))
		}
		// While the function runs, the stored status is still the one
		// before: it is written after completion.
		if ev.stored == nil || !ev.stored.Next.Equal(want) {
			t.Errorf("fire %d: stored during the run %+v, want Next %v", i, ev.stored, want)
		}
	}
	if err := clk.BlockUntil(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	st, err := store.Load(context.Background(), "Hourly")
	if err != nil || !st.Last.Equal(utc(2026, 5, 1, 13, 0, 0)) || !st.Next.Equal(utc(2026, 5, 1, 14, 0, 0)) {
		t.Errorf("status after: %+v, %v", st, err)
	}
}

func TestRunnerPastDueRunsOnceAndWinsOverRunOnStartup(t *testing.T) {
	clk := timertest.NewClock(utc(2026, 5, 1, 14, 20, 0))
	store := &timer.MemoryStatusStore{}
	// The host was down from 08:00's run: 09:00 … 14:00 were missed.
	_ = store.Save(context.Background(), "F", timer.Status{Last: utc(2026, 5, 1, 8, 0, 0), Next: utc(2026, 5, 1, 9, 0, 0), LastUpdated: utc(2026, 5, 1, 8, 0, 0)})
	r, _ := timer.NewRunner("F", timer.MustParse("0 0 * * * *", nil), timer.Options{Status: store, Clock: clk, RunOnStartup: true})
	events := make(chan event, 10)
	start(t, r, 1, clk, store, "F", events, nil)

	ev := recv(t, events)
	if !ev.info.IsPastDue || ev.info.RunOnStartup || !ev.info.Next.Equal(utc(2026, 5, 1, 9, 0, 0)) || !ev.info.Last.Equal(utc(2026, 5, 1, 8, 0, 0)) {
		t.Fatalf("first fire %+v, want the past-due one for 09:00", ev.info)
	}
	if at := step(t, clk, 1); !at.Equal(utc(2026, 5, 1, 15, 0, 0)) {
		t.Fatalf("after the catch-up the next timer is for %v, want 15:00", at)
	}
	ev = recv(t, events)
	if ev.info.IsPastDue || !ev.info.Next.Equal(utc(2026, 5, 1, 15, 0, 0)) {
		t.Fatalf("second fire %+v", ev.info)
	}
	noEvent(t, events)
}

func TestRunnerRunOnStartup(t *testing.T) {
	clk := timertest.NewClock(utc(2026, 5, 1, 14, 20, 0))
	store := &timer.MemoryStatusStore{}
	r, _ := timer.NewRunner("F", timer.MustParse("0 0 * * * *", nil), timer.Options{Status: store, Clock: clk, RunOnStartup: true})
	events := make(chan event, 10)
	start(t, r, 1, clk, store, "F", events, nil)
	ev := recv(t, events)
	if !ev.info.RunOnStartup || ev.info.IsPastDue || !ev.at.Equal(utc(2026, 5, 1, 14, 20, 0)) {
		t.Fatalf("startup fire %+v at %v", ev.info, ev.at)
	}
	step(t, clk, 1)
	if ev := recv(t, events); ev.info.RunOnStartup || !ev.info.Next.Equal(utc(2026, 5, 1, 15, 0, 0)) {
		t.Fatalf("then %+v", ev.info)
	}
	noEvent(t, events)
}

func TestRunnerScheduleChangedNoPastDue(t *testing.T) {
	clk := timertest.NewClock(utc(2026, 5, 1, 14, 20, 0))
	store := &timer.MemoryStatusStore{}
	_ = store.Save(context.Background(), "F", timer.Status{Last: utc(2026, 5, 1, 8, 0, 0), Next: utc(2026, 5, 1, 9, 0, 0), LastUpdated: utc(2026, 5, 1, 8, 0, 0)})
	r, _ := timer.NewRunner("F", timer.MustParse("0 */30 * * * *", nil), timer.Options{Status: store, Clock: clk})
	events := make(chan event, 10)
	start(t, r, 1, clk, store, "F", events, nil)
	if at := step(t, clk, 1); !at.Equal(utc(2026, 5, 1, 14, 30, 0)) {
		t.Fatalf("first timer for %v, want 14:30", at)
	}
	if ev := recv(t, events); ev.info.IsPastDue || !ev.info.Next.Equal(utc(2026, 5, 1, 14, 30, 0)) {
		t.Fatalf("fire %+v", ev.info)
	}
}

func TestRunnerFailuresDoNotStopTheSchedule(t *testing.T) {
	clk := timertest.NewClock(utc(2026, 5, 1, 10, 59, 0))
	store := &timer.MemoryStatusStore{}
	r, _ := timer.NewRunner("F", timer.MustParse("0 0 * * * *", nil), timer.Options{Status: store, Clock: clk})
	events := make(chan event, 10)
	var n atomic.Int32
	start(t, r, 1, clk, store, "F", events, func(timer.TimerInfo) error {
		switch n.Add(1) {
		case 1:
			return errors.New("boom")
		case 2:
			panic("kaboom")
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		step(t, clk, 1)
		ev := recv(t, events)
		if want := utc(2026, 5, 1, 11+i, 0, 0); !ev.info.Next.Equal(want) {
			t.Fatalf("fire %d: %+v, want Next %v", i, ev.info, want)
		}
		if i > 0 && (ev.stored == nil || !ev.stored.Last.Equal(utc(2026, 5, 1, 10+i, 0, 0))) {
			t.Errorf("fire %d: the failed run's status was not saved: %+v", i, ev.stored)
		}
	}
}

func TestRunnerMonitorOffForSubMinuteSchedules(t *testing.T) {
	clk := timertest.NewClock(utc(2026, 5, 1, 10, 0, 0))
	store := &timer.MemoryStatusStore{}
	r, _ := timer.NewRunner("F", timer.MustParse("*/10 * * * * *", nil), timer.Options{Status: store, Clock: clk})
	if r.UsesMonitor() {
		t.Fatal("a sub-minute timer uses the monitor by default")
	}
	on, _ := timer.NewRunner("F", timer.MustParse("*/10 * * * * *", nil), timer.Options{Status: store, Clock: clk, Monitor: timer.MonitorOn})
	off, _ := timer.NewRunner("F", timer.MustParse("0 0 * * * *", nil), timer.Options{Status: store, Clock: clk, Monitor: timer.MonitorOff})
	if !on.UsesMonitor() || off.UsesMonitor() {
		t.Fatal("Monitor option ignored")
	}
	events := make(chan event, 10)
	start(t, r, 1, clk, store, "F", events, nil)
	step(t, clk, 1)
	recv(t, events)
	if err := clk.BlockUntil(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(context.Background(), "F"); !errors.Is(err, timer.ErrNoStatus) {
		t.Errorf("status saved without the monitor: %v", err)
	}
}

func TestRunnerShutdownDuringFailedRunLeavesItPastDue(t *testing.T) {
	clk := timertest.NewClock(utc(2026, 5, 1, 10, 59, 0))
	store := &timer.MemoryStatusStore{}
	r, _ := timer.NewRunner("F", timer.MustParse("0 0 * * * *", nil), timer.Options{Status: store, Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx, func(ctx context.Context, _ timer.TimerInfo) error {
			cancel() // the host shuts down while the function runs
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	step(t, clk, 1)
	<-done
	st, err := store.Load(context.Background(), "F")
	if err != nil || !st.Next.Equal(utc(2026, 5, 1, 11, 0, 0)) {
		t.Fatalf("status %+v, %v: want Next still 11:00", st, err)
	}
	if d := timer.Decide(timer.MustParse("0 0 * * * *", nil), &st, utc(2026, 5, 1, 11, 5, 0)); !d.PastDue {
		t.Errorf("the next host does not catch it up: %+v", d)
	}
}

// flakyLocker wraps a Locker: its leases' renewals fail once fail is set,
// and Release does nothing when noRelease is set (a killed host).
type flakyLocker struct {
	timer.Locker
	fail, noRelease atomic.Bool
}

func (f *flakyLocker) Acquire(ctx context.Context, fn string, d time.Duration) (timer.Lease, error) {
	l, err := f.Locker.Acquire(ctx, fn, d)
	if err != nil {
		return nil, err
	}
	return flakyLease{l, f}, nil
}

type flakyLease struct {
	timer.Lease
	f *flakyLocker
}

func (l flakyLease) Renew(ctx context.Context) error {
	if l.f.fail.Load() {
		return errors.New("storage unreachable")
	}
	return l.Lease.Renew(ctx)
}

func (l flakyLease) Release(ctx context.Context) error {
	if l.f.noRelease.Load() {
		return nil
	}
	return l.Lease.Release(ctx)
}

var secs = func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func TestRunnerStopsFiringAtOnceWhenRenewalFails(t *testing.T) {
	t0 := utc(2026, 5, 1, 10, 0, 0)
	clk := timertest.NewClock(t0)
	locker := &flakyLocker{Locker: timer.NewMemoryLocker(clk)}
	leader := make(chan bool, 10)
	r, _ := timer.NewRunner("F", timer.MustParse("*/1 * * * * *", nil), timer.Options{
		Locker: locker, Clock: clk, LeaseDuration: 10 * time.Second, RenewInterval: secs(4.3), AcquireInterval: 2 * time.Second,
		OnLeadership: func(held bool) { leader <- held },
	})
	events := make(chan event, 100)
	start(t, r, 1, clk, nil, "F", events, nil)
	if !<-leader {
		t.Fatal("not leading")
	}
	// Leading: a tick timer and a renewal timer. Ticks 1 … 8 (and the
	// renewal at 4.3 s) go as usual.
	for clk.Now().Before(t0.Add(8 * time.Second)) {
		step(t, clk, 2)
	}
	for i := 1; i <= 8; i++ {
		if ev := recv(t, events); !ev.info.Next.Equal(t0.Add(time.Duration(i) * time.Second)) {
			t.Fatalf("tick %d: %+v", i, ev.info)
		}
	}
	// From now on renewals fail: the one at 8.6 s stops the firing at
	// once. The old lease runs out at 14.3 s (4.3 + 10); the runner takes
	// it again at its next try, 14.6 s (retries at 8.6, 10.6, 12.6).
	locker.fail.Store(true)
	if at := step(t, clk, 2); !at.Equal(t0.Add(secs(8.6))) {
		t.Fatalf("advanced to %v, want the renewal at 8.6 s", at.Sub(t0))
	}
	select {
	case held := <-leader:
		if held {
			t.Fatal("leadership reported again")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the failed renewal did not end the leadership")
	}
	var retook time.Time
	for retook.IsZero() {
		at := step(t, clk, 1)
		select {
		case <-leader:
			retook = at
		case ev := <-events:
			t.Fatalf("fired for %v at %v without the lease", ev.info.Next.Sub(t0), ev.at.Sub(t0))
		case <-time.After(time.Second):
			// Not retaken at this time: advance to the next retry.
		}
	}
	if !retook.Equal(t0.Add(secs(14.6))) {
		t.Errorf("retook the lease at %v, want 14.6 s", retook.Sub(t0))
	}
	step(t, clk, 2)
	if ev := recv(t, events); !ev.info.Next.Equal(t0.Add(15 * time.Second)) {
		t.Errorf("after retaking: %+v", ev.info)
	}
}

func TestRunnerTakeoverAfterKill(t *testing.T) {
	t0 := utc(2026, 5, 1, 10, 0, 0)
	clk := timertest.NewClock(t0)
	mem := timer.NewMemoryLocker(clk)
	store := &timer.MemoryStatusStore{}
	opts := func(l timer.Locker) timer.Options {
		return timer.Options{Locker: l, Status: store, Monitor: timer.MonitorOn, Clock: clk,
			LeaseDuration: 10 * time.Second, RenewInterval: secs(4.3), AcquireInterval: 2 * time.Second}
	}
	l1, l2 := &flakyLocker{Locker: mem}, &flakyLocker{Locker: mem}
	r1, _ := timer.NewRunner("F", timer.MustParse("*/1 * * * * *", nil), opts(l1))
	r2, _ := timer.NewRunner("F", timer.MustParse("*/1 * * * * *", nil), opts(l2))
	events := make(chan event, 100)
	h1 := start(t, r1, 1, clk, nil, "F", events, nil)
	if err := clk.BlockUntil(waitCtx(t), 2); err != nil { // r1 leads
		t.Fatal(err)
	}
	start(t, r2, 2, clk, nil, "F", events, nil)
	for clk.Now().Before(t0.Add(6 * time.Second)) {
		step(t, clk, 3) // r1's tick and renewal, r2's retry
	}
	// SIGKILL runner 1: it stops without releasing its lease.
	l1.noRelease.Store(true)
	h1.stop(t)
	killed := clk.Now()
	seen := map[time.Time]int{}
	for len(events) > 0 {
		ev := <-events
		if ev.runner != 1 {
			t.Fatalf("runner %d fired while runner 1 held the lease: %+v", ev.runner, ev.info)
		}
		seen[ev.info.Next]++
	}
	if len(seen) < 5 {
		t.Fatalf("runner 1 fired %d times in 6 s", len(seen))
	}
	var first *event
	for first == nil && clk.Now().Before(killed.Add(30*time.Second)) {
		step(t, clk, 1)
		select {
		case ev := <-events:
			first = &ev
		case <-time.After(500 * time.Millisecond):
			// No fire yet at this time: advance further. (Only the
			// fires' arrival is awaited; time moves by the fake clock.)
		}
	}
	if first == nil || first.runner != 2 {
		t.Fatalf("runner 2 did not take over within 30 s: %+v", first)
	}
	if d := first.at.Sub(killed); d > 20*time.Second {
		t.Errorf("runner 2 fired %v after the kill, want within two lease periods (20 s)", d)
	}
	if !first.info.IsPastDue {
		t.Errorf("the takeover's first run %+v is not the past-due catch-up", first.info)
	}
	if seen[first.info.Next] != 0 {
		t.Errorf("runner 2 re-ran %v, which runner 1 ran", first.info.Next)
	}
}

func TestRunnerAcrossDSTWithFakeClock(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	berlin, _ := time.LoadLocation("Europe/Berlin")
	run := func(t *testing.T, expr string, loc *time.Location, from, to time.Time) []time.Time {
		clk := timertest.NewClock(from)
		r, _ := timer.NewRunner("F", timer.MustParse(expr, loc), timer.Options{Status: &timer.MemoryStatusStore{}, Clock: clk})
		events := make(chan event, 100)
		h := start(t, r, 1, clk, nil, "F", events, nil)
		var got []time.Time
		for {
			at := step(t, clk, 1)
			if !at.Before(to) {
				break
			}
			ev := recv(t, events)
			if !ev.at.Equal(ev.info.Next) {
				t.Fatalf("fired at %v for %v", ev.at, ev.info.Next)
			}
			got = append(got, ev.info.Next)
		}
		h.stop(t)
		return got
	}
	t.Run("spring", func(t *testing.T) {
		got := run(t, "0 30 2 * * *", ny, time.Date(2026, 3, 7, 12, 0, 0, 0, ny), time.Date(2026, 3, 10, 12, 0, 0, 0, ny))
		want := []time.Time{utc(2026, 3, 8, 7, 30, 0), utc(2026, 3, 9, 6, 30, 0), utc(2026, 3, 10, 6, 30, 0)}
		if len(got) != len(want) {
			t.Fatalf("fired at %v, want %v", got, want)
		}
		for i := range want {
			if !got[i].Equal(want[i]) {
				t.Errorf("fire %d at %v, want %v", i, got[i], want[i])
			}
		}
	})
	t.Run("autumn", func(t *testing.T) {
		got := run(t, "0 30 2 * * *", berlin, time.Date(2026, 10, 24, 12, 0, 0, 0, berlin), time.Date(2026, 10, 27, 0, 0, 0, 0, berlin))
		want := []time.Time{utc(2026, 10, 25, 0, 30, 0), utc(2026, 10, 26, 1, 30, 0)}
		if len(got) != len(want) || !got[0].Equal(want[0]) || !got[1].Equal(want[1]) {
			t.Fatalf("fired at %v, want %v", got, want)
		}
	})
	t.Run("hourly autumn", func(t *testing.T) {
		got := run(t, "0 0 * * * *", ny, time.Date(2026, 11, 1, 0, 0, 0, 0, ny).Add(-time.Second), time.Date(2026, 11, 2, 0, 0, 0, 0, ny))
		if len(got) != 25 {
			t.Fatalf("%d runs on the 25-hour day, want 25: %v", len(got), got)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Sub(got[i-1]) != time.Hour {
				t.Errorf("run %d %v follows %v", i, got[i], got[i-1])
			}
		}
	})
}
