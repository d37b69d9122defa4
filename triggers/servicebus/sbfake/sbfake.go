// Package sbfake is an in-memory Azure Service Bus namespace for tests of
// package servicebus, faked at the azservicebus boundary: its Receiver and
// Sender have the methods of *azservicebus.Receiver and *azservicebus.Sender
// that the driver uses, and take and return the real azservicebus types.
//
// What it models, as Service Bus does it:
//   - queues, and topics that copy each message to every subscription;
//   - PeekLock: a received message is locked for the entity's LockDuration
//     under a fresh lock token; RenewMessageLock extends it by LockDuration
//     from now and updates ReceivedMessage.LockedUntil;
//   - DeliveryCount: 1 on the first delivery, one more after each abandon
//     or lock expiry;
//   - settling (complete, abandon, dead-letter, renew) with a token that is
//     not the message's current lock (expired, settled, or redelivered to
//     someone else) fails with an *azservicebus.Error of code CodeLockLost;
//   - dead-letter queues ("<entity>/$deadletterqueue") with
//     DeadLetterReason, DeadLetterErrorDescription and DeadLetterSource,
//     and native dead-lettering once DeliveryCount reaches MaxDeliveryCount
//     (reason "MaxDeliveryCountExceeded"); a dead-lettered message keeps its
//     sequence number, so a dead-letter queue is in dead-lettering order,
//     not sequence order. Receivers on a dead-letter queue receive, peek,
//     complete and abandon as on any entity (an abandon there never
//     dead-letters);
//   - PeekMessages: every message (locked and scheduled ones too) from a
//     sequence number on, in sequence order, without locking it or
//     counting a delivery; without FromSequenceNumber it continues after
//     the receiver's last peek, as the real one does;
//   - runtime properties (the management API): the Broker has the
//     *admin.Client methods GetQueueRuntimeProperties and
//     GetSubscriptionRuntimeProperties, with the active, scheduled and
//     dead-letter counts, and a nil response for a missing entity; inject
//     an *azcore.ResponseError with status 401 to model credentials
//     without the Manage right;
//   - scheduled messages (ScheduledEnqueueTime; EnqueuedTime is the
//     scheduled time), CancelScheduledMessages;
//   - time to live (ExpiresAt; expired messages are dropped, or
//     dead-lettered with DeadLetteringOnMessageExpiration);
//   - duplicate detection by MessageID within a window;
//   - a receive on a missing entity fails like the real link attach, with an
//     *amqp.Error of condition amqp:not-found; ReceiveMessages waits until a
//     message is available or its context ends, returns the context's error
//     when none came, and may not be called concurrently;
//   - a closed receiver or sender fails with CodeClosed.
//
// What it does not model: AMQP links, credits and the SDK's releaser (so no
// prefetch), connection loss and retries (inject errors with FailNext
// instead), sessions, partitions, transactions, deferral, auto-forwarding,
// subscription filters, message size beyond a 256 KiB check, throttling,
// authentication, and clock skew between broker and host (it uses the
// host's clock).
package sbfake

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"
	"github.com/google/uuid"
)

// Op names a broker operation, for FailNext and Calls.
type Op string

// Operations.
const (
	OpReceive    Op = "ReceiveMessages"
	OpComplete   Op = "CompleteMessage"
	OpAbandon    Op = "AbandonMessage"
	OpDeadLetter Op = "DeadLetterMessage"
	OpRenew      Op = "RenewMessageLock"
	OpSend       Op = "SendMessage"
	OpSchedule   Op = "ScheduleMessages"
	OpCancel     Op = "CancelScheduledMessages"
	OpPeek       Op = "PeekMessages"
	// OpRuntimeProperties is GetQueueRuntimeProperties and
	// GetSubscriptionRuntimeProperties.
	OpRuntimeProperties Op = "GetRuntimeProperties"
)

