package timertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sort"
	"strconv"
	"strings"

	"sync/atomic"
	"testing"
	"time"

	"github.com/jobhost/jobhost/timer"
)

// Backend opens a Locker and StatusStore implementation for the suites.
// Each call stands for another host: its own client, the same storage and
// host id.
type Backend struct {
	// NewLocker and NewStatusStore open the implementation for one more
	// host.
	NewLocker      func(t *testing.T) timer.Locker
	NewStatusStore func(t *testing.T) timer.StatusStore
	// Lease is the lease duration the suites use: short (the blob service
	// allows no less than 15 s).
	Lease time.Duration
}

// FunctionName returns a function name unique to this test and process.
func FunctionName(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	if len(n) > 40 {
		n = n[len(n)-40:]
	}
	return n + "." + hex.EncodeToString(b[:])
}

func bounded(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestLocker checks the Locker contract: one holder at a time, renewals,
// release, and takeover after expiry.
func TestLocker(t *testing.T, b Backend) {
	ctx := bounded(t, 4*b.Lease+time.Minute)
	l1, l2 := b.NewLocker(t), b.NewLocker(t)
	fn := FunctionName(t)
	a, err := l1.Acquire(ctx, fn, b.Lease)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	if _, err := l2.Acquire(ctx, fn, b.Lease); !errors.Is(err, timer.ErrLeaseHeld) {
		t.Fatalf("second acquire: %v, want ErrLeaseHeld", err)
	}
	if _, err := l1.Acquire(ctx, fn, b.Lease); !errors.Is(err, timer.ErrLeaseHeld) {
		t.Fatalf("second acquire by the same host: %v, want ErrLeaseHeld", err)
	}
	if err := a.Renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	bl, err := l2.Acquire(ctx, fn, b.Lease)
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	if err := a.Renew(ctx); !errors.Is(err, timer.ErrLeaseLost) {
		t.Fatalf("renew of a released lease another host took: %v, want ErrLeaseLost", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("release of a lease no longer held: %v", err)
	}
	if _, err := l1.Acquire(ctx, fn, b.Lease); !errors.Is(err, timer.ErrLeaseHeld) {
		t.Fatalf("acquire while the other host holds it: %v", err)
	}
	// The holder stops renewing (killed): the lease is taken after it
	// expires, not before, and the old holder's renewal then fails.
	taken := time.Now()
	tick := time.NewTicker(b.Lease / 10)
	defer tick.Stop()
	var c timer.Lease
	for c == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("the expired lease was not taken within %v", 4*b.Lease)
		case <-tick.C:
		}
		c, err = l1.Acquire(ctx, fn, b.Lease)
		if err != nil && !errors.Is(err, timer.ErrLeaseHeld) {
			t.Fatalf("acquire: %v", err)
		}
	}
	if d := time.Since(taken); d < b.Lease*8/10 {
		t.Errorf("the lease was taken %v after it was last acquired, before its %v ran out", d, b.Lease)
	}
	if err := bl.Renew(ctx); !errors.Is(err, timer.ErrLeaseLost) {
		t.Errorf("renew of an expired lease another host took: %v, want ErrLeaseLost", err)
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStatusStore checks the StatusStore contract.
func TestStatusStore(t *testing.T, b Backend) {
	ctx := bounded(t, time.Minute)
	s1, s2 := b.NewStatusStore(t), b.NewStatusStore(t)
	fn, other := FunctionName(t), FunctionName(t)
	if _, err := s1.Load(ctx, fn); !errors.Is(err, timer.ErrNoStatus) {
		t.Fatalf("load of nothing: %v, want ErrNoStatus", err)
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	first := timer.Status{Next: time.Date(2026, 3, 8, 3, 30, 0, 0, ny), LastUpdated: time.Date(2026, 3, 7, 12, 0, 0, 123456000, ny)}
	if err := s1.Save(ctx, fn, first); err != nil {
		t.Fatal(err)
	}
	same := func(got, want timer.Status) bool {
		eq := func(a, b time.Time) bool { return a.IsZero() == b.IsZero() && a.Sub(b).Abs() < time.Millisecond }
		return eq(got.Last, want.Last) && eq(got.Next, want.Next) && eq(got.LastUpdated, want.LastUpdated)
	}
	if got, err := s2.Load(ctx, fn); err != nil || !same(got, first) {
		t.Fatalf("load = %+v, %v; want %+v", got, err, first)
	}
	second := timer.Status{Last: first.Next, Next: first.Next.Add(24 * time.Hour), LastUpdated: first.Next}
	if err := s2.Save(ctx, fn, second); err != nil {
		t.Fatal(err)
	}
	if got, err := s1.Load(ctx, fn); err != nil || !same(got, second) {
		t.Fatalf("load after overwrite = %+v, %v; want %+v", got, err, second)
	}
	if _, err := s1.Load(ctx, other); !errors.Is(err, timer.ErrNoStatus) {
		t.Fatalf("another function's status: %v, want ErrNoStatus", err)
	}
}

// Event is one fire seen by the runner suites.
type Event struct {
	Runner int             // which runner of the fleet fired
	Info   timer.TimerInfo // what it fired with
	At     time.Time       // when, by the real clock
}

// killable wraps a Locker so that a test can abandon its runner as a
// SIGKILL would: without releasing the lease.
type killable struct {
	timer.Locker
	killed atomic.Bool
}

func (k *killable) Acquire(ctx context.Context, fn string, d time.Duration) (timer.Lease, error) {
	l, err := k.Locker.Acquire(ctx, fn, d)
	if err != nil {
		return nil, err
	}
	return killableLease{l, k}, nil
}

type killableLease struct {
	timer.Lease
	k *killable
}

func (l killableLease) Release(ctx context.Context) error {
	if l.k.killed.Load() {
		return nil
	}
	return l.Lease.Release(ctx)
}

type fleet struct {
	t       *testing.T
	events  chan Event
	cancels []context.CancelFunc
	dones   []chan struct{}
	lockers []*killable
}

// startFleet starts n Runners for fn on a one-second schedule, each with
// its own Locker and StatusStore.
func startFleet(t *testing.T, b Backend, fn string, n int) *fleet {
	f := &fleet{t: t, events: make(chan Event, 1000)}
	sched := timer.MustParse("*/1 * * * * *", nil)
	for i := 0; i < n; i++ {
		k := &killable{Locker: b.NewLocker(t)}
		r, err := timer.NewRunner(fn, sched, timer.Options{
			Locker: k, Status: b.NewStatusStore(t), Monitor: timer.MonitorOn,
			LeaseDuration: b.Lease, AcquireInterval: b.Lease / 4,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		id := i
		go func() {
			defer close(done)
			_ = r.Run(ctx, func(_ context.Context, info timer.TimerInfo) error {
				f.events <- Event{Runner: id, Info: info, At: time.Now()}
				return nil
			})
		}()
		f.cancels, f.dones, f.lockers = append(f.cancels, cancel), append(f.dones, done), append(f.lockers, k)
	}
	t.Cleanup(f.stopAll)
	return f
}

func (f *fleet) stop(i int) {
	f.cancels[i]()
	select {
	case <-f.dones[i]:
	case <-time.After(30 * time.Second):
		f.t.Errorf("runner %d did not stop", i)
	}
}

func (f *fleet) stopAll() {
	for i := range f.cancels {
		f.stop(i)
	}
}

// next waits for the next fire until deadline.
func (f *fleet) next(deadline <-chan time.Time) (Event, bool) {
	select {
	case ev := <-f.events:
		return ev, true
	case <-deadline:
		return Event{}, false
	}
}

// checkOnce fails for an occurrence fired twice, and for gaps between the
// regular ticks (a late host collapses missed ticks; none should be).
func checkOnce(t *testing.T, evs []Event) {
	t.Helper()
	count := map[time.Time][]int{}
	var ticks []time.Time
	for _, ev := range evs {
		count[ev.Info.Next] = append(count[ev.Info.Next], ev.Runner)
		ticks = append(ticks, ev.Info.Next)
	}
	for at, by := range count {
		if len(by) > 1 {
			t.Errorf("occurrence %v fired %d times, by runners %v", at.Format(time.RFC3339Nano), len(by), by)
		}
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i].Before(ticks[j]) })
	for i := 1; i < len(ticks); i++ {
		if d := ticks[i].Sub(ticks[i-1]); d > time.Second {
			t.Errorf("ticks %v and %v: %v apart, a tick was not fired", ticks[i-1].Format(time.TimeOnly), ticks[i].Format(time.TimeOnly), d)
		}
	}
}

// TestRunners runs two and three Runners on a one-second schedule for at
// least 20 ticks and checks each tick fired exactly once; then abandons
// the lease holder without releasing (a SIGKILL) and checks that another
// fires within two lease periods, and still no tick twice. The subtests
// run in parallel.
func TestRunners(t *testing.T, b Backend) {
	for _, n := range []int{2, 3} {
		t.Run("OncePerTick/"+strconv.Itoa(n)+"Runners", func(t *testing.T) {
			t.Parallel()
			fn := FunctionName(t)
			f := startFleet(t, b, fn, n)
			deadline := time.After(2*b.Lease + 60*time.Second)
			var evs []Event
			for len(evs) < 22 {
				ev, ok := f.next(deadline)
				if !ok {
					t.Fatalf("only %d fires before the deadline", len(evs))
				}
				evs = append(evs, ev)
			}
			f.stopAll()
			for len(f.events) > 0 {
				evs = append(evs, <-f.events)
			}
			checkOnce(t, evs)
			for _, ev := range evs {
				if ev.Info.IsPastDue {
					t.Errorf("a past-due run on a fresh status: %+v", ev)
				}
			}
			// The status holds the last tick.
			last := evs[0].Info.Next
			for _, ev := range evs {
				if ev.Info.Next.After(last) {
					last = ev.Info.Next
				}
			}
			ctx := bounded(t, 30*time.Second)
			st, err := b.NewStatusStore(t).Load(ctx, fn)
			if err != nil || st.Last.Sub(last).Abs() > time.Millisecond || st.Next.Sub(last.Add(time.Second)).Abs() > time.Millisecond {
				t.Errorf("status %+v, %v; want Last %v", st, err, last)
			}
		})
	}
	t.Run("TakeoverAfterKill", func(t *testing.T) {
		t.Parallel()
		f := startFleet(t, b, FunctionName(t), 3)
		deadline := time.After(2*b.Lease + 60*time.Second)
		var evs []Event
		for len(evs) < 3 {
			ev, ok := f.next(deadline)
			if !ok {
				t.Fatalf("only %d fires before the deadline", len(evs))
			}
			evs = append(evs, ev)
		}
		leader := evs[0].Runner
		f.lockers[leader].killed.Store(true)
		f.stop(leader)
		killed := time.Now()
		for len(f.events) > 0 {
			evs = append(evs, <-f.events)
		}
		for _, ev := range evs {
			if ev.Runner != leader {
				t.Fatalf("runner %d fired while runner %d led: %+v", ev.Runner, leader, ev)
			}
		}
		var took *Event
		for took == nil {
			ev, ok := f.next(time.After(time.Until(killed.Add(2*b.Lease + 10*time.Second))))
			if !ok {
				t.Fatalf("no runner took over within %v of the kill", 2*b.Lease+10*time.Second)
			}
			evs = append(evs, ev)
			took = &ev
		}
		if d := took.At.Sub(killed); d > 2*b.Lease {
			t.Errorf("runner %d fired %v after the kill, want within two lease periods (%v)", took.Runner, d, 2*b.Lease)
		}
		if !took.Info.IsPastDue {
			t.Errorf("the takeover's first run is not the past-due catch-up: %+v", took.Info)
		}
		for i := 0; i < 3; i++ {
			ev, ok := f.next(time.After(30 * time.Second))
			if !ok {
				t.Fatal("the new leader stopped firing")
			}
			evs = append(evs, ev)
		}
		f.stopAll()
		for len(f.events) > 0 {
			evs = append(evs, <-f.events)
		}
		// Still once per occurrence; the ticks during the takeover are
		// covered by the one past-due run, so only uniqueness is checked.
		count := map[time.Time]int{}
		for _, ev := range evs {
			count[ev.Info.Next]++
			if count[ev.Info.Next] > 1 {
				t.Errorf("occurrence %v fired twice", ev.Info.Next)
			}
		}
	})
}
