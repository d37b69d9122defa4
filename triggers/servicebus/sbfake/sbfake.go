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
	"crypto/rand"
	"fmt"
	"maps"
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
