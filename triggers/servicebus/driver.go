package servicebus

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"gocloud.dev/pubsub/azuresb"

	"github.com/jobhost/jobhost/triggers"
)

// Driver is a triggers.Driver for one Service Bus queue or topic
// subscription. It is safe for concurrent use.
type Driver struct {
	entity Entity
	path   string
	opts   Options
	recv   receiver
	send   sender // nil: no scheduled retry copies

	// release drops OpenURL's reference to the shared client; nil when
	// the client is the caller's.
	release func(context.Context) error

	recvMu sync.Mutex // azservicebus forbids concurrent ReceiveMessages

	mu       sync.Mutex // guards closed and wg.Add
	closed   bool
	closeCtx context.Context // cancelled when Close begins
	stop     context.CancelFunc
	closing  <-chan struct{} // closeCtx.Done()
	wg       sync.WaitGroup  // background renewers
}

// Open returns a driver that receives from e through r, normally an
// *azservicebus.Receiver opened in PeekLock mode on e, and schedules delayed
// retries through s, normally an *azservicebus.Sender on the same queue; s
// may be nil (required nil for a topic subscription or a dead-letter queue:
// see the package doc). The driver owns r and s: Close closes them. opts may
// be nil.
func Open(r receiver, s sender, e Entity, opts *Options) (*Driver, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	s, o, err := checkOpen("Open", r, s, e, opts)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Driver{entity: e, path: e.Path(), opts: o, recv: r, send: s, closeCtx: ctx, stop: stop, closing: ctx.Done()}, nil
}

// checkOpen checks the receiver and sender given to fn (Open or
// NewPoisonAdmin) for e: r must not be nil, and s (a nil
// *azservicebus.Sender counts as none) can only be used with a queue. It
// returns s and a normalized copy of opts, which may be nil.
func checkOpen(fn string, r any, s sender, e Entity, opts *Options) (sender, Options, error) {
	if pr, ok := r.(*azservicebus.Receiver); r == nil || (ok && pr == nil) {
		return nil, Options{}, fmt.Errorf("servicebus: %s %s: nil receiver", fn, e.Path())
	}
	if ps, ok := s.(*azservicebus.Sender); ok && ps == nil {
		s = nil
	}
	if s != nil && (e.Queue == "" || e.DeadLetterQueue) {
		return nil, Options{}, fmt.Errorf("servicebus: %s %s: a sender can only be used with a queue (a copy sent to a topic reaches every subscription)", fn, e.Path())
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.normalize(); err != nil {
		return nil, Options{}, err
	}
	return s, o, nil
}

// OpenClient opens a PeekLock receiver for e on client (a topic
// subscription through gocloud's azuresb.NewReceiver) and, for a queue, a
// sender for scheduled retry copies, and returns a driver on them. The
// client stays the caller's.
func OpenClient(client *azservicebus.Client, e Entity, opts *Options) (*Driver, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	r, err := newReceiver(client, e)
	if err != nil {
		return nil, err
	}
	var s sender
	if e.Queue != "" && !e.DeadLetterQueue {
		snd, err := client.NewSender(e.Queue, nil)
		if err != nil {
			_ = closeParts(context.Background(), "", nil, r.Close, nil)
			return nil, wrapErr(fmt.Sprintf("open sender for %s", e.Path()), err, false)
		}
		s = snd
	}
	d, err := Open(r, s, e, opts)
	if err != nil {
		_ = closeParts(context.Background(), "", s, r.Close, nil)
		return nil, err
	}
	return d, nil
}

// newReceiver opens a PeekLock receiver for e on client: a queue's with
// the client, a topic subscription's with gocloud's azuresb.NewReceiver.
func newReceiver(client *azservicebus.Client, e Entity) (*azservicebus.Receiver, error) {
	ro := &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModePeekLock}
	if e.DeadLetterQueue {
		ro.SubQueue = azservicebus.SubQueueDeadLetter
	}
	var (
		r   *azservicebus.Receiver
		err error
	)
	if e.Queue != "" {
		r, err = client.NewReceiverForQueue(e.Queue, ro)
	} else {
		r, err = azuresb.NewReceiver(client, e.Topic, e.Subscription, ro)
	}
	if err != nil {
		return nil, wrapErr(fmt.Sprintf("open receiver for %s", e.Path()), err, false)
	}
	return r, nil
}

// Entity returns what the driver receives from.
func (d *Driver) Entity() Entity { return d.entity }

// Options returns the driver's options, with defaults filled in.
func (d *Driver) Options() Options { return d.opts }

// ReceiveWaits reports true: Receive waits up to Options.ReceiveWait for a
// message (triggers.Waiter).
func (d *Driver) ReceiveWaits() bool { return true }

// PoisonDestination returns "<entity path>/$deadletterqueue", or "" for a
// driver that reads a dead-letter queue.
func (d *Driver) PoisonDestination() string {
	if d.entity.DeadLetterQueue {
		return ""
	}
	return d.path + DeadLetterSuffix
}

// Close stops lock renewal (messages still in flight are redelivered when
// their locks run out), ends a waiting Receive, abandons messages held for
// a delayed retry, and closes the receiver, the sender and OpenURL's
// reference to the shared client (the last reference closes it). It is
// idempotent; afterwards every other method returns an error wrapping
// ErrClosed.
func (d *Driver) Close() error {
	if !markClosed(&d.mu, &d.closed, d.stop) {
		return nil
	}
	d.wg.Wait()

	return closeParts(context.Background(), d.path, d.send, func(ctx context.Context) error {
		d.recvMu.Lock()
		defer d.recvMu.Unlock()
		return d.recv.Close(ctx)
	}, d.release)
}

// markClosed sets *closed under mu and calls stop (unless nil) while it
// holds mu. It reports false, doing nothing, when *closed was set already.
func markClosed(mu *sync.Mutex, closed *bool, stop func()) bool {
	mu.Lock()
	defer mu.Unlock()
	if *closed {
		return false
	}
	*closed = true
	if stop != nil {
		stop()
	}
	return true
}

// closeParts closes s (unless nil), then the receiver through closeRecv
// (unless nil), then releases the shared client (unless release is nil),
// within closeTimeout from now, ignoring ctx's cancellation. Its error,
// "servicebus: close <what>: ...", names every part that failed, redacted.
func closeParts(ctx context.Context, what string, s sender, closeRecv, release func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	var errs []string
	if s != nil {
		if err := s.Close(ctx); err != nil {
			errs = append(errs, "sender: "+Redact(err.Error()))
		}
	}
	if closeRecv != nil {
		if err := closeRecv(ctx); err != nil {
			errs = append(errs, "receiver: "+Redact(err.Error()))
		}
	}
	if release != nil {
		if err := release(ctx); err != nil {
			errs = append(errs, "client: "+Redact(err.Error()))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("servicebus: close %s: %s", what, strings.Join(errs, "; "))
	}
	return nil
}

func (d *Driver) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// state returns the driver's private state of m.
func (d *Driver) state(m *triggers.Message, op string) (*msgState, error) {
	if d.isClosed() {
		id := ""
		if m != nil {
			id = " " + m.ID
		}
		return nil, closedErr(fmt.Sprintf("%s message%s in %s", op, id, d.path))
	}
	if m == nil {
		return nil, fmt.Errorf("servicebus: %s: nil message", op)
	}
	s, ok := m.DriverData.(*msgState)
	if !ok || s == nil || s.d != d {
		return nil, fmt.Errorf("servicebus: %s message %s: it was not received by this driver (%s)", op, m.ID, d.path)
	}
	return s, nil
}
