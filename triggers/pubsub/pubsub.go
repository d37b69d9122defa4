// Package pubsub is the trigger driver core for gocloud.dev pubsub
// subscriptions. It imports only gocloud.dev/pubsub: the schemes live in
// subpackages that link their gocloud driver and register with package
// triggers when imported — mempubsub (mem://), awssqs (awssqs://),
// gcppubsub (gcppubsub://) and kafka (kafka://). Each describes its scheme
// to the core with a [Kind].
//
// gocloud's portable API has no lease extension, no delayed redelivery and
// no dead-lettering, and not every broker counts deliveries, so this driver
// adds a documented fallback that survives a worker restart and works with
// several workers:
//
//   - Delivery count: the broker's own where its Kind exposes it (SQS
//     ApproximateReceiveCount, Pub/Sub DeliveryAttempt), combined with the
//     metadata key jobhost-attempt that retried copies carry.
//   - Retry after a delay: a message is never held past its ack deadline,
//     where the broker would redeliver it with its count reset. A delay that
//     ends within half the ack deadline (counted from the receive) is held in
//     the driver, then a copy with jobhost-attempt incremented is published
//     to the source topic and only then is the original acked. A longer
//     delay, or any delay when the deadline is unknown, publishes that copy
//     at once with jobhost-not-before (unix milliseconds) and acks the
//     original. Receive does not return a copy before its not-before: it
//     holds it, unacked, until it is due or for half the ack deadline,
//     whichever is first, and then republishes it (same attempt count,
//     not-before dropped once due) and acks it, so the host always gets a
//     fresh ack deadline. The cost is one publish and ack per half deadline
//     of remaining delay (an hour on Pub/Sub's 10 s: 720). A crash leaves the
//     held message unacked for the broker to redeliver: a retry can
//     duplicate, it never loses. Not-before times are wall-clock times of
//     the publishing worker.
//   - Poison: the body and metadata are published unchanged (plus
//     jobhost-reason and jobhost-source) to a poison topic, by default
//     "<name>-poison", and then the original is acked. Where a scheme can
//     read its poison topic back (its Kind has a Poison opener: all four
//     do, see each package) Kind.OpenPoison administers it through
//     NewPoisonAdmin: requeued copies go to the source topic first, and
//     leave the poison topic only after the publish returned.
//   - Leases: ExtendLease is a no-op; the broker's own ack deadline applies
//     (mem://...?ackdeadline=10m, the SQS queue's visibility timeout, the
//     Pub/Sub subscription's ack deadline).
//
// Delayed publishing: neither the Driver nor the schemes' publishers are a
// triggers.DelayPublisher, so a caller asking for a delay reports that the
// broker cannot delay a message. Publishing with jobhost-not-before would
// rest on the retry deferral above, which is sound only for a copy sent
// back into the trigger's own topic by its own driver, and not for what a
// publisher sends to a topic: a consumer that is not a jobhost trigger, or
// a trigger without a topic to republish to (gcppubsub:// without topic=),
// receives it at once; and each deferral republishes to the topic, so on a
// topic read by several subscriptions (Pub/Sub, Kafka consumer groups,
// mem://) every re-park of every subscription's copy reaches all of them
// again, multiplying the message. The delay would also be the publishing
// host's wall clock, not the broker's.
//
// gocloud's Receive prefetches; this driver takes one message per Receive so
// the host's concurrency gate, not the prefetch, decides how many are in
// flight.
package pubsub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"gocloud.dev/gcerrors"
	gcpubsub "gocloud.dev/pubsub"

	"github.com/jobhost/jobhost/triggers"
)

// Metadata keys the driver adds.
const (
	// AttemptKey carries the delivery count of a retried copy.
	AttemptKey = "jobhost-attempt"
	// IDKey carries a message id across retried copies when the broker
	// gives none.
	IDKey = "jobhost-id"
	// ReasonKey carries, on a poison copy, why it was poisoned.
	ReasonKey = "jobhost-reason"
	// SourceKey carries, on a poison copy, the source it was poisoned from.
	SourceKey = "jobhost-source"
	// NotBeforeKey carries, on a delayed retried copy, the time (unix
	// milliseconds) before which Receive does not return it.
	NotBeforeKey = "jobhost-not-before"
)