const (
	// DefaultLockDuration is Service Bus's default LockDuration.
	DefaultLockDuration = time.Minute
	// DefaultMaxDeliveryCount is Service Bus's default MaxDeliveryCount.
	DefaultMaxDeliveryCount = 10
	// MaxMessageSize is the Standard tier's message size limit.
	MaxMessageSize = 256 * 1024
	// Namespace is the fake namespace's host name, used in error texts.
	Namespace = "fake.servicebus.windows.net"

	dlqSuffix = "/$deadletterqueue"
)

// EntityOptions are a queue's or subscription's properties.
type EntityOptions struct {
	// LockDuration; zero means DefaultLockDuration.
	LockDuration time.Duration
	// MaxDeliveryCount; zero means DefaultMaxDeliveryCount.
	MaxDeliveryCount int
	// DefaultTimeToLive; zero means messages never expire.
	DefaultTimeToLive time.Duration
	// DuplicateDetectionWindow; zero turns duplicate detection off.
	DuplicateDetectionWindow time.Duration
	// DeadLetteringOnMessageExpiration dead-letters expired messages
	// instead of dropping them.
	DeadLetteringOnMessageExpiration bool
}

func (o EntityOptions) withDefaults() EntityOptions {
	if o.LockDuration <= 0 {
		o.LockDuration = DefaultLockDuration
	}
	if o.MaxDeliveryCount <= 0 {
		o.MaxDeliveryCount = DefaultMaxDeliveryCount
	}
	return o
}

// Broker is an in-memory Service Bus namespace. It is safe for concurrent
// use.
type Broker struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	queues  map[string]*entity
	topics  map[string]*topic
	nextSeq int64
	faults  map[Op][]error
	calls   map[Op]int
}

// NewBroker returns an empty namespace.
func NewBroker() *Broker {
	return &Broker{
		changed: make(chan struct{}),
		queues:  map[string]*entity{},
		topics:  map[string]*topic{},
		faults:  map[Op][]error{},
		calls:   map[Op]int{},
	}
}

type topic struct {
	name      string
	subs      []*entity
	dup       time.Duration
	seen      map[string]time.Time
	scheduled map[int64][]*message
}

type entity struct {
	path      string
	topic     string // the topic of a subscription; "" for a queue
	opts      EntityOptions
	msgs      []*message // in sequence order
	dlq       *entity    // nil for a dead-letter queue
	seen      map[string]time.Time
	scheduled map[int64]*message
}

type message struct {
	seq         int64
	id          string
	body        []byte
	props       map[string]any
	sys         azservicebus.Message // system properties (ContentType, ...)
	ttl         *time.Duration
	enqueued    time.Time
	scheduledAt time.Time
	expiresAt   time.Time

	deliveryCount uint32
	locked        bool
	lockToken     [16]byte
	lockedUntil   time.Time

	dlReason, dlDesc, dlSource *string
}

func key(path string) string { return strings.ToLower(strings.TrimSuffix(path, "/")) }

// CreateQueue creates a queue (and its dead-letter queue).
func (b *Broker) CreateQueue(name string, o EntityOptions) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := key(name)
	if b.queues[k] != nil || b.topics[k] != nil || name == "" {
		return fmt.Errorf("sbfake: entity %q exists or is invalid", name)
	}
	b.queues[k] = newEntity(name, o.withDefaults())
	return nil
}

// CreateTopic creates a topic with the given subscriptions, each with
// options o. Their paths are "<topic>/Subscriptions/<subscription>".
func (b *Broker) CreateTopic(name string, o EntityOptions, subscriptions ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := key(name)
	if b.queues[k] != nil || b.topics[k] != nil || name == "" {
		return fmt.Errorf("sbfake: entity %q exists or is invalid", name)
	}
	o = o.withDefaults()
	t := &topic{name: name, dup: o.DuplicateDetectionWindow, seen: map[string]time.Time{}, scheduled: map[int64][]*message{}}
	for _, s := range subscriptions {
		p := name + "/Subscriptions/" + s
		so := o
		so.DuplicateDetectionWindow = 0 // detected at the topic
		e := newEntity(p, so)
		e.topic = name
		t.subs = append(t.subs, e)
		b.queues[key(p)] = e
	}
	b.topics[k] = t
	return nil
}

