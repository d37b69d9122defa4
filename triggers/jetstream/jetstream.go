// Package jetstream is the jobhost trigger driver for one NATS JetStream
// durable pull consumer, URL scheme nats:// (see OptionsFromURL and OpenURL).
//
// Engine choice: gocloud's natspubsub v0.46 is core NATS only. The JetStream
// driver github.com/pitabwire/natspubsub v0.7.12 sits behind gocloud's
// Subscription, which prefetches and buffers (and it keeps a half-read Fetch
// batch across calls), so buffered messages outlive their ack wait; its Ack
// is fire-and-forget with errors dropped, Nack is a plain Nak, InProgress,
// Term and NumDelivered are reachable only through As, headers are
// URL-unescaped on receive, and dial errors quote the URL with credentials.
// This package uses nats.go directly: pull requests it controls, nothing
// buffered beyond MaxAckPending and nothing left to expire in a buffer,
// broker-native NumDelivered, NakWithDelay, InProgress and Term, and
// acknowledgements that wait for the server's reply.
//
// # Semantics
//
//   - Receive sends one pull request {batch, expires, no_wait} and reads it to
//     its end: the server answers at once with what is available, or waits up
//     to ReceiveWait (2 s) for the first message. At most min(max, Prefetch)
//     messages are returned; the consumer's MaxAckPending is Prefetch, so the
//     server never lets this durable (all its workers together) hold more
//     unacknowledged messages. Messages retried with a delay stay "pending"
//     on the server until redelivered and count against MaxAckPending.
//   - Pulling ahead: when Receive returns a full batch and the server said
//     more messages were waiting, the driver at once sends a request for
//     Prefetch more (waiting up to 500 ms), which the server fills as
//     acknowledgements free MaxAckPending slots; the next Receive returns
//     those without a round trip. Such a message waits in the driver with
//     InProgress sent every AckWait/2 (so it is not redelivered and its
//     NumDelivered does not grow), and its lease starts when Receive hands
//     it out. Close waits for that request to end, then Naks what is still
//     waiting, so another worker gets it at once (with NumDelivered one
//     more). A backlog therefore flows without a gap between batches.
//   - ID is the Nats-Msg-Id header when the message has one, else the stream
//     sequence in decimal. DequeueCount is the server's NumDelivered, which
//     survives restarts and is shared by all workers. InsertionTime is the
//     stream timestamp; ExpirationTime is InsertionTime + the stream's MaxAge
//     (zero without one). Properties are the headers (first value of each).
//     Source is "<stream>/<consumer>".
//   - Leases. A consumer the driver creates gets AckWait = the lease of the
//     first Receive (at least 1 s); the runtime always passes the same lease,
//     so the server redelivers an abandoned message (crashed worker) when its
//     lease ends, as WebJobs does. An existing consumer keeps its AckWait
//     (so workers with other leases do not change it under each other),
//     unless Options.AckWait is set; to apply a new lease to a durable,
//     set AckWait or delete the consumer. A lease shorter than AckWait is
//     enforced by the driver: when it ends, the driver Naks the message. A
//     lease longer than AckWait (Receive or ExtendLease) is kept by the
//     driver sending InProgress every AckWait/2; if the worker dies, the
//     server redelivers within AckWait. (InProgress alone only restarts the
//     AckWait clock; it cannot set another length.) A Nak delay is counted
//     by the server from AckWait, so changing AckWait shifts pending delays.
//   - JetStream accepts an ack for a message from any earlier delivery of it
//     (it acks by stream sequence), so settling a message after its lease
//     could remove a message another worker now holds. The driver refuses:
//     once a lease (or the server's ack wait) has run out, or the same driver
//     has received the message again, Complete, Retry, ExtendLease and
//     DeadLetter return an error wrapping triggers.ErrLeaseLost without
//     contacting the server, as do repeated settlements. A settlement the
//     server has no consumer for (no responders) also maps to ErrLeaseLost.
//   - Complete acks and waits for the server's reply. Retry(delay) is a Nak
//     (NakWithDelay when delay > 0); the next delivery's NumDelivered is one
//     more. ExtendLease sends InProgress and waits for the reply.
//   - DeadLetter publishes body and headers unchanged to the poison subject
//     (minus publish-control headers Nats-Expected-*, Nats-Rollup, Nats-TTL,
//     Nats-Batch-*, Nats-Schedule*, Nats-Incr, Nats-Required-Api-Level), adds
//     Jobhost-Reason, Jobhost-Source and Jobhost-Source-Sequence, and a
//     Nats-Msg-Id of "<stream>:<seq>" when the message has none (so a repeated
//     DeadLetter is de-duplicated by the poison stream); it waits for the
//     publish ack, then Terms the original so JetStream stops redelivering it.
//     The poison subject (default "<subject>-poison") is captured by whichever
//     stream already captures it, or by a stream "<STREAM>_POISON" (file
//     storage, limits retention, no limits) that the driver creates, or adds
//     the subject to, on first use. A poison subject that the trigger's own
//     consumer would receive is refused.
//   - A missing stream makes Receive fail with an error wrapping
//     triggers.ErrNotFound, unless CreateIfMissing, which creates a
//     file-storage stream with work-queue retention (Complete deletes the
//     message, like a queue; the server then allows one consumer per
//     subject) capturing the filter subject, or the stream name when there
//     is no filter subject. The durable consumer is created
//     (explicit ack, MaxDeliver unlimited: the runtime decides when to poison)
//     or updated (AckWait, MaxAckPending) on the first Receive, and again
//     after the server reports it missing. An existing consumer must be a
//     pull consumer with explicit ack, the same filter subject and no BackOff.
//   - The driver's connection reconnects for ever; while it is down, Receive
//     and settlements fail (nothing is buffered for later), then work again.
//     Server URLs are never shown with their credentials.
//
// Server quirks (nats-server 2.9.10): a Nak with delay keeps the message
// pending (it counts against MaxAckPending until redelivered); an ack is
// answered even when the message was not pending, so a late ack cannot be
// detected from the reply; a redelivery that finds only an expired, not yet
// removed pull request makes the server deliver the consumer's last new
// message again with NumDelivered 1 (fixed in later 2.10 releases): Receive
// keeps its requests from expiring near the redeliveries it can foresee;
// creating a stream while the account's last stream is being deleted fails
// with "error creating store for stream" (10049), which the driver retries.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/jobhost/jobhost/triggers"
)

