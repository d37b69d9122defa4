package jetstream

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jobhost/jobhost/triggers"
)

// ErrNoPoison is returned (wrapped) by DeadLetter when the driver has no
// poison subject. The message is left in place.
var ErrNoPoison = errors.New("no poison subject")

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
	// flushTimeout bounds Close's flush of acks still buffered.
	flushTimeout = 5 * time.Second
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
	link     // the connection (conn.go); link.name is source
	opts     Options
	source   string // "<stream>/<consumer>"
	nextSubj string // the consumer's pull request subject

	setupMu  sync.Mutex // serialises consumer set-up (held across API calls)
	ready    atomic.Bool
	ackWait  atomic.Int64 // the consumer's AckWait (ns), once set up
	maxAge   atomic.Int64 // the stream's MaxAge (ns)
	backlog  atomic.Bool  // the last delivery said more messages were waiting
	settling atomic.Int64 // settlements being sent (settleReply)

	poisonMu    sync.Mutex
	poisonReady bool

	ah ahead // pull requests read in the background (ahead.go)

	mu       sync.Mutex
	inflight map[uint64]*delivery // by stream sequence
	expected []time.Time          // server redeliveries of messages no longer held
	closed   bool
	done     chan struct{} // closed by Close
}

var (
	_ triggers.Driver      = (*Driver)(nil)
	_ triggers.Waiter      = (*Driver)(nil)
	_ triggers.Publisher   = (*Driver)(nil)
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
// NATS_SERVER_URL when o.Connection is empty; drivers, publishers and
// poison administrations on the same server URL share one connection. o.PoisonName
// overrides the default poison subject (it may not contradict poison=),
// o.Prefetch bounds what this driver holds (Options.Prefetch; the
// consumer's MaxAckPending is max_ack_pending=, Options.MaxAckPending) and
// o.CreateIfMissing creates a missing stream.
func OpenURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Driver, error) {
	opts, server, setting, err := resolveURL(u, o)
	if err != nil {
		return nil, err
	}
	d, err := Open(ctx, server, opts)
	if err != nil {
		return nil, fromSetting(err, setting)
	}
	return d, nil
}

// resolveURL reads a trigger URL and the OpenOptions into Options (not
// normalized) and looks up the server URL; setting names where it was found.
func resolveURL(u *url.URL, o triggers.OpenOptions) (opts Options, server, setting string, err error) {
	opts, err = parseURL(u)
	if err != nil {
		return opts, "", "", fmt.Errorf("jetstream: %w", err)
	}
	if o.PoisonName != "" {
		if opts.PoisonSubject != "" && opts.PoisonSubject != o.PoisonName {
			return opts, "", "", fmt.Errorf("jetstream: URL %q: poison=%s contradicts the configured poison name %q", u.Redacted(), opts.PoisonSubject, o.PoisonName)
		}
		opts.PoisonSubject = o.PoisonName
	}
	opts.Prefetch = o.Prefetch
	opts.CreateIfMissing = o.CreateIfMissing
	setting = ServerURLSetting
	if o.Connection != "" {
		setting = o.Connection
	}
	server, ok := triggers.LookupSetting(o.Lookup, setting)
	if !ok {
		return opts, "", "", fmt.Errorf("jetstream: no NATS server URL for %s: app setting %q is not set (it holds nats://host:4222)", u.Redacted(), setting)
	}
	return opts, server, setting, nil
}

// resolveOpen is resolveURL with the Options normalized, for the openers
// that do not go through Open (publishers, poison administrations).
func resolveOpen(ctx context.Context, u *url.URL, o triggers.OpenOptions) (opts Options, server, setting string, err error) {
	if err := ctx.Err(); err != nil {
		return opts, "", "", err
	}
	if opts, server, setting, err = resolveURL(u, o); err != nil {
		return opts, "", "", err
	}
	if opts, err = opts.normalize(); err != nil {
		return opts, "", "", fmt.Errorf("jetstream: %w", err)
	}
	return opts, server, setting, nil
}

// fromSetting says which app setting held the server URL a connection
// failed on.
func fromSetting(err error, setting string) error {
	return fmt.Errorf("%w (server URL from app setting %q)", err, setting)
}

// Open returns a driver for opts on the connection to serverURL, which it
// shares with every driver, publisher and poison administration of this
// package opened on the same server URL (unless opts.NATSOptions is set:
// then the driver has a connection of its own); the last of them to close
// closes it. The connection is made in the background and retried for
// ever: Open fails only on invalid options or URL; Receive reports an
// unreachable server.
func Open(ctx context.Context, serverURL string, opts Options) (*Driver, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	opts, err := opts.normalize()
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	d := newDriver(opts)
	if err := d.dial(serverURL, opts.NATSOptions); err != nil {
		return nil, err
	}
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
	d := &Driver{
		opts:     opts,
		source:   opts.Stream + "/" + opts.Consumer,
		nextSubj: "$JS.API.CONSUMER.MSG.NEXT." + opts.Stream + "." + opts.Consumer,
		inflight: map[uint64]*delivery{},
		done:     make(chan struct{}),
	}
	d.name = d.source
	return d
}

// Stream, Consumer and Subject return the driver's stream, durable consumer
// and filter subject.
func (d *Driver) Stream() string   { return d.opts.Stream }
func (d *Driver) Consumer() string { return d.opts.Consumer }
func (d *Driver) Subject() string  { return d.opts.Subject }

// Conn returns the driver's NATS connection. It may be shared with other
// drivers, publishers and poison administrations: do not close it.
func (d *Driver) Conn() *nats.Conn { return d.nc }

// PoisonDestination returns the poison subject, or "" when there is none.
func (d *Driver) PoisonDestination() string { return d.opts.PoisonSubject }

// ReceiveWaits reports that Receive waits (up to ReceiveWait) for messages.
func (d *Driver) ReceiveWaits() bool { return true }

// Close makes every later call fail with an error wrapping
// triggers.ErrClosed and ends a Receive in progress. It then waits for the
// driver's pull requests to end (at most about ReceiveWait plus a second),
// gives back the messages they delivered and that no Receive handed out,
// stops the driver's lease timers, flushes the acks Complete sent that the
// connection still buffers (waiting, at most a few seconds, for the
// server to have read them) and gives back its connection (closing it if
// it was the last user; never one given to New). Messages handed out and
// not settled are left to the server, which redelivers them when their
// ack wait ends. Close is idempotent.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.done)
	d.mu.Unlock()
	d.closeAhead()
	d.mu.Lock()
	held := d.inflight
	d.inflight = nil
	d.mu.Unlock()
	for _, dl := range held {
		dl.mu.Lock()
		dl.state = lost // a timer already running sees this and stops
		dl.stopTimer()
		dl.mu.Unlock()
	}
	d.flushAcks()
	d.release()
	return nil
}

func (d *Driver) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// closedErr is the error of an operation on a closed driver.
func (d *Driver) closedErr(op string) error {
	return fmt.Errorf("jetstream: %s %s: driver %w", op, d.source, triggers.ErrClosed)
}

func (d *Driver) currentAckWait() time.Duration { return time.Duration(d.ackWait.Load()) }