// NoAckDeadline is an ack deadline meaning the broker never redelivers an
// unacked message by itself (Kafka).
const NoAckDeadline time.Duration = -1

// receiveWait is how long Receive waits for a first message.
const receiveWait = 2 * time.Second

// Options configure a Driver.
type Options struct {
	// Subscription is the source.
	Subscription *gcpubsub.Subscription
	// Topic receives retried copies (the topic Subscription reads). Nil
	// means a retry is a Nack where the broker supports it, else the
	// message waits for its ack deadline.
	Topic *gcpubsub.Topic
	// Poison receives poisoned messages; nil means DeadLetter fails and the
	// message stays.
	Poison *gcpubsub.Topic
	// Name and PoisonName name the source and poison destination in logs.
	Name, PoisonName string
	// Attempts returns the broker's own delivery count of a message, if it
	// has one.
	Attempts func(*gcpubsub.Message) (int64, bool)
	// SentTime returns when the broker received a message, or the zero
	// time when it does not say.
	SentTime func(*gcpubsub.Message) time.Time
	// Owned lists topics and subscriptions the driver closes (Shutdown).
	Owned []interface{ Shutdown(context.Context) error }
	// AckDeadline is how long the broker waits for an ack before it
	// redelivers: NoAckDeadline when it never does, zero when unknown (a
	// delayed retry then always republishes at once with not-before).
	AckDeadline time.Duration
}

// Driver is a triggers.Driver over a gocloud subscription.
type Driver struct {
	o        Options
	life     *life
	hold     time.Duration // how long a received message may stay unacked; <0: unbounded
	mu       sync.Mutex
	pending  map[*triggers.Message]*time.Timer
	deferred map[*deferred]struct{}
}

var (
	_ triggers.Driver    = (*Driver)(nil)
	_ triggers.Waiter    = (*Driver)(nil)
	_ triggers.Publisher = (*Driver)(nil)
)

// New returns a driver for o.Subscription.
func New(o Options) *Driver {
	return &Driver{
		o: o, life: newLife(), hold: holdLimit(o.AckDeadline),
		pending: map[*triggers.Message]*time.Timer{}, deferred: map[*deferred]struct{}{},
	}
}

// ReceiveWaits reports that Receive waits for a message (triggers.Waiter).
func (d *Driver) ReceiveWaits() bool { return true }

// Receive waits up to two seconds for one message; copies whose
// not-before is ahead are held and republished, not returned (see the
// package doc). It returns ctx's error
// when ctx ends first, and an error wrapping triggers.ErrClosed when the
// driver is closed, also while it waits.
func (d *Driver) Receive(ctx context.Context, max int, lease time.Duration) ([]*triggers.Message, error) {
	cctx, exit, ok := d.life.enterCtx(ctx)
	if !ok {
		return nil, d.closedErr("receive")
	}
	defer exit()
	if max < 1 {
		return nil, nil
	}
	rctx, cancel := context.WithTimeout(cctx, receiveWait)
	defer cancel()
	gm, received, err := d.next(rctx)
	if err != nil {
		switch {
		case d.life.closing():
			return nil, d.closedErr("receive")
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case rctx.Err() != nil:
			return nil, nil // nothing arrived in time
		}
		return nil, d.wrap("receive", err)
	}
	return []*triggers.Message{d.toMessage(gm, received, lease)}, nil
}

func (d *Driver) toMessage(gm *gcpubsub.Message, received time.Time, lease time.Duration) *triggers.Message {
	props := maps.Clone(gm.Metadata)
	if props == nil {
		props = map[string]string{}
	}
	id := gm.LoggableID
	if v := props[IDKey]; v != "" {
		id = v
	}
	if id == "" {
		id = uuid.NewString()
	}
	m := &triggers.Message{
		ID: id, Body: gm.Body, Properties: props, Source: d.o.Name,
		DequeueCount:    Attempts(gm.Metadata, d.native(gm)),
		NextVisibleTime: received.Add(lease),
		DriverData:      &held{gm: gm, received: received},
	}
	if d.o.SentTime != nil {
		m.InsertionTime = d.o.SentTime(gm)
	}
	return m
}

// held is a received message; settled guards gocloud's Ack and Nack, which
// panic when called twice.
type held struct {
	gm       *gcpubsub.Message
	received time.Time
	settled  atomic.Bool
}

