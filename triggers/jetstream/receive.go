package jetstream

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jobhost/jobhost/triggers"
)

// Receive returns up to min(maxMessages, Prefetch) messages, each leased
// for lease. It waits up to ReceiveWait (shortened to fit ctx's deadline)
// for the first message and returns as soon as any are available. It
// never lets the driver hold more than Prefetch: when the driver already
// does, it waits (up to ReceiveWait) for a settlement to make room. When
// ctx ends (or the driver is closed) while it waits, it returns at once
// with ctx's error (or one wrapping triggers.ErrClosed); its pull request
// cannot be withdrawn, so it is read to its end in the background, and
// what it delivers waits in the driver, as messages pulled ahead do, for
// the next Receive (Close gives them back): nothing is left hidden for an
// ack wait, and nothing is delivered twice. Messages read before ctx ended
// but not yet returned are handed back with a Nak.
func (d *Driver) Receive(ctx context.Context, maxMessages int, lease time.Duration) ([]*triggers.Message, error) {
	if d.isClosed() {
		return nil, d.closedErr("receive from")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if maxMessages < 1 {
		return nil, nil
	}
	if lease <= 0 {
		return nil, fmt.Errorf("jetstream: receive from %s: lease %v is not positive", d.source, lease)
	}
	if !d.nc.IsConnected() {
		return nil, d.notConnected("receive from")
	}
	if err := d.setup(ctx, lease); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	roomBy := time.Now().Add(d.opts.ReceiveWait)
	var n int
	for {
		if out, used, err := d.fromAhead(ctx, maxMessages, lease); used {
			if err == nil && len(out) > 0 {
				d.refill()
			}
			return out, err
		}
		var again bool
		var err error
		if n, again, err = d.reserve(ctx, min(maxMessages, d.opts.Prefetch), roomBy); err != nil {
			return nil, err
		}
		if !again {
			break
		}
	}
	if n == 0 {
		return nil, nil // no room came within ReceiveWait
	}
	defer d.ah.leave() // Close waits: the connection outlives a Nak below
	limit := d.opts.ReceiveWait + 2*expiryGap
	if dl, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(dl)-pullGrace)
	}
	now := time.Now()
	wait := pullExpiry(now, min(d.opts.ReceiveWait, limit), limit, d.redeliveries(now))
	raw, err := d.pull(ctx, n, wait)
	// With messages in hand, a late error (the connection dropped at the
	// end of the request) recurs on the next Receive.
	out := make([]*triggers.Message, 0, len(raw))
	for _, a := range raw {
		if m := d.track(a.msg, a.at, lease); m != nil {
			out = append(out, m)
		}
	}
	d.ah.unreserve(n) // what came is held now; a drain reserved the rest
	if len(raw) == 0 {
		return nil, d.scrub(err)
	}
	if d.isClosed() {
		for _, m := range out {
			d.giveBack(m)
		}
		_ = d.nc.FlushTimeout(time.Second)
		return nil, d.closedErr("receive from")
	}
	if err := ctx.Err(); err != nil {
		for _, m := range out {
			_ = d.Retry(context.WithoutCancel(ctx), m, 0)
		}
		return nil, err
	}
	d.refill()
	return out, nil
}

// reserve counts a Receive that is to send a pull request for up to want
// messages (Close waits for leave) and returns how many it may ask for:
// want, or less to keep the driver within Prefetch. When the driver has no
// room it waits until by for a change; n is 0 when none came. again
// reports that requests sent ahead or drained are open, or messages wait
// (with a backlog it sends a request ahead itself): the caller serves
// itself from those (fromAhead).
func (d *Driver) reserve(ctx context.Context, want int, by time.Time) (n int, again bool, err error) {
	a := &d.ah
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		switch {
		case a.closed || d.isClosed():
			return 0, false, d.closedErr("receive from")
		case ctx.Err() != nil:
			return 0, false, ctx.Err()
		case a.open() || a.drains > 0 || len(a.msgs) > 0:
			return 0, true, nil
		}
		if _, _ = d.refillLocked(1, ""); a.open() {
			return 0, true, nil // a backlog: through the request sent ahead
		}
		if room := d.budget(); room > 0 {
			n = min(want, room)
			a.reserved += n
			a.pulls++
			return n, false, nil
		}
		left := time.Until(by)
		if left <= 0 {
			return 0, false, nil
		}
		if a.changed == nil {
			a.changed = make(chan struct{})
		}
		ch := a.changed
		a.waiting++
		a.mu.Unlock()
		t := time.NewTimer(left)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		case <-d.done:
		}
		t.Stop()
		a.mu.Lock()
		a.waiting--
	}
}

