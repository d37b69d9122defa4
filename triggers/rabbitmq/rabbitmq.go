package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

const (
	// Scheme is the URL scheme of OpenURL: rabbit://<queue>.
	Scheme = "rabbit"
	// EnvServerURL is the variable (app setting) holding the server URL
	// when OpenOptions.Connection is empty, as in gocloud's rabbitpubsub.
	EnvServerURL = "RABBIT_SERVER_URL"
	// DefaultPrefetch is the prefetch bound when none is given.
	DefaultPrefetch = 16
	// DefaultReceiveWait is how long Receive waits for a first delivery.
	DefaultReceiveWait = 2 * time.Second
	// PoisonSuffix and RetrySuffix name the poison and delay queues.
	PoisonSuffix = "-poison"
	RetrySuffix  = "-retry-q"
	// LegacyRetrySuffix names the classic delay queue of earlier versions,
	// which the driver leaves alone (see the package documentation).
	LegacyRetrySuffix = "-retry"

	// HeaderAttempt carries the DequeueCount a republished copy will have.
	HeaderAttempt = "x-jobhost-attempt"
	// HeaderReason and HeaderSource are added to poison copies.
	HeaderReason = "x-jobhost-reason"
	HeaderSource = "x-jobhost-source"
	// HeaderDeliveryCount is the quorum queues' redelivery counter.
	HeaderDeliveryCount = "x-delivery-count"

	// maxReason bounds the reason header (it travels in a content header
	// frame, which must fit in one frame).
	maxReason = 4096
	// maxExpiration is the longest per-message TTL RabbitMQ accepts (ms).
	maxExpiration = 1<<32 - 1
	dialTimeout   = 15 * time.Second
)

// Options configures a Driver.
type Options struct {
	// Prefetch bounds how many unacknowledged deliveries the driver holds
	// (basic.qos prefetch-count). Zero or less means DefaultPrefetch.
	Prefetch int
	// PoisonQueue names the poison queue; empty means "<queue>-poison".
	PoisonQueue string
	// NativeDeadLetter makes DeadLetter reject the delivery without requeue,
	// so that the queue's own dead-letter exchange takes it.
	NativeDeadLetter bool
	// CreateIfMissing declares a missing queue as a durable quorum queue.
	// Without it, Receive on a missing queue returns an error wrapping
	// triggers.ErrNotFound.
	CreateIfMissing bool
	// ReceiveWait is how long Receive waits for a first delivery; zero
	// means DefaultReceiveWait.
	ReceiveWait time.Duration
	// ConnectionName names the consuming connection for the broker
	// (rabbitmqctl list_connections name client_properties); empty means
	// "jobhost <queue>". Publish uses the shared "jobhost publishers".
	ConnectionName string
	// AckDelay is the longest a completed delivery's acknowledgement waits
	// for those received before it, so that one basic.ack (multiple=true)
	// acknowledges them all (see the package documentation). Zero means
	// DefaultAckDelay; negative means every Complete sends its own ack at
	// once.
	AckDelay time.Duration
}

// Driver is a triggers.Driver for one RabbitMQ queue. It is safe for
// concurrent use.
type Driver struct {
	serverURL string // secret: has the password
	display   string // serverURL with the password replaced
	password  string
	user      string

	queue       string
	retryQueue  string
	poisonQueue string
	opts        Options

	mu    sync.Mutex // guards sess; held while connecting
	sess  *session
	pubMu sync.Mutex // guards pub
	pub   *publisher // Publish's, on the connection shared by publishers

	closed atomic.Bool
	life   context.Context // cancelled by Close, which aborts a connect
	kill   context.CancelFunc
}

var (
	_ triggers.Driver      = (*Driver)(nil)
	_ triggers.Waiter      = (*Driver)(nil)
	_ triggers.OpenURLFunc = OpenURL
)

// errClosed is what every method returns, wrapped, after Close.
var errClosed = fmt.Errorf("driver %w", triggers.ErrClosed)

