// Package timertest helps test timer code: a fake Clock driven by the test,
// and conformance suites for timer.Locker and timer.StatusStore
// implementations that also run Runners against them on the real clock.
package timertest

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/jobhost/jobhost/timer"
)

// Clock is a fake timer.Clock: time moves only when the test advances it.
// It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed chan struct{} // closed and replaced when timers change
}

// NewClock returns a fake clock reading now.
func NewClock(now time.Time) *Clock {
	return &Clock{now: now, changed: make(chan struct{})}
}

type fakeTimer struct {
	c        *Clock
	deadline time.Time
	ch       chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			t.c.notify()
			return true
		}
	}
	return false
}

// Now implements timer.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements timer.Clock. A timer for d <= 0 fires at once.
func (c *Clock) NewTimer(d time.Duration) timer.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, deadline: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	c.notify()
	return t
}

// notify wakes BlockUntil callers; c.mu is held.
func (c *Clock) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Pending returns how many timers wait to fire.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// BlockUntil waits until at least n timers are pending, or ctx ends (then
// it returns ctx's error).
func (c *Clock) BlockUntil(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		if len(c.timers) >= n {
			c.mu.Unlock()
			return nil
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// AdvanceTo moves the clock to t (never backwards), firing the timers due
// by then in deadline order, each with the clock reading its deadline.
func (c *Clock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].deadline.Before(c.timers[j].deadline) })
		if len(c.timers) == 0 || c.timers[0].deadline.After(t) {
			break
		}
		x := c.timers[0]
		c.timers = c.timers[1:]
		if x.deadline.After(c.now) {
			c.now = x.deadline
		}
		x.ch <- c.now
		c.notify()
	}
	if t.After(c.now) {
		c.now = t
	}
}

// Advance moves the clock forward by d (see AdvanceTo).
func (c *Clock) Advance(d time.Duration) { c.AdvanceTo(c.Now().Add(d)) }

// AdvanceToNext moves the clock to the earliest pending timer's deadline
// and fires it (and any others due then); it returns the new time, or
// false when no timer is pending.
func (c *Clock) AdvanceToNext() (time.Time, bool) {
	c.mu.Lock()
	if len(c.timers) == 0 {
		c.mu.Unlock()
		return time.Time{}, false
	}
	next := c.timers[0].deadline
	for _, x := range c.timers[1:] {
		if x.deadline.Before(next) {
			next = x.deadline
		}
	}
	c.mu.Unlock()
	c.AdvanceTo(next)
	return next, true
}
