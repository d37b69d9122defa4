package runtime

import (
	"context"
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
}

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
	d := renewIn(m, r.l.fc.Queues.LeaseDuration, start)
	r.next = start.Add(d)
	r.timer.arm(d)
	r.mu.Unlock()
}

// end stops renewing; it waits for a renewal under way, so settlement uses
// the latest receipt.
func (r *renewal) end() {
	r.mu.Lock()
	r.active, r.m = false, nil
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
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	err := l.drv.ExtendLease(ctx, m, lease)
	cancel()
	if err != nil {
		l.log.Warn("renewing the message lease failed; another worker may receive it",
			zap.String("messageId", m.ID), zap.Error(err))
	} else {
		l.log.Debug("message lease renewed", zap.String("messageId", m.ID), zap.Time("nextVisible", m.NextVisibleTime))
	}
	now = time.Now()
	d := renewIn(m, lease, now)
	r.next = now.Add(d)
	r.timer.wait(d)
}
