package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
)

// sharedName is the connection name of the shared connections
// (rabbitmqctl list_connections name).
const sharedName = "jobhost publishers"

// shared is the one AMQP connection that the publishers and poison
// administrations of one server URL share. It is dialled on first use and
// again on the first use after it died; the last release closes it.
type shared struct {
	key      string // the server URL: secret
	display  string // the server URL without the password
	password string
	refs     int // guarded by pool.mu

	mu      sync.Mutex // guards the fields below; held while dialling
	conn    *amqp.Connection
	netConn net.Conn // for tests that cut it
	gone    bool     // released by its last user
}

// pool holds the shared connections by server URL.
var pool = struct {
	mu sync.Mutex
	m  map[string]*shared
}{m: map[string]*shared{}}

// acquire returns the shared connection of serverURL, counting one more
// user. It does not dial.
func acquire(serverURL, display, password string) *shared {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	sc := pool.m[serverURL]
	if sc == nil {
		sc = &shared{key: serverURL, display: display, password: password}
		pool.m[serverURL] = sc
	}
	sc.refs++
	return sc
}

// release counts one user fewer; the last closes the connection.
func (sc *shared) release() {
	pool.mu.Lock()
	sc.refs--
	last := sc.refs == 0
	if last {
		delete(pool.m, sc.key)
	}
	pool.mu.Unlock()
	if !last {
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.gone = true
	if sc.conn != nil {
		sc.conn.CloseDeadline(time.Now().Add(5 * time.Second))
		sc.conn = nil
	}
}

// get returns the live connection, dialling if there is none.
func (sc *shared) get(ctx context.Context) (*amqp.Connection, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.gone {
		return nil, errPubClosed
	}
	if sc.conn != nil && !sc.conn.IsClosed() {
		return sc.conn, nil
	}
	conn, nc, err := dial(ctx, sc.key, sharedName)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", sc.display, err)
	}
	sc.conn, sc.netConn = conn, nc
	return conn, nil
}

// publisher is the triggers.Publisher of one queue.
//
// Its connection is the server URL's shared one, but it has a confirm-mode
// channel of its own rather than one shared channel: a confirm channel
// publishes one message at a time (mu is held until the broker confirms,
// so that a basic.return is known to belong to that message), so one
// shared channel would make every output binding of the process wait for
// every other's round trip; and a channel-level failure (a refused
// publish, a nack) then stays with the publisher it concerns. Channels are
// cheap: the broker allows 2047 per connection by default.
type publisher struct {
	queue  string
	create bool
	sc     *shared
	c      *confirmer
	once   sync.Once
}

var _ triggers.Publisher = (*publisher)(nil)

// OpenPublisherURL opens a triggers.Publisher to the queue of
// rabbit://<queue>, parsing the URL and finding the server URL as OpenURL
// does. Publishers on one server URL share one AMQP connection, dialled on
// the first Publish; the last Close closes it. A publisher never consumes.
// With o.CreateIfMissing a missing queue is declared as a durable quorum
// queue; without it, Publish to a missing queue returns an error wrapping
// triggers.ErrNotFound.
func OpenPublisherURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Publisher, error) {
	d, err := openURL(ctx, u, o) // checks the URL and the setting; holds nothing
	if err != nil {
		return nil, err
	}
	return d.newPublisher(), nil
}

func (d *Driver) newPublisher() *publisher {
	sc := acquire(d.serverURL, d.display, d.password)
	return &publisher{queue: d.queue, create: d.opts.CreateIfMissing, sc: sc, c: newConfirmer(sc.get)}
}

// Publish sends body to the queue through the default exchange as a
// persistent message with a new message id and the time as timestamp, and
// returns the id once the broker confirmed it. props["content-type"] is
// the content type; the other props are headers.
func (p *publisher) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	if p.c.closed.Load() {
		return "", fmt.Errorf("rabbitmq: publish to queue %q: %w", p.queue, errPubClosed)
	}
	msg := publishing(body, props)
	var ensure func(context.Context, *confirmer) error
	if p.create {
		ensure = p.ensureQueue
	}
	if err := p.c.publish(ctx, p.queue, msg, ensure); err != nil {
		return "", p.publishErr("publish to queue "+strconv.Quote(p.queue), err)
	}
	return msg.MessageId, nil
}

// publishing is the message Publish sends: body, props["content-type"] as
// the content type and the other props as headers, persistent, with a new
// message id and the time as timestamp.
func publishing(body []byte, props map[string]string) amqp.Publishing {
	msg := amqp.Publishing{Headers: amqp.Table{}, Body: body, DeliveryMode: amqp.Persistent, MessageId: uuid.NewString(), Timestamp: time.Now()}
	for k, v := range props {
		if k == "content-type" {
			msg.ContentType = v
		} else {
			msg.Headers[k] = v
		}
	}
	return msg
}

// ensureQueue declares the publisher's queue as a durable quorum queue if
// it is missing (CreateIfMissing).
func (p *publisher) ensureQueue(ctx context.Context, c *confirmer) error {
	return c.ensureQueue(ctx, p.queue, quorumArgs())
}

