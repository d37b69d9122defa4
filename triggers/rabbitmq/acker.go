package rabbitmq

import (
	"errors"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DefaultAckDelay is Options.AckDelay when it is zero.
const DefaultAckDelay = 2 * time.Millisecond

// errAckerClosed is the acker's error once its session is shut down.
var errAckerClosed = errors.New("consumer channel closed")

// acker coalesces the acknowledgements of Complete on one consumer channel
// into basic.ack frames with multiple=true.
//
// Such a frame acknowledges every delivery up to its tag that the broker
// still counts as unacknowledged, so it may only be sent for a tag below
// every delivery still held (received and not settled by this driver) and
// below every delivery not yet seen by the driver. Delivery tags on a
// channel run 1, 2, 3, …; the acker learns each as Receive takes it
// (register) and keeps the held ones and the lowest tag not yet seen
// (next). A completed delivery whose tag is below both is acknowledged at
// once, together with every completed one below it, in one frame. One
// above a held delivery waits (pending) for it to be settled, but never
// longer than delay after that delivery was received: then the pending
// ones are acknowledged one by one. So a slow function holds back the acks
// of the deliveries after it for at most delay.
//
// Retry, DeadLetter and Release send their own frames (basic.nack, or
// basic.ack once their copy is confirmed) and only then tell the acker
// (settled): a frame for a later tag never overtakes theirs, so a coalesced
// ack cannot acknowledge a delivery that was to be requeued or
// dead-lettered. shutdown sends what is pending before the channel closes.
// An ack that never reaches the broker (the connection drops first) means
// the delivery is requeued and delivered again, as with any unacknowledged
// delivery: at least once, never a loss.
type acker struct {
	ch    acknowledger
	delay time.Duration // < 0: no coalescing (every Complete acks at once)

	mu      sync.Mutex
	next    uint64    // the lowest tag not yet registered
	early   []uint64  // registered tags above next (concurrent Receives)
	held    []heldTag // registered, not settled
	pending []uint64  // completed, ack not yet sent
	timer   *time.Timer
	closed  bool
}

// acknowledger sends basic.ack: an *amqp.Channel.
type acknowledger interface {
	Ack(tag uint64, multiple bool) error
}

var _ acknowledger = (*amqp.Channel)(nil)

type heldTag struct {
	tag uint64
	at  time.Time // when it was received
}

func newAcker(ch acknowledger, delay time.Duration) *acker {
	return &acker{ch: ch, delay: delay, next: 1}
}

// register records a delivery taken from the channel at time at.
func (a *acker) register(tag uint64, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held = append(a.held, heldTag{tag, at})
	switch {
	case tag == a.next:
		a.next++
		for i := 0; i < len(a.early); {
			if a.early[i] == a.next {
				a.next++
				a.early[i] = a.early[len(a.early)-1]
				a.early = a.early[:len(a.early)-1]
				i = 0
				continue
			}
			i++
		}
	case tag > a.next:
		a.early = append(a.early, tag)
	}
}

// unhold removes tag from the held deliveries. a.mu is held.
func (a *acker) unhold(tag uint64) {
	for i, h := range a.held {
		if h.tag == tag {
			a.held[i] = a.held[len(a.held)-1]
			a.held = a.held[:len(a.held)-1]
			return
		}
	}
}

// barrier returns the lowest tag a multiple ack must stay below, and when
// the delivery holding it was received (zero when it is not yet seen).
// a.mu is held.
func (a *acker) barrier() (uint64, time.Time) {
	b, at := a.next, time.Time{}
	for _, h := range a.held {
		if h.tag < b {
			b, at = h.tag, h.at
		}
	}
	return b, at
}

// complete acknowledges tag, at once or coalesced (see acker). The error
// is that of a frame sent now: the channel is closed.
func (a *acker) complete(tag uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errAckerClosed
	}
	a.unhold(tag)
	if a.delay < 0 {
		return a.ch.Ack(tag, false)
	}
	a.pending = append(a.pending, tag)
	return a.flush(time.Time{})
}

// settled records that tag was settled by a frame of its own (nack, or
// the ack of Retry, DeadLetter or Release), already sent.
func (a *acker) settled(tag uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unhold(tag)
	if !a.closed && len(a.pending) > 0 {
		_ = a.flush(time.Time{}) // a failure: the channel is closed, the broker requeues
	}
}

// flush sends one multiple ack for the pending tags below the barrier. The
// others are sent one by one when the barrier's delivery was received at
// least delay before now (now zero: read the clock only if needed);
// otherwise the timer is armed for then. a.mu is held.
func (a *acker) flush(now time.Time) error {
	b, at := a.barrier()
	var top uint64
	n := 0
	rest := a.pending[:0]
	for _, t := range a.pending {
		if t < b {
			top = max(top, t)
			n++
		} else {
			rest = append(rest, t)
		}
	}
	a.pending = rest
	var err error
	if n > 0 {
		err = a.ch.Ack(top, n > 1)
	}
	if len(a.pending) == 0 {
		a.stopTimer()
		return err
	}
	if now.IsZero() {
		now = time.Now()
	}
	if at.IsZero() {
		at = now // not yet seen: a Receive is registering it
	}
	if wait := at.Add(a.delay).Sub(now); wait > 0 {
		a.armTimer(wait)
		return err
	}
	for _, t := range a.pending {
		if e := a.ch.Ack(t, false); e != nil && err == nil {
			err = e
		}
	}
	a.pending = a.pending[:0]
	a.stopTimer()
	return err
}

func (a *acker) armTimer(wait time.Duration) {
	if a.timer == nil {
		a.timer = time.AfterFunc(wait, a.fire)
		return
	}
	a.timer.Reset(wait)
}

func (a *acker) stopTimer() {
	if a.timer != nil {
		a.timer.Stop()
	}
}

// fire sends the pending acks whose wait is over.
func (a *acker) fire() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || len(a.pending) == 0 {
		return
	}
	_ = a.flush(time.Now()) // a failure: the channel is closed, the broker requeues
}

// close sends every pending ack (when send is true: the channel is about
// to be closed in order) and makes later completes fail. It returns the
// first error of a frame.
func (a *acker) close(send bool) error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	a.stopTimer()
	var err error
	if send && len(a.pending) > 0 {
		// Everything held is given back when the channel closes: ack the
		// completed ones one by one, below and above held ones alike.
		for _, t := range a.pending {
			if e := a.ch.Ack(t, false); e != nil && err == nil {
				err = e
			}
		}
	}
	a.pending = nil
	return err
}