func (d *Driver) native(gm *gcpubsub.Message) int64 {
	if d.o.Attempts == nil {
		return 0
	}
	n, _ := d.o.Attempts(gm)
	return n
}

// Attempts combines the jobhost-attempt metadata of a retried copy with the
// broker's own count of deliveries of that copy (0 if it has none): a copy
// made for attempt 3 that the broker delivers a second time is attempt 4.
func Attempts(metadata map[string]string, native int64) int64 {
	base := int64(1)
	if s := metadata[AttemptKey]; s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			base = n
		}
	}
	if native > 1 {
		base += native - 1
	}
	return base
}

// settle claims m for settling; a message settled before gives
// ErrLeaseLost.
func settle(m *triggers.Message) (*gcpubsub.Message, error) {
	h, ok := m.DriverData.(*held)
	if !ok {
		return nil, fmt.Errorf("pubsub: message %s was not received by this driver: %w", m.ID, triggers.ErrLeaseLost)
	}
	if !h.settled.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("pubsub: message %s was already settled: %w", m.ID, triggers.ErrLeaseLost)
	}
	return h.gm, nil
}

// unsettle gives m back after a settlement that did not happen.
func unsettle(m *triggers.Message) { m.DriverData.(*held).settled.Store(false) }

// Complete acks the message.
func (d *Driver) Complete(ctx context.Context, m *triggers.Message) error {
	exit, ok := d.life.enter()
	if !ok {
		return d.closedErr("complete")
	}
	defer exit()
	gm, err := settle(m)
	if err != nil {
		return err
	}
	gm.Ack()
	return nil
}

// Retry republishes a copy with the attempt count incremented and acks the
// original; without a topic it nacks. A delay that ends within half the ack
// deadline runs in the background (Retry returns at once) and ends early,
// leaving the original unacked for the broker to redeliver, if the driver
// closes. A longer delay publishes the copy at once with not-before; without
// a topic the original is then left for the broker to redeliver at its ack
// deadline.
func (d *Driver) Retry(ctx context.Context, m *triggers.Message, delay time.Duration) error {
	cctx, exit, ok := d.life.enterCtx(ctx)
	if !ok {
		return d.closedErr("retry")
	}
	defer exit()
	gm, err := settle(m)
	if err != nil {
		return err
	}
	var notBefore time.Time
	if delay > 0 {
		if d.canHold(m.DriverData.(*held).received, delay) {
			d.retryLater(m, gm, delay)
			return nil
		}
		if d.o.Topic == nil {
			return nil // redelivered at the ack deadline
		}
		notBefore = time.Now().Add(delay)
	}
	if err := d.retryNow(cctx, m, gm, notBefore); err != nil {
		unsettle(m)
		return err
	}
	return nil
}

// canHold reports whether a message received at received may be held for
// delay before its copy is published: within half the ack deadline.
func (d *Driver) canHold(received time.Time, delay time.Duration) bool {
	if d.o.AckDeadline == 0 {
		return false
	}
	return d.hold < 0 || !time.Now().Add(delay).After(received.Add(d.hold))
}

// retryLater holds gm for delay, then retries it.
func (d *Driver) retryLater(m *triggers.Message, gm *gcpubsub.Message, delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending[m] = time.AfterFunc(delay, func() {
		d.mu.Lock()
		_, ok := d.pending[m]
		delete(d.pending, m)
		d.mu.Unlock()
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ctx, exit, ok := d.life.enterCtx(ctx)
		if !ok {
			return // closed: the original stays unacked and is redelivered
		}
		defer exit()
		_ = d.retryNow(ctx, m, gm, time.Time{}) // on failure the original stays unacked and is redelivered
	})
}

// retryNow publishes the copy for the next attempt, due at notBefore (zero:
// at once), and acks gm; without a topic it nacks gm.
func (d *Driver) retryNow(ctx context.Context, m *triggers.Message, gm *gcpubsub.Message, notBefore time.Time) error {
	if d.o.Topic == nil {
		if gm.Nackable() {
			gm.Nack()
		}
		return nil
	}
	md := copyMetadata(gm.Metadata)
	md[AttemptKey] = strconv.FormatInt(m.DequeueCount+1, 10)
	md[IDKey] = m.ID
	delete(md, NotBeforeKey)
	if !notBefore.IsZero() {
		md[NotBeforeKey] = strconv.FormatInt(notBefore.UnixMilli(), 10)
	}
	if err := d.o.Topic.Send(ctx, &gcpubsub.Message{Body: gm.Body, Metadata: md}); err != nil {
		return d.wrap("republish for retry", err)
	}
	gm.Ack()
	return nil
}