// DeleteQueue deletes a queue and its dead-letter queue, with their
// messages.
func (b *Broker) DeleteQueue(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.queues, key(name))
	b.notifyLocked()
}

func newEntity(path string, o EntityOptions) *entity {
	e := &entity{path: path, opts: o, seen: map[string]time.Time{}, scheduled: map[int64]*message{}}
	e.dlq = &entity{path: path + dlqSuffix, opts: o, seen: map[string]time.Time{}, scheduled: map[int64]*message{}}
	return e
}

// lookupLocked finds a queue, subscription, or either's dead-letter queue,
// and applies the passage of time to it (and, for a dead-letter queue, to
// the entity that feeds it).
func (b *Broker) lookupLocked(path string, now time.Time) *entity {
	k := key(path)
	if base, ok := strings.CutSuffix(k, dlqSuffix); ok {
		e := b.queues[base]
		if e == nil {
			return nil
		}
		b.sweepLocked(e, now)
		b.sweepLocked(e.dlq, now)
		return e.dlq
	}
	e := b.queues[k]
	if e != nil {
		b.sweepLocked(e, now)
	}
	return e
}

// parentLocked returns the entity a dead-letter queue belongs to, or nil.
func (b *Broker) parentLocked(e *entity) *entity {
	if e.dlq != nil {
		return nil
	}
	return b.queues[key(strings.TrimSuffix(key(e.path), dlqSuffix))]
}

// FailNext makes the next call of op fail with err (calls queue up).
func (b *Broker) FailNext(op Op, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults[op] = append(b.faults[op], err)
}

// Calls returns how many times op was called.
func (b *Broker) Calls(op Op) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[op]
}

// callLocked counts a call and returns an injected fault, if any.
func (b *Broker) callLocked(op Op) error {
	b.calls[op]++
	if fs := b.faults[op]; len(fs) > 0 {
		b.faults[op] = fs[1:]
		return fs[0]
	}
	return nil
}

func (b *Broker) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Snapshot is a message's state, for tests.
type Snapshot struct {
	SequenceNumber             int64
	MessageID                  string
	Body                       []byte
	ApplicationProperties      map[string]any
	DeliveryCount              uint32
	Locked                     bool
	LockedUntil                time.Time
	EnqueuedTime               time.Time
	ScheduledEnqueueTime       time.Time
	ExpiresAt                  time.Time
	DeadLetterReason           string
	DeadLetterErrorDescription string
	DeadLetterSource           string
}

// Messages returns the messages of an entity path (a queue, a
// subscription, or a "/$deadletterqueue"), scheduled and locked ones
// included, in sequence order. Nil when the entity does not exist.
func (b *Broker) Messages(path string) []Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.lookupLocked(path, time.Now())
	if e == nil {
		return nil
	}
	var out []Snapshot
	for _, m := range e.msgs {
		out = append(out, Snapshot{
			SequenceNumber: m.seq, MessageID: m.id, Body: slices.Clone(m.body), ApplicationProperties: maps.Clone(m.props),
			DeliveryCount: m.deliveryCount, Locked: m.locked, LockedUntil: m.lockedUntil, EnqueuedTime: m.enqueued,
			ScheduledEnqueueTime: m.scheduledAt, ExpiresAt: m.expiresAt,
			DeadLetterReason: deref(m.dlReason), DeadLetterErrorDescription: deref(m.dlDesc), DeadLetterSource: deref(m.dlSource),
		})
	}
	return out
}

// sweepLocked applies the passage of time: locks run out (a failed
// delivery), and unlocked messages past their expiry leave.
func (b *Broker) sweepLocked(e *entity, now time.Time) {
	changed := false
	var keep []*message
	for _, m := range e.msgs {
		if m.locked && !now.Before(m.lockedUntil) {
			m.locked = false
			changed = true
			if b.failedDeliveryLocked(e, m) {
				continue
			}
		}
		if !m.locked && e.dlq != nil && !m.expiresAt.IsZero() && !now.Before(m.expiresAt) {
			changed = true
			if e.opts.DeadLetteringOnMessageExpiration {
				b.deadLetterLocked(e, m, "TTLExpiredException", "The message expired and was dead lettered.")
			}
			continue
		}
		keep = append(keep, m)
	}
	e.msgs = keep
	if changed {
		b.notifyLocked()
	}
}

