// Package servicebus is the jobhost trigger driver for an Azure Service Bus
// queue or topic subscription, with Azure Functions semantics: PeekLock
// receives, native delivery counts, the native dead-letter queue and a
// bounded automatic lock renewal (maxAutoLockRenewalDuration, default 5 min).
//
// # URLs
//
// The URL form is gocloud's azuresb form, plus queues:
//
//	azuresb://<topic>?subscription=<subscription>   a topic subscription
//	azuresb://<queue>                               a queue
//
// See [ParseURL] for the query parameters and [OpenURL] for how the
// connection is found.
//
// # Why not gocloud's Subscription.Receive
//
// gocloud.dev/pubsub/azuresb provides the identity (the client constructors)
// and the topic-subscription receiver, but its portable
// pubsub.Subscription.Receive is not used as the engine: it prefetches in the
// background, up to thousands of messages, whose locks then run out while
// they sit in its buffer (each comes back with DeliveryCount + 1, eventually
// reaching the dead-letter queue unprocessed); it also cannot renew locks,
// dead-letter with a reason, or see DeliveryCount without As. This driver
// calls the *azservicebus.Receiver directly instead: each Receive asks the
// broker for at most max messages (azservicebus issues exactly that many link
// credits and releases, unlocked and uncounted, anything that arrives after
// ReceiveMessages returns), so no message is held that the runtime has not
// asked for. That is Functions' default prefetchCount 0; azservicebus v1.11
// has no prefetch setting.
//
// # Leases and lock renewal
//
// A Service Bus lock lasts for the entity's LockDuration (default 1 min, at
// most 5 min); a receiver cannot choose it. To keep the driver contract
// (Receive hides a message for lease; ExtendLease keeps it hidden for lease
// from now), the driver renews the lock in the background, at half the lock
// duration, until the lease the runtime asked for ends — but never once the
// message has been held for longer than Options.MaxAutoLockRenewalDuration
// since it was received, as Functions does. Past that limit ExtendLease
// returns an error wrapping [ErrLockRenewalLimit] and renews nothing; the
// message is redelivered when its lock runs out. A lease shorter than the
// lock duration cannot be shortened: the message stays locked for the whole
// lock duration. Renewal compares the broker's LockedUntil with the local
// clock, so the host clock must be roughly right (NTP).
//
// # Retries
//
// Retry(m, 0) abandons the message: it is available again at once and its
// DeliveryCount goes up by one. Service Bus cannot abandon a message with a
// delay, so a Retry with a delay does one of two things:
//
//   - Hold (delays up to Options.MaxHeldRetryDelay, default 1 min, and every
//     delay on a topic subscription): the driver keeps the lock, renewing it,
//     and abandons the message when the delay has passed. The message, its
//     id and its native DeliveryCount are untouched. If the host stops, Close
//     abandons held messages at once; if the process dies, the lock runs out
//     and the message comes back (DeliveryCount + 1) after at most one lock
//     duration — sooner than asked, never lost.
//   - Scheduled copy (longer delays, on a queue): the driver schedules a copy
//     of the message (body, application properties and system properties
//     unchanged; a new MessageID, since the entity may have duplicate
//     detection on) with ScheduledEnqueueTime = now + delay, then completes
//     the original; if the completion fails the copy is cancelled. The copy
//     carries the delivery count so far in the application property
//     "jobhost-delivery-count" ([DeliveryCountProperty]), and the original
//     id and enqueue time in [OriginalIDProperty] and
//     [OriginalEnqueuedTimeProperty]; Receive honours them, so DequeueCount,
//     ID and InsertionTime continue across copies. These properties are not
//     shown in Message.Properties. The copy keeps the original's expiry.
//     Service Bus has no transactions in azservicebus, so a crash between the
//     two steps can deliver the message twice (at-least-once). A topic
//     subscription cannot get a copy: sending to the topic would deliver it to
//     every subscription.
//
// # Dead-lettering
//
// DeadLetter uses the native dead-letter queue, "<entity>/$deadletterqueue"
// ([Driver.PoisonDestination]), with DeadLetterReason [DeadLetterReason] and
// DeadLetterErrorDescription the runtime's error text (at most 4096 bytes).
// Body and properties are kept by the broker. Service Bus also dead-letters
// by itself once DeliveryCount exceeds the entity's MaxDeliveryCount (default
// 10), without running the function: set the host's maxDequeueCount to at
// most the entity's MaxDeliveryCount so that the runtime poisons first, with
// a reason. (A message retried by scheduled copy starts a new native count,
// so the entity limit then counts per copy; DequeueCount still counts all.)
//
// Service Bus entities are never created: OpenOptions.CreateIfMissing is
// ignored (Functions does not create them either; it needs the Manage right).
package servicebus

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/uuid"
	"gocloud.dev/pubsub/azuresb"

	"github.com/jobhost/jobhost/triggers"
)

