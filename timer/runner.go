package timer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Monitor says whether a Runner keeps a schedule status (Functions'
// UseMonitor).
type Monitor int

const (
	// MonitorDefault keeps a status unless the schedule fires more than
	// once a minute, as Functions does.
	MonitorDefault Monitor = iota
	// MonitorOn keeps a status whatever the schedule (Functions turns it
	// off for sub-minute schedules even when asked; jobhost honours it).
	MonitorOn
	// MonitorOff keeps none: no catch-up after downtime.
	MonitorOff
)

// Defaults of Options, those of Functions' listener lock.
const (
	DefaultLeaseDuration   = 60 * time.Second
	DefaultAcquireInterval = time.Minute
)

// Options configure a Runner.
type Options struct {
	// Locker gives the singleton lease. Nil means no lease: the Runner
	// always fires (one host only).
	Locker Locker
	// Status keeps the schedule status; nil means no monitor.
	Status StatusStore
	// Monitor says whether to use Status (default: on unless the schedule
	// fires more than once a minute).
	Monitor Monitor
	// RunOnStartup fires once when the Runner first holds the lease,
	// unless a past-due run does.
	RunOnStartup bool
	// LeaseDuration is the lease's length (default 60 s); RenewInterval
	// how often it is renewed (default half of it); AcquireInterval how
	// often a Runner without the lease tries to take it (default a
	// minute).
	LeaseDuration, RenewInterval, AcquireInterval time.Duration
	// Clock is the time source (default the real clock).
	Clock Clock
	// Logger receives the Runner's logs (default none).
	Logger *zap.Logger
	// OnLeadership, if set, is called from Run's goroutine when the
	// Runner takes the lease (true) and when it stops holding it (false:
	// lost, or released at the end): for logs, metrics and tests. It must
	// not block. Without a Locker it reports true once and false at the
	// end.
	OnLeadership func(held bool)
}

// FireFunc runs the timer function for one occurrence. Its error is
// logged; the next occurrence runs as usual.
type FireFunc func(ctx context.Context, info TimerInfo) error

// Runner runs one timer function: it holds the function's lease, waits
// for each occurrence by its clock, fires, and saves the status after
// the function completes. See Run.
type Runner struct {
	function string
	sched    *Schedule
	o        Options
	monitor  bool
	log      *zap.Logger
}

// NewRunner returns a Runner for function (its name, as in the status
// and lock paths) on schedule s.
func NewRunner(function string, s *Schedule, o Options) (*Runner, error) {
	if function == "" || s == nil {
		return nil, errors.New("timer: a runner needs a function name and a schedule")
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RenewInterval <= 0 {
		o.RenewInterval = o.LeaseDuration / 2
	}
	if o.RenewInterval >= o.LeaseDuration {
		return nil, fmt.Errorf("timer: renew interval %v must be shorter than the lease (%v)", o.RenewInterval, o.LeaseDuration)
	}
	if o.AcquireInterval <= 0 {
		o.AcquireInterval = DefaultAcquireInterval
	}
	if o.Clock == nil {
		o.Clock = RealClock()
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	monitor := o.Status != nil && (o.Monitor == MonitorOn || (o.Monitor == MonitorDefault && !s.FiresMoreThanOncePerMinute()))
	return &Runner{function: function, sched: s, o: o, monitor: monitor,
		log: log.With(zap.String("function", function), zap.String("schedule", s.String()))}, nil
}

// UsesMonitor reports whether the Runner keeps a schedule status.
func (r *Runner) UsesMonitor() bool { return r.monitor }

// Run fires the function until ctx ends, then releases the lease and
// returns nil (an error only for a nil fire).
//
// It first takes the lease, retrying every AcquireInterval while another
// host holds it. Holding it, it decides from the stored status (Decide):
// one past-due run if an occurrence was missed, else the RunOnStartup run
// if asked for (first leadership of this Run only); then it fires each
// occurrence when its clock reaches it. The status is saved after each
// run, failed or not — except when ctx was cancelled during a run that
// failed, so that a run cut short by shutdown is caught up (past due) by
// the next host, as a crash would be. fire gets ctx, not the lease: a lease
// lost while the function runs does not cancel it.
//
// When a renewal fails, or the lease's time runs out before a renewal
// succeeds, the Runner stops firing at once, saves nothing more, and goes
// back to waiting for the lease.
func (r *Runner) Run(ctx context.Context, fire FireFunc) error {
	if fire == nil {
		return errors.New("timer: nil fire function")
	}
	startup := r.o.RunOnStartup
	for {
		h := r.acquire(ctx)
		if h == nil {
			return nil
		}
		r.leadership(true)
		r.lead(ctx, h, fire, startup)
		startup = false
		h.stopRenewing()
		if ctx.Err() != nil {
			h.release(r)
			r.leadership(false)
			return nil
		}
		r.leadership(false)
		r.log.Warn("timer lease lost: stopped firing; waiting to take it again")
	}
}

func (r *Runner) leadership(held bool) {
	if r.o.OnLeadership != nil {
		r.o.OnLeadership(held)
	}
}

// holding is a held lease (or none, without a Locker) and its renewer.
type holding struct {
	lease Lease // nil without a Locker

	mu         sync.Mutex
	validUntil time.Time
	lost       chan struct{}
	lostOnce   sync.Once

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func (h *holding) markLost() { h.lostOnce.Do(func() { close(h.lost) }) }

// valid reports whether the lease is still ours at now.
func (h *holding) valid(now time.Time) bool {
	if h.lease == nil {
		return true
	}
	select {
	case <-h.lost:
		return false
	default:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return now.Before(h.validUntil)
}

func (h *holding) stopRenewing() {
	h.stopOnce.Do(func() { close(h.stop) })
	<-h.done
}

func (h *holding) release(r *Runner) {
	if h.lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.lease.Release(ctx); err != nil {
		r.log.Warn("timer lease release failed; it expires by itself", zap.Error(err))
	}
}

// acquire takes the lease, retrying until ctx ends (then nil).
func (r *Runner) acquire(ctx context.Context) *holding {
	h := &holding{lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	if r.o.Locker == nil {
		close(h.done)
		return h
	}
	waiting := false
	for {
		t0 := r.o.Clock.Now()
		lease, err := r.o.Locker.Acquire(ctx, r.function, r.o.LeaseDuration)
		if err == nil {
			h.lease, h.validUntil = lease, t0.Add(r.o.LeaseDuration)
			r.log.Info("timer lease acquired: this host fires the timer")
			go r.renew(h)
			return h
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, ErrLeaseHeld) {
			r.log.Warn("timer lease acquire failed", zap.Error(err))
		} else if !waiting {
			r.log.Info("timer lease held by another host; retrying", zap.Duration("every", r.o.AcquireInterval))
		}
		waiting = true
		t := r.o.Clock.NewTimer(r.o.AcquireInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// renew renews h's lease every RenewInterval until stopped or lost.
func (r *Runner) renew(h *holding) {
	defer close(h.done)
	for {
		t := r.o.Clock.NewTimer(r.o.RenewInterval)
		select {
		case <-h.stop:
			t.Stop()
			return
		case <-t.C():
		}
		t0 := r.o.Clock.Now()
		ctx, cancel := context.WithTimeout(context.Background(), r.o.RenewInterval)
		err := h.lease.Renew(ctx)
		cancel()
		if err != nil {
			r.log.Warn("timer lease renewal failed", zap.Error(err))
			h.markLost()
			return
		}
		h.mu.Lock()
		h.validUntil = t0.Add(r.o.LeaseDuration)
		h.mu.Unlock()
	}
}

// lead fires occurrences while h is held and ctx lasts.
func (r *Runner) lead(ctx context.Context, h *holding, fire FireFunc, startup bool) {
	st, pastDue := r.begin(ctx)
	info := TimerInfo{Schedule: r.sched.String(), Last: st.Last, Next: st.Next}
	var ok bool
	switch {
	case pastDue:
		r.log.Info("timer past due: running once now", zap.Time("missed", st.Next))
		info.IsPastDue = true
		if st, ok = r.invoke(ctx, h, fire, info, time.Time{}); !ok {
			return
		}
	case startup:
		r.log.Info("timer runs on startup")
		info.RunOnStartup = true
		if st, ok = r.invoke(ctx, h, fire, info, time.Time{}); !ok {
			return
		}
	}
	for {
		if st.Next.IsZero() {
			r.log.Warn("timer schedule has no further occurrence")
			select {
			case <-ctx.Done():
			case <-h.lost:
			}
			return
		}
		t := r.o.Clock.NewTimer(st.Next.Sub(r.o.Clock.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-h.lost:
			t.Stop()
			return
		case <-t.C():
		}
		if !h.valid(r.o.Clock.Now()) {
			return
		}
		info := TimerInfo{Schedule: r.sched.String(), Last: st.Last, Next: st.Next}
		if st, ok = r.invoke(ctx, h, fire, info, info.Next); !ok {
			return
		}
	}
}

// begin returns the status to start from and whether an occurrence is
// past due, loading and saving the status when the monitor is on.
func (r *Runner) begin(ctx context.Context) (Status, bool) {
	now := r.o.Clock.Now().In(r.sched.Location())
	fresh := Status{Next: r.sched.Next(now), LastUpdated: now}
	if !r.monitor {
		return fresh, false
	}
	stored, err := r.o.Status.Load(ctx, r.function)
	var sp *Status
	switch {
	case err == nil:
		sp = &stored
	case errors.Is(err, ErrNoStatus):
	default:
		r.log.Error("timer status could not be read: no past-due check this time", zap.Error(err))
		return fresh, false
	}
	d := Decide(r.sched, sp, now)
	if d.Changed {
		r.log.Info("timer schedule changed since the status was saved: status reset, no past-due run")
	}
	if d.Save {
		r.save(ctx, d.Status)
	}
	return d.Status, d.PastDue
}

// invoke fires once and saves the status after. scheduled is the
// occurrence (zero for a past-due or startup run: the time it starts). It
// reports false when the lease was lost meanwhile or ctx ended.
func (r *Runner) invoke(ctx context.Context, h *holding, fire FireFunc, info TimerInfo, scheduled time.Time) (Status, bool) {
	started := r.o.Clock.Now()
	if scheduled.IsZero() {
		scheduled = started
	}
	err := call(ctx, fire, info)
	if err != nil {
		r.log.Error("timer function failed; the next occurrence runs as usual", zap.Time("occurrence", info.Next), zap.Error(err))
	}
	st := After(r.sched, scheduled, r.o.Clock.Now())
	if !h.valid(r.o.Clock.Now()) {
		return st, false // the status may be another host's by now
	}
	if ctx.Err() != nil && err != nil {
		return st, false // cut short by shutdown: the next host catches it up
	}
	if r.monitor {
		r.save(ctx, st)
	}
	return st, ctx.Err() == nil
}

// save writes the status, best effort, even while ctx ends.
func (r *Runner) save(ctx context.Context, st Status) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.o.Status.Save(sctx, r.function, st.In(r.sched.Location())); err != nil {
		r.log.Error("timer status could not be saved", zap.Error(err))
	}
}

// call runs fire, turning a panic into an error.
func call(ctx context.Context, fire FireFunc, info TimerInfo) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("timer function panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return fire(ctx, info)
}