// publishErr wraps an error of op: unroutable means the queue is missing.
func (p *publisher) publishErr(op string, err error) error {
	if errors.Is(err, errNoRoute) && !errors.Is(err, triggers.ErrNotFound) {
		err = fmt.Errorf("%w: %w", triggers.ErrNotFound, err)
	}
	return wrapSecret(fmt.Errorf("rabbitmq: %s on %s: %w", op, p.sc.display, err), p.sc.password)
}

// MaxDelay is the longest delay PublishDelayed accepts: the longest
// per-message expiration RabbitMQ accepts, 2^32-1 ms (about 49.7 days).
const MaxDelay = maxExpiration * time.Millisecond

var (
	_ triggers.DelayPublisher = (*publisher)(nil)
	_ triggers.DelayPublisher = (*Driver)(nil)
)

// PublishDelayed sends body as Publish does, but to the delay queue
// "<queue>-retry-q" with per-message expiration delay (milliseconds,
// rounded up), so that the broker dead-letters it into the queue once the
// delay has passed: the mechanism of Retry with a delay, with the delay
// queue declared as Retry declares it when missing. It returns once the
// broker confirmed the message into the delay queue. The message arrives
// with its message id, body, properties and headers (plus the broker's
// x-death and x-first-death-*/x-last-death-* headers) and DequeueCount 1.
// The queue itself must exist (with CreateIfMissing it is declared as a
// durable quorum queue): a missing one is an error wrapping
// triggers.ErrNotFound, and nothing is sent. A delay of zero or less is
// Publish; one over MaxDelay is an error wrapping
// triggers.ErrDelayTooLong.
//
// Per-message TTL expires messages only at the head of the delay queue,
// which Retry shares: a message waits for the ones queued before it whose
// delay is longer, so a long delay holds back every shorter delay, retries
// included, sent after it. Delays grow late this way, never early.
func (p *publisher) PublishDelayed(ctx context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	if delay <= 0 {
		return p.Publish(ctx, body, props)
	}
	if p.c.closed.Load() {
		return "", fmt.Errorf("rabbitmq: publish to queue %q: %w", p.queue, errPubClosed)
	}
	if err := triggers.CheckDelay(fmt.Sprintf("rabbitmq: queue %q", p.queue), delay, MaxDelay); err != nil {
		return "", err
	}
	retryQueue := p.queue + RetrySuffix
	op := fmt.Sprintf("publish to queue %q through delay queue %q", p.queue, retryQueue)
	// The queue the delay queue dead-letters into must exist, or the
	// message would wait in the delay queue for ever.
	var err error
	if p.create {
		err = p.ensureQueue(ctx, p.c)
	} else {
		err = p.c.checkQueue(ctx, p.queue)
	}
	if err != nil {
		return "", p.publishErr(op, err)
	}
	msg := publishing(body, props)
	msg.Expiration = expiration(delay)
	ensureRetry := func(ctx context.Context, c *confirmer) error {
		return c.ensureQueue(ctx, retryQueue, retryArgs(p.queue))
	}
	if err := p.c.publish(ctx, retryQueue, msg, ensureRetry); err != nil {
		return "", p.publishErr(op, err)
	}
	return msg.MessageId, nil
}

// checkQueue reports whether queue exists (a passive declare, remembered
// as ensureQueue's are): an error wrapping triggers.ErrNotFound when it
// does not.
func (c *confirmer) checkQueue(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, err := c.connection(ctx)
	if err != nil {
		return err
	}
	if c.declared[name] {
		return nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open a channel to check queue %q: %w", name, err)
	}
	_, err = ch.QueueDeclarePassive(name, true, false, false, false, nil)
	ch.Close()
	switch {
	case isCode(err, amqp.NotFound):
		return fmt.Errorf("queue %q: %w: %w", name, triggers.ErrNotFound, err)
	case err != nil:
		return fmt.Errorf("check queue %q: %w", name, err)
	}
	c.declared[name] = true
	return nil
}

// Close closes the publisher's channel, and the shared connection if it is
// the last user. It is idempotent.
func (p *publisher) Close() error {
	p.once.Do(func() {
		p.c.close()
		p.sc.release()
	})
	return nil
}

// Publish sends body to the driver's queue as a publisher from
// OpenPublisherURL does (triggers.Publisher), on the connection shared by
// the publishers of the server URL, so publishing never takes a message
// off the queue. With CreateIfMissing a missing queue is declared as a
// durable quorum queue first. The driver's Close closes it.
func (d *Driver) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	p, err := d.publisher()
	if err != nil {
		return "", err
	}
	return p.Publish(ctx, body, props)
}

// publisher returns the driver's publisher, opening it on first use.
func (d *Driver) publisher() (*publisher, error) {
	d.pubMu.Lock()
	defer d.pubMu.Unlock()
	if d.closed.Load() {
		return nil, d.closedErr("publish to")
	}
	if d.pub == nil {
		d.pub = d.newPublisher()
	}
	return d.pub, nil
}

// PublishDelayed sends body to the driver's queue after delay, as a
// publisher from OpenPublisherURL does (triggers.DelayPublisher; see
// there), through the delay queue Retry uses.
func (d *Driver) PublishDelayed(ctx context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	p, err := d.publisher()
	if err != nil {
		return "", err
	}
	return p.PublishDelayed(ctx, body, props, delay)
}