// ErrNoPoison is returned (wrapped) by DeadLetter when the driver has no
// poison subject. The message is left in place.
var ErrNoPoison = errors.New("no poison subject")

var errClosed = errors.New("jetstream: driver is closed")

const (
	// opTimeout bounds a settlement whose context has no deadline.
	opTimeout = 10 * time.Second
	// pullGrace is how long past a pull request's expiry Receive waits for
	// the server's end-of-request status.
	pullGrace = time.Second
	// nakAhead: when a lease ends this long or more before the server's ack
	// wait would, the driver Naks the message at once.
	nakAhead = 250 * time.Millisecond
	// maxSettleMargin: a settlement this close to the end of a lease is
	// refused, as its reply could reach the server after a redelivery.
	maxSettleMargin = 100 * time.Millisecond
	// reasonLimit bounds the Jobhost-Reason header.
	reasonLimit = 1024
)

// Acknowledgement bodies (JetStream's protocol).
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
	ackTerm     = []byte("+TERM")
)

// Driver is a triggers.Driver for one JetStream durable pull consumer. It is
// safe for concurrent use.
type Driver struct {
	opts     Options
	nc       *nats.Conn
	ownsConn bool
	js       natsjs.JetStream
	server   string   // redacted server URL, for errors
	secrets  []string // credentials to scrub from error text
	source   string   // "<stream>/<consumer>"
	nextSubj string   // the consumer's pull request subject

	lastErr atomic.Pointer[string] // last connection error, scrubbed

	setupMu sync.Mutex // serialises consumer set-up (held across API calls)
	ready   atomic.Bool
	ackWait atomic.Int64 // the consumer's AckWait (ns), once set up
	maxAge  atomic.Int64 // the stream's MaxAge (ns)

	poisonMu    sync.Mutex
	poisonReady bool

	ah ahead // the pull request sent ahead (ahead.go)

	mu       sync.Mutex
	inflight map[uint64]*delivery // by stream sequence
	expected []time.Time          // server redeliveries of messages no longer held
	closed   bool
}

var (
	_ triggers.Driver      = (*Driver)(nil)
	_ triggers.Waiter      = (*Driver)(nil)
	_ triggers.OpenURLFunc = OpenURL
)