// unreserve gives back what reserve granted once its request is over.
func (a *ahead) unreserve(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reserved -= n
}

// leave ends what reserve began.
func (a *ahead) leave() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pulls--
	a.signal()
}

// expiryGap is how far a pull request's expiry is kept from a redelivery
// the driver expects. nats-server before 2.10.x mishandles a redelivery
// that finds only an expired (not yet removed) pull request: it delivers
// the consumer's last new message again with NumDelivered 1 and drops the
// redelivery until another AckWait has passed.
const expiryGap = 200 * time.Millisecond

// pullExpiry returns how long a pull request sent at now should wait: want,
// moved (not beyond limit, not under 10 ms) so that it does not expire
// within expiryGap of any of the given redelivery times.
func pullExpiry(now time.Time, want, limit time.Duration, redeliveries []time.Time) time.Duration {
	const floor = 10 * time.Millisecond
	want = max(want, floor)
	clear := func(w time.Duration) bool {
		for _, t := range redeliveries {
			if d := t.Sub(now.Add(w)); d > -expiryGap && d < expiryGap {
				return false
			}
		}
		return true
	}
	if clear(want) {
		return want
	}
	best, found := want, false
	for _, t := range redeliveries {
		for _, w := range []time.Duration{t.Sub(now) + expiryGap, t.Sub(now) - expiryGap} {
			if w < floor || w > max(limit, floor) || !clear(w) {
				continue
			}
			if dist, bestDist := (w - want).Abs(), (best - want).Abs(); !found || dist < bestDist || dist == bestDist && w > best {
				best, found = w, true
			}
		}
	}
	return best // want itself when no wait clears every redelivery
}

// expect records a redelivery the server will make of a message this
// driver no longer holds.
func (d *Driver) expect(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expected = append(d.expected, t)
}

// redeliveries returns the redeliveries the driver expects after now.
func (d *Driver) redeliveries(now time.Time) []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := d.expected[:0]
	for _, t := range d.expected {
		if t.After(now.Add(-expiryGap)) {
			keep = append(keep, t)
		}
	}
	d.expected = keep
	out := append([]time.Time(nil), keep...)
	for _, dl := range d.inflight {
		if due := dl.due.Load(); due != 0 {
			out = append(out, time.Unix(0, due))
		}
	}
	return out
}

// arrival is a delivered message and when it reached the driver.
type arrival struct {
	msg *nats.Msg
	at  time.Time
}

// pull sends one pull request for up to batch messages and reads it to its
// end. When ctx ends or the driver is closed first, it leaves the request
// to drain and returns ctx's error or one wrapping triggers.ErrClosed.
func (d *Driver) pull(ctx context.Context, batch int, wait time.Duration) (msgs []arrival, err error) {
	inbox := d.nc.NewInbox()
	// A channel sized to the batch: SubscribeSync would allocate nats.go's
	// 64k-slot default (512 KiB) for every pull. The server sends at most
	// batch messages and one status to this inbox.
	ch := make(chan *nats.Msg, batch+4)
	sub, err := d.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("jetstream: receive from %s: %w", d.source, err)
	}
	drained := false
	defer func() {
		if !drained {
			_ = sub.Unsubscribe()
		}
	}()
	// no_wait with expires: answer at once with what is there, or wait up
	// to expires for the first message, then end the request.
	req := fmt.Sprintf(`{"batch":%d,"expires":%d,"no_wait":true}`, batch, wait.Nanoseconds())
	start := time.Now()
	if err := d.nc.PublishRequest(d.nextSubj, inbox, []byte(req)); err != nil {
		return nil, fmt.Errorf("jetstream: receive from %s: %w", d.source, err)
	}
	end := start.Add(wait + pullGrace)
	timer := time.NewTimer(wait + pullGrace)
	defer timer.Stop()
	for len(msgs) < batch {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-timer.C:
			return msgs, nil
		case <-ctx.Done():
			drained = true
			d.drain(sub, ch, msgs, batch-len(msgs), end)
			return nil, ctx.Err()
		case <-d.done:
			drained = true
			d.drain(sub, ch, msgs, batch-len(msgs), end)
			return nil, d.closedErr("receive from")
		}
		if isDelivery(m) {
			msgs = append(msgs, arrival{m, time.Now()})
			continue
		}
		if over, err := d.status(m); over {
			return msgs, err
		}
	}
	return msgs, nil
}

