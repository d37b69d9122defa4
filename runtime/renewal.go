package runtime

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/triggers"
)

// renewIn is when to renew m next, seen at now: halfway to the end of
// its lease.
func renewIn(m *triggers.Message, lease time.Duration, now time.Time) time.Duration {
	d := lease / 2
	if !m.NextVisibleTime.IsZero() {
		d = m.NextVisibleTime.Sub(now) / 2
	}
	return max(d, minRenewInterval)
}

// renewal extends the lease of the message a worker runs, halfway through
// the lease, on a timer rather than a goroutine of its own. Each worker
// has one, reused for every message and timed by a busyTimer, so a busy
// worker pays no allocation or timer operation per message.
type renewal struct {
	l      *listener
	mu     sync.Mutex // held while renewing, so end waits for a renewal under way
	timer  busyTimer
	m      *triggers.Message // the message renewed, while active
	start  time.Time
	next   time.Time // when to renew m
	active bool
	// ctx is the running function's context (nil once it returned);
	// doneAt is when renewal first saw it ended.
	ctx    context.Context
	doneAt time.Time
}

// renewGrace is how long a function may outlive its ended context (its
// timeout, or the shutdown) with its lease still renewed: past it, renewal
// stops, so a function that ignores cancellation does not hold its message
// for ever.
const renewGrace = 5 * time.Second

func (l *listener) newRenewal() *renewal {
	// A renewal is due half a lease (at least minRenewInterval) after
	// begin; the timer's period is at most a quarter lease (at most a
	// second), so an armed timer always looks in before one is due and
	// then waits for it exactly.
	r := &renewal{l: l}
	r.timer = newBusyTimer(min(max(l.fc.Queues.LeaseDuration/4, 10*time.Millisecond), time.Second), r.fire)
	return r
}

// begin renews m's lease until end; renewal stops after MaxRenewal from
// start, if set.
func (r *renewal) begin(m *triggers.Message, start time.Time) {
	r.mu.Lock()
	r.m, r.start, r.active = m, start, true
	r.ctx, r.doneAt = nil, time.Time{}
	d := renewIn(m, r.l.fc.Queues.LeaseDuration, start)
	r.next = start.Add(d)
	r.timer.arm(d)
	r.mu.Unlock()
}

// watch makes renewal stop renewGrace after ctx ends, unless returned is
// called first.
func (r *renewal) watch(ctx context.Context) {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
}

// returned says the function returned: renewal goes on until end, whatever
// its context says.
func (r *renewal) returned() {
	r.mu.Lock()
	r.ctx = nil
	r.mu.Unlock()
}

// end stops renewing; it waits for a renewal under way, so settlement uses
// the latest receipt.
func (r *renewal) end() {
	r.mu.Lock()
	r.active, r.m, r.ctx = false, nil, nil
	r.mu.Unlock()
}

func (r *renewal) fire() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.active {
		r.timer.disarm() // idle: the next begin arms it again
		return
	}
	if !r.timer.due(r.next) {
		return
	}
	now := time.Now()
	l, m := r.l, r.m
	lease, limit := l.fc.Queues.LeaseDuration, l.fc.Queues.MaxRenewal
	if limit > 0 && now.Sub(r.start) >= limit {
		l.log.Warn("lease renewal stopped: the message was held for the maximum renewal duration; another worker may receive it",
			zap.String("messageId", m.ID), zap.Duration("maxRenewal", limit))
		r.timer.disarm() // no more renewals for this message; the next begin arms again
		return
	}
	if r.ctx != nil && r.ctx.Err() != nil {
		if r.doneAt.IsZero() {
			r.doneAt = now
			if d, ok := r.ctx.Deadline(); ok && d.Before(now) && errors.Is(r.ctx.Err(), context.DeadlineExceeded) {
				r.doneAt = d // timed out: the grace counts from the timeout
			}
		}
		if now.Sub(r.doneAt) >= renewGrace {
			l.log.Warn("lease renewal stopped: the function ignores its cancelled context; another worker may receive the message",
				zap.String("messageId", m.ID), zap.Duration("grace", renewGrace), zap.NamedError("cancelled", context.Cause(r.ctx)))
			r.timer.disarm()
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	err := l.drv.ExtendLease(ctx, m, lease)
	cancel()
	if err != nil {
		l.stats.renewalErrors.Add(1)
		if errors.Is(err, triggers.ErrLeaseLost) {
			l.stats.leasesLost.Add(1)
		}
		l.log.Warn("renewing the message lease failed; another worker may receive it",
			zap.String("messageId", m.ID), zap.Error(err))
	} else {
		l.stats.renewals.Add(1)
		l.log.Debug("message lease renewed", zap.String("messageId", m.ID), zap.Time("nextVisible", m.NextVisibleTime))
	}
	now = time.Now()
	d := renewIn(m, lease, now)
	r.next = now.Add(d)
	r.timer.wait(d)
}