// OpenURL opens a driver for a trigger URL (see OptionsFromURL):
//
//	nats://orders?stream=ORDERS          stream ORDERS, filter subject orders, consumer orders
//	nats://orders.*?stream=ORDERS&consumer=billing&poison=orders-failed
//	nats://ORDERS                        stream ORDERS, no filter, consumer jobhost-ORDERS
//	nats://ORDERS?subject=orders.new     stream ORDERS, filter orders.new, consumer orders_new
//
// The server URL (nats://[user:password@]host:port, several separated by
// commas) is read from the app setting o.Connection names, or from
// NATS_SERVER_URL when o.Connection is empty. o.PoisonName overrides the
// default poison subject (it may not contradict poison=), o.Prefetch becomes
// MaxAckPending and o.CreateIfMissing creates a missing stream.
func OpenURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Driver, error) {
	opts, err := parseURL(u)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if o.PoisonName != "" {
		if opts.PoisonSubject != "" && opts.PoisonSubject != o.PoisonName {
			return nil, fmt.Errorf("jetstream: URL %q: poison=%s contradicts the configured poison name %q", u.Redacted(), opts.PoisonSubject, o.PoisonName)
		}
		opts.PoisonSubject = o.PoisonName
	}
	opts.Prefetch = o.Prefetch
	opts.CreateIfMissing = o.CreateIfMissing
	setting := ServerURLSetting
	if o.Connection != "" {
		setting = o.Connection
	}
	server, ok := triggers.LookupSetting(o.Lookup, setting)
	if !ok {
		return nil, fmt.Errorf("jetstream: no NATS server URL for %s: app setting %q is not set (it holds nats://host:4222)", u.Redacted(), setting)
	}
	d, err := Open(ctx, server, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (server URL from app setting %q)", err, setting)
	}
	return d, nil
}

// Open connects to serverURL and returns a driver for opts. The
// connection is made in the background and retried for ever: Open fails only
// on invalid options or URL; Receive reports an unreachable server. The
// driver owns the connection and closes it in Close.
func Open(ctx context.Context, serverURL string, opts Options) (*Driver, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	opts, err := opts.normalize()
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	redacted, secrets, err := redactServerURL(serverURL)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	d := newDriver(opts)
	d.server, d.secrets = redacted, secrets
	nopts := []nats.Option{
		nats.Name("jobhost " + d.source),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		// Nothing is queued while disconnected: a pull request sent late
		// would deliver messages to a receiver that has gone.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { d.noteErr(err) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { d.noteErr(err) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { d.noteErr(err) }),
	}
	nc, err := nats.Connect(serverURL, append(nopts, opts.NATSOptions...)...)
	if err != nil {
		return nil, d.scrub(fmt.Errorf("jetstream: connect to %s: %w", redacted, err))
	}
	if err := d.attach(nc); err != nil {
		nc.Close()
		return nil, err
	}
	d.ownsConn = true
	return d, nil
}

// New returns a driver for opts on an existing connection, which the
// driver does not close. The connection should not buffer publishes while
// reconnecting (nats.ReconnectBufSize(-1)).
func New(nc *nats.Conn, opts Options) (*Driver, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	d := newDriver(opts)
	d.server = nc.ConnectedUrlRedacted()
	if err := d.attach(nc); err != nil {
		return nil, err
	}
	return d, nil
}

func newDriver(opts Options) *Driver {
	return &Driver{
		opts:     opts,
		source:   opts.Stream + "/" + opts.Consumer,
		nextSubj: "$JS.API.CONSUMER.MSG.NEXT." + opts.Stream + "." + opts.Consumer,
		inflight: map[uint64]*delivery{},
	}
}

func (d *Driver) attach(nc *nats.Conn) error {
	js, err := natsjs.New(nc)
	if err != nil {
		return d.scrub(fmt.Errorf("jetstream: %w", err))
	}
	d.nc, d.js = nc, js
	return nil
}

// Stream, Consumer and Subject return the driver's stream, durable consumer
// and filter subject.
func (d *Driver) Stream() string   { return d.opts.Stream }
func (d *Driver) Consumer() string { return d.opts.Consumer }
func (d *Driver) Subject() string  { return d.opts.Subject }

// Conn returns the driver's NATS connection.
func (d *Driver) Conn() *nats.Conn { return d.nc }

// PoisonDestination returns the poison subject, or "" when there is none.
func (d *Driver) PoisonDestination() string { return d.opts.PoisonSubject }

// ReceiveWaits reports that Receive waits (up to ReceiveWait) for messages.
func (d *Driver) ReceiveWaits() bool { return true }

