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

// session is one connection with its consumer and publishing channels.
// When the connection or the consumer channel dies the session is dead for
// good; the driver makes a new one.
type session struct {
	d       *Driver
	conn    *amqp.Connection
	netConn net.Conn // the TCP connection, for tests that cut it

	ch         *amqp.Channel // consumer channel; deliveries are acked here
	deliveries <-chan amqp.Delivery

	kind atomic.Int32 // kindUnknown, kindClassic or kindQuorum

	done      chan struct{} // closed when the session dies
	stop      chan struct{} // closed by shutdown
	errMu     sync.Mutex
	err       error // why it died
	closeOnce sync.Once
	stopOnce  sync.Once

	pubMu    sync.Mutex // serialises publishing, so a return belongs to the current publish
	pub      *amqp.Channel
	returns  chan amqp.Return
	declared map[string]bool // queues known to exist on this connection
}

// errNoRoute means a mandatory publish found no queue.
var errNoRoute = errors.New("no such queue (message returned unroutable)")

// connect dials, checks (or creates) the queue, sets the prefetch bound and
// starts consuming.
// connect opens a session; consume starts the consumer (a session made for
// Publish has none, so it never takes messages off the queue).
func (d *Driver) connect(ctx context.Context, consume bool) (*session, error) {
	timeout := dialTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	s := &session{
		d:        d,
		done:     make(chan struct{}),
		stop:     make(chan struct{}),
		declared: map[string]bool{},
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(d.opts.ConnectionName)
	conn, err := amqp.DialConfig(d.serverURL, amqp.Config{
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
			s.netConn = c
			return c, nil
		},
	})
	if err != nil {
		return nil, d.wrap(fmt.Errorf("rabbitmq: connect to %s for queue %q: %w", d.display, d.queue, err))
	}
	s.conn = conn
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
		if _, err := ch.QueueDeclare(d.queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
			return fail("create", err)
		}
		s.kind.Store(kindQuorum)
	}
	if !consume {
		connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
		chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
		s.ch = ch
		go s.watch(connClosed, chClosed, nil)
		return s, nil
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
	s.ch, s.deliveries = ch, deliveries
	go s.watch(connClosed, chClosed, cancelled)
	return s, nil
}

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

// shutdown closes the session and waits (a few seconds at most) for the
// broker to confirm: the consumer channel, then the connection. err (if not
// nil) is recorded as the reason.
func (s *session) shutdown(err error) {
	if err == nil {
		err = errors.New("connection closed")
	}
	s.stopOnce.Do(func() {
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
	if errors.Is(err, errClosed) {
		return fmt.Errorf("rabbitmq: receive from queue %q: %w", d.queue, errClosed)
	}
	return d.wrap(fmt.Errorf("rabbitmq: receive from queue %q on %s: connection lost, unsettled deliveries were requeued by the broker; reconnecting on the next receive: %w", d.queue, d.display, err))
}

// publish sends msg to queue through the default exchange, mandatory and
// with a publisher confirm, and returns once the broker has confirmed it.
// When the broker returns it unroutable and ensure is not nil, ensure
// declares the queue and the publish is tried once more.
func (s *session) publish(ctx context.Context, queue string, msg amqp.Publishing, ensure func(context.Context, *session) error) error {
	if s.dead() {
		return fmt.Errorf("%w: %v", triggers.ErrLeaseLost, s.cause())
	}
	if ensure != nil {
		if err := ensure(ctx, s); err != nil {
			return err
		}
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	for try := 0; ; try++ {
		err := s.publishOnce(ctx, queue, msg)
		if !errors.Is(err, errNoRoute) || ensure == nil || try > 0 {
			return err
		}
		delete(s.declared, queue)
		s.pubMu.Unlock()
		err = ensure(ctx, s)
		s.pubMu.Lock()
		if err != nil {
			return err
		}
	}
}

func (s *session) publishOnce(ctx context.Context, queue string, msg amqp.Publishing) error {
	ch, err := s.pubChannel()
	if err != nil {
		return err
	}
	for drained := false; !drained; { // returns left over from an abandoned publish
		select {
		case _, ok := <-s.returns:
			drained = !ok
		default:
			drained = true
		}
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, msg)
	if err != nil {
		s.resetPub()
		return err
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		s.resetPub() // the confirm may still come: start afresh next time
		return fmt.Errorf("waiting for the publisher confirm: %w", err)
	}
	if !acked {
		if ch.IsClosed() {
			s.resetPub()
			return errors.New("publishing channel closed before the broker confirmed")
		}
		return errors.New("the broker refused the message (publisher nack)")
	}
	// A basic.return comes before the confirm of the same publish.
	select {
	case r, ok := <-s.returns:
		if ok {
			return fmt.Errorf("%w: %d %s", errNoRoute, r.ReplyCode, r.ReplyText)
		}
	default:
	}
	return nil
}

// pubChannel returns the publishing channel, opening it in confirm mode if
// needed. Call with pubMu held.
func (s *session) pubChannel() (*amqp.Channel, error) {
	if s.pub != nil && !s.pub.IsClosed() {
		return s.pub, nil
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open publishing channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	s.returns = ch.NotifyReturn(make(chan amqp.Return, 8))
	s.pub = ch
	return ch, nil
}

func (s *session) resetPub() {
	if s.pub != nil {
		s.pub.Close()
		s.pub = nil
	}
}

// ensureQueue makes sure a durable queue exists: a passive declare, and if
// that finds none, a declare with args. An existing queue is used as it is.
func (s *session) ensureQueue(name string, args amqp.Table) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if s.declared[name] {
		return nil
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open a channel to declare queue %q: %w", name, err)
	}
	_, err = ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil && isCode(err, amqp.NotFound) {
		// The 404 closed the channel.
		if ch, err = s.conn.Channel(); err != nil {
			return fmt.Errorf("open a channel to declare queue %q: %w", name, err)
		}
		_, err = ch.QueueDeclare(name, true, false, false, false, args)
	}
	ch.Close()
	if err != nil {
		return fmt.Errorf("declare queue %q: %w", name, err)
	}
	s.declared[name] = true
	return nil
}

func (d *Driver) ensureRetryQueue(_ context.Context, s *session) error {
	return s.ensureQueue(d.retryQueue, amqp.Table{
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": d.queue,
	})
}

func (d *Driver) ensurePoisonQueue(_ context.Context, s *session) error {
	return s.ensureQueue(d.poisonQueue, nil)
}

func isCode(err error, code int) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == code
}
