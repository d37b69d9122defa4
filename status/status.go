// Package status holds what a running host reports about itself: a
// snapshot of each function's listener ([Function]) and its recent
// invocations, kept in a bounded [Ring]. The host writes it; the dashboard,
// the health endpoints and the metrics read it through a [Source].
package status

import (
	"context"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

// State is a listener's state.
type State string

// Listener states.
const (
	// Starting: the listener is opening its queue or has not polled yet.
	Starting State = "starting"
	// Listening: its last poll reached the broker.
	Listening State = "listening"
	// Failing: its last poll failed; it retries with backoff.
	Failing State = "failing"
	// Standby: a timer whose lease another host holds; it takes over
	// when that host stops renewing it.
	Standby State = "standby"
	// Stopping: the host is shutting down; in-flight work is finishing.
	Stopping State = "stopping"
	// Stopped: the listener ended.
	Stopped State = "stopped"
	// Disabled: the function is disabled in configuration.
	Disabled State = "disabled"
)

// Function is a snapshot of one function's listener.
type Function struct {
	// Name is the function's name.
	Name string
	// Queue is the queue, subject or subscription it listens on, as logs
	// name it (never a connection string).
	Queue string
	// Broker names the driver: "azurequeue", "rabbitmq", "jetstream",
	// "servicebus", "redis", "postgres", "memqueue" or a gocloud kind.
	Broker string
	// Poison names the poison destination ("" when there is none).
	Poison string
	// MessageEncoding is how message bodies are encoded on the queue:
	// "base64" or "none" (the function's messageEncoding).
	MessageEncoding string
	// PoisonAdmin reports whether the poison destination can be listed,
	// requeued and purged ([Source.OpenPoison]).
	PoisonAdmin bool
	// State is the listener's state.
	State State
	// InFlight is how many invocations run now; Concurrency is how many
	// may (batchSize + newBatchThreshold).
	InFlight, Concurrency int
	// Counters since the host started.
	Received, Succeeded, Failed, Poisoned, Cancelled uint64
	// LastError is the error of the last failed or poisoned invocation,
	// or of the last failed poll, and when it happened.
	LastError   string
	LastErrorAt time.Time
	// LastPoll is when a poll last reached the broker (zero before the
	// first).
	LastPoll time.Time
	// Depth is the queue's message count as last sampled in the background
	// (-1 when the broker cannot count), and when it was sampled.
	Depth   int64
	DepthAt time.Time
}

// Invocation is one finished invocation.
type Invocation struct {
	// ID is the invocation id of the completion log line.
	ID string
	// Function is the function's name.
	Function string
	// MessageID is the broker's message id.
	MessageID string
	// Outcome is the completion line's outcome: succeeded, failed,
	// poisoned, cancelled or operation-canceled.
	Outcome string
	// Error is the error the function returned or the reason it was not
	// run ("" on success).
	Error string
	// TraceID is the W3C trace id of the invocation's span ("" when
	// tracing is off).
	TraceID string
	// DequeueCount is the delivery's attempt number.
	DequeueCount int64
	// Start is when the host took the message up; Duration how long it
	// took to its settlement.
	Start    time.Time
	Duration time.Duration
}

// Filter selects invocations. Empty fields select all.
type Filter struct {
	// Function and Outcome match exactly.
	Function, Outcome string
	// MessageID matches a message id exactly, or an invocation id.
	MessageID string
	// Limit bounds the result (0: all that match).
	Limit int
}

// Source is a host as its observers see it.
type Source interface {
	// Functions returns a snapshot of every function, in registration
	// order.
	Functions() []Function
	// Invocations returns the recent invocations that f selects, newest
	// first.
	Invocations(f Filter) []Invocation
	// OpenPoison opens the poison administration of a function's queue
	// (the same capability the CLI's poison commands use). The caller
	// closes it.
	OpenPoison(ctx context.Context, function string) (triggers.PoisonAdmin, error)
}