// Close gives back messages pulled ahead and not yet handed out (after
// the request sent ahead ends, at most about a second), stops the
// driver's lease timers and closes its connection if Open made it.
// Messages handed out and not settled are left to the server, which
// redelivers them when their ack wait ends.
func (d *Driver) Close() error {
	d.closeAhead()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	held := d.inflight
	d.inflight = nil
	d.mu.Unlock()
	for _, dl := range held {
		dl.mu.Lock()
		dl.state = lost // a timer already running sees this and stops
		dl.stopTimer()
		dl.mu.Unlock()
	}
	if d.ownsConn {
		d.nc.Close()
	}
	return nil
}

func (d *Driver) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

func (d *Driver) currentAckWait() time.Duration { return time.Duration(d.ackWait.Load()) }

// Receive returns up to min(maxMessages, Prefetch) messages, each leased
// for lease. It waits up to ReceiveWait (shortened to fit ctx's deadline)
// for the first message and returns as soon as any are available. It does
// not abandon a pull request when ctx ends (its messages would be hidden
// for a whole ack wait): messages that arrive after ctx ended are handed
// back with a Nak and ctx's error is returned.
func (d *Driver) Receive(ctx context.Context, maxMessages int, lease time.Duration) ([]*triggers.Message, error) {
	if d.isClosed() {
		return nil, errClosed
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
		return nil, err
	}
	if out, used, err := d.fromAhead(ctx, maxMessages, lease); used {
		if err == nil {
			d.maybeAhead(out, maxMessages, lease)
		}
		return out, err
	}
	limit := d.opts.ReceiveWait + 2*expiryGap
	if dl, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(dl)-pullGrace)
	}
	now := time.Now()
	wait := pullExpiry(now, min(d.opts.ReceiveWait, limit), limit, d.redeliveries(now))
	raw, err := d.pull(min(maxMessages, d.opts.Prefetch), wait)
	if len(raw) == 0 {
		return nil, d.scrub(err)
	}
	// With messages in hand, a late error (the connection dropped at the
	// end of the request) recurs on the next Receive.
	out := make([]*triggers.Message, 0, len(raw))
	for _, a := range raw {
		if m := d.track(a.msg, a.at, lease); m != nil {
			out = append(out, m)
		}
	}
	if err := ctx.Err(); err != nil {
		for _, m := range out {
			_ = d.Retry(context.WithoutCancel(ctx), m, 0)
		}
		return nil, err
	}
	d.maybeAhead(out, maxMessages, lease)
	return out, nil
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
// end.
func (d *Driver) pull(batch int, wait time.Duration) (msgs []arrival, err error) {
	inbox := d.nc.NewInbox()
	// A channel sized to the batch: SubscribeSync would allocate nats.go's
	// 64k-slot default (512 KiB) for every pull. The server sends at most
	// batch messages and one status to this inbox.
	ch := make(chan *nats.Msg, batch+4)
	sub, err := d.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("jetstream: receive from %s: %w", d.source, err)
	}
	defer sub.Unsubscribe()
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
		left := time.Until(end)
		if left <= 0 {
			return msgs, nil
		}
		timer.Reset(left)
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-timer.C:
			return msgs, nil
		}
		if strings.HasPrefix(m.Reply, "$JS.ACK.") {
			msgs = append(msgs, arrival{m, time.Now()})
			continue
		}
		code, desc := m.Header.Get("Status"), m.Header.Get("Description")
		switch code {
		case "100": // heartbeat or flow control
			continue
		case "404", "408": // no (more) messages, or the request expired
			return msgs, nil
		case "409":
			ld := strings.ToLower(desc)
			if strings.Contains(ld, "deleted") || strings.Contains(ld, "push based") {
				d.ready.Store(false)
			}
			if strings.Contains(ld, "maxackpending") || strings.Contains(ld, "max ack pending") {
				return msgs, nil
			}
		case "503":
			d.ready.Store(false)
			return msgs, fmt.Errorf("jetstream: receive from %s: no responders (consumer missing or JetStream unavailable)", d.source)
		}
		return msgs, fmt.Errorf("jetstream: receive from %s: server status %s %s", d.source, code, desc)
	}
	return msgs, nil
}

