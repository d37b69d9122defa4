package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jobhost/jobhost/triggers"
)

// Pulling ahead. When Receive hands out a full batch and the server said
// more messages were waiting, the driver sends the next pull request at
// once, so that the next batch is on its way while this one runs: the
// server fills it as acknowledgements free MaxAckPending slots. Messages
// that arrive before the next Receive wait in the driver; MaxAckPending
// (Prefetch) bounds them together with those handed out. A waiting message
// is kept from redelivery by InProgress every AckWait/2, and its lease
// starts when Receive hands it out. The request waits at most aheadWait;
// Close waits for it to end and then hands waiting messages back with a
// Nak (their delivery counts in NumDelivered, like any redelivery).
//
// A Receive that ends before its pull request does (its context ended, or
// the driver was closed) leaves the request to a goroutine that reads it
// to its end (drain): what it delivers waits in the driver in the same way.

// aheadWait bounds how long a request sent ahead waits for messages: Close
// waits for it to end.
const aheadWait = 500 * time.Millisecond

// unleased is the lease of a message waiting in the driver: its delivery
// timer only keeps it alive (InProgress) until Receive hands it out.
const unleased = 100 * 365 * 24 * time.Hour

// ahead is the pull request sent ahead, the requests being drained, and
// the messages they delivered.
type ahead struct {
	mu      sync.Mutex
	gen     uint64             // identifies the current request sent ahead
	sub     *nats.Subscription // the current request's inbox, while open
	open    bool               // the request sent ahead may still deliver
	left    int                // messages the request may still deliver
	end     time.Time          // the request is over by then at the latest
	pulls   int                // Receives reading a request, and drains
	drains  int                // requests being drained (drain)
	msgs    []*triggers.Message
	changed chan struct{} // closed (and replaced) when msgs, open, pulls or drains change
	closed  bool
}

// enter counts a Receive that reads a pull request; it reports false once
// Close has given back what waits (Close waits for the count to fall to
// zero first).
func (a *ahead) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.pulls++
	return true
}

// leave ends what enter began.
func (a *ahead) leave() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pulls--
	a.signal()
}

// signal wakes a Receive waiting on the request. a.mu is held.
func (a *ahead) signal() {
	if a.changed != nil {
		close(a.changed)
	}
	a.changed = make(chan struct{})
}

// finish ends the current request. a.mu is held.
func (a *ahead) finish() {
	if a.sub != nil {
		_ = a.sub.Unsubscribe()
		a.sub = nil
	}
	if a.open {
		a.open = false
		a.signal()
	}
}

// await waits, a.mu held, until done reports true. The request sent ahead
// is ended once past its end (its end status never came: a reconnect
// drops requests); done must become true when nothing is open, drained or
// pulled. It returns ctx's error if ctx ends first, and errStopped if stop
// is closed first.
func (a *ahead) await(ctx context.Context, stop <-chan struct{}, done func() bool) error {
	for !done() {
		var expired <-chan time.Time
		var t *time.Timer
		if a.open {
			left := time.Until(a.end)
			if left <= 0 {
				a.finish()
				continue
			}
			t = time.NewTimer(left)
			expired = t.C
		}
		if a.changed == nil {
			a.changed = make(chan struct{})
		}
		ch := a.changed
		a.mu.Unlock()
		stopped := false
		select {
		case <-ch:
		case <-expired:
		case <-ctx.Done():
		case <-stop:
			stopped = true
		}
		if t != nil {
			t.Stop()
		}
		a.mu.Lock()
		if err := ctx.Err(); err != nil {
			return err
		}
		if stopped {
			return errStopped
		}
	}
	return nil
}

// errStopped is await's error when its stop channel was closed.
var errStopped = errors.New("stopped")

// maybeAhead pulls ahead after Receive handed out out, when that was a full
// batch and the server had more messages for the consumer.
func (d *Driver) maybeAhead(out []*triggers.Message, maxMessages int, lease time.Duration) {
	if len(out) == 0 || len(out) < min(maxMessages, d.opts.Prefetch) {
		return
	}
	dl, ok := out[len(out)-1].DriverData.(*delivery)
	if !ok || dl.pending == 0 {
		return
	}
	a := &d.ah
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.open || a.closed || !d.nc.IsConnected() {
		return
	}
	now := time.Now()
	want := min(d.opts.ReceiveWait, aheadWait)
	wait := pullExpiry(now, want, want+2*expiryGap, d.redeliveries(now))
	if a.changed == nil {
		a.changed = make(chan struct{})
	}
	a.gen++
	gen := a.gen
	inbox := d.nc.NewInbox()
	sub, err := d.nc.Subscribe(inbox, func(m *nats.Msg) { d.onAhead(gen, m) })
	if err != nil {
		return // Receive pulls as usual
	}
	sub.SetPendingLimits(-1, -1) // the server sends at most batch messages and a status
	// Without no_wait the server keeps the request until it has sent batch
	// messages or it expires, delivering as MaxAckPending allows.
	req := fmt.Sprintf(`{"batch":%d,"expires":%d}`, d.opts.Prefetch, wait.Nanoseconds())
	if err := d.nc.PublishRequest(d.nextSubj, inbox, []byte(req)); err != nil {
		_ = sub.Unsubscribe()
		return
	}
	a.sub, a.open, a.left, a.end = sub, true, d.opts.Prefetch, now.Add(wait+pullGrace)
}

