// Package triggers defines the small contract between the jobhost runtime and a
// message broker: receive a batch, complete, retry after a delay, extend the
// lease, dead-letter and close. A driver implements [Driver] for one queue or
// subscription; the runtime (package runtime) holds all policy — polling,
// backoff, concurrency, lease renewal scheduling, retry and poison decisions —
// so every driver gets the same behaviour.
//
// Drivers know nothing of the host. Every driver must pass the conformance
// suite in package triggers/drivertest.
package triggers

import (
	"context"
	"errors"
	"net/url"
	"time"
)

// Message is one message received from a trigger source, with its broker
// metadata.
//
// The driver's *Message is the driver's: the fields it changes while the
// message is in flight (PopReceipt, NextVisibleTime, DriverData) change only
// in ExtendLease, Retry, Complete and DeadLetter, which the runtime never
// calls concurrently for one message. A function gets a copy made at
// delivery (body and properties copied, no DriverData), which nothing
// changes: its PopReceipt and NextVisibleTime are those of the delivery.
type Message struct {
	// ID is the broker's message id.
	ID string
	// Body is the message exactly as stored on the broker (for Azure Storage
	// Queues, the message text, which is base64 under messageEncoding base64).
	// Poisoning copies it unchanged.
	Body []byte
	// DequeueCount is how many times the message has been delivered,
	// including this delivery (1 on the first).
	DequeueCount int64
	// InsertionTime is when the message was enqueued.
	InsertionTime time.Time
	// ExpirationTime is when the broker drops the message (zero if never).
	ExpirationTime time.Time
	// NextVisibleTime is when the message becomes visible to other receivers
	// unless it is settled or its lease is extended first.
	NextVisibleTime time.Time
	// PopReceipt is the Storage Queue receipt needed to update or delete the
	// message; drivers without one leave it empty.
	PopReceipt string
	// Properties holds broker properties or headers, if the broker has any.
	Properties map[string]string
	// Source names the queue or subscription the message came from.
	Source string

	// DriverData is private to the driver that produced the message.
	DriverData any
}

// Text returns the raw message text (Body as a string).
func (m *Message) Text() string { return string(m.Body) }

// Driver is one queue or subscription on a broker. Methods may be called
// concurrently for different messages; for one message the runtime calls them
// one at a time. A method given a message that the broker no longer holds
// (already settled, or its lease lost to another receiver) returns an error
// that wraps ErrLeaseLost.
type Driver interface {
	// Receive returns at most max messages, each hidden from other receivers
	// for lease. It returns promptly with an empty slice and a nil error when
	// none are available; it does not long-poll for longer than a few seconds.
	// When the queue does not exist it returns an error wrapping ErrNotFound.
	// When ctx ends while it waits it returns promptly, with what it holds
	// (possibly nothing) or ctx's error; a message it took from the broker
	// but did not return is given back at once, never left hidden for a
	// lease.
	Receive(ctx context.Context, max int, lease time.Duration) ([]*Message, error)

	// Complete removes a successfully processed message from the queue.
	Complete(ctx context.Context, m *Message) error

	// Retry gives up this delivery: the message becomes visible to receivers
	// again after delay (0 means at once), with its body unchanged, and its
	// DequeueCount on the next delivery is one more than now.
	Retry(ctx context.Context, m *Message, delay time.Duration) error

	// ExtendLease keeps the message hidden for lease from now. Drivers for
	// brokers without leases return nil.
	ExtendLease(ctx context.Context, m *Message, lease time.Duration) error

	// DeadLetter moves the message to the poison destination with its body
	// (and properties, where the broker has them) unchanged, then removes the
	// original. reason says why, for brokers that can store it. It returns the
	// id of the poison copy when the broker gives one. If the copy cannot be
	// made the original is left in place and an error is returned: a message is
	// never lost. If the copy was made but the original could not be
	// removed, it returns the copy's id (where the broker gives one) and an
	// error wrapping ErrNotRemoved.
	DeadLetter(ctx context.Context, m *Message, reason string) (poisonID string, err error)

	// PoisonDestination names where DeadLetter sends messages, for logs; empty
	// when the driver has none.
	PoisonDestination() string

	// Close releases the driver's resources. It does not settle messages.
	// It is idempotent; after it, every other method returns an error
	// wrapping ErrClosed promptly.
	Close() error
}