// track turns a delivered message into a triggers.Message and starts its
// lease at its arrival (the server started its ack wait a network delay
// earlier: the settle margin allows for that).
func (d *Driver) track(rm *nats.Msg, start time.Time, lease time.Duration) *triggers.Message {
	meta, err := rm.Metadata()
	if err != nil {
		return nil // cannot happen for a $JS.ACK reply; redelivered after AckWait
	}
	dl := &delivery{d: d, msg: rm, seq: meta.Sequence.Stream, pending: meta.NumPending, lease: lease, deadline: start.Add(lease)}
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
		return m // no timers after Close; settlements fail with errClosed
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

// Complete acknowledges the message and waits for the server's reply.
func (d *Driver) Complete(ctx context.Context, m *triggers.Message) error {
	dl, err := d.hold(m, "complete")
	if err != nil {
		return err
	}
	defer dl.mu.Unlock()
	if err := d.reply(ctx, dl, ackAck); err != nil {
		return d.msgErr("complete", m, err)
	}
	dl.settle()
	return nil
}

// Retry Naks the message, with the given delay when it is positive. The
// message stays pending on the server (counting against MaxAckPending)
// until it is redelivered.
func (d *Driver) Retry(ctx context.Context, m *triggers.Message, delay time.Duration) error {
	dl, err := d.hold(m, "retry")
	if err != nil {
		return err
	}
	defer dl.mu.Unlock()
	body := ackNak
	if delay > 0 {
		body = fmt.Appendf(nil, `-NAK {"delay":%d}`, delay.Nanoseconds())
	}
	sent := time.Now()
	if err := d.reply(ctx, dl, body); err != nil {
		return d.msgErr("retry", m, err)
	}
	dl.settle()
	if delay > 0 {
		d.expect(sent.Add(delay))
	}
	return nil
}

// ExtendLease sends InProgress, which restarts the server's AckWait clock,
// and keeps the message leased for lease from now (see the package doc for
// leases longer than AckWait). m.NextVisibleTime is updated.
func (d *Driver) ExtendLease(ctx context.Context, m *triggers.Message, lease time.Duration) error {
	if lease <= 0 {
		return fmt.Errorf("jetstream: extend lease of message %s: lease %v is not positive", m.ID, lease)
	}
	dl, err := d.hold(m, "extend lease of")
	if err != nil {
		return err
	}
	defer dl.mu.Unlock()
	sent := time.Now()
	if err := d.reply(ctx, dl, ackProgress); err != nil {
		return d.msgErr("extend lease of", m, err)
	}
	dl.touch(sent)
	dl.deadline, dl.lease = sent.Add(lease), lease
	m.NextVisibleTime = dl.deadline
	dl.schedule()
	return nil
}

// DeadLetter copies the message to the poison subject and then terminates
// the original (see the package doc). It returns the copy's ID (its
// Nats-Msg-Id). If the copy cannot be made the original is left as it is;
// if the copy was made but the Term failed, the copy's ID is returned with
// the error (the original is redelivered later and a second DeadLetter is
// de-duplicated by Nats-Msg-Id within the poison stream's duplicate window).
func (d *Driver) DeadLetter(ctx context.Context, m *triggers.Message, reason string) (string, error) {
	if d.opts.PoisonSubject == "" {
		return "", fmt.Errorf("jetstream: dead-letter message %s from %s: %w", m.ID, d.source, ErrNoPoison)
	}
	dl, err := d.hold(m, "dead-letter")
	if err != nil {
		return "", err
	}
	defer dl.mu.Unlock()
	if err := d.ensurePoison(ctx); err != nil {
		return "", err
	}
	cp := &nats.Msg{
		Subject: d.opts.PoisonSubject,
		Data:    dl.msg.Data,
		Header:  poisonHeader(dl.msg.Header, reason, d.source, d.opts.Stream, dl.seq),
	}
	pctx, cancel := withTimeout(ctx)
	_, err = d.js.PublishMsg(pctx, cp)
	cancel()
	if err != nil {
		return "", d.scrub(fmt.Errorf("jetstream: dead-letter message %s from %s: publish to %q: %w (the message was left in place)", m.ID, d.source, d.opts.PoisonSubject, err))
	}
	pid := cp.Header.Get(HeaderMsgID)
	if err := d.reply(ctx, dl, ackTerm); err != nil {
		return pid, d.msgErr("terminate (after copying it to "+d.opts.PoisonSubject+")", m, err)
	}
	dl.settle()
	return pid, nil
}

// publishControl reports headers that would make the poison publish
// conditional or change the poison stream, not describe the message.
func publishControl(k string) bool {
	k = strings.ToLower(k)
	for _, p := range []string{"nats-expected-", "nats-batch-", "nats-schedule"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	switch k {
	case "nats-rollup", "nats-ttl", "nats-incr", "nats-required-api-level":
		return true
	}
	return false
}

func poisonHeader(h nats.Header, reason, source, stream string, seq uint64) nats.Header {
	out := nats.Header{}
	for k, vs := range h {
		if !publishControl(k) {
			out[k] = append([]string(nil), vs...)
		}
	}
	if out.Get(HeaderMsgID) == "" {
		out.Set(HeaderMsgID, stream+":"+strconv.FormatUint(seq, 10))
	}
	if r := cleanReason(reason); r != "" {
		out.Set(HeaderReason, r)
	}
	out.Set(HeaderSource, source)
	out.Set(HeaderSourceSequence, strconv.FormatUint(seq, 10))
	return out
}

// cleanReason makes reason a valid one-line header value of bounded size.
func cleanReason(r string) string {
	r = strings.TrimSpace(strings.Map(func(c rune) rune {
		if c == '\r' || c == '\n' || c < ' ' && c != '\t' {
			return ' '
		}
		return c
	}, r))
	if len(r) > reasonLimit {
		r = r[:reasonLimit]
		for !utf8.ValidString(r) {
			r = r[:len(r)-1]
		}
	}
	return r
}

// reply sends an acknowledgement and waits for the server's answer.
func (d *Driver) reply(ctx context.Context, dl *delivery, body []byte) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := d.nc.RequestWithContext(ctx, dl.msg.Reply, body)
	if errors.Is(err, nats.ErrNoResponders) {
		// Nobody serves the ack subject: the consumer is gone.
		return fmt.Errorf("%w (the consumer no longer exists)", triggers.ErrLeaseLost)
	}
	return err
}

// withTimeout bounds ctx by opTimeout when it has no deadline of its own.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, opTimeout)
}

