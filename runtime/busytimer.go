package runtime

import "time"

// busyTimer times a worker's reused deadline (a settle context's end, the
// next lease renewal) without a timer operation per message: once armed
// it stays armed while the worker's calls follow each other, looks in at
// least every period and exactly at a due time that comes sooner, and
// disarms when its owner finds itself idle. Its owner's mutex guards it.
type busyTimer struct {
	t      *time.Timer
	period time.Duration
	armed  bool
}

// newBusyTimer returns a disarmed timer that calls f when it fires.
func newBusyTimer(period time.Duration, f func()) busyTimer {
	t := time.AfterFunc(time.Hour, f)
	t.Stop()
	return busyTimer{t: t, period: period}
}

// arm makes sure the timer fires within d, if it is not armed already
// (then it fires within period, which the owner keeps no longer than d).
func (b *busyTimer) arm(d time.Duration) {
	if !b.armed {
		b.armed = true
		b.t.Reset(min(d, b.period))
	}
}

// wait fires the timer again within d (and within period).
func (b *busyTimer) wait(d time.Duration) { b.t.Reset(min(d, b.period)) }

// due, called when the timer fires, reports whether at has come; if not,
// it waits again for it.
func (b *busyTimer) due(at time.Time) bool {
	if left := time.Until(at); left > 0 {
		b.wait(left)
		return false
	}
	return true
}

// disarm records, when the timer has fired, that it will not fire again
// until armed.
func (b *busyTimer) disarm() { b.armed = false }
