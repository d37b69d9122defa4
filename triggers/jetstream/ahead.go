package jetstream

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jobhost/jobhost/triggers"
)

// Pulling ahead. While the consumer has a backlog (the last delivery said
// more messages were waiting), the driver keeps pull requests open for
// what it may still hold: Prefetch less the messages it holds (handed out
// or waiting) and those its open requests may still deliver. A message
// counts as freed once its settlement is sent. Requests go out as
// settlements free a quarter of Prefetch, and from Receive when nothing
// waits. The ack (Complete, not awaited) that frees that much carries the
// request itself (+NXT, ackRefill), so the server acks and pulls in one
// pass; an awaited ack or a Retry sends its request just before the
// settlement, so that the two round trips overlap (a settlement that
// fails leaves the driver one over until that message's lease ends).
// Several requests may be open, and
// as the server spreads deliveries over them, they are counted together.
// Messages that arrive before the next Receive wait in the driver. The
// server's MaxAckPending is consumer-wide (all workers); Prefetch, per
// driver, is kept by these requests alone. A waiting message is kept from
// redelivery by InProgress every AckWait/2, and its lease starts when
// Receive hands it out. A request waits at most aheadWait; Close waits for
// the requests to end and then hands waiting messages back with a Nak
// (their delivery counts in NumDelivered, like any redelivery).
//
// A Receive that ends before its pull request does (its context ended, or
// the driver was closed) leaves the request to a goroutine that reads it
// to its end (drain): what it delivers waits in the driver in the same way.

// aheadWait bounds how long a request sent ahead waits for messages: Close
// waits for it to end.
const aheadWait = 500 * time.Millisecond

// refillParts: on a settlement, a request is sent ahead once the room is
// at least Prefetch/refillParts, so that acknowledgements freeing room one
// by one do not cost a pull request each (Receive, finding nothing
// waiting, sends one for any room).
const refillParts = 4

// unleased is the lease of a message waiting in the driver: its delivery
// timer only keeps it alive (InProgress) until Receive hands it out.
const unleased = 100 * 365 * 24 * time.Hour

// ahead is the pull request sent ahead, the requests being drained, and
// the messages they delivered.
type ahead struct {
	mu       sync.Mutex
	sub      *nats.Subscription // <prefix>.*: replies to requests sent ahead, once one was sent
	prefix   string
	gen      uint64               // numbers the requests sent ahead (reply subject <prefix>.<gen>)
	reqs     map[uint64]time.Time // the open requests sent ahead: when each is over at the latest
	left     int                  // messages they may still deliver, together
	reserved int                  // messages the Receives' and drains' requests may still deliver
	pulls    int                  // Receives reading a request, and drains
	drains   int                  // requests being drained (drain)
	waiting  int                  // Receives waiting for room (reserve)
	msgs     []*triggers.Message
	changed  chan struct{} // closed (and replaced) when msgs, reqs, pulls, drains or room change
	closed   bool
	reqBuf   []byte // the last request's body, reused (nats.go copies it)
}

// signal wakes a Receive waiting on the request. a.mu is held.
func (a *ahead) signal() {
	if a.changed != nil {
		close(a.changed)
	}
	a.changed = make(chan struct{})
}

// open reports whether requests sent ahead may still deliver. a.mu is held.
func (a *ahead) open() bool { return len(a.reqs) > 0 }

// ended removes a request sent ahead that the server ended with rest of
// its messages undelivered. a.mu is held.
func (a *ahead) ended(gen uint64, rest int) {
	if _, ok := a.reqs[gen]; !ok {
		return
	}
	delete(a.reqs, gen)
	a.left -= min(rest, a.left)
	if len(a.reqs) == 0 || a.left == 0 {
		clear(a.reqs) // nothing more to come: the others were filled
		a.left = 0
	}
	a.signal()
}

// endAll ends the requests sent ahead. a.mu is held.
func (a *ahead) endAll() {
	if len(a.reqs) > 0 {
		clear(a.reqs)
		a.left = 0
		a.signal()
	}
}