const (
	// Scheme is the URL scheme, the same as gocloud's azuresb.
	Scheme = "azuresb"

	// DefaultMaxAutoLockRenewalDuration is Functions' default
	// maxAutoLockRenewalDuration.
	DefaultMaxAutoLockRenewalDuration = 5 * time.Minute
	// DefaultReceiveWait is how long Receive waits for a first message.
	DefaultReceiveWait = 2 * time.Second
	// MaxReceiveWait bounds Options.ReceiveWait: Receive must not long-poll.
	MaxReceiveWait = 30 * time.Second
	// DefaultMaxHeldRetryDelay is the longest Retry delay served by holding
	// the lock when a scheduled copy is possible.
	DefaultMaxHeldRetryDelay = time.Minute
	// MaxBatch is the most messages one Receive asks for (azservicebus's
	// credit limit).
	MaxBatch = 5000

	// DeliveryCountProperty carries, on a scheduled retry copy, how many
	// times the message had been delivered before the copy was made.
	DeliveryCountProperty = "jobhost-delivery-count"
	// OriginalIDProperty carries, on a scheduled retry copy, the MessageID of
	// the first message of the chain; Receive reports it as Message.ID.
	OriginalIDProperty = "jobhost-original-message-id"
	// OriginalEnqueuedTimeProperty carries, on a scheduled retry copy, the
	// original enqueue time; Receive reports it as Message.InsertionTime.
	OriginalEnqueuedTimeProperty = "jobhost-original-enqueued-time"

	// DeadLetterReason is the DeadLetterReason DeadLetter sets; the error
	// text goes into DeadLetterErrorDescription.
	DeadLetterReason = "jobhost: poison message"
	// MaxErrorDescription is the most bytes of error text DeadLetter stores.
	MaxErrorDescription = 4096

	// DeadLetterSuffix is appended to an entity path to name its
	// dead-letter queue.
	DeadLetterSuffix = "/$deadletterqueue"

	// Property names for system properties in Message.Properties.
	PropContentType   = "ContentType"
	PropCorrelationID = "CorrelationID"
	PropSubject       = "Subject"

	// opTimeout bounds the driver's own broker calls (background renewals,
	// abandons of held messages, cancelling a copy).
	opTimeout = 30 * time.Second
	// closeTimeout bounds Close.
	closeTimeout = 10 * time.Second
	// minRenewInterval stops renewals from spinning when the clocks
	// disagree.
	minRenewInterval = 100 * time.Millisecond
	// holdMargin keeps a held message's lock a little past its due time,
	// so that the abandon, not the lock's end, releases it.
	holdMargin = time.Second
)

// receiver is the part of *azservicebus.Receiver the driver uses: the fake
// boundary.
type receiver interface {
	ReceiveMessages(ctx context.Context, maxMessages int, options *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
	CompleteMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.CompleteMessageOptions) error
	AbandonMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.AbandonMessageOptions) error
	DeadLetterMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.DeadLetterOptions) error
	RenewMessageLock(ctx context.Context, msg *azservicebus.ReceivedMessage, options *azservicebus.RenewMessageLockOptions) error
	Close(ctx context.Context) error
}

