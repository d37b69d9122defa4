package functions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/triggers"
)

// BatchHandler is a function of the user's called with a batch of messages:
// in[i] is bound from msgs[i]. Returning nil completes every message; an
// error (or a panic) fails this attempt of every message, each retried
// until its own maxDequeueCount and then poisoned; [BatchErrors] gives each
// message its own outcome. A message whose body cannot be bound to T is
// poisoned alone, before the call, and is not in the batch.
type BatchHandler[T any] func(ctx context.Context, in []T, msgs []*triggers.Message) error

// Batch defaults.
const (
	// DefaultMaxBatchSize is how many messages a batch holds at most
	// unless MaxBatchSize says otherwise.
	DefaultMaxBatchSize = 32
	// MaxMaxBatchSize bounds MaxBatchSize (Service Bus' batch limit).
	MaxMaxBatchSize = 1000
)

// RegisterBatch adds a batch function to Default and returns its Ref (the
// client sends it single values of T, as to any function).
func RegisterBatch[T any](name string, trigger Trigger, h BatchHandler[T], opts ...Option) Ref[T] {
	return AddBatch(Default, name, trigger, h, opts...)
}

// AddBatch registers a batch function in r, as Add registers a function.
func AddBatch[T any](r *Registry, name string, trigger Trigger, h BatchHandler[T], opts ...Option) Ref[T] {
	ref := Ref[T]{name: name}
	def := &Definition{Name: name, Trigger: trigger, ArgType: "[]" + fmt.Sprintf("%T", *new(T)), validate: newValidator[T]()}
	for _, o := range opts {
		o(&def.Settings)
	}
	if h != nil {
		bind := bindings.NewBinder[T]()
		def.invokeBatch = func(ctx context.Context, payloads [][]byte, msgs []*triggers.Message) error {
			return invokeBatch(ctx, bind, h, payloads, msgs)
		}
	}
	r.add(def, h == nil)
	return ref
}

// invokeBatch binds each payload, calls h with those that bound, and
// returns the outcome of each message: nil when every message shares err
// (bound ones) and none failed to bind, else a *BatchError.
func invokeBatch[T any](ctx context.Context, bind func([]byte) (T, error), h BatchHandler[T], payloads [][]byte, msgs []*triggers.Message) error {
	vals := make([]T, 0, len(payloads))
	kept := make([]int, 0, len(payloads))
	var errs []error // nil until a payload fails to bind
	for i, p := range payloads {
		v, err := bind(p)
		if err != nil {
			if errs == nil {
				errs = make([]error, len(payloads))
			}
			errs[i] = err
			continue
		}
		vals = append(vals, v)
		kept = append(kept, i)
	}
	if errs == nil {
		return checkBatchErrors(h(ctx, vals, msgs), len(msgs))
	}
	if len(kept) > 0 {
		km := make([]*triggers.Message, len(kept))
		for j, i := range kept {
			km[j] = msgs[i]
		}
		err := checkBatchErrors(h(ctx, vals, km), len(km))
		var be *BatchError
		for j, i := range kept {
			if errors.As(err, &be) {
				errs[i] = be.Errs[j]
			} else {
				errs[i] = err
			}
		}
	}
	return &BatchError{Errs: errs}
}

// checkBatchErrors turns a BatchError of the wrong length into an error
// for every message.
func checkBatchErrors(err error, n int) error {
	var be *BatchError
	if errors.As(err, &be) && len(be.Errs) != n {
		return fmt.Errorf("the batch function returned BatchErrors with %d errors for %d messages", len(be.Errs), n)
	}
	return err
}

// BatchErrors gives each message of a batch its own outcome: errs[i] is the
// outcome of msgs[i], with the meaning a single function's error has — nil
// completes it, an error retries it (RetryAfter after that delay),
// Permanent poisons it. errs must have one entry per message of the batch.
func BatchErrors(errs []error) error { return &BatchError{Errs: errs} }

// BatchError is the error BatchErrors returns.
type BatchError struct{ Errs []error }

func (e *BatchError) Error() string {
	var parts []string
	for i, err := range e.Errs {
		if err != nil {
			parts = append(parts, fmt.Sprintf("message %d: %v", i, err))
		}
	}
	if len(parts) == 0 {
		return "batch: no message failed"
	}
	return "batch: " + strings.Join(parts, "; ")
}

// IsBatch reports whether the function takes batches (RegisterBatch).
func (d *Definition) IsBatch() bool { return d.invokeBatch != nil }

// InvokeBatch binds each payload (the decoded message bodies) and calls the
// batch function with those that bound, as the host does (without its
// retries, outputs or timeout). It returns nil when every message
// succeeded, an error shared by all of them, or a *BatchError with each
// message's outcome (a *bindings.Error for a body that could not be bound).
func (d *Definition) InvokeBatch(ctx context.Context, payloads [][]byte, msgs []*triggers.Message) error {
	if d.invokeBatch == nil {
		return fmt.Errorf("function %s takes one message at a time", d.Name)
	}
	return d.invokeBatch(ctx, payloads, msgs)
}

// MaxBatchSize sets how many messages a batch function gets at most
// (1..1000, default 32). The host fills a batch over several receives when
// the broker returns fewer at a time.
func MaxBatchSize(n int) Option { return func(s *Settings) { s.MaxBatchSize = &n } }

// MinBatchSize makes the host wait up to maxWait for at least n messages
// before it calls a batch function with fewer (default 1: a batch goes as
// soon as a receive comes back short). maxWait must be below half the
// lease, so no message waits out its lease in a batch being filled.
func MinBatchSize(n int, maxWait time.Duration) Option {
	return func(s *Settings) { s.MinBatchSize, s.MaxBatchWait = &n, &maxWait }
}