// failedDeliveryLocked handles an abandon or lock expiry: once
// DeliveryCount has reached MaxDeliveryCount the message is dead-lettered.
// It reports whether the message left e (the caller removes it).
func (b *Broker) failedDeliveryLocked(e *entity, m *message) bool {
	if e.dlq == nil || int(m.deliveryCount) < e.opts.MaxDeliveryCount {
		return false
	}
	b.deadLetterLocked(e, m, "MaxDeliveryCountExceeded",
		fmt.Sprintf("Message could not be consumed after %d delivery attempts.", e.opts.MaxDeliveryCount))
	return true
}

func (b *Broker) deadLetterLocked(e *entity, m *message, reason, desc string) {
	m.locked = false
	m.lockToken = [16]byte{}
	m.dlReason, m.dlDesc, m.dlSource = &reason, &desc, ptr(e.path)
	m.expiresAt = time.Time{} // dead-lettered messages do not expire
	e.dlq.msgs = append(e.dlq.msgs, m)
}

func (e *entity) remove(m *message) {
	e.msgs = slices.DeleteFunc(e.msgs, func(x *message) bool { return x == m })
}

// nextEventLocked returns the next time something in e changes by itself.
func (e *entity) nextEventLocked(now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, m := range e.msgs {
		if m.locked {
			consider(m.lockedUntil)
		}
		consider(m.scheduledAt)
		consider(m.expiresAt)
	}
	return next
}

func (m *message) available(now time.Time) bool {
	return !m.locked && (m.scheduledAt.IsZero() || !now.Before(m.scheduledAt))
}

func (m *message) received() *azservicebus.ReceivedMessage {
	rm := &azservicebus.ReceivedMessage{
		ApplicationProperties:      maps.Clone(m.props),
		Body:                       slices.Clone(m.body),
		ContentType:                m.sys.ContentType,
		CorrelationID:              m.sys.CorrelationID,
		DeliveryCount:              m.deliveryCount,
		EnqueuedTime:               ptr(m.enqueued),
		LockToken:                  m.lockToken,
		LockedUntil:                ptr(m.lockedUntil),
		MessageID:                  m.id,
		PartitionKey:               m.sys.PartitionKey,
		ReplyTo:                    m.sys.ReplyTo,
		ReplyToSessionID:           m.sys.ReplyToSessionID,
		SequenceNumber:             ptr(m.seq),
		SessionID:                  m.sys.SessionID,
		Subject:                    m.sys.Subject,
		TimeToLive:                 m.ttl,
		To:                         m.sys.To,
		DeadLetterReason:           m.dlReason,
		DeadLetterErrorDescription: m.dlDesc,
		DeadLetterSource:           m.dlSource,
	}
	if !m.scheduledAt.IsZero() {
		rm.ScheduledEnqueueTime = ptr(m.scheduledAt)
	}
	if !m.expiresAt.IsZero() {
		rm.ExpiresAt = ptr(m.expiresAt)
	}
	return rm
}

// errNotFound is what attaching a link to a missing entity gives.
func errNotFound(path string) error {
	return &amqp.Error{
		Condition:   amqp.ErrCondNotFound,
		Description: fmt.Sprintf("The messaging entity 'sb://%s/%s' could not be found. TrackingId:%s", Namespace, path, uuid.NewString()),
	}
}

// errLockLost is what settling with a stale lock token gives.
func errLockLost() error {
	return fmt.Errorf("the lock supplied is invalid: either the lock expired, or the message has already been removed from the queue: %w",
		&azservicebus.Error{Code: azservicebus.CodeLockLost})
}

func errClosed(what string) error {
	return fmt.Errorf("%s is closed: %w", what, &azservicebus.Error{Code: azservicebus.CodeClosed})
}

