package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
)

var (
	// errNoRoute means a mandatory publish found no queue.
	errNoRoute = errors.New("no such queue (message returned unroutable)")
	// errPubClosed is returned by a confirmer after close.
	errPubClosed = fmt.Errorf("publisher %w", triggers.ErrClosed)
)

// confirmer publishes through one channel in confirm mode, opened when
// first needed, and again after it or its connection closed, on the
// connection conn returns. It publishes one message at a time, so that a
// basic.return belongs to the publish under way. The driver's sessions,
// the publishers and the poison administrations all publish through one.
type confirmer struct {
	conn func(ctx context.Context) (*amqp.Connection, error)

	mu       sync.Mutex // serialises publishing; guards the fields below
	on       *amqp.Connection
	ch       *amqp.Channel // on on, in confirm mode
	returns  chan amqp.Return
	declared map[string]bool // queues known to exist on on

	closed atomic.Bool
	live   atomic.Pointer[amqp.Channel] // ch, for close to close without mu
}

func newConfirmer(conn func(ctx context.Context) (*amqp.Connection, error)) *confirmer {
	return &confirmer{conn: conn, declared: map[string]bool{}}
}

// close closes the channel, interrupting a publish under way, and makes
// every later publish fail with errPubClosed. It does not close the
// connection.
func (c *confirmer) close() {
	c.closed.Store(true)
	if ch := c.live.Swap(nil); ch != nil {
		ch.Close()
	}
}

// publish sends msg to queue through the default exchange, mandatory and
// with a publisher confirm, and returns once the broker has confirmed it.
// When the broker returns it unroutable and ensure is not nil, ensure
// declares the queue and the publish is tried once more. msg.Body has been
// written to the connection when publish returns: nothing keeps it.
func (c *confirmer) publish(ctx context.Context, queue string, msg amqp.Publishing, ensure func(context.Context, *confirmer) error) error {
	if ensure != nil {
		if err := ensure(ctx, c); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	nacks := 0
	for try := 0; ; try++ {
		err := c.publishOnce(ctx, queue, msg)
		if errors.Is(err, errNack) && nacks < maxNackRetries {
			// A quorum queue declared a moment ago (by a consumer, say)
			// nacks until its leader is elected: the message was not
			// taken, so sending it again can only duplicate, never lose.
			nacks++
			if !sleepCtx(ctx, time.Duration(nacks)*50*time.Millisecond) {
				return err
			}
			continue
		}
		if !errors.Is(err, errNoRoute) || ensure == nil || try > nacks {
			return err
		}
		delete(c.declared, queue)
		c.mu.Unlock()
		err = ensure(ctx, c)
		c.mu.Lock()
		if err != nil {
			return err
		}
	}
}

func (c *confirmer) publishOnce(ctx context.Context, queue string, msg amqp.Publishing) error {
	ch, err := c.channel(ctx)
	if err != nil {
		return err
	}
	for drained := false; !drained; { // returns left over from an abandoned publish
		select {
		case _, ok := <-c.returns:
			drained = !ok
		default:
			drained = true
		}
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, msg)
	if err != nil {
		c.reset()
		return c.closedOr(err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		c.reset() // the confirm may still come: start afresh next time
		return fmt.Errorf("waiting for the publisher confirm: %w", err)
	}
	if !acked {
		if ch.IsClosed() {
			c.reset()
			return c.closedOr(errors.New("publishing channel closed before the broker confirmed"))
		}
		return errNack
	}
	// A basic.return comes before the confirm of the same publish.
	select {
	case r, ok := <-c.returns:
		if ok {
			return fmt.Errorf("%w: %d %s", errNoRoute, r.ReplyCode, r.ReplyText)
		}
	default:
	}
	return nil
}

// closedOr returns errPubClosed after close, else err.
func (c *confirmer) closedOr(err error) error {
	if c.closed.Load() {
		return errPubClosed
	}
	return err
}

// connection returns the connection to use, forgetting the channel and the
// declared queues when it is not the one they were on. Call with mu held.
func (c *confirmer) connection(ctx context.Context) (*amqp.Connection, error) {
	if c.closed.Load() {
		return nil, errPubClosed
	}
	conn, err := c.conn(ctx)
	if err != nil {
		return nil, err
	}
	if conn != c.on {
		c.reset()
		c.on, c.declared = conn, map[string]bool{}
	}
	return conn, nil
}

// channel returns the publishing channel, opening it in confirm mode if
// needed. Call with mu held.
func (c *confirmer) channel(ctx context.Context) (*amqp.Channel, error) {
	conn, err := c.connection(ctx)
	if err != nil {
		return nil, err
	}
	if c.ch != nil && !c.ch.IsClosed() {
		return c.ch, nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open publishing channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	c.returns = ch.NotifyReturn(make(chan amqp.Return, 8))
	c.ch = ch
	c.live.Store(ch)
	if c.closed.Load() { // close ran meanwhile and may have missed ch
		c.reset()
		return nil, errPubClosed
	}
	return ch, nil
}

// reset closes the publishing channel. Call with mu held.
func (c *confirmer) reset() {
	if c.ch != nil {
		c.live.CompareAndSwap(c.ch, nil)
		c.ch.Close()
		c.ch = nil
	}
}

// ensureQueue makes sure a durable queue exists: a passive declare, and if
// that finds none, a declare with args. An existing queue is used as it is.
func (c *confirmer) ensureQueue(ctx context.Context, name string, args amqp.Table) error {
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
		return fmt.Errorf("open a channel to declare queue %q: %w", name, err)
	}
	_, err = ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil && isCode(err, amqp.NotFound) {
		// The 404 closed the channel.
		if ch, err = conn.Channel(); err != nil {
			return fmt.Errorf("open a channel to declare queue %q: %w", name, err)
		}
		_, err = ch.QueueDeclare(name, true, false, false, false, args)
	}
	ch.Close()
	if err != nil {
		return fmt.Errorf("declare queue %q: %w", name, err)
	}
	c.declared[name] = true
	return nil
}

// errNack is a publish the broker refused.
var errNack = errors.New("the broker refused the message (publisher nack)")

// maxNackRetries is how often a nacked publish is sent again.
const maxNackRetries = 3

// sleepCtx waits d, or less when ctx ends (then it reports false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
