package jetstream

import (
	"context"
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

// aheadWait bounds how long a request sent ahead waits for messages: Close
// waits for it to end.
const aheadWait = 500 * time.Millisecond

// unleased is the lease of a message waiting in the driver: its delivery
// timer only keeps it alive (InProgress) until Receive hands it out.
const unleased = 100 * 365 * 24 * time.Hour

// ahead is the pull request sent ahead and what it has delivered.
type ahead struct {
	mu      sync.Mutex
	gen     uint64             // identifies the current request
	sub     *nats.Subscription // the current request's inbox, while open
	open    bool               // the request may still deliver
	left    int                // messages the request may still deliver
	end     time.Time          // the request is over by then at the latest
	msgs    []*triggers.Message
	changed chan struct{} // closed (and replaced) when msgs or open change
	closed  bool
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

// await waits, a.mu held, until done reports true or the request is over:
// ended by the server, or past its end (its end status never came: a
// reconnect drops requests). It returns ctx's error if ctx ends first.
func (a *ahead) await(ctx context.Context, done func() bool) error {
	for !done() && a.open {
		left := time.Until(a.end)
		if left <= 0 {
			a.finish()
			break
		}
		ch := a.changed
		a.mu.Unlock()
		t := time.NewTimer(left)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		a.mu.Lock()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

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
	code, desc := rm.Header.Get("Status"), strings.ToLower(rm.Header.Get("Description"))
	if code == "100" {
		return
	}
	if code == "503" || code == "409" && (strings.Contains(desc, "deleted") || strings.Contains(desc, "push based")) {
		d.ready.Store(false)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen == a.gen {
		a.finish()
	}
}

// fromAhead serves Receive from the request sent ahead: used is false when
// there is none. It hands out what has arrived, or waits for the request's
// first message; when the request ends empty it returns nothing (the
// caller asks again and pulls as usual).
func (d *Driver) fromAhead(ctx context.Context, maxMessages int, lease time.Duration) (out []*triggers.Message, used bool, err error) {
	a := &d.ah
	a.mu.Lock()
	if !a.open && len(a.msgs) == 0 {
		a.mu.Unlock()
		return nil, false, nil
	}
	if err := a.await(ctx, func() bool { return len(a.msgs) > 0 }); err != nil {
		a.mu.Unlock()
		return nil, true, err // what arrives later waits for the next Receive
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

// closeAhead waits for the request sent ahead to end, then gives back what
// waits. A message handed back while the request is still open at the
// server would be delivered to it again (nats-server 2.9 does not check
// that the request's inbox is still listened to).
func (d *Driver) closeAhead() {
	a := &d.ah
	a.mu.Lock()
	_ = a.await(context.Background(), func() bool { return false })
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