// hold returns m's delivery, locked, if this driver still holds it.
func (d *Driver) hold(m *triggers.Message, op string) (*delivery, error) {
	dl, ok := m.DriverData.(*delivery)
	if !ok || dl == nil || dl.d != d {
		return nil, fmt.Errorf("jetstream: %s message %s: it was not received by this driver (%s)", op, m.ID, d.source)
	}
	if d.isClosed() {
		return nil, fmt.Errorf("jetstream: %s message %s: %w", op, m.ID, errClosed)
	}
	dl.mu.Lock()
	why := ""
	switch dl.state {
	case settled:
		why = "it was already settled"
	case lost:
		why = "its lease ended or it was delivered again"
	default:
		now := time.Now()
		margin := min(maxSettleMargin, dl.lease/4)
		switch {
		case !now.Add(margin).Before(dl.deadline):
			why = fmt.Sprintf("its lease ended at %s", dl.deadline.Format(time.RFC3339Nano))
			dl.expire(now)
		case !now.Add(margin).Before(dl.touched.Add(d.currentAckWait())):
			why = "the server's ack wait ran out"
			dl.lose()
			d.expect(dl.touched.Add(d.currentAckWait()))
		}
	}
	if why != "" {
		dl.mu.Unlock()
		return nil, fmt.Errorf("jetstream: %s message %s (stream sequence %d) from %s: %s: %w", op, m.ID, dl.seq, d.source, why, triggers.ErrLeaseLost)
	}
	return dl, nil
}

func (d *Driver) msgErr(op string, m *triggers.Message, err error) error {
	if !errors.Is(err, triggers.ErrLeaseLost) && !d.nc.IsConnected() {
		err = fmt.Errorf("%w; not connected to %s", err, d.server)
	}
	return d.scrub(fmt.Errorf("jetstream: %s message %s from %s: %w", op, m.ID, d.source, err))
}

func (d *Driver) forget(dl *delivery) {
	d.mu.Lock()
	if d.inflight[dl.seq] == dl {
		delete(d.inflight, dl.seq)
	}
	d.mu.Unlock()
}