// Receiver is a PeekLock receiver on one entity path, with the methods of
// *azservicebus.Receiver that package servicebus uses.
type Receiver struct {
	b    *Broker
	path string

	mu         sync.Mutex
	receiving  bool
	closed     bool
	lastPeeked int64
}

// NewReceiver returns a receiver for an entity path: a queue,
// "<topic>/Subscriptions/<subscription>", or either with
// "/$deadletterqueue". Like the real one it is lazy: a missing entity
// makes ReceiveMessages fail.
func (b *Broker) NewReceiver(path string) *Receiver { return &Receiver{b: b, path: path} }

func (r *Receiver) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// ReceiveMessages locks and returns up to maxMessages available messages,
// waiting until at least one is available or ctx ends (then it returns
// ctx's error and no messages).
func (r *Receiver) ReceiveMessages(ctx context.Context, maxMessages int, _ *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errClosed("receiver")
	}
	if r.receiving {
		r.mu.Unlock()
		return nil, errors.New("receiver is already receiving messages. ReceiveMessages() cannot be called concurrently")
	}
	r.receiving = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.receiving = false
		r.mu.Unlock()
	}()
	if maxMessages <= 0 || maxMessages > 5000 {
		return nil, fmt.Errorf("maxMessages %d out of range", maxMessages)
	}
	b := r.b
	first := true
	for {
		b.mu.Lock()
		if first {
			first = false
			if err := b.callLocked(OpReceive); err != nil {
				b.mu.Unlock()
				return nil, err
			}
		}
		now := time.Now()
		e := b.lookupLocked(r.path, now)
		if e == nil {
			b.mu.Unlock()
			return nil, errNotFound(r.path)
		}
		var out []*azservicebus.ReceivedMessage
		for _, m := range e.msgs {
			if len(out) == maxMessages {
				break
			}
			if !m.available(now) {
				continue
			}
			m.locked = true
			m.lockToken = newToken()
			m.lockedUntil = now.Add(e.opts.LockDuration)
			m.deliveryCount++
			out = append(out, m.received())
		}
		if len(out) > 0 {
			b.mu.Unlock()
			return out, nil
		}
		next := e.nextEventLocked(now)
		if p := b.parentLocked(e); p != nil {
			if pn := p.nextEventLocked(now); !pn.IsZero() && (next.IsZero() || pn.Before(next)) {
				next = pn
			}
		}
		ch := b.changed
		b.mu.Unlock()

		var (
			timer <-chan time.Time
			t     *time.Timer
		)
		if !next.IsZero() {
			t = time.NewTimer(time.Until(next))
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-ch:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if r.isClosed() {
			return nil, errClosed("receiver")
		}
	}
}

// settle finds the message rm holds the current lock of and calls f.
func (r *Receiver) settle(op Op, rm *azservicebus.ReceivedMessage, f func(e *entity, m *message, now time.Time) error) error {
	if r.isClosed() {
		return errClosed("receiver")
	}
	if rm == nil {
		return errors.New("nil message")
	}
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.callLocked(op); err != nil {
		return err
	}
	now := time.Now()
	e := b.lookupLocked(r.path, now)
	if e == nil {
		return errNotFound(r.path)
	}
	for _, m := range e.msgs {
		if m.locked && m.lockToken == rm.LockToken {
			err := f(e, m, now)
			b.notifyLocked()
			return err
		}
	}
	return errLockLost()
}

// CompleteMessage removes the message.
func (r *Receiver) CompleteMessage(_ context.Context, rm *azservicebus.ReceivedMessage, _ *azservicebus.CompleteMessageOptions) error {
	return r.settle(OpComplete, rm, func(e *entity, m *message, _ time.Time) error {
		e.remove(m)
		return nil
	})
}

