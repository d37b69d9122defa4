package functions

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"github.com/jobhost/jobhost/triggers"
)

// ReturnOutput is the name of the output a ResultHandler's value goes to
// (Functions' $return).
const ReturnOutput = "$return"

// OutputBinding is a declared output of a function.
type OutputBinding struct {
	// Name is how the function refers to it (Collect[T](ctx, Name)).
	Name string
	// Target is a Storage Queue name or a queue/topic URL; it may use
	// %Setting% and binding expressions such as {siteUrl} or {rand-guid}.
	Target string
	// Connection names the connection, as for triggers ("" = the default).
	Connection string
}

// WithOutput declares an output named name that sends to target (a Storage
// Queue name or a rabbit://, nats://, azuresb://, mem:// ... URL). Items a
// function adds with Collect are sent only after it succeeds, so a failed
// attempt that is retried sends nothing. connection optionally names the
// connection.
func WithOutput(name, target string, connection ...string) Option {
	return func(s *Settings) {
		ob := OutputBinding{Name: name, Target: target}
		if len(connection) > 0 {
			ob.Connection = connection[0]
		}
		s.Outputs = append(s.Outputs, ob)
	}
}

// ResultHandler is a function whose return value is sent to its output:
// a struct as JSON, a string or []byte as it is. A nil pointer, slice, map
// or interface sends nothing.
type ResultHandler[T, R any] func(ctx context.Context, in T, msg *triggers.Message) (R, error)

// RegisterResult adds a function with a return-value output to Default.
func RegisterResult[T, R any](name string, trigger Trigger, output string, h ResultHandler[T, R], opts ...Option) {
	AddResult(Default, name, trigger, output, h, opts...)
}

// AddResult registers in r a function whose return value is sent to output
// (a Storage Queue name or a URL, with %Setting% and {expressions}). An
// empty output sends nothing: the value only goes into the completion
// callback (CallbackURL, CallbackFromField).
func AddResult[T, R any](r *Registry, name string, trigger Trigger, output string, h ResultHandler[T, R], opts ...Option) {
	var wrapped Handler[T]
	if h != nil {
		nilable := isNilable[R]()
		wrapped = func(ctx context.Context, in T, msg *triggers.Message) error {
			res, err := h(ctx, in, msg)
			if err != nil {
				return err
			}
			if nilable && reflect.ValueOf(&res).Elem().IsNil() {
				return nil
			}
			return pendingFrom(ctx).add(ReturnOutput, res)
		}
	}
	Add(r, name, trigger, wrapped, append(opts, WithOutput(ReturnOutput, output))...)
}

func isNilable[R any]() bool {
	switch reflect.TypeFor[R]().Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
		return true
	}
	return false
}

// Collector adds messages to a declared output of the running invocation.
type Collector[T any] struct {
	p    *Pending
	name string
}

// Collect returns the collector of the output named name for the running
// invocation.
func Collect[T any](ctx context.Context, name string) *Collector[T] {
	return &Collector[T]{p: pendingFrom(ctx), name: name}
}

// Add queues v (JSON for structs; strings and []byte as they are) to be
// sent when the function succeeds. It fails when the function declared no
// output of that name.
func (c *Collector[T]) Add(v T) error { return c.p.add(c.name, v) }

// OutputItem is one value a function produced for an output.
type OutputItem struct {
	Output string
	Value  any
}

// Pending holds an invocation's output items until the host sends them.
type Pending struct {
	mu    sync.Mutex
	names map[string]bool
	items []OutputItem
}

// NewPending returns the holder for an invocation of a function with the
// given outputs.
func NewPending(outputs []OutputBinding) *Pending {
	p := &Pending{names: make(map[string]bool, len(outputs))}
	for _, o := range outputs {
		p.names[o.Name] = true
	}
	return p
}

func (p *Pending) add(name string, v any) error {
	if p == nil {
		return fmt.Errorf("output %q: not inside an invocation", name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.names[name] {
		return fmt.Errorf("output %q: the function declares no output of that name (functions.WithOutput)", name)
	}
	p.items = append(p.items, OutputItem{Output: name, Value: v})
	return nil
}

// Items returns what the invocation produced, in order.
func (p *Pending) Items() []OutputItem {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]OutputItem(nil), p.items...)
}

// WithPending returns ctx carrying p; the runtime calls it before invoking.
func WithPending(ctx context.Context, p *Pending) context.Context {
	return context.WithValue(ctx, pendingKey, p)
}

func pendingFrom(ctx context.Context) *Pending {
	p, _ := ctx.Value(pendingKey).(*Pending)
	return p
}