// setup makes sure the stream exists and the durable consumer is set up.
func (d *Driver) setup(ctx context.Context, lease time.Duration) error {
	if d.ready.Load() {
		return nil
	}
	d.setupMu.Lock()
	defer d.setupMu.Unlock()
	if d.ready.Load() {
		return nil
	}
	s, err := d.js.Stream(ctx, d.opts.Stream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		if !d.opts.CreateIfMissing {
			return fmt.Errorf("jetstream: stream %q does not exist: %w", d.opts.Stream, triggers.ErrNotFound)
		}
		s, err = d.createStream(ctx)
	}
	if err != nil {
		return d.apiErr("look up stream "+strconv.Quote(d.opts.Stream), err)
	}
	d.maxAge.Store(int64(s.CachedInfo().Config.MaxAge))

	// A new consumer's AckWait is the lease; an existing one keeps its own
	// unless Options.AckWait says otherwise, so that workers with other
	// leases do not change it under each other.
	ackWait := d.opts.AckWait
	if ackWait == 0 {
		ackWait = max(lease, MinAckWait)
	}
	c, err := d.js.Consumer(ctx, d.opts.Stream, d.opts.Consumer)
	switch {
	case errors.Is(err, natsjs.ErrConsumerNotFound):
		_, err = d.js.CreateOrUpdateConsumer(ctx, d.opts.Stream, natsjs.ConsumerConfig{
			Durable:       d.opts.Consumer,
			Description:   "jobhost trigger",
			DeliverPolicy: natsjs.DeliverAllPolicy,
			AckPolicy:     natsjs.AckExplicitPolicy,
			AckWait:       ackWait,
			MaxDeliver:    -1,
			FilterSubject: d.opts.Subject,
			ReplayPolicy:  natsjs.ReplayInstantPolicy,
			MaxAckPending: d.opts.Prefetch,
		})
	case err == nil:
		cfg := c.CachedInfo().Config
		if err := d.compatible(cfg); err != nil {
			return err
		}
		if d.opts.AckWait == 0 {
			ackWait = cfg.AckWait
		}
		if cfg.AckWait != ackWait || cfg.MaxAckPending != d.opts.Prefetch {
			cfg.AckWait, cfg.MaxAckPending = ackWait, d.opts.Prefetch
			_, err = d.js.UpdateConsumer(ctx, d.opts.Stream, cfg)
		}
	}
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return fmt.Errorf("jetstream: stream %q does not exist: %w", d.opts.Stream, triggers.ErrNotFound)
	}
	if err != nil {
		return d.apiErr("set up consumer "+strconv.Quote(d.opts.Consumer)+" on stream "+strconv.Quote(d.opts.Stream), err)
	}
	d.ackWait.Store(int64(ackWait))
	d.ready.Store(true)
	return nil
}

// compatible checks an existing consumer's configuration.
func (d *Driver) compatible(cfg natsjs.ConsumerConfig) error {
	var why string
	switch {
	case cfg.DeliverSubject != "":
		why = "it is a push consumer; a pull consumer is needed"
	case cfg.AckPolicy != natsjs.AckExplicitPolicy:
		why = fmt.Sprintf("its ack policy is %s; explicit is needed", cfg.AckPolicy)
	case len(cfg.FilterSubjects) > 0 || cfg.FilterSubject != d.opts.Subject:
		f := cfg.FilterSubject
		if len(cfg.FilterSubjects) > 0 {
			f = strings.Join(cfg.FilterSubjects, ",")
		}
		why = fmt.Sprintf("its filter subject is %q, not %q", f, d.opts.Subject)
	case len(cfg.BackOff) > 0:
		why = "it has a BackOff, which overrides AckWait and distorts retry delays"
	default:
		return nil
	}
	return fmt.Errorf("jetstream: consumer %q on stream %q cannot be used: %s", d.opts.Consumer, d.opts.Stream, why)
}

func (d *Driver) createStream(ctx context.Context) (natsjs.Stream, error) {
	subj := d.opts.Subject
	if subj == "" {
		subj = d.opts.Stream
	}
	s, err := createStream(ctx, d.js, natsjs.StreamConfig{
		Name:        d.opts.Stream,
		Description: "created by jobhost",
		Subjects:    []string{subj},
		Retention:   natsjs.WorkQueuePolicy,
		Storage:     natsjs.FileStorage,
	})
	if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
		return d.js.Stream(ctx, d.opts.Stream) // another worker made it
	}
	return s, err
}

// createStream creates a stream, retrying a few times on "error creating
// store for stream": nats-server 2.9 fails so when it creates an account's
// only stream while removing the account's storage directory after its last
// stream was deleted.
func createStream(ctx context.Context, js natsjs.JetStream, cfg natsjs.StreamConfig) (natsjs.Stream, error) {
	for i := 0; ; i++ {
		s, err := js.CreateStream(ctx, cfg)
		var apiErr *natsjs.APIError
		if i == 4 || !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeStreamCreate {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(i+1) * 20 * time.Millisecond):
		}
	}
}

// errCodeStreamCreate is JetStream's "error creating store for stream".
const errCodeStreamCreate natsjs.ErrorCode = 10049