// sender is the part of *azservicebus.Sender the driver uses for scheduled
// retry copies and Publish.
type sender interface {
	SendMessage(ctx context.Context, message *azservicebus.Message, options *azservicebus.SendMessageOptions) error
	ScheduleMessages(ctx context.Context, messages []*azservicebus.Message, scheduledEnqueueTime time.Time, options *azservicebus.ScheduleMessagesOptions) ([]int64, error)
	CancelScheduledMessages(ctx context.Context, sequenceNumbers []int64, options *azservicebus.CancelScheduledMessagesOptions) error
	Close(ctx context.Context) error
}

var (
	_ receiver           = (*azservicebus.Receiver)(nil)
	_ sender             = (*azservicebus.Sender)(nil)
	_ triggers.Driver    = (*Driver)(nil)
	_ triggers.Waiter    = (*Driver)(nil)
	_ triggers.Publisher = (*Driver)(nil)
)

// Entity names a queue or a topic subscription, or (DeadLetterQueue) its
// dead-letter queue.
type Entity struct {
	// Queue is the queue name; empty for a subscription.
	Queue string
	// Topic and Subscription name a topic subscription.
	Topic, Subscription string
	// DeadLetterQueue reads the entity's dead-letter queue instead.
	DeadLetterQueue bool
}

// Path returns the Service Bus entity path: "<queue>" or
// "<topic>/Subscriptions/<subscription>", with DeadLetterSuffix for a
// dead-letter queue.
func (e Entity) Path() string {
	p := e.Queue
	if p == "" {
		p = e.Topic + "/Subscriptions/" + e.Subscription
	}
	if e.DeadLetterQueue {
		p += DeadLetterSuffix
	}
	return p
}

// String returns Path.
func (e Entity) String() string { return e.Path() }

// Validate reports whether e names exactly one queue or one topic
// subscription, with plausible names.
func (e Entity) Validate() error {
	switch {
	case e.Queue != "" && (e.Topic != "" || e.Subscription != ""):
		return fmt.Errorf("servicebus: entity names both queue %q and topic %q / subscription %q", e.Queue, e.Topic, e.Subscription)
	case e.Queue != "":
		return validName("queue", e.Queue, 260, true)
	case e.Topic == "" && e.Subscription == "":
		return fmt.Errorf("servicebus: entity names no queue and no topic subscription")
	case e.Topic == "":
		return fmt.Errorf("servicebus: subscription %q has no topic", e.Subscription)
	case e.Subscription == "":
		return fmt.Errorf("servicebus: topic %q has no subscription (a topic cannot be received from; name one of its subscriptions)", e.Topic)
	}
	if err := validName("topic", e.Topic, 260, true); err != nil {
		return err
	}
	return validName("subscription", e.Subscription, 50, false)
}

// validName checks the Service Bus naming rules loosely: letters, digits,
// '.', '-', '_' and (for queues and topics) '/' between segments.
func validName(kind, name string, maxLen int, slashes bool) error {
	if len(name) > maxLen {
		return fmt.Errorf("servicebus: %s name %q is %d characters long; at most %d are allowed", kind, name, len(name), maxLen)
	}
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_', c == '~':
		case c == '/' && slashes:
			if i == 0 || i == len(name)-1 || strings.Contains(name, "//") {
				return fmt.Errorf("servicebus: %s name %q has an empty path segment", kind, name)
			}
		default:
			return fmt.Errorf("servicebus: %s name %q has %q at position %d; only letters, digits, '.', '-', '_'%s are allowed", kind, name, c, i, map[bool]string{true: " and '/'", false: ""}[slashes])
		}
	}
	return nil
}

// Options configures a Driver. The zero value gives Functions' defaults.
type Options struct {
	// MaxAutoLockRenewalDuration bounds how long after it was received a
	// message's lock is still renewed (by the driver in the background and
	// by ExtendLease). Zero means DefaultMaxAutoLockRenewalDuration (5 min);
	// negative means no limit.
	MaxAutoLockRenewalDuration time.Duration

	// ReceiveWait is how long Receive waits for a first message. Zero means
	// DefaultReceiveWait (2 s); at most MaxReceiveWait.
	ReceiveWait time.Duration

	// MaxBatch caps how many messages one Receive asks for (gocloud's
	// max_recv_batch_size). Zero means no cap beyond Receive's max.
	MaxBatch int

	// MaxHeldRetryDelay is the longest Retry delay served by holding the
	// lock when the driver could schedule a copy instead (queues opened with
	// a sender); longer delays schedule a copy. Zero means
	// DefaultMaxHeldRetryDelay (1 min); negative means always schedule a
	// copy when possible. Without a sender (topic subscriptions) every
	// delay is held.
	MaxHeldRetryDelay time.Duration
}

func (o *Options) normalize() error {
	if o.MaxAutoLockRenewalDuration == 0 {
		o.MaxAutoLockRenewalDuration = DefaultMaxAutoLockRenewalDuration
	}
	switch {
	case o.ReceiveWait == 0:
		o.ReceiveWait = DefaultReceiveWait
	case o.ReceiveWait < 0 || o.ReceiveWait > MaxReceiveWait:
		return fmt.Errorf("servicebus: ReceiveWait %v is out of range (0 < wait <= %v)", o.ReceiveWait, MaxReceiveWait)
	}
	if o.MaxBatch < 0 {
		return fmt.Errorf("servicebus: MaxBatch %d is negative", o.MaxBatch)
	}
	if o.MaxHeldRetryDelay == 0 {
		o.MaxHeldRetryDelay = DefaultMaxHeldRetryDelay
	}
	return nil
}

// Driver is a triggers.Driver for one Service Bus queue or topic
// subscription. It is safe for concurrent use.
type Driver struct {
	entity Entity
	path   string
	opts   Options
	recv   receiver
	send   sender // nil: no scheduled retry copies

	// closeClient closes the client OpenURL made; nil otherwise.
	closeClient func(context.Context) error

	recvMu sync.Mutex // azservicebus forbids concurrent ReceiveMessages

	mu      sync.Mutex // guards closed and wg.Add
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup // background renewers
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
	if pr, ok := r.(*azservicebus.Receiver); r == nil || (ok && pr == nil) {
		return nil, fmt.Errorf("servicebus: Open %s: nil receiver", e.Path())
	}
	if ps, ok := s.(*azservicebus.Sender); ok && ps == nil {
		s = nil
	}
	if s != nil && (e.Queue == "" || e.DeadLetterQueue) {
		return nil, fmt.Errorf("servicebus: Open %s: a sender can only be used with a queue (a copy sent to a topic reaches every subscription)", e.Path())
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.normalize(); err != nil {
		return nil, err
	}
	return &Driver{entity: e, path: e.Path(), opts: o, recv: r, send: s, closing: make(chan struct{})}, nil
}

// OpenClient opens a PeekLock receiver for e on client (a topic
// subscription through gocloud's azuresb.NewReceiver) and, for a queue, a
// sender for scheduled retry copies, and returns a driver on them. The
// client stays the caller's.
func OpenClient(client *azservicebus.Client, e Entity, opts *Options) (*Driver, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	ro := &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModePeekLock}
	if e.DeadLetterQueue {
		ro.SubQueue = azservicebus.SubQueueDeadLetter
	}
	var (
		r   *azservicebus.Receiver
		s   sender
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
	closeAll := func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if s != nil {
			_ = s.Close(ctx)
		}
		_ = r.Close(ctx)
	}
	if e.Queue != "" && !e.DeadLetterQueue {
		snd, err := client.NewSender(e.Queue, nil)
		if err != nil {
			closeAll()
			return nil, wrapErr(fmt.Sprintf("open sender for %s", e.Path()), err, false)
		}
		s = snd
	}
	d, err := Open(r, s, e, opts)
	if err != nil {
		closeAll()
		return nil, err
	}
	return d, nil
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

// Receive returns up to max messages (capped by Options.MaxBatch and
// MaxBatch), waiting at most Options.ReceiveWait for the first. Each is
// locked by the broker for the entity's lock duration, and the driver
// renews the lock until lease has passed (see the package doc). A missing
// entity gives an error wrapping triggers.ErrNotFound.
func (d *Driver) Receive(ctx context.Context, maxMessages int, lease time.Duration) ([]*triggers.Message, error) {
	if d.isClosed() {
		return nil, &opError{op: "receive from " + d.path, kinds: []error{ErrClosed}}
	}
	n := min(max(1, maxMessages), MaxBatch)
	if d.opts.MaxBatch > 0 {
		n = min(n, d.opts.MaxBatch)
	}
	d.recvMu.Lock()
	defer d.recvMu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, d.opts.ReceiveWait)
	defer cancel()
	start := time.Now()
	rms, err := d.recv.ReceiveMessages(rctx, n, nil)
	if err != nil && len(rms) == 0 {
		if ctx.Err() == nil && rctx.Err() != nil {
			return nil, nil // our wait ran out: nothing to receive
		}
		return nil, wrapErr("receive from "+d.path, err, false)
	}
	// The lock began between start and now: renewals are timed from start
	// (early, so safe), the lease and the renewal limit from now, when the
	// runtime gets the message.
	got := time.Now()
	out := make([]*triggers.Message, 0, len(rms))
	for _, rm := range rms {
		if rm == nil {
			continue
		}
		s := &msgState{d: d, rm: rm, receivedAt: got, acquiredAt: start, leaseUntil: got.Add(max(lease, 0))}
		m := d.toMessage(rm)
		m.DriverData = s
		s.mu.Lock()
		m.NextVisibleTime = s.visibleAtLocked()
		s.startLocked()
		s.mu.Unlock()
		out = append(out, m)
	}
	return out, nil
}

// toMessage maps a received message. See the package doc for the
// properties a scheduled retry copy carries.
func (d *Driver) toMessage(rm *azservicebus.ReceivedMessage) *triggers.Message {
	m := &triggers.Message{
		ID:           rm.MessageID,
		Body:         rm.Body,
		DequeueCount: int64(rm.DeliveryCount),
		Source:       d.path,
		Properties:   map[string]string{},
	}
	if rm.EnqueuedTime != nil {
		m.InsertionTime = *rm.EnqueuedTime
	}
	if rm.ExpiresAt != nil {
		m.ExpirationTime = *rm.ExpiresAt
	}
	if rm.LockedUntil != nil {
		m.NextVisibleTime = *rm.LockedUntil
	}
	for k, v := range rm.ApplicationProperties {
		switch k {
		case DeliveryCountProperty:
			if n, ok := toInt64(v); ok && n >= 0 {
				m.DequeueCount += n
			}
		case OriginalIDProperty:
			if s, ok := v.(string); ok && s != "" {
				m.ID = s
			}
		case OriginalEnqueuedTimeProperty:
			if t, ok := toTime(v); ok {
				m.InsertionTime = t
			}
		default:
			m.Properties[k] = stringify(v)
		}
	}
	for k, p := range map[string]*string{PropContentType: rm.ContentType, PropCorrelationID: rm.CorrelationID, PropSubject: rm.Subject} {
		if _, taken := m.Properties[k]; p != nil && *p != "" && !taken {
			m.Properties[k] = *p
		}
	}
	return m
}

// Complete completes the message, removing it from the entity.
func (d *Driver) Complete(ctx context.Context, m *triggers.Message) error {
	s, err := d.state(m, "complete")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked("complete"); err != nil {
		return err
	}
	if err := d.recv.CompleteMessage(ctx, s.rm, nil); err != nil {
		return s.failedLocked("complete", err)
	}
	s.settleLocked()
	return nil
}

// Retry gives the message up: with delay 0 it is abandoned (available at
// once, DeliveryCount + 1); with a delay it is held and abandoned later, or
// replaced by a scheduled copy (see the package doc). m.NextVisibleTime is
// set to when it should be received again.
func (d *Driver) Retry(ctx context.Context, m *triggers.Message, delay time.Duration) error {
	s, err := d.state(m, "retry")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked("retry"); err != nil {
		return err
	}
	now := time.Now()
	switch {
	case delay <= 0:
		if err := d.recv.AbandonMessage(ctx, s.rm, nil); err != nil {
			return s.failedLocked("abandon", err)
		}
		s.settleLocked()
	case d.send != nil && (d.opts.MaxHeldRetryDelay < 0 || delay > d.opts.MaxHeldRetryDelay):
		if err := d.scheduleCopyLocked(ctx, s, m, now.Add(delay)); err != nil {
			return err
		}
		s.settleLocked()
	default:
		// Hold: renew now (which also proves the lock is still ours), then
		// let the renewer abandon the message when the delay has passed.
		if err := s.renewLocked(ctx); err != nil {
			return s.failedLocked(fmt.Sprintf("retry after %v: renew lock", delay), err)
		}
		s.settled = true
		s.holding = true
		s.holdUntil = now.Add(delay)
		s.startLocked()
	}
	m.NextVisibleTime = now.Add(max(delay, 0))
	return nil
}