// AbandonMessage unlocks the message (or dead-letters it at
// MaxDeliveryCount), applying PropertiesToModify.
func (r *Receiver) AbandonMessage(_ context.Context, rm *azservicebus.ReceivedMessage, o *azservicebus.AbandonMessageOptions) error {
	return r.settle(OpAbandon, rm, func(e *entity, m *message, _ time.Time) error {
		m.locked = false
		m.lockToken = [16]byte{}
		if o != nil {
			m.props = merge(m.props, o.PropertiesToModify)
		}
		if r.b.failedDeliveryLocked(e, m) {
			e.remove(m)
		}
		return nil
	})
}

// DeadLetterMessage moves the message to the dead-letter queue.
func (r *Receiver) DeadLetterMessage(_ context.Context, rm *azservicebus.ReceivedMessage, o *azservicebus.DeadLetterOptions) error {
	return r.settle(OpDeadLetter, rm, func(e *entity, m *message, _ time.Time) error {
		if e.dlq == nil {
			return &amqp.Error{Condition: amqp.ErrCondNotAllowed, Description: "cannot dead-letter a message in a dead-letter queue"}
		}
		var reason, desc string
		if o != nil {
			reason, desc = deref(o.Reason), deref(o.ErrorDescription)
			m.props = merge(m.props, o.PropertiesToModify)
		}
		e.remove(m)
		r.b.deadLetterLocked(e, m, reason, desc)
		if o == nil || o.Reason == nil {
			m.dlReason = nil
		}
		if o == nil || o.ErrorDescription == nil {
			m.dlDesc = nil
		}
		return nil
	})
}

// RenewMessageLock extends the lock by LockDuration from now and updates
// rm.LockedUntil.
func (r *Receiver) RenewMessageLock(_ context.Context, rm *azservicebus.ReceivedMessage, _ *azservicebus.RenewMessageLockOptions) error {
	return r.settle(OpRenew, rm, func(e *entity, m *message, now time.Time) error {
		m.lockedUntil = now.Add(e.opts.LockDuration)
		rm.LockedUntil = ptr(m.lockedUntil)
		return nil
	})
}

// Close closes the receiver. Locked messages stay locked until their locks
// run out.
func (r *Receiver) Close(context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.b.mu.Lock()
	r.b.notifyLocked() // wake a waiting ReceiveMessages
	r.b.mu.Unlock()
	return nil
}

// Sender sends to a queue or topic, with the methods of
// *azservicebus.Sender that package servicebus and its tests use.
type Sender struct {
	b    *Broker
	path string

	mu     sync.Mutex
	closed bool
}

// NewSender returns a sender for a queue or topic. It is lazy: a missing
// entity makes sends fail.
func (b *Broker) NewSender(queueOrTopic string) *Sender { return &Sender{b: b, path: queueOrTopic} }

func (s *Sender) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// SendMessage enqueues msg (scheduled if msg.ScheduledEnqueueTime is set).
func (s *Sender) SendMessage(_ context.Context, msg *azservicebus.Message, _ *azservicebus.SendMessageOptions) error {
	var at time.Time
	if msg != nil && msg.ScheduledEnqueueTime != nil {
		at = *msg.ScheduledEnqueueTime
	}
	_, err := s.enqueue(OpSend, []*azservicebus.Message{msg}, at)
	return err
}

// ScheduleMessages enqueues messages to become available at t and returns
// their sequence numbers.
func (s *Sender) ScheduleMessages(_ context.Context, msgs []*azservicebus.Message, t time.Time, _ *azservicebus.ScheduleMessagesOptions) ([]int64, error) {
	return s.enqueue(OpSchedule, msgs, t)
}