// ensurePoison makes sure a stream captures the poison subject.
func (d *Driver) ensurePoison(ctx context.Context) error {
	d.poisonMu.Lock()
	defer d.poisonMu.Unlock()
	if d.poisonReady {
		return nil
	}
	subj := d.opts.PoisonSubject
	name, err := d.js.StreamNameBySubject(ctx, subj)
	switch {
	case err == nil:
		filter := d.opts.Subject
		if filter == "" {
			filter = ">"
		}
		if name == d.opts.Stream && subjectMatches(filter, subj) {
			return fmt.Errorf("jetstream: poison subject %q is captured by stream %q and matches consumer %q's filter: poisoned messages would be delivered again", subj, name, d.opts.Consumer)
		}
	case errors.Is(err, natsjs.ErrStreamNotFound):
		pname := d.opts.Stream + PoisonStreamSuffix
		cfg := natsjs.StreamConfig{
			Name:        pname,
			Description: "jobhost poison messages of stream " + d.opts.Stream,
			Subjects:    []string{subj},
			Retention:   natsjs.LimitsPolicy,
			Storage:     natsjs.FileStorage,
		}
		_, err = createStream(ctx, d.js, cfg)
		if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
			// It exists for other poison subjects: add ours.
			var s natsjs.Stream
			if s, err = d.js.Stream(ctx, pname); err == nil {
				cfg = s.CachedInfo().Config
				cfg.Subjects = append(cfg.Subjects, subj)
				_, err = d.js.UpdateStream(ctx, cfg)
			}
		}
		if err != nil {
			return d.apiErr(fmt.Sprintf("create poison stream %q for subject %q", pname, subj), err)
		}
	default:
		return d.apiErr("find the stream for poison subject "+strconv.Quote(subj), err)
	}
	d.poisonReady = true
	return nil
}

func (d *Driver) apiErr(op string, err error) error {
	if !d.nc.IsConnected() {
		return d.notConnected(op)
	}
	return d.scrub(fmt.Errorf("jetstream: %s: %w", op, err))
}

func (d *Driver) notConnected(op string) error {
	msg := fmt.Sprintf("jetstream: %s %s: not connected to NATS server %s (%s)", op, d.source, d.server, d.nc.Status())
	if p := d.lastErr.Load(); p != nil {
		msg += ": " + *p
	} else if err := d.nc.LastError(); err != nil {
		msg += ": " + err.Error()
	}
	return d.scrub(errors.New(msg))
}

func (d *Driver) noteErr(err error) {
	if err == nil {
		return
	}
	s := d.scrub(err).Error()
	d.lastErr.Store(&s)
}

// delivery is one delivery of a message to this driver, and its lease.
type delivery struct {
	d       *Driver
	msg     *nats.Msg
	seq     uint64
	pending uint64 // messages the consumer had not yet delivered when this one was sent

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

// redactServerURL validates a server URL list (comma-separated) and returns
// it with credentials replaced, and the credentials to scrub from errors.
// Its errors never quote the URL.
func redactServerURL(s string) (string, []string, error) {
	var parts, secrets []string
	for i, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		raw := p
		if !strings.Contains(p, "://") {
			p = "nats://" + p
		}
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			return "", nil, fmt.Errorf("server URL %d is not a valid URL like nats://host:4222 (it is not shown: it may hold credentials)", i+1)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return "", nil, fmt.Errorf("server URL %d has scheme %q; want nats, tls, ws or wss", i+1, u.Scheme)
		}
		if u.User != nil {
			pw, hasPW := u.User.Password()
			userinfo := raw[:strings.LastIndex(raw, "@")]
			if j := strings.Index(userinfo, "://"); j >= 0 {
				userinfo = userinfo[j+3:]
			}
			for _, sec := range []string{pw, u.User.String(), userinfo} {
				if len(sec) >= 3 {
					secrets = append(secrets, sec)
				}
			}
			if !hasPW && len(u.User.Username()) >= 3 { // a token
				secrets = append(secrets, u.User.Username())
			}
			u.User = url.User("REDACTED")
		}
		parts = append(parts, u.String())
	}
	return strings.Join(parts, ","), secrets, nil
}

// scrub removes credentials from err's text.
func (d *Driver) scrub(err error) error {
	if err == nil || len(d.secrets) == 0 {
		return err
	}
	msg := err.Error()
	clean := msg
	for _, s := range d.secrets {
		clean = strings.ReplaceAll(clean, s, "REDACTED")
	}
	if clean == msg {
		return err
	}
	return &scrubbed{msg: clean, err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }
