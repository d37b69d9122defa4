package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
)

// Queue kinds, as far as the deliveries on a connection have shown.
const (
	kindUnknown int32 = iota
	kindClassic
	kindQuorum
)

// session is one connection with its consumer channel and a confirmer for
// the copies Retry and DeadLetter publish. When the connection or the
// consumer channel dies the session is dead for good; the driver makes a
// new one.
type session struct {
	d       *Driver
	conn    *amqp.Connection
	netConn net.Conn // the TCP connection, for tests that cut it

	ch         *amqp.Channel // consumer channel; deliveries are acked here
	acks       *acker        // Complete's acks on ch, coalesced
	deliveries <-chan amqp.Delivery
	pub        *confirmer // publishes on conn

	kind atomic.Int32 // kindUnknown, kindClassic or kindQuorum

	done      chan struct{} // closed when the session dies
	stop      chan struct{} // closed by shutdown
	errMu     sync.Mutex
	err       error // why it died
	closeOnce sync.Once
	stopOnce  sync.Once
}

// dial connects to serverURL as connection name, within dialTimeout or
// ctx's deadline. ctx ending aborts the AMQP handshake too, and the error
// then wraps ctx's. It also returns the TCP connection, for tests that cut
// it.
func dial(ctx context.Context, serverURL, name string) (*amqp.Connection, net.Conn, error) {
	timeout := dialTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	var nc net.Conn
	stop := func() bool { return true }
	conn, err := amqp.DialConfig(serverURL, amqp.Config{
		Properties: props,
		Locale:     "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			nd := net.Dialer{Timeout: timeout}
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Cleared by amqp091 once the AMQP handshake is done.
			if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
				c.Close()
				return nil, err
			}
			nc = c
			stop = context.AfterFunc(ctx, func() { c.Close() })
			return c, nil
		},
	})
	if !stop() && err == nil { // ctx ended just as the handshake finished
		conn.Close()
		err = errors.New("connection aborted")
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, nil, err
	}
	return conn, nc, nil
}

// connect dials, checks (or creates) the queue, sets the prefetch bound and
// starts consuming.
func (d *Driver) connect(ctx context.Context) (*session, error) {
	s := &session{
		d:    d,
		done: make(chan struct{}),
		stop: make(chan struct{}),
	}
	conn, nc, err := dial(ctx, d.serverURL, d.opts.ConnectionName)
	if err != nil {
		return nil, d.wrap(fmt.Errorf("rabbitmq: connect to %s for queue %q: %w", d.display, d.queue, err))
	}
	s.conn, s.netConn = conn, nc
	s.pub = newConfirmer(func(context.Context) (*amqp.Connection, error) { return conn, nil })
	fail := func(op string, err error, kinds ...error) (*session, error) {
		conn.Close()
		format := "rabbitmq: %s queue %q on %s"
		args := []any{op, d.queue, d.display}
		for _, k := range kinds {
			format += ": %w"
			args = append(args, k)
		}
		format += ": %w"
		args = append(args, err)
		return nil, d.wrap(fmt.Errorf(format, args...))
	}

	ch, err := conn.Channel()
	if err != nil {
		return fail("open a channel for", err)
	}
	if _, err := ch.QueueDeclarePassive(d.queue, true, false, false, false, nil); err != nil {
		if !isCode(err, amqp.NotFound) {
			return fail("check", err)
		}
		if !d.opts.CreateIfMissing {
			return fail("receive from", err, triggers.ErrNotFound)
		}
		// A 404 closes the channel: declare on a new one.
		if ch, err = conn.Channel(); err != nil {
			return fail("open a channel for", err)
		}
		if _, err := ch.QueueDeclare(d.queue, true, false, false, false, quorumArgs()); err != nil {
			return fail("create", err)
		}
		s.kind.Store(kindQuorum)
	}
	if err := ch.Qos(d.opts.Prefetch, 0, false); err != nil {
		return fail("set prefetch for", err)
	}
	// Register before consuming, so that no close goes unnoticed.
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	cancelled := ch.NotifyCancel(make(chan string, 1))
	deliveries, err := ch.Consume(d.queue, "", false, false, false, false, nil)
	if err != nil {
		if isCode(err, amqp.NotFound) {
			return fail("consume from", err, triggers.ErrNotFound)
		}
		return fail("consume from", err)
	}
	s.ch, s.deliveries, s.acks = ch, deliveries, newAcker(ch, d.opts.AckDelay)
	go s.watch(connClosed, chClosed, cancelled)
	return s, nil
}