// Open returns a driver for queue on the server at serverURL
// (amqp://user:password@host:port/vhost or amqps://...). It checks the URL
// but does not connect (so ctx is unused): the first Receive connects, and
// reports a wrong address or password; the runtime keeps polling.
func Open(ctx context.Context, serverURL, queue string, opts Options) (*Driver, error) {
	serverURL = strings.TrimSpace(serverURL)
	u, err := parseServerURL(serverURL)
	if err != nil {
		return nil, err
	}
	if queue == "" {
		return nil, errors.New("rabbitmq: empty queue name")
	}
	if opts.Prefetch <= 0 {
		opts.Prefetch = DefaultPrefetch
	}
	if opts.ReceiveWait <= 0 {
		opts.ReceiveWait = DefaultReceiveWait
	}
	if opts.ConnectionName == "" {
		opts.ConnectionName = "jobhost " + queue
	}
	if opts.AckDelay == 0 {
		opts.AckDelay = DefaultAckDelay
	}
	d := &Driver{
		serverURL:   serverURL,
		display:     u.Redacted(),
		user:        u.User.Username(),
		queue:       queue,
		retryQueue:  queue + RetrySuffix,
		poisonQueue: opts.PoisonQueue,
		opts:        opts,
	}
	d.password, _ = u.User.Password()
	d.life, d.kill = context.WithCancel(context.Background())
	if d.poisonQueue == "" {
		d.poisonQueue = queue + PoisonSuffix
	}
	if !opts.NativeDeadLetter && (d.poisonQueue == queue || d.poisonQueue == d.retryQueue) {
		return nil, fmt.Errorf("rabbitmq: poison queue %q for queue %q must be another queue", d.poisonQueue, queue)
	}
	return d, nil
}

// Queue returns the queue's name.
func (d *Driver) Queue() string { return d.queue }

// RetryQueue returns the name of the delay queue used by Retry with a delay.
func (d *Driver) RetryQueue() string { return d.retryQueue }

// PoisonDestination returns the poison queue's name, or, with
// NativeDeadLetter, a description of the queue's dead-letter exchange.
func (d *Driver) PoisonDestination() string {
	if d.opts.NativeDeadLetter {
		return fmt.Sprintf("dead-letter exchange of queue %q", d.queue)
	}
	return d.poisonQueue
}

// ReceiveWaits reports that Receive waits for messages (triggers.Waiter).
func (d *Driver) ReceiveWaits() bool { return true }

// Close sends the acknowledgements Complete has left pending (see
// Options.AckDelay), then closes the channels and the connection (aborting
// a connect under way; the broker has read the acks once the consumer
// channel's close is confirmed) and the driver's publisher. Deliveries not
// yet settled are requeued by the broker. Close does not settle messages. It is idempotent; after
// it every method returns an error wrapping triggers.ErrClosed.
func (d *Driver) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.kill()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess != nil {
		d.sess.shutdown(errClosed)
		d.sess = nil
	}
	d.pubMu.Lock()
	defer d.pubMu.Unlock()
	if d.pub != nil {
		d.pub.Close()
		d.pub = nil
	}
	return nil
}

// closedErr is what op returns after Close.
func (d *Driver) closedErr(op string) error {
	return fmt.Errorf("rabbitmq: %s queue %q: %w", op, d.queue, errClosed)
}

// Receive returns up to maxMessages deliveries. It waits up to ReceiveWait
// for the first one, then takes only those already delivered to this
// driver. The lease is ignored: RabbitMQ holds a delivery until it is
// settled or the channel closes. When ctx ends while it waits (or
// connects) it returns ctx's error at once; deliveries the broker has
// already pushed stay buffered, unseen, for the next Receive (Close returns
// them to the queue), so none is hidden for a lease.
func (d *Driver) Receive(ctx context.Context, maxMessages int, lease time.Duration) ([]*triggers.Message, error) {
	maxMessages = maxOf(maxMessages, 1)
	s, err := d.session(ctx)
	if err != nil {
		return nil, err
	}
	wait := d.opts.ReceiveWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	timer := time.NewTimer(maxOf(wait, 0))
	defer timer.Stop()
	var out []*triggers.Message
	var now time.Time
	select {
	case dv, ok := <-s.deliveries:
		if !ok {
			return nil, d.lost(s)
		}
		now = time.Now()
		out = append(out, d.message(s, dv, now))
	case <-s.done:
		return nil, d.lost(s)
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("rabbitmq: receive from queue %q: %w", d.queue, ctx.Err())
	}
drain:
	for len(out) < maxMessages {
		select {
		case dv, ok := <-s.deliveries:
			if !ok {
				break drain
			}
			out = append(out, d.message(s, dv, now))
		default:
			break drain
		}
	}
	if s.dead() {
		// The broker has requeued these already: do not hand them out.
		for _, m := range out {
			m.DriverData.(*delivery).state.Store(stateSettled)
		}
		return nil, d.lost(s)
	}
	return out, nil
}

