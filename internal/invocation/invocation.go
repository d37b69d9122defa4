// Package invocation carries what an invocation's context holds between the
// runtime, which makes it, and package functions, whose helpers (Logger,
// InvocationID, Collect) read it. Neither function authors nor embedding
// programs use it.
package invocation

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

type ctxKey int

const (
	stateKey ctxKey = iota
	pendingKey
	operationKey
)

// state is what an invocation's context carries. Its logger is made on
// first use: most functions never log, and a zap logger With a field costs
// an encoder clone.
type state struct {
	base *zap.Logger
	id   string
	once sync.Once
	log  *zap.Logger
}

// tracedState is the state of an invocation traced by a span. A type of
// its own keeps state as small as it was: most hosts never trace.
type tracedState struct {
	state
	trace trace.SpanContext
}

// With returns ctx carrying the invocation's logger and id.
func With(ctx context.Context, logger *zap.Logger, id string) context.Context {
	return &stateCtx{Context: ctx, state: state{base: logger, id: id}}
}

// stateCtx is context.WithValue(parent, stateKey, &state) in one
// allocation instead of two. Like a value context it forwards everything
// else to its parent, so contexts derived from it find the parent's
// cancellation as they would through context.WithValue.
type stateCtx struct {
	context.Context
	state state
}

func (c *stateCtx) Value(key any) any {
	if key == stateKey {
		return &c.state
	}
	return c.Context.Value(key)
}

func (c *stateCtx) String() string { return fmt.Sprintf("%v.WithValue(invocation)", c.Context) }

// WithTrace is With for an invocation traced by the span sc: its log
// lines carry traceId and spanId too.
func WithTrace(ctx context.Context, logger *zap.Logger, id string, sc trace.SpanContext) context.Context {
	return context.WithValue(ctx, stateKey, &tracedState{state: state{base: logger, id: id}, trace: sc})
}

// stateOf returns the invocation state ctx carries (nil outside an
// invocation) and its span, if traced.
func stateOf(ctx context.Context) (*state, trace.SpanContext) {
	switch s := ctx.Value(stateKey).(type) {
	case *state:
		return s, trace.SpanContext{}
	case *tracedState:
		return &s.state, s.trace
	}
	return nil, trace.SpanContext{}
}

// Logger returns the invocation's logger with its invocationId field (and
// traceId and spanId when it is traced), or a no-op logger outside an
// invocation.
func Logger(ctx context.Context) *zap.Logger {
	s, sc := stateOf(ctx)
	if s == nil || s.base == nil {
		return zap.NewNop()
	}
	s.once.Do(func() {
		if sc.IsValid() {
			s.log = s.base.With(zap.String("invocationId", s.id),
				zap.String("traceId", sc.TraceID().String()), zap.String("spanId", sc.SpanID().String()))
			return
		}
		s.log = s.base.With(zap.String("invocationId", s.id))
	})
	return s.log
}

// ID returns the id of the current invocation, or "".
func ID(ctx context.Context) string {
	if s, _ := stateOf(ctx); s != nil {
		return s.id
	}
	return ""
}

// Item is one value a function produced for an output, encoded when it was
// added.
type Item struct {
	// Output names the declared output.
	Output string
	// Value is what the function gave (kept for the completion callback).
	Value any
	// Body is Value encoded (JSON; strings and []byte as they are) at the
	// moment it was added, so a value changed afterwards sends what it was.
	Body []byte
	// Err is why Value could not be encoded; the invocation then fails.
	Err error
	// Trace is the span of the invocation that produced it (zero while
	// tracing is off): the message is sent in that trace.
	Trace trace.SpanContext
}

// Pending holds an invocation's output items until the host sends them.
type Pending struct {
	mu    sync.Mutex
	names map[string]bool
	items []Item
	trace trace.SpanContext
}

// SetTrace makes sc the Trace of every item added from now on: the span of
// the invocation p holds the outputs of.
func (p *Pending) SetTrace(sc trace.SpanContext) {
	p.mu.Lock()
	p.trace = sc
	p.mu.Unlock()
}

// NewPending returns the holder for an invocation of a function with the
// given output names.
func NewPending(names []string) *Pending {
	p := &Pending{names: make(map[string]bool, len(names))}
	for _, n := range names {
		p.names[n] = true
	}
	return p
}

// Add records it; it fails when the function declared no such output or
// when called outside an invocation (p nil).
func (p *Pending) Add(it Item) error {
	if p == nil {
		return fmt.Errorf("output %q: not inside an invocation", it.Output)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.names[it.Output] {
		return fmt.Errorf("output %q: the function declares no output of that name (functions.WithOutput)", it.Output)
	}
	it.Trace = p.trace
	p.items = append(p.items, it)
	return nil
}

// Items returns what the invocation produced, in order.
func (p *Pending) Items() []Item {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Item(nil), p.items...)
}

// WithPending returns ctx carrying p.
func WithPending(ctx context.Context, p *Pending) context.Context {
	return context.WithValue(ctx, pendingKey, p)
}

// PendingFrom returns the Pending ctx carries, or nil.
func PendingFrom(ctx context.Context) *Pending {
	p, _ := ctx.Value(pendingKey).(*Pending)
	return p
}

// Operation is the background operation an invocation runs, when its
// message carries one.
type Operation struct {
	// ID is the operation's id.
	ID string
	// Progress records a progress value (JSON) for the operation.
	Progress func(ctx context.Context, v []byte) error
}

// WithOperation returns ctx carrying op.
func WithOperation(ctx context.Context, op *Operation) context.Context {
	return context.WithValue(ctx, operationKey, op)
}

// OperationFrom returns the Operation ctx carries, or nil.
func OperationFrom(ctx context.Context) *Operation {
	op, _ := ctx.Value(operationKey).(*Operation)
	return op
}
