package jetstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jobhost/jobhost/triggers"
)

// delivery is one delivery of a message to this driver, and its lease.
type delivery struct {
	d   *Driver
	msg *nats.Msg
	seq uint64

	mu       sync.Mutex
	state    int
	lease    time.Duration
	deadline time.Time    // the lease ends
	touched  time.Time    // when the server (re)started its AckWait clock, as seen here
	due      atomic.Int64 // touched + AckWait (unix ns): when the server would redeliver
	timer    *time.Timer
}

const (
	held = iota
	settled
	lost
)

// touch records that the server restarted the message's AckWait clock.
// dl.mu is held (or dl is not yet shared).
func (dl *delivery) touch(t time.Time) {
	dl.touched = t
	dl.due.Store(t.Add(dl.d.currentAckWait()).UnixNano())
}

// schedule arms the timer for the lease's end, or for the next InProgress
// when the lease outlasts the server's AckWait. dl.mu is held.
func (dl *delivery) schedule() {
	next := dl.deadline
	aw := dl.d.currentAckWait()
	if dl.deadline.After(dl.touched.Add(aw)) {
		next = dl.touched.Add(aw / 2)
	}
	wait := max(time.Until(next), 0)
	if dl.timer == nil {
		dl.timer = time.AfterFunc(wait, dl.fire)
	} else {
		dl.timer.Reset(wait)
	}
}

func (dl *delivery) fire() {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.state != held {
		return
	}
	now := time.Now()
	if !now.Before(dl.deadline) {
		dl.expire(now)
		return
	}
	aw := dl.d.currentAckWait()
	if !now.Before(dl.touched.Add(aw)) {
		dl.lose() // the server redelivers it
		dl.d.expect(dl.touched.Add(aw))
		return
	}
	if dl.deadline.After(dl.touched.Add(aw)) && !now.Before(dl.touched.Add(aw/2)) {
		ctx, cancel := context.WithTimeout(context.Background(), min(aw/4, 5*time.Second))
		err := dl.d.reply(ctx, dl, ackProgress)
		cancel()
		switch {
		case err == nil:
			dl.touch(now)
		case errors.Is(err, triggers.ErrLeaseLost):
			dl.lose()
			return
		default: // try again shortly
			dl.timer.Reset(min(aw/8, time.Second))
			return
		}
	}
	dl.schedule()
}

// expire ends the lease; if the server would keep the message hidden
// noticeably longer, it is Nak'ed so that it is redelivered now. dl.mu is
// held.
func (dl *delivery) expire(now time.Time) {
	dl.lose()
	if dl.touched.Add(dl.d.currentAckWait()).Sub(now) >= nakAhead {
		if dl.d.nc.Publish(dl.msg.Reply, ackNak) == nil {
			return
		}
	}
	dl.d.expect(dl.touched.Add(dl.d.currentAckWait()))
}

// lose marks the delivery as no longer ours. dl.mu is held.
func (dl *delivery) lose() {
	dl.state = lost
	dl.stopTimer()
	dl.d.forget(dl)
}

// settle marks the delivery as settled. dl.mu is held.
func (dl *delivery) settle() {
	dl.state = settled
	dl.stopTimer()
	dl.d.forget(dl)
}

func (dl *delivery) stopTimer() {
	if dl.timer != nil {
		dl.timer.Stop()
	}
}