var (
	// ErrNotFound means the queue or subscription does not exist.
	ErrNotFound = errors.New("queue not found")
	// ErrLeaseLost means the message is no longer held by this receiver.
	ErrLeaseLost = errors.New("message lease lost")
	// ErrNotRemoved means DeadLetter made the poison copy but could not
	// remove the original: the message is poisoned, and a redelivery of the
	// original must not be copied again.
	ErrNotRemoved = errors.New("poison copy made, original not removed")
	// ErrClosed means the driver, publisher or poison administration was
	// closed.
	ErrClosed = errors.New("closed")
)

// OpenOptions are what the runtime gives a driver package's OpenURL.
type OpenOptions struct {
	// Lookup reads app settings (environment and local.settings.json).
	Lookup func(name string) (string, bool)
	// Connection names the app setting holding the server URL or
	// connection string; empty means the driver's usual variable (for
	// example RABBIT_SERVER_URL).
	Connection string
	// Prefetch bounds how many messages the driver may hold unsettled at
	// once (the host's batchSize + newBatchThreshold); a driver must never
	// buffer more, so no buffered message outlives its lease.
	Prefetch int
	// PoisonName overrides the poison destination (queue, subject or topic);
	// empty means the driver's default, usually "<name>-poison".
	PoisonName string
	// CreateIfMissing lets the driver create a missing queue or stream.
	CreateIfMissing bool
}

// OpenURLFunc opens a driver for a subscription URL such as
// rabbit://orders or nats://orders?stream=ORDERS.
type OpenURLFunc func(ctx context.Context, u *url.URL, o OpenOptions) (Driver, error)

// Waiter is implemented by drivers whose Receive itself waits a while for
// messages to arrive (push brokers). The runtime then polls again at once
// after an empty receive instead of backing off.
type Waiter interface {
	// ReceiveWaits reports whether Receive waits for messages.
	ReceiveWaits() bool
}

// PrivateBodies is implemented by drivers that give every delivery a Body
// of its own, shared with no other delivery, copy or caller, and that never
// read it again once received: Complete, Retry, ExtendLease and DeadLetter
// work from the driver's own copy. The runtime then hands that Body to the
// function as it is, instead of copying it first.
type PrivateBodies interface {
	// BodiesPrivate reports whether deliveries' bodies are private.
	BodiesPrivate() bool
}

// LookupSetting returns the first of names that lookup has, non-empty.
func LookupSetting(lookup func(string) (string, bool), names ...string) (string, bool) {
	for _, n := range names {
		if n == "" || lookup == nil {
			continue
		}
		if v, ok := lookup(n); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

// Publisher puts messages on one queue, subject or topic. Drivers that can
// publish to their own source implement it (Close is the driver's); a
// Scheme's Publisher opener returns one on its own. Publishers that can
// send a message hidden for a delay also implement [DelayPublisher].
type Publisher interface {
	// Publish sends body with props (where the broker has properties) and
	// returns the new message's id when the broker gives one. It returns
	// once the broker has accepted the message. The publisher does not keep
	// body or props after it returns.
	Publish(ctx context.Context, body []byte, props map[string]string) (id string, err error)
	// Close releases the publisher; it is idempotent.
	Close() error
}

// Releaser is implemented by drivers that can give a message back at once
// without its delivery counting as an attempt: the host releases so the
// messages it took but did not start, and those whose functions the
// shutdown cancelled, so a rolling deploy never poisons a message that did
// not run. Drivers without it are released with Retry(ctx, m, 0); on brokers
// that count every delivery themselves (Storage Queues, Service Bus,
// JetStream) a release is visible in the next DequeueCount either way.
type Releaser interface {
	// Release makes m visible to receivers again at once, with its body,
	// properties and attempt count unchanged where the driver keeps the
	// count.
	Release(ctx context.Context, m *Message) error
}