// session returns the live session, connecting if there is none. A session
// found dead is dropped and its loss reported; the next call connects.
func (d *Driver) session(ctx context.Context) (*session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return nil, d.closedErr("receive from")
	}
	if s := d.sess; s != nil {
		if !s.dead() {
			return s, nil
		}
		d.sess = nil
		return nil, s.lostErr(d)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rabbitmq: receive from queue %q: %w", d.queue, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.life, cancel)()
	s, err := d.connect(cctx)
	if d.closed.Load() {
		if err == nil {
			s.shutdown(errClosed)
		}
		return nil, d.closedErr("receive from")
	}
	if err != nil {
		return nil, err
	}
	d.sess = s
	return s, nil
}

// lost drops a dead session and returns why it died.
func (d *Driver) lost(s *session) error {
	// The library closes the deliveries just after it tells the watcher
	// why (a cancel, a close): let the watcher record that first.
	t := time.NewTimer(250 * time.Millisecond)
	select {
	case <-s.done:
	case <-t.C:
	}
	t.Stop()
	s.shutdown(nil)
	d.mu.Lock()
	if d.sess == s {
		d.sess = nil
	}
	d.mu.Unlock()
	return s.lostErr(d)
}

// Complete acknowledges the delivery: at once, together with the completed
// deliveries received before it, or, while one received before it is
// still held, within Options.AckDelay (see the package documentation).
// It does not wait for the broker (AMQP 0-9-1 acks are not answered).
func (d *Driver) Complete(ctx context.Context, m *triggers.Message) error {
	dv, err := d.begin("complete", m)
	if err != nil {
		return err
	}
	if err := dv.s.acks.complete(dv.tag); err != nil {
		dv.state.Store(stateSettled)
		return d.settleLost("complete", m, err)
	}
	dv.state.Store(stateSettled)
	return nil
}

// Retry gives the delivery up; it is delivered again after delay with its
// DequeueCount one higher. See the package documentation for how.
func (d *Driver) Retry(ctx context.Context, m *triggers.Message, delay time.Duration) error {
	dv, err := d.begin("retry", m)
	if err != nil {
		return err
	}
	s := dv.s
	if delay <= 0 && dv.nackRequeues() {
		err := s.ch.Nack(dv.tag, false, true)
		s.acks.settled(dv.tag)
		dv.state.Store(stateSettled)
		if err != nil {
			return d.settleLost("retry", m, err)
		}
		return nil
	}
	target, ensure := d.queue, (func(context.Context, *confirmer) error)(nil)
	pub := d.copyOf(dv, true)
	pub.Headers[HeaderAttempt] = m.DequeueCount + 1
	if delay > 0 {
		target, ensure = d.retryQueue, d.ensureRetryQueue
		pub.Expiration = expiration(delay)
	}
	if err := s.publish(ctx, target, pub, ensure); err != nil {
		dv.state.Store(stateHeld)
		return d.wrap(fmt.Errorf("rabbitmq: retry message %s from queue %q: publish copy to queue %q (the original stays held): %w", m.ID, d.queue, target, err))
	}
	err = s.ch.Ack(dv.tag, false)
	s.acks.settled(dv.tag)
	if err != nil {
		dv.state.Store(stateSettled)
		return d.settleLost(fmt.Sprintf("retry (copy made in queue %q, so the message will be delivered twice)", target), m, err)
	}
	dv.state.Store(stateSettled)
	return nil
}

