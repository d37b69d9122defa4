package sbfake

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

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
