package runtime

import (
	"context"
	"sync"
	"time"
)

// boundCtx is a worker's reusable context for settling its messages: a
// deadline some time after start, without the allocations and timer
// insertion of a context.WithTimeout per message (a tenth of the host's
// cost per message with an in-process queue). The worker makes one call
// with it at a time, and drivers do not keep a call's context once it has
// returned, so reusing it is safe.
//
// Its deadline is timed by a busyTimer that looks in at least every
// checkEvery: a busy worker pays no timer operation per call.
type boundCtx struct {
	mu       sync.Mutex
	deadline time.Time
	active   bool // a call is under way
	done     chan struct{}
	err      error
	timer    busyTimer
	afters   []*afterFunc // registered by contexts derived during this call
}

// checkEvery bounds how long an armed boundCtx timer sleeps.
const checkEvery = time.Second

// afterFunc is a function to run when the call's deadline passes.
type afterFunc struct {
	f    func()
	done bool // run or stopped
}

var _ context.Context = (*boundCtx)(nil)

func newBoundCtx() *boundCtx {
	c := &boundCtx{done: make(chan struct{})}
	c.timer = newBusyTimer(checkEvery, c.expire)
	return c
}

// start arms the context for a call that may take up to d.
func (c *boundCtx) start(d time.Duration) context.Context {
	c.mu.Lock()
	if c.err != nil {
		c.done, c.err = make(chan struct{}), nil
	}
	clear(c.afters) // left by contexts of earlier calls, which have returned
	c.afters = c.afters[:0]
	c.deadline = time.Now().Add(d)
	c.active = true
	c.timer.arm(d)
	c.mu.Unlock()
	return c
}

// stop ends the call.
func (c *boundCtx) stop() {
	c.mu.Lock()
	c.active = false
	c.mu.Unlock()
}

// cancel ends the call under way now, with context.Canceled (the host's
// shutdown deadline).
func (c *boundCtx) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active || c.err != nil {
		return
	}
	c.endLocked(context.Canceled)
}

// endLocked ends the call with err: Done closes and registered functions
// run.
func (c *boundCtx) endLocked(err error) {
	c.timer.disarm()
	c.err = err
	close(c.done)
	for _, a := range c.afters {
		if !a.done {
			a.done = true
			go a.f()
		}
	}
}

// expire is the timer's: it ends a call past its deadline, waits again for
// one still running, and disarms when no call is.
func (c *boundCtx) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active || c.err != nil {
		c.timer.disarm()
		return
	}
	if !c.timer.due(c.deadline) {
		return
	}
	c.endLocked(context.DeadlineExceeded)
}

// AfterFunc arranges for f to run in its own goroutine when the deadline
// passes, as context.AfterFunc does. With it, context.WithCancel and
// WithTimeout over a boundCtx (drivers derive such contexts) register here
// instead of starting a goroutine each to watch Done.
func (c *boundCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := &afterFunc{f: f}
	if c.err != nil {
		a.done = true
		go f()
	} else {
		c.afters = append(c.afters, a)
	}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if a.done {
			return false
		}
		a.done = true
		return true
	}
}

func (c *boundCtx) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

func (c *boundCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

func (c *boundCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *boundCtx) Value(any) any { return nil }
