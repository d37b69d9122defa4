package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
)

// Enqueue sends v to the queue of the function ref names (one of
// Options.Functions), encoded as that function decodes it. v must be the
// function's argument type: the compiler checks it.
func Enqueue[T any](ctx context.Context, c *Client, ref functions.Ref[T], v T, opts ...SendOption) (string, error) {
	f, err := c.function(ref.Name())
	if err != nil {
		return "", err
	}
	ids, err := c.sendValues(ctx, f.target, f.Encoding, nil, []any{v}, collect(opts))
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// SubmitOptions are the optional parts of a Submission, for Start.
type SubmitOptions struct {
	// RunAs names the caller ("" for the admin).
	RunAs string
	// CallbackURL is POSTed to when the operation completes.
	CallbackURL string
	// IdempotencyKey makes a repeat return the first operation.
	IdempotencyKey string
	// TimeToLive overrides how long the record is kept.
	TimeToLive time.Duration
}

// Start submits a background operation running the function ref names
// with input v, as Submit does, and returns its record (the first one's on
// an idempotent repeat). v is the record's input, encoded as JSON
// (json.Marshal: a string argument receives the JSON string, quotes
// included), and must be the function's argument type.
func Start[T any](ctx context.Context, c *Client, ref functions.Ref[T], v T, so ...SubmitOptions) (*operations.Record, error) {
	input, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotEncodable, err)
	}
	var o SubmitOptions
	if len(so) > 0 {
		o = so[0]
	}
	rec, _, err := c.Submit(ctx, Submission{Function: ref.Name(), Input: input, RunAs: o.RunAs,
		CallbackURL: o.CallbackURL, IdempotencyKey: o.IdempotencyKey, TimeToLive: o.TimeToLive})
	return rec, err
}

// Queue sends values of type T to one target, for a caller that shares
// only the type with the function reading it.
type Queue[T any] struct {
	c      *Client
	target string
	opts   []SendOption
}

// NewQueue returns the queue of target (a Storage Queue name or URL, with
// %Setting%, resolved at each send); opts apply to every send.
func NewQueue[T any](c *Client, target string, opts ...SendOption) *Queue[T] {
	return &Queue[T]{c: c, target: target, opts: opts}
}

// Send sends v and returns the broker's message id.
func (q *Queue[T]) Send(ctx context.Context, v T, opts ...SendOption) (string, error) {
	return q.c.Send(ctx, q.target, v, append(q.opts[:len(q.opts):len(q.opts)], opts...)...)
}

// SendBatch sends vs in order; one that cannot be sent sends none.
func (q *Queue[T]) SendBatch(ctx context.Context, vs []T, opts ...SendOption) ([]string, error) {
	values := make([]any, len(vs))
	for i, v := range vs {
		values[i] = v
	}
	return q.c.SendBatch(ctx, q.target, values, append(q.opts[:len(q.opts):len(q.opts)], opts...)...)
}
