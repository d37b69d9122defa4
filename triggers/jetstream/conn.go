package jetstream

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Connection sharing. Drivers, publishers and poison administrations
// opened on the same server URL (the setting's value, credentials
// included) share one *nats.Conn: NATS multiplexes subscriptions and
// requests on one connection, and each user keeps its own inboxes. The
// connection is counted: each open takes a reference, each Close gives
// its reference back, and the last one closes the connection. A driver
// opened with Options.NATSOptions has a connection of its own (options
// cannot be compared), as has one given to New (its caller's, never
// closed here).

// sharedConn is one NATS connection and its users' count.
type sharedConn struct {
	key     string // the server URL as configured (it holds credentials); "" when not shared
	nc      *nats.Conn
	server  string   // redacted server URL, for errors
	secrets []string // credentials to scrub from error text
	refs    int      // guarded by connsMu
	ready   chan struct{}
	err     error // the connect error, once ready is closed

	lastErr atomic.Pointer[string] // last connection error, scrubbed
}

var (
	connsMu sync.Mutex
	conns   = map[string]*sharedConn{} // by server URL
)

// acquire returns a reference to the shared connection to serverURL,
// connecting on first use (in the background, retried for ever), or a
// private connection when extra options are given. Each successful call is
// matched by one release.
func acquire(serverURL string, extra []nats.Option) (*sharedConn, error) {
	redacted, secrets, err := redactServerURL(serverURL)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if len(extra) > 0 {
		c := &sharedConn{server: redacted, secrets: secrets, refs: 1, ready: make(chan struct{})}
		c.connect(serverURL, extra)
		if c.err != nil {
			return nil, c.err
		}
		return c, nil
	}
	connsMu.Lock()
	c := conns[serverURL]
	if c != nil {
		select {
		case <-c.ready:
			if c.err != nil || c.nc.IsClosed() { // closed under us: start afresh
				c = nil
			}
		default: // being connected by another caller
		}
	}
	if c != nil {
		c.refs++
		connsMu.Unlock()
		<-c.ready
		if c.err != nil {
			return nil, c.err // the connecting caller removed it
		}
		return c, nil
	}
	c = &sharedConn{key: serverURL, server: redacted, secrets: secrets, refs: 1, ready: make(chan struct{})}
	conns[serverURL] = c
	connsMu.Unlock()
	c.connect(serverURL, nil)
	if c.err != nil {
		connsMu.Lock()
		if conns[serverURL] == c {
			delete(conns, serverURL)
		}
		connsMu.Unlock()
		return nil, c.err
	}
	return c, nil
}

// connect dials and closes c.ready.
func (c *sharedConn) connect(serverURL string, extra []nats.Option) {
	defer close(c.ready)
	opts := []nats.Option{
		nats.Name("jobhost"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		// Nothing is queued while disconnected: a pull request sent late
		// would deliver messages to a receiver that has gone.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { c.noteErr(err) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { c.noteErr(err) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.noteErr(err) }),
	}
	nc, err := nats.Connect(serverURL, append(opts, extra...)...)
	if err != nil {
		c.err = scrub(c.secrets, fmt.Errorf("jetstream: connect to %s: %w", c.server, err))
		return
	}
	c.nc = nc
}

// release gives back one reference; the last closes the connection.
func (c *sharedConn) release() {
	connsMu.Lock()
	c.refs--
	last := c.refs == 0
	if last && c.key != "" && conns[c.key] == c {
		delete(conns, c.key)
	}
	connsMu.Unlock()
	if last {
		c.nc.Close()
	}
}

func (c *sharedConn) noteErr(err error) {
	if err == nil {
		return
	}
	s := scrub(c.secrets, err).Error()
	c.lastErr.Store(&s)
}

// link is what a Driver, Publisher or PoisonAdmin holds of its connection.
type link struct {
	nc      *nats.Conn
	js      natsjs.JetStream
	conn    *sharedConn // nil when the connection is the caller's (New)
	server  string      // redacted server URL, for errors
	secrets []string    // credentials to scrub from error text
	name    string      // the user, in errors ("<stream>/<consumer>", "subject x")

	releaseOnce sync.Once
}

// dial makes l a user of the connection to serverURL.
func (l *link) dial(serverURL string, extra []nats.Option) error {
	c, err := acquire(serverURL, extra)
	if err != nil {
		return err
	}
	if err := l.attach(c.nc); err != nil {
		c.release()
		return err
	}
	l.conn, l.server, l.secrets = c, c.server, c.secrets
	return nil
}

// attach sets the connection and its JetStream API.
func (l *link) attach(nc *nats.Conn) error {
	js, err := natsjs.New(nc)
	if err != nil {
		return l.scrub(fmt.Errorf("jetstream: %w", err))
	}
	l.nc, l.js = nc, js
	return nil
}

// release gives the connection back, once.
func (l *link) release() {
	l.releaseOnce.Do(func() {
		if l.conn != nil {
			l.conn.release()
		}
	})
}

func (l *link) apiErr(op string, err error) error {
	if !l.nc.IsConnected() {
		return l.notConnected(op)
	}
	return l.scrub(fmt.Errorf("jetstream: %s: %w", op, err))
}

func (l *link) notConnected(op string) error {
	msg := fmt.Sprintf("jetstream: %s %s: not connected to NATS server %s (%s)", op, l.name, l.server, l.nc.Status())
	if p := l.lastErr(); p != nil {
		msg += ": " + *p
	} else if err := l.nc.LastError(); err != nil {
		msg += ": " + err.Error()
	}
	return l.scrub(errors.New(msg))
}

// lastErr returns the connection's last error, scrubbed; nil if none was
// seen (or the connection is the caller's).
func (l *link) lastErr() *string {
	if l.conn == nil {
		return nil
	}
	return l.conn.lastErr.Load()
}

// scrub removes credentials from err's text.
func (l *link) scrub(err error) error { return scrub(l.secrets, err) }