// ExtendLease is a no-op: gocloud has no lease extension.
func (d *Driver) ExtendLease(ctx context.Context, m *triggers.Message, lease time.Duration) error {
	if d.life.closing() {
		return d.closedErr("extend lease")
	}
	return nil
}

// DeadLetter publishes the message to the poison topic, then acks it.
func (d *Driver) DeadLetter(ctx context.Context, m *triggers.Message, reason string) (string, error) {
	cctx, exit, ok := d.life.enterCtx(ctx)
	if !ok {
		return "", d.closedErr("dead-letter")
	}
	defer exit()
	if d.o.Poison == nil {
		return "", fmt.Errorf("pubsub: %s has no poison topic", d.o.Name)
	}
	gm, err := settle(m)
	if err != nil {
		return "", err
	}
	md := copyMetadata(gm.Metadata)
	md[ReasonKey] = truncate(reason, 1024)
	md[SourceKey] = d.o.Name
	md[IDKey] = m.ID
	if err := d.o.Poison.Send(cctx, &gcpubsub.Message{Body: gm.Body, Metadata: md}); err != nil {
		unsettle(m)
		return "", d.wrap("publish to poison", err)
	}
	gm.Ack()
	return "", nil
}

// PoisonDestination names the poison topic.
func (d *Driver) PoisonDestination() string { return d.o.PoisonName }

// Close ends calls waiting in Receive or a publish, stops pending delayed
// retries and held copies (their messages stay unacked and are redelivered
// by the broker) and shuts down what the driver owns. It is idempotent; afterwards every
// method returns an error wrapping triggers.ErrClosed.
func (d *Driver) Close() error {
	if !d.life.close() {
		return nil
	}
	d.mu.Lock()
	for m, t := range d.pending {
		t.Stop()
		delete(d.pending, m)
	}
	for p := range d.deferred {
		p.timer.Stop()
		delete(d.deferred, p)
	}
	d.mu.Unlock()
	return shutdown(d.o.Owned)
}

// shutdown shuts down each of owned, within 30 seconds in all.
func shutdown(owned []interface{ Shutdown(context.Context) error }) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, s := range owned {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Driver) closedErr(op string) error {
	return fmt.Errorf("pubsub: %s %s: %w", op, d.o.Name, triggers.ErrClosed)
}

func (d *Driver) wrap(op string, err error) error {
	return wrapErr(op, d.o.Name, err, d.life)
}

// wrapErr adds op and name to err, and ErrClosed when l is closing (the
// call was ended by Close) or ErrNotFound when gocloud says so.
func wrapErr(op, name string, err error, l *life) error {
	switch {
	case l.closing():
		return fmt.Errorf("pubsub: %s %s: %w: %w", op, name, triggers.ErrClosed, err)
	case gcerrors.Code(err) == gcerrors.NotFound:
		return fmt.Errorf("pubsub: %s %s: %w: %w", op, name, triggers.ErrNotFound, err)
	}
	return fmt.Errorf("pubsub: %s %s: %w", op, name, err)
}

func copyMetadata(in map[string]string) map[string]string {
	out := make(map[string]string, len(in)+3)
	maps.Copy(out, in)
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// outgoing is a message of copies of body and props: gocloud's in-memory
// topics keep what they are sent.
func outgoing(body []byte, props map[string]string) *gcpubsub.Message {
	return &gcpubsub.Message{Body: bytes.Clone(body), Metadata: maps.Clone(props)}
}

// Publish sends body with props to the source topic (triggers.Publisher).
func (d *Driver) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	cctx, exit, ok := d.life.enterCtx(ctx)
	if !ok {
		return "", d.closedErr("publish to")
	}
	defer exit()
	if d.o.Topic == nil {
		return "", fmt.Errorf("pubsub: %s has no topic to publish to", d.o.Name)
	}
	if err := d.o.Topic.Send(cctx, outgoing(body, props)); err != nil {
		return "", d.wrap("publish to", err)
	}
	return "", nil
}