// scheduleCopyLocked schedules a copy of s's message at when and completes
// the original; if that fails the copy is cancelled.
func (d *Driver) scheduleCopyLocked(ctx context.Context, s *msgState, m *triggers.Message, when time.Time) error {
	rm := s.rm
	props := maps.Clone(rm.ApplicationProperties)
	if props == nil {
		props = map[string]any{}
	}
	props[DeliveryCountProperty] = m.DequeueCount
	props[OriginalIDProperty] = m.ID
	if !m.InsertionTime.IsZero() {
		props[OriginalEnqueuedTimeProperty] = m.InsertionTime.UTC().Format(time.RFC3339Nano)
	}
	id := uuid.NewString()
	cp := &azservicebus.Message{
		ApplicationProperties: props,
		Body:                  rm.Body,
		ContentType:           rm.ContentType,
		CorrelationID:         rm.CorrelationID,
		MessageID:             &id,
		PartitionKey:          rm.PartitionKey,
		ReplyTo:               rm.ReplyTo,
		ReplyToSessionID:      rm.ReplyToSessionID,
		SessionID:             rm.SessionID,
		Subject:               rm.Subject,
		To:                    rm.To,
	}
	if rm.TimeToLive != nil && rm.ExpiresAt != nil {
		// The copy's time to live counts from its (scheduled) enqueue
		// time: keep the original's expiry.
		ttl := max(rm.ExpiresAt.Sub(when), time.Second)
		cp.TimeToLive = &ttl
	}
	seqs, err := d.send.ScheduleMessages(ctx, []*azservicebus.Message{cp}, when, nil)
	if err != nil {
		return s.failedLocked(fmt.Sprintf("retry message %s at %s: schedule a copy", m.ID, when.UTC().Format(time.RFC3339)), err)
	}
	if err := d.recv.CompleteMessage(ctx, rm, nil); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer cancel()
		if cerr := d.send.CancelScheduledMessages(cctx, seqs, nil); cerr != nil {
			return &opError{
				op:    fmt.Sprintf("retry message %s: complete the original after scheduling copy %s (sequence %v), and cancelling the copy failed too (%s); the message may be delivered twice", m.ID, id, seqs, Redact(cerr.Error())),
				kinds: wrapErr("", err, true).(*opError).kinds,
				err:   err,
			}
		}
		return s.failedLocked(fmt.Sprintf("retry message %s: complete the original after scheduling a copy (copy cancelled)", m.ID), err)
	}
	return nil
}

// ExtendLease keeps the message locked until lease from now: it renews the
// lock at once and the driver keeps renewing it in the background. The
// lock's length is the entity's LockDuration whatever lease is. Once the
// message has been held for longer than Options.MaxAutoLockRenewalDuration
// it renews nothing and returns an error wrapping ErrLockRenewalLimit.
func (d *Driver) ExtendLease(ctx context.Context, m *triggers.Message, lease time.Duration) error {
	s, err := d.state(m, "extend lease of")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked("extend lease of"); err != nil {
		return err
	}
	if lim := d.opts.MaxAutoLockRenewalDuration; lim > 0 {
		if held := time.Since(s.receivedAt); held >= lim {
			s.leaseUntil = time.Time{}
			return &opError{op: fmt.Sprintf("extend lease of message %s in %s after %v", s.rm.MessageID, d.path, held.Round(time.Second)), kinds: []error{ErrLockRenewalLimit}}
		}
	}
	s.leaseUntil = time.Now().Add(max(lease, 0))
	if err := s.renewLocked(ctx); err != nil {
		return s.failedLocked("extend lease of", err)
	}
	m.NextVisibleTime = s.visibleAtLocked()
	s.startLocked()
	return nil
}