// ExtendLease does nothing: RabbitMQ holds a delivery until it is settled or
// its channel closes. It returns an error wrapping triggers.ErrLeaseLost when
// the message is settled or its channel is gone.
func (d *Driver) ExtendLease(ctx context.Context, m *triggers.Message, lease time.Duration) error {
	dv, err := d.delivery("extend lease of", m)
	if err != nil {
		return err
	}
	switch {
	case dv.state.Load() == stateSettled:
		return fmt.Errorf("rabbitmq: extend lease of message %s in queue %q: already settled: %w", m.ID, d.queue, triggers.ErrLeaseLost)
	case dv.s.dead():
		return d.settleLost("extend lease of", m, dv.s.cause())
	}
	return nil
}

// DeadLetter moves the message to the poison queue (or, with
// NativeDeadLetter, rejects it to the queue's dead-letter exchange) and
// returns the poison copy's message id ("" for native dead-lettering). If
// the copy cannot be made the original stays held and an error is returned.
func (d *Driver) DeadLetter(ctx context.Context, m *triggers.Message, reason string) (string, error) {
	dv, err := d.begin("dead-letter", m)
	if err != nil {
		return "", err
	}
	s := dv.s
	if d.opts.NativeDeadLetter {
		err := s.ch.Nack(dv.tag, false, false)
		s.acks.settled(dv.tag)
		if err != nil {
			dv.state.Store(stateSettled)
			return "", d.settleLost("dead-letter", m, err)
		}
		dv.state.Store(stateSettled)
		return "", nil
	}
	pub := d.copyOf(dv, false)
	pub.Headers[HeaderReason] = truncate(reason, maxReason)
	pub.Headers[HeaderSource] = d.queue
	if err := s.publish(ctx, d.poisonQueue, pub, d.ensurePoisonQueue); err != nil {
		dv.state.Store(stateHeld)
		return "", d.wrap(fmt.Errorf("rabbitmq: dead-letter message %s from queue %q: publish to poison queue %q (the original stays held): %w", m.ID, d.queue, d.poisonQueue, err))
	}
	err = s.ch.Ack(dv.tag, false)
	s.acks.settled(dv.tag)
	if err != nil {
		dv.state.Store(stateSettled)
		return pub.MessageId, d.settleLost(fmt.Sprintf("dead-letter (poison copy %s made in queue %q, but the original will be delivered again)", pub.MessageId, d.poisonQueue), m, err)
	}
	dv.state.Store(stateSettled)
	return pub.MessageId, nil
}

// delivery returns the driver data of a message received by this driver.
func (d *Driver) delivery(op string, m *triggers.Message) (*delivery, error) {
	if m == nil {
		return nil, fmt.Errorf("rabbitmq: %s: nil message", op)
	}
	if d.closed.Load() {
		return nil, fmt.Errorf("rabbitmq: %s message %s in queue %q: %w", op, m.ID, d.queue, errClosed)
	}
	dv, ok := m.DriverData.(*delivery)
	if !ok || dv == nil || dv.s == nil || dv.s.d != d {
		return nil, fmt.Errorf("rabbitmq: %s message %s: not received by this driver (queue %q): %w", op, m.ID, d.queue, triggers.ErrLeaseLost)
	}
	return dv, nil
}

// begin claims a held delivery for one settle operation.
func (d *Driver) begin(op string, m *triggers.Message) (*delivery, error) {
	dv, err := d.delivery(op, m)
	if err != nil {
		return nil, err
	}
	if !dv.state.CompareAndSwap(stateHeld, stateBusy) {
		return nil, fmt.Errorf("rabbitmq: %s message %s in queue %q: already settled: %w", op, m.ID, d.queue, triggers.ErrLeaseLost)
	}
	if dv.s.dead() {
		dv.state.Store(stateSettled)
		return nil, d.settleLost(op, m, dv.s.cause())
	}
	return dv, nil
}

// settleLost reports a delivery whose channel is gone.
func (d *Driver) settleLost(op string, m *triggers.Message, cause error) error {
	return d.wrap(fmt.Errorf("rabbitmq: %s message %s in queue %q: the channel it came on is closed and the broker has requeued it (%v): %w",
		op, m.ID, d.queue, cause, triggers.ErrLeaseLost))
}

// wrap redacts the server password from an error's text.
func (d *Driver) wrap(err error) error { return wrapSecret(err, d.password) }

// wrapSecret redacts password (and URL passwords) from an error's text.
func wrapSecret(err error, password string) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: redact(err.Error(), password), err: err}
}