// isDelivery reports whether m, received on a pull request's inbox, is a
// message rather than a status.
func isDelivery(m *nats.Msg) bool { return strings.HasPrefix(m.Reply, "$JS.ACK.") }

// status reads a status message of a pull request: over reports that the
// request has ended, err says why when that is an error.
func (d *Driver) status(m *nats.Msg) (over bool, err error) {
	code, desc := m.Header.Get("Status"), m.Header.Get("Description")
	switch code {
	case "100": // heartbeat or flow control
		return false, nil
	case "404", "408": // no (more) messages, or the request expired
		return true, nil
	case "409":
		ld := strings.ToLower(desc)
		if strings.Contains(ld, "deleted") || strings.Contains(ld, "push based") {
			d.ready.Store(false)
		}
		if strings.Contains(ld, "maxackpending") || strings.Contains(ld, "max ack pending") {
			return true, nil
		}
	case "503":
		d.ready.Store(false)
		return true, fmt.Errorf("jetstream: receive from %s: no responders (consumer missing or JetStream unavailable)", d.source)
	}
	return true, fmt.Errorf("jetstream: receive from %s: server status %s %s", d.source, code, desc)
}

// track turns a delivered message into a triggers.Message and starts its
// lease at its arrival (the server started its ack wait a network delay
// earlier: the settle margin allows for that).
func (d *Driver) track(rm *nats.Msg, start time.Time, lease time.Duration) *triggers.Message {
	meta, err := rm.Metadata()
	if err != nil {
		return nil // cannot happen for a $JS.ACK reply; redelivered after AckWait
	}
	d.backlog.Store(meta.NumPending > 0)
	dl := &delivery{d: d, msg: rm, seq: meta.Sequence.Stream, lease: lease, deadline: start.Add(lease)}
	dl.touch(start)
	id := rm.Header.Get(HeaderMsgID)
	if id == "" {
		id = strconv.FormatUint(dl.seq, 10)
	}
	m := &triggers.Message{
		ID:              id,
		Body:            rm.Data,
		DequeueCount:    int64(meta.NumDelivered),
		InsertionTime:   meta.Timestamp,
		NextVisibleTime: dl.deadline,
		Properties:      firstValues(rm.Header),
		Source:          d.source,
		DriverData:      dl,
	}
	if ma := time.Duration(d.maxAge.Load()); ma > 0 {
		m.ExpirationTime = meta.Timestamp.Add(ma)
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return m // no timers after Close; settlements fail with ErrClosed
	}
	old := d.inflight[dl.seq]
	d.inflight[dl.seq] = dl
	d.mu.Unlock()
	if old != nil {
		// The server redelivered it to us: the earlier delivery is stale.
		old.mu.Lock()
		if old.state == held {
			old.lose()
		}
		old.mu.Unlock()
	}
	dl.mu.Lock()
	dl.schedule()
	dl.mu.Unlock()
	return m
}

func firstValues(h nats.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	p := make(map[string]string, len(h))
	for k, vs := range h {
		if len(vs) > 0 {
			p[k] = vs[0]
		}
	}
	return p
}
