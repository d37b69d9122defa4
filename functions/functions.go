// Package functions is what a function author touches: a function is a plain
// Go func with a typed argument bound from the message's JSON, registered with
// its queue trigger into a Registry that the host discovers at start.
//
//	func init() {
//		functions.Register("ProcessSiteModifyRequest",
//			functions.QueueTrigger("%SiteModifyQueue%"),
//			func(ctx context.Context, req SiteModifyRequest, msg *triggers.Message) error {
//				...
//			})
//	}
//
// The package knows no broker SDK.
package functions

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/triggers"
)

// Handler is a function of the user's, called once per message with the
// payload bound to T. Returning nil completes the message; an error (or a
// panic) fails this attempt, which is retried until maxDequeueCount and then
// poisoned.
//
// msg is the invocation's own copy of the message as it was delivered: the
// host never changes it while the function runs (lease renewals update the
// driver's copy), and its Body shares no bytes with the broker's or the
// poison copy's, so the function may read it from any goroutine and keep it.
type Handler[T any] func(ctx context.Context, in T, msg *triggers.Message) error

// Trigger is a function's trigger binding: an Azure Storage Queue name, or
// a subscription URL for any other broker.
type Trigger struct {
	// Queue is the Storage Queue name, or the subscription URL, possibly
	// with %AppSetting% expressions.
	Queue string
	// Connection names the connection: for Storage Queues the app setting
	// AzureWebJobs<Connection> or <Connection> (default "Storage"); for URL
	// triggers the app setting holding the server URL or connection string
	// (default: the driver's usual variable, such as RABBIT_SERVER_URL).
	Connection string // Timer makes it a timer trigger (TimerTrigger): Queue then holds the
	// schedule.
	Timer *TimerOptions
}

// QueueTrigger binds a function to an Azure Storage Queue. The name may use
// %SettingName% expressions resolved from app settings at start.
func QueueTrigger(queue string) Trigger { return Trigger{Queue: queue} }

// SubscriptionTrigger binds a function to a broker subscription given as a
// URL: azuresb://, rabbit://, nats:// (JetStream), mem://, awssqs://,
// gcppubsub:// or kafka://. It may be a %SettingName% expression, so moving
// a function to another broker changes configuration only; a setting that
// resolves to a plain queue name binds to a Storage Queue.
func SubscriptionTrigger(url string) Trigger { return Trigger{Queue: url} }

// WithConnection returns the trigger reading through the named connection.
func (t Trigger) WithConnection(name string) Trigger { t.Connection = name; return t }

// Settings are per-function overrides of host.json's extensions.queues
// settings; a nil field keeps the host's value.
type Settings struct {
	BatchSize          *int
	NewBatchThreshold  *int
	MaxDequeueCount    *int
	MaxPollingInterval *time.Duration
	VisibilityTimeout  *time.Duration
	LeaseDuration      *time.Duration
	MessageEncoding    *bindings.Encoding
	FunctionTimeout    *time.Duration
	Retry              *RetryPolicy
	Callback           *Callback
	// Outputs are the declared outputs (not overridable from host.json).
	Outputs []OutputBinding
	// Batch sizes the batches of a batch function (RegisterBatch).
	MaxBatchSize, MinBatchSize *int
	MaxBatchWait               *time.Duration
}

// Callback says where to POST a function's completion notice: a fixed URL
// (which may use %Setting%), or the URL found in a field of the trigger
// message's JSON.
type Callback struct {
	URL   string
	Field string
}

// Option sets a per-function setting at registration.
type Option func(*Settings)

// BatchSize sets how many messages one poll asks for (1..32).
func BatchSize(n int) Option { return func(s *Settings) { s.BatchSize = &n } }

// NewBatchThreshold sets the in-flight count at or below which the next poll
// is made.
func NewBatchThreshold(n int) Option { return func(s *Settings) { s.NewBatchThreshold = &n } }

// MaxDequeueCount sets the number of attempts before a message is poisoned.
func MaxDequeueCount(n int) Option { return func(s *Settings) { s.MaxDequeueCount = &n } }

// MaxPollingInterval caps the idle polling backoff.
func MaxPollingInterval(d time.Duration) Option {
	return func(s *Settings) { s.MaxPollingInterval = &d }
}

// VisibilityTimeout sets the delay before a failed message is visible again.
func VisibilityTimeout(d time.Duration) Option {
	return func(s *Settings) { s.VisibilityTimeout = &d }
}

// LeaseDuration sets the visibility lease taken at dequeue and renewed at
// half-lease while the function runs.
func LeaseDuration(d time.Duration) Option { return func(s *Settings) { s.LeaseDuration = &d } }

// MessageEncoding sets how message text is decoded (base64 or none).
func MessageEncoding(e bindings.Encoding) Option {
	return func(s *Settings) { s.MessageEncoding = &e }
}

// Retry sets the function's retry policy (see FixedDelay and
// ExponentialBackoff).
func Retry(p RetryPolicy) Option { return func(s *Settings) { s.Retry = &p } }

// CallbackURL makes the host POST a completion notice to url (which may use
// %Setting%) when the function's message is finally settled: succeeded or
// poisoned. The host must be in jobhost.callbacks.allowedHosts.
func CallbackURL(url string) Option { return func(s *Settings) { s.Callback = &Callback{URL: url} } }