// CancelScheduledMessages removes scheduled messages that are not yet
// available. An unknown or already enqueued sequence number is an error
// and cancels nothing.
func (s *Sender) CancelScheduledMessages(_ context.Context, seqs []int64, _ *azservicebus.CancelScheduledMessagesOptions) error {
	if s.isClosed() {
		return errClosed("sender")
	}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.callLocked(OpCancel); err != nil {
		return err
	}
	now := time.Now()
	var targets []struct {
		e *entity
		m *message
	}
	for _, seq := range seqs {
		var copies []*message
		var ents []*entity
		if t := b.topics[key(s.path)]; t != nil {
			copies = t.scheduled[seq]
			ents = t.subs
		} else if e := b.queues[key(s.path)]; e != nil {
			if m := e.scheduled[seq]; m != nil {
				copies, ents = []*message{m}, []*entity{e}
			}
		} else {
			return errNotFound(s.path)
		}
		if len(copies) == 0 || !now.Before(copies[0].scheduledAt) {
			return fmt.Errorf("scheduled message %d not found: %w", seq, &azservicebus.Error{Code: azservicebus.CodeNotFound})
		}
		for _, m := range copies {
			for _, e := range ents {
				if slices.Contains(e.msgs, m) {
					targets = append(targets, struct {
						e *entity
						m *message
					}{e, m})
				}
			}
		}
	}
	for _, t := range targets {
		t.e.remove(t.m)
	}
	b.notifyLocked()
	return nil
}

func (s *Sender) enqueue(op Op, msgs []*azservicebus.Message, at time.Time) ([]int64, error) {
	if s.isClosed() {
		return nil, errClosed("sender")
	}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.callLocked(op); err != nil {
		return nil, err
	}
	if strings.Contains(key(s.path), "$") {
		return nil, &amqp.Error{Condition: amqp.ErrCondNotAllowed, Description: "cannot send to a sub-queue"}
	}
	t := b.topics[key(s.path)]
	q := b.queues[key(s.path)]
	if t == nil && q == nil {
		return nil, errNotFound(s.path)
	}
	now := time.Now()
	var seqs []int64
	for _, msg := range msgs {
		if msg == nil {
			return nil, errors.New("nil message")
		}
		if len(msg.Body) > MaxMessageSize {
			return nil, fmt.Errorf("message of %d bytes exceeds the %d byte limit", len(msg.Body), MaxMessageSize)
		}
		id := deref(msg.MessageID)
		if id == "" {
			id = strings.ReplaceAll(uuid.NewString(), "-", "")
		}
		b.nextSeq++
		seq := b.nextSeq
		targets := []*entity{q}
		seen, window := map[string]time.Time(nil), time.Duration(0)
		if t != nil {
			targets, seen, window = t.subs, t.seen, t.dup
		} else {
			seen, window = q.seen, q.opts.DuplicateDetectionWindow
		}
		seqs = append(seqs, seq)
		if window > 0 {
			if last, ok := seen[id]; ok && now.Sub(last) < window {
				continue // a duplicate: accepted and dropped
			}
			seen[id] = now
		}
		var copies []*message
		for _, e := range targets {
			m := &message{
				seq: seq, id: id, body: slices.Clone(msg.Body), props: maps.Clone(msg.ApplicationProperties),
				sys: azservicebus.Message{
					ContentType: msg.ContentType, CorrelationID: msg.CorrelationID, PartitionKey: msg.PartitionKey,
					ReplyTo: msg.ReplyTo, ReplyToSessionID: msg.ReplyToSessionID, SessionID: msg.SessionID,
					Subject: msg.Subject, To: msg.To,
				},
				enqueued: now,
			}
			if !at.IsZero() && at.After(now) {
				m.scheduledAt = at
				m.enqueued = at
			}
			ttl := msg.TimeToLive
			if ttl == nil && e.opts.DefaultTimeToLive > 0 {
				ttl = ptr(e.opts.DefaultTimeToLive)
			}
			if ttl != nil {
				m.ttl = ptr(*ttl)
				m.expiresAt = m.enqueued.Add(*ttl)
			}
			e.msgs = append(e.msgs, m)
			if !m.scheduledAt.IsZero() {
				e.scheduled[seq] = m
			}
			copies = append(copies, m)
		}
		if t != nil && !at.IsZero() {
			t.scheduled[seq] = copies
		}
	}
	b.notifyLocked()
	return seqs, nil
}

// Close closes the sender.
func (s *Sender) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func merge(dst, src map[string]any) map[string]any {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]any{}
	}
	maps.Copy(dst, src)
	return dst
}

func newToken() [16]byte {
	var t [16]byte
	_, _ = rand.Read(t[:])
	return t
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