// expire ends the requests sent ahead that are past their end: filled
// (the server sends no status after a full batch) or whose end status
// never came (a reconnect drops requests). It returns the earliest end of
// the others. a.mu is held.
func (a *ahead) expire(now time.Time) (next time.Time) {
	n := len(a.reqs)
	for g, end := range a.reqs {
		switch {
		case !now.Before(end):
			delete(a.reqs, g)
		case next.IsZero() || end.Before(next):
			next = end
		}
	}
	if len(a.reqs) < n {
		if len(a.reqs) == 0 {
			a.left = 0 // what an unfinished one would still deliver is unknown
		}
		a.signal()
	}
	return next
}

// await waits, a.mu held, until done reports true. Requests sent ahead
// are ended once past their end (expire); done must become true when
// nothing is open, drained or pulled. It returns ctx's error if ctx ends first, and errStopped if stop
// is closed first.
func (a *ahead) await(ctx context.Context, stop <-chan struct{}, done func() bool) error {
	for !done() {
		var expired <-chan time.Time
		var t *time.Timer
		if a.open() {
			next := a.expire(time.Now())
			if !a.open() {
				continue
			}
			t = time.NewTimer(time.Until(next))
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

// budget is how many more messages the driver may request: Prefetch less
// those it holds (a message being settled no longer counts) and those its
// open requests may still deliver. a.mu is held.
func (d *Driver) budget() int {
	a := &d.ah
	n := d.opts.Prefetch - a.reserved - a.left
	d.mu.Lock()
	n -= len(d.inflight) - int(d.settling.Load())
	d.mu.Unlock()
	return n
}

// refill pulls ahead if it can (refillLocked) and wakes a Receive waiting
// for room. It is called when the driver may hold more: after Receive
// handed messages out and as a Retry or an awaited ack is sent.
func (d *Driver) refill() {
	a := &d.ah
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiting > 0 {
		a.signal()
	}
	_, _ = d.refillLocked(d.opts.Prefetch/refillParts, "")
}

// ackRefill acknowledges a message whose ack is not awaited. When that
// ack frees a quarter of Prefetch or more and the consumer has a backlog,
// the request for the room goes in the ack itself: "+NXT {batch,
// expires}" to the message's ack subject, which the server handles as an
// ack followed by a pull request answered to the reply subject (one of the
// requests sent ahead). Otherwise it sends a plain +ACK. It wakes a
// Receive waiting for room. An error means nothing was sent.
//
// A request for every freed message (+NXT of one per ack) was measured
// slower in bench scenario d (about 27,000 against 29,000 msg/s): the
// server then answers one message per request instead of a quarter of
// Prefetch in one go.
func (d *Driver) ackRefill(ackSubj string) error {
	a := &d.ah
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiting > 0 {
		a.signal()
	}
	if sent, err := d.refillLocked(d.opts.Prefetch/refillParts, ackSubj); sent || err != nil {
		return err
	}
	return d.nc.Publish(ackSubj, ackAck)
}

// refillLocked sends a request ahead for the driver's budget when that is
// at least least and the consumer has a backlog: to the consumer's
// request subject, or, when ackSubj is set, as a +NXT to that ack subject
// (an ack carrying the request). sent reports that it went out; err is
// the publish's error (nothing was sent). a.mu is held.
func (d *Driver) refillLocked(least int, ackSubj string) (sent bool, err error) {
	a := &d.ah
	if a.closed || !d.backlog.Load() || d.isClosed() || !d.nc.IsConnected() {
		return false, nil
	}
	if a.open() {
		a.expire(time.Now())
	}
	batch := d.budget()
	if batch <= 0 || batch < least {
		return false, nil // Receive asks for what little room there is
	}
	if a.sub == nil {
		prefix := d.nc.NewInbox()
		sub, err := d.nc.Subscribe(prefix+".*", d.onAhead)
		if err != nil {
			return false, nil // Receive pulls as usual
		}
		sub.SetPendingLimits(-1, -1) // bounded by the requests' batches
		a.sub, a.prefix = sub, prefix
	}
	now := time.Now()
	want := min(d.opts.ReceiveWait, aheadWait)
	wait := pullExpiry(now, want, want+2*expiryGap, d.redeliveries(now))
	if a.changed == nil {
		a.changed = make(chan struct{})
	}
	a.gen++
	reply := a.prefix + "." + strconv.FormatUint(a.gen, 10)
	// Without no_wait the server keeps the request until it has sent batch
	// messages or it expires.
	req := a.reqBuf[:0]
	subj := d.nextSubj
	if ackSubj != "" {
		req, subj = append(req, "+NXT "...), ackSubj
	}
	req = append(req, `{"batch":`...)
	req = strconv.AppendInt(req, int64(batch), 10)
	req = append(req, `,"expires":`...)
	req = strconv.AppendInt(req, wait.Nanoseconds(), 10)
	req = append(req, '}')
	a.reqBuf = req
	if err := d.nc.PublishRequest(subj, reply, req); err != nil {
		return false, err
	}
	if a.reqs == nil {
		a.reqs = map[uint64]time.Time{}
	}
	a.reqs[a.gen] = now.Add(wait + pullGrace)
	a.left += batch
	a.signal()
	return true, nil
}

// onAhead handles what the server sends to requests sent ahead; it runs on
// their subscription's goroutine. A delivery keeps the stream message's
// subject and the server spreads deliveries over the open requests, so
// they are counted together; a status comes to its request's own reply
// subject and says how many it did not deliver (Nats-Pending-Messages).
func (d *Driver) onAhead(rm *nats.Msg) {
	a := &d.ah
	if isDelivery(rm) {
		m := d.track(rm, time.Now(), unleased)
		if m == nil {
			return
		}
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			d.giveBack(m)
			return
		}
		a.msgs = append(a.msgs, m)
		if a.left > 0 {
			if a.left--; a.left == 0 {
				a.endAll() // all filled
			}
		}
		a.signal()
		a.mu.Unlock()
		return
	}
	if over, _ := d.status(rm); !over {
		return
	}
	gen, _ := strconv.ParseUint(rm.Subject[strings.LastIndexByte(rm.Subject, '.')+1:], 10, 64)
	rest, _ := strconv.Atoi(rm.Header.Get("Nats-Pending-Messages"))
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.reqs[gen]; ok {
		// Nothing more for now (or MaxAckPending reached): Receive pulls
		// as usual until a delivery reports a backlog again.
		d.backlog.Store(false)
		a.ended(gen, rest)
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
	a.reserved += left
	a.mu.Unlock()
	for _, g := range got {
		d.keep(g.msg, g.at, false)
	}
	go func() {
		defer func() {
			_ = sub.Unsubscribe()
			a.mu.Lock()
			a.pulls--
			a.drains--
			a.reserved -= left
			a.signal()
			a.mu.Unlock()
		}()
		t := time.NewTimer(time.Until(end))
		defer t.Stop()
		for left > 0 {
			select {
			case m := <-ch:
				if isDelivery(m) {
					d.keep(m, time.Now(), true)
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

// keep makes a message that arrived at time at wait in the driver;
// reserved says it was counted in ah.reserved, which it leaves.
func (d *Driver) keep(rm *nats.Msg, at time.Time, reserved bool) {
	m := d.track(rm, at, unleased)
	a := &d.ah
	a.mu.Lock()
	if reserved {
		a.reserved--
	}
	if m == nil {
		a.mu.Unlock()
		return
	}
	if a.closed {
		a.mu.Unlock()
		d.giveBack(m)
		return
	}
	a.msgs = append(a.msgs, m)
	a.signal()
	a.mu.Unlock()
}

// fromAhead serves Receive from the request sent ahead and the requests
// being drained: used is false when there are none. It hands out what has
// arrived, or waits for the requests' first message; when they end empty
// it returns nothing (the caller asks again and pulls as usual).
func (d *Driver) fromAhead(ctx context.Context, maxMessages int, lease time.Duration) (out []*triggers.Message, used bool, err error) {
	a := &d.ah
	a.mu.Lock()
	if !a.open() && a.drains == 0 && len(a.msgs) == 0 {
		a.mu.Unlock()
		return nil, false, nil
	}
	err = a.await(ctx, d.done, func() bool { return len(a.msgs) > 0 || !a.open() && a.drains == 0 })
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
	_ = a.await(context.Background(), nil, func() bool { return !a.open() && a.pulls == 0 })
	a.closed = true
	a.endAll()
	if a.sub != nil {
		_ = a.sub.Unsubscribe()
	}
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