// DeadLetter moves the message to the entity's dead-letter queue with
// DeadLetterReason and reason (truncated to MaxErrorDescription bytes) as
// the error description. It returns m.ID: the dead-lettered message keeps
// its id.
func (d *Driver) DeadLetter(ctx context.Context, m *triggers.Message, reason string) (string, error) {
	s, err := d.state(m, "dead-letter")
	if err != nil {
		return "", err
	}
	if d.entity.DeadLetterQueue {
		return "", &opError{op: fmt.Sprintf("dead-letter message %s in %s", m.ID, d.path), kinds: []error{ErrNoDeadLetterQueue}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked("dead-letter"); err != nil {
		return "", err
	}
	r := DeadLetterReason
	opts := &azservicebus.DeadLetterOptions{Reason: &r}
	if reason != "" {
		desc := truncate(reason, MaxErrorDescription)
		opts.ErrorDescription = &desc
	}
	if err := d.recv.DeadLetterMessage(ctx, s.rm, opts); err != nil {
		return "", s.failedLocked("dead-letter", err)
	}
	s.settleLocked()
	return m.ID, nil
}

// Publish sends body to the queue with a new MessageID, which it returns.
// props become application properties, except ContentType, CorrelationID
// and Subject, which set those system properties (as Receive maps them). A
// driver on a topic subscription or a dead-letter queue cannot publish.
func (d *Driver) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	if d.send == nil {
		return "", fmt.Errorf("servicebus: cannot publish to %s: only a queue driver can (send to the topic with the broker's tools)", d.path)
	}
	if d.isClosed() {
		return "", &opError{op: "publish to " + d.path, kinds: []error{ErrClosed}}
	}
	id := uuid.NewString()
	msg := &azservicebus.Message{Body: body, MessageID: &id}
	for k, v := range props {
		switch k {
		case PropContentType:
			msg.ContentType = &v
		case PropCorrelationID:
			msg.CorrelationID = &v
		case PropSubject:
			msg.Subject = &v
		default:
			if msg.ApplicationProperties == nil {
				msg.ApplicationProperties = map[string]any{}
			}
			msg.ApplicationProperties[k] = v
		}
	}
	if err := d.send.SendMessage(ctx, msg, nil); err != nil {
		return "", wrapErr("publish to "+d.path, err, false)
	}
	return id, nil
}

// Close stops lock renewal (messages still in flight are redelivered when
// their locks run out), abandons messages held for a delayed retry, and
// closes the receiver, the sender and, if OpenURL made it, the client.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.closing)
	d.mu.Unlock()
	d.wg.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var errs []string
	if d.send != nil {
		if err := d.send.Close(ctx); err != nil {
			errs = append(errs, "sender: "+Redact(err.Error()))
		}
	}
	d.recvMu.Lock()
	err := d.recv.Close(ctx)
	d.recvMu.Unlock()
	if err != nil {
		errs = append(errs, "receiver: "+Redact(err.Error()))
	}
	if d.closeClient != nil {
		if err := d.closeClient(ctx); err != nil {
			errs = append(errs, "client: "+Redact(err.Error()))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("servicebus: close %s: %s", d.path, strings.Join(errs, "; "))
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
	if m == nil {
		return nil, fmt.Errorf("servicebus: %s: nil message", op)
	}
	s, ok := m.DriverData.(*msgState)
	if !ok || s == nil || s.d != d {
		return nil, fmt.Errorf("servicebus: %s message %s: it was not received by this driver (%s)", op, m.ID, d.path)
	}
	if d.isClosed() {
		return nil, &opError{op: fmt.Sprintf("%s message %s in %s", op, m.ID, d.path), kinds: []error{ErrClosed}}
	}
	return s, nil
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// stringify renders an application property value.
func stringify(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case int:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint64:
		if x <= 1<<62 {
			return int64(x), true
		}
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func toTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case time.Time:
		return x, !x.IsZero()
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		return t, err == nil
	}
	return time.Time{}, false
}
