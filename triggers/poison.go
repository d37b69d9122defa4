package triggers

import (
	"context"
	"time"
)

// PoisonMessage is one message held in a poison destination.
type PoisonMessage struct {
	// ID identifies the message for PoisonAdmin.Requeue.
	ID string
	// Sequence is the broker's sequence number in the poison destination,
	// where it has one (JetStream); zero otherwise.
	Sequence uint64
	// DequeueCount is how often the message had been delivered.
	DequeueCount int64
	// InsertionTime is when the poison copy was stored (zero if unknown).
	InsertionTime time.Time
	// Body is the message as stored, unchanged.
	Body []byte
	// Properties are the message's headers or properties, including the
	// reason the driver recorded, where the broker has them.
	Properties map[string]string
	// Reason is why the message was poisoned, where the broker stored it.
	Reason string
}

// PoisonAdmin administers the poison destination of one source queue: an
// optional driver capability, opened through Scheme.Poison (or a driver
// package's own opener) and used by the CLI's poison commands.
//
// Requeue never loses a message: each is published to the source first and
// removed from the poison destination only after the broker confirmed the
// copy, so an interruption can duplicate a message, never lose one. The
// copy drops jobhost's bookkeeping headers (attempt counts, reasons) so its
// attempts start afresh.
type PoisonAdmin interface {
	// Source and Poison name the source and the poison destination, for
	// messages ("queue orders", "subject orders-poison (stream X)").
	Source() string
	Poison() string
	// Count returns how many messages the poison destination holds (for
	// Storage Queues, approximately); exists is false when it does not
	// exist (nothing was ever poisoned).
	Count(ctx context.Context) (n int, exists bool, err error)
	// List returns up to n messages without removing them. A broker may
	// return fewer than it holds (a Storage Queue peeks at most 32).
	List(ctx context.Context, n int) ([]*PoisonMessage, error)
	// Requeue moves messages back to the source: the one whose ID is id, or,
	// when id is "", up to limit of them. done is called once per message
	// moved (err nil) or failed. found reports whether id was found.
	Requeue(ctx context.Context, id string, limit int, done func(m *PoisonMessage, err error)) (found bool, err error)
	// Purge deletes up to limit messages and returns how many.
	Purge(ctx context.Context, limit int) (int, error)
	// Close releases the administration's resources.
	Close() error
}