// quorumArgs declares a quorum queue (CreateIfMissing).
func quorumArgs() amqp.Table { return amqp.Table{"x-queue-type": "quorum"} }

// watch marks the session dead when the connection or the consumer channel
// closes or the broker cancels the consumer (the queue was deleted).
func (s *session) watch(connClosed, chClosed <-chan *amqp.Error, cancelled <-chan string) {
	var err error
	select {
	case e, ok := <-connClosed:
		err = closeErr("connection closed", e, ok)
	case e, ok := <-chClosed:
		err = closeErr("channel closed", e, ok)
	case _, ok := <-cancelled:
		if ok {
			err = fmt.Errorf("the broker cancelled the consumer (queue deleted?): %w", triggers.ErrNotFound)
		} else {
			err = errors.New("channel closed")
		}
	case <-s.stop:
		err = errClosed
	}
	s.die(err)
}

func closeErr(what string, e *amqp.Error, ok bool) error {
	if ok && e != nil {
		return fmt.Errorf("%s: %w", what, e)
	}
	return errors.New(what)
}

// die records why the session died and marks it dead. Unless the session
// is being shut down, it also closes the connection, in the background (a
// half-dead network can make that slow), so that the broker requeues what
// the consumer channel holds.
func (s *session) die(err error) {
	s.closeOnce.Do(func() {
		s.acks.close(false) // after a shutdown's flush: a no-op
		s.errMu.Lock()
		s.err = err
		s.errMu.Unlock()
		close(s.done)
		select {
		case <-s.stop:
		default:
			go s.conn.CloseDeadline(time.Now().Add(5 * time.Second))
		}
	})
}

// shutdown sends the acks still pending, closes the session and waits (a
// few seconds at most) for the broker to confirm: the consumer channel,
// then the connection. err (if not nil) is recorded as the reason.
func (s *session) shutdown(err error) {
	if err == nil {
		err = errors.New("connection closed")
	}
	s.stopOnce.Do(func() {
		if !s.dead() {
			s.acks.close(true)
		}
		close(s.stop)
		s.die(err)
		s.ch.Close()
		s.conn.CloseDeadline(time.Now().Add(5 * time.Second))
	})
}

func (s *session) dead() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *session) cause() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		return errors.New("connection closed")
	}
	return s.err
}

// lostErr is what Receive returns once for a dead session.
func (s *session) lostErr(d *Driver) error {
	err := s.cause()
	if errors.Is(err, triggers.ErrClosed) || d.closed.Load() {
		return d.closedErr("receive from")
	}
	return d.wrap(fmt.Errorf("rabbitmq: receive from queue %q on %s: connection lost, unsettled deliveries were requeued by the broker; reconnecting on the next receive: %w", d.queue, d.display, err))
}

// publish sends msg to queue with a publisher confirm (see
// confirmer.publish) on the session's connection.
func (s *session) publish(ctx context.Context, queue string, msg amqp.Publishing, ensure func(context.Context, *confirmer) error) error {
	if s.dead() {
		return fmt.Errorf("%w: %v", triggers.ErrLeaseLost, s.cause())
	}
	return s.pub.publish(ctx, queue, msg, ensure)
}

// ensureRetryQueue declares the delay queue if missing: a quorum queue that
// dead-letters into the queue at least once.
func (d *Driver) ensureRetryQueue(ctx context.Context, c *confirmer) error {
	return c.ensureQueue(ctx, d.retryQueue, retryArgs(d.queue))
}

// retryArgs are the delay queue's arguments. At-least-once dead-lettering
// needs x-overflow reject-publish; without a length limit it rejects
// nothing.
func retryArgs(queue string) amqp.Table {
	return amqp.Table{
		"x-queue-type":              "quorum",
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": queue,
		"x-dead-letter-strategy":    "at-least-once",
		"x-overflow":                "reject-publish",
	}
}

func (d *Driver) ensurePoisonQueue(ctx context.Context, c *confirmer) error {
	return c.ensureQueue(ctx, d.poisonQueue, nil)
}

func isCode(err error, code int) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == code
}