// onAhead handles what the server sends to a request sent ahead; it runs
// on the request's subscription goroutine.
func (d *Driver) onAhead(gen uint64, rm *nats.Msg) {
	a := &d.ah
	if strings.HasPrefix(rm.Reply, "$JS.ACK.") {
		m := d.track(rm, time.Now(), unleased)
		if m == nil {
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.closed {
			d.giveBack(m)
			return
		}
		a.msgs = append(a.msgs, m)
		if gen == a.gen {
			if a.left--; a.left <= 0 {
				a.finish()
			}
		}
		a.signal()
		return
	}
	if over, _ := d.status(rm); !over {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen == a.gen {
		a.finish()
	}
}

// drain reads the rest of a pull request whose Receive ended first, in a
// goroutine, until the server ends it: got (read already) and what it
// delivers wait in the driver for the next Receive, like messages pulled
// ahead. left is how many more it may deliver, end when it is over at the
// latest.
func (d *Driver) drain(sub *nats.Subscription, ch <-chan *nats.Msg, got []arrival, left int, end time.Time) {
	a := &d.ah
	a.mu.Lock()
	a.pulls++
	a.drains++
	a.mu.Unlock()
	for _, g := range got {
		d.keep(g.msg, g.at)
	}
	go func() {
		defer func() {
			_ = sub.Unsubscribe()
			a.mu.Lock()
			a.pulls--
			a.drains--
			a.signal()
			a.mu.Unlock()
		}()
		t := time.NewTimer(time.Until(end))
		defer t.Stop()
		for left > 0 {
			select {
			case m := <-ch:
				if isDelivery(m) {
					d.keep(m, time.Now())
					left--
				} else if over, _ := d.status(m); over {
					return
				}
			case <-t.C:
				return
			}
		}
	}()
}

// keep makes a message that arrived at time at wait in the driver.
func (d *Driver) keep(rm *nats.Msg, at time.Time) {
	m := d.track(rm, at, unleased)
	if m == nil {
		return
	}
	a := &d.ah
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		d.giveBack(m)
		return
	}
	a.msgs = append(a.msgs, m)
	a.signal()
}

// fromAhead serves Receive from the request sent ahead and the requests
// being drained: used is false when there are none. It hands out what has
// arrived, or waits for the requests' first message; when they end empty
// it returns nothing (the caller asks again and pulls as usual).
func (d *Driver) fromAhead(ctx context.Context, maxMessages int, lease time.Duration) (out []*triggers.Message, used bool, err error) {
	a := &d.ah
	a.mu.Lock()
	if !a.open && a.drains == 0 && len(a.msgs) == 0 {
		a.mu.Unlock()
		return nil, false, nil
	}
	err = a.await(ctx, d.done, func() bool { return len(a.msgs) > 0 || !a.open && a.drains == 0 })
	if errors.Is(err, errStopped) || err == nil && d.isClosed() {
		err = d.closedErr("receive from") // Close gives back what waits
	}
	if err != nil {
		a.mu.Unlock()
		return nil, true, err // what arrives later waits for the next Receive, or Close
	}
	k := min(len(a.msgs), maxMessages)
	taken := a.msgs[:k:k]
	a.msgs = a.msgs[k:]
	a.mu.Unlock()
	now := time.Now()
	for _, m := range taken {
		if d.activate(m, lease, now) {
			out = append(out, m)
		}
	}
	return out, true, nil
}

// activate starts the lease of a message that waited in the driver; it
// reports false when the driver lost it meanwhile.
func (d *Driver) activate(m *triggers.Message, lease time.Duration, now time.Time) bool {
	dl := m.DriverData.(*delivery)
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.state != held {
		return false
	}
	dl.lease, dl.deadline = lease, now.Add(lease)
	m.NextVisibleTime = dl.deadline
	dl.schedule()
	return true
}

// giveBack Naks a message that waited in the driver, so that the server
// redelivers it now.
func (d *Driver) giveBack(m *triggers.Message) {
	dl := m.DriverData.(*delivery)
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.state != held {
		return
	}
	dl.settle()
	_ = d.nc.Publish(dl.msg.Reply, ackNak)
}

// closeAhead waits for the request sent ahead, the requests being drained
// and the Receives reading a request to end, then gives back what waits. A
// message handed back while its request is still open at the server would
// be delivered to it again (nats-server 2.9 does not check that the
// request's inbox is still listened to).
func (d *Driver) closeAhead() {
	a := &d.ah
	a.mu.Lock()
	_ = a.await(context.Background(), nil, func() bool { return !a.open && a.pulls == 0 })
	a.closed = true
	a.finish()
	waiting := a.msgs
	a.msgs = nil
	a.mu.Unlock()
	for _, m := range waiting {
		d.giveBack(m)
	}
	if len(waiting) > 0 {
		_ = d.nc.FlushTimeout(time.Second)
	}
}