// CallbackFromField is CallbackURL with the URL taken from a field of the
// trigger message's JSON ("callbackUrl", or a dotted path "reply.url").
func CallbackFromField(field string) Option {
	return func(s *Settings) { s.Callback = &Callback{Field: field} }
}

// Timeout limits one invocation; when it passes the function's context is
// cancelled and the attempt counts as failed. A negative value means no limit.
func Timeout(d time.Duration) Option { return func(s *Settings) { s.FunctionTimeout = &d } }

// Definition is one registered function as the host discovers it.
type Definition struct {
	// Name is the function name, unique in its registry (case-insensitive).
	Name string
	// Trigger is the trigger binding as written (before %Setting% resolution).
	Trigger Trigger
	// Settings are the overrides given at registration.
	Settings Settings
	// ArgType names the argument type, for listings.
	ArgType string

	invoke      func(ctx context.Context, payload []byte, msg *triggers.Message) error
	invokeBatch func(ctx context.Context, payloads [][]byte, msgs []*triggers.Message) error
	validate    func(payload []byte) error
}

// Invoke binds payload (the decoded message body) to the function's
// argument and calls it with msg, as the host does (without its retries,
// outputs or timeout): a function's tests can call it directly. A payload
// that cannot be bound gives a *bindings.Error without calling the handler.
//
// A batch function is called with a batch of one; its one error is
// returned.
func (d *Definition) Invoke(ctx context.Context, payload []byte, msg *triggers.Message) error {
	if d.invoke == nil && d.invokeBatch != nil {
		err := d.invokeBatch(ctx, [][]byte{payload}, []*triggers.Message{msg})
		var be *BatchError
		if errors.As(err, &be) && len(be.Errs) == 1 {
			return be.Errs[0]
		}
		return err
	}
	return d.invoke(ctx, payload, msg)
}

// Registry holds registered functions. The zero value is ready to use.
type Registry struct {
	mu       sync.Mutex
	defs     []*Definition
	problems []error
	defaults map[string]string
}

// SettingDefault gives app setting name a value used when neither the
// environment nor local.settings.json sets it, so %name% in a queue name
// resolves out of the box.
func (r *Registry) SettingDefault(name, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.defaults == nil {
		r.defaults = map[string]string{}
	}
	r.defaults[name] = value
}

// SettingDefaults returns the defaults given by SettingDefault.
func (r *Registry) SettingDefaults() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.defaults))
	for k, v := range r.defaults {
		out[k] = v
	}
	return out
}

// Default is the registry that Register adds to and that the host uses unless
// given another.
var Default = &Registry{}

// Register adds a function to Default (call it from init(), or keep the
// Ref in a package variable) and returns its Ref, which the client's typed
// calls take.
func Register[T any](name string, trigger Trigger, h Handler[T], opts ...Option) Ref[T] {
	return Add(Default, name, trigger, h, opts...)
}

// Add registers a function in r. Problems (an empty or duplicate name, a nil
// handler, an empty queue) are not panics: they are kept and reported all at
// once by r.Validate when the host starts. It returns the function's Ref.
func Add[T any](r *Registry, name string, trigger Trigger, h Handler[T], opts ...Option) Ref[T] {
	ref := Ref[T]{name: name}
	def := &Definition{Name: name, Trigger: trigger, ArgType: fmt.Sprintf("%T", *new(T)), validate: newValidator[T]()}
	if def.ArgType == "<nil>" {
		def.ArgType = "interface {}"
	}
	for _, o := range opts {
		o(&def.Settings)
	}
	if h != nil {
		bind := bindings.NewBinder[T]()
		def.invoke = func(ctx context.Context, payload []byte, msg *triggers.Message) error {
			v, err := bind(payload)
			if err != nil {
				return err
			}
			return h(ctx, v, msg)
		}
	}
	r.add(def, h == nil)
	return ref
}

// add keeps def, or the problem with it.
func (r *Registry) add(def *Definition, nilHandler bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := def.Name
	switch {
	case strings.TrimSpace(name) == "":
		r.problems = append(r.problems, errors.New("a function was registered with an empty name"))
		return
	case nilHandler:
		r.problems = append(r.problems, fmt.Errorf("function %s: handler is nil", name))
		return
	case strings.TrimSpace(def.Trigger.Queue) == "":
		r.problems = append(r.problems, fmt.Errorf("function %s: queue trigger has an empty queue name", name))
		return
	}
	for _, d := range r.defs {
		if strings.EqualFold(d.Name, name) {
			r.problems = append(r.problems, fmt.Errorf("function %s: registered more than once (function names are case-insensitive)", name))
			return
		}
	}
	r.defs = append(r.defs, def)
}

// Functions returns the registered functions sorted by name.
func (r *Registry) Functions() []*Definition {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]*Definition(nil), r.defs...)
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i].Name) < strings.ToLower(out[j].Name) })
	return out
}

// Problems returns every registration problem found so far.
func (r *Registry) Problems() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.problems...)
}

// Logger returns the invocation's logger (category Function.<Name>.User,
// with its invocationId), or a no-op logger outside an invocation.
func Logger(ctx context.Context) *zap.Logger { return invocation.Logger(ctx) }

// InvocationID returns the id of the current invocation, or "".
func InvocationID(ctx context.Context) string { return invocation.ID(ctx) }
