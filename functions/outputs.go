package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"github.com/jobhost/jobhost/internal/invocation"

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

// RegisterResult adds a function with a return-value output to Default and
// returns its Ref.
func RegisterResult[T, R any](name string, trigger Trigger, output string, h ResultHandler[T, R], opts ...Option) Ref[T] {
	return AddResult(Default, name, trigger, output, h, opts...)
}

// AddResult registers in r a function whose return value is sent to output
// (a Storage Queue name or a URL, with %Setting% and {expressions}). An
// empty output sends nothing: the value only goes into the completion
// callback (CallbackURL, CallbackFromField). It returns the function's Ref.
func AddResult[T, R any](r *Registry, name string, trigger Trigger, output string, h ResultHandler[T, R], opts ...Option) Ref[T] {
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
			return add(ctx, ReturnOutput, res)
		}
	}
	// Clipped: appending must not write into the caller's backing array.
	return Add(r, name, trigger, wrapped, append(slices.Clip(opts), WithOutput(ReturnOutput, output))...)
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
	ctx  context.Context
	name string
}

// Collect returns the collector of the output named name for the running
// invocation.
func Collect[T any](ctx context.Context, name string) *Collector[T] {
	return &Collector[T]{ctx: ctx, name: name}
}

// Add queues v to be sent when the function succeeds: a struct as JSON, a
// string or []byte as it is. v is encoded now, so changing it afterwards
// (a pointer reused in a loop) does not change what is sent. It fails when
// the function declared no output of that name, or v cannot be encoded as
// JSON.
func (c *Collector[T]) Add(v T) error { return add(c.ctx, c.name, v) }

// add encodes v and records it for the invocation's output name. A value
// that cannot be encoded is recorded with its error too, so the invocation
// fails even if the function ignores what Add returned.
func add(ctx context.Context, name string, v any) error {
	body, err := encode(v)
	if err != nil {
		err = fmt.Errorf("output %q: %w", name, err)
	}
	if perr := invocation.PendingFrom(ctx).Add(invocation.Item{Output: name, Value: v, Body: body, Err: err}); perr != nil {
		return perr
	}
	return err
}

// encode is how an output value becomes a message body: JSON, except that
// strings and bytes go as they are (copied).
func encode(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return []byte(x), nil
	case []byte:
		return bytes.Clone(x), nil
	case json.RawMessage:
		return bytes.Clone(x), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cannot encode %T as JSON: %w", v, err)
	}
	return b, nil
}
