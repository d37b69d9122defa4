package runtime

import (
	"context"
	"errors"
	"fmt"
	"github.com/jobhost/jobhost/internal/redact"
	"net/url"
	"strings"
	"sync"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// OutputConfig is one declared output of a function, with %Setting%
// resolved.
type OutputConfig struct {
	// Name is the output's name (functions.ReturnOutput for a return value).
	Name string
	// Target is the queue name or URL, possibly with {expressions}.
	Target string
	// Connection names the connection ("" = the default).
	Connection string
	expr       bindings.Expression
	fixed      string // the normalised target when it has no {expression}
}

// maxStorageMessage is the Storage Queue limit on a stored message.
const maxStorageMessage = 64 * 1024

// resolveOutputs expands %Setting% in fc's outputs and validates the static
// ones; dynamic ones are validated when resolved.
func resolveOutputs(def *functions.Definition, settings *AppSettings, bad func(what, msg string)) []*OutputConfig {
	var out []*OutputConfig
	seen := map[string]bool{}
	for _, ob := range def.Settings.Outputs {
		what := "output " + ob.Name
		if ob.Name == "" || seen[ob.Name] {
			bad(what, "output names must be non-empty and unique")
			continue
		}
		seen[ob.Name] = true
		if ob.Target == "" && ob.Name == functions.ReturnOutput {
			// A return value kept only for the completion callback.
			out = append(out, &OutputConfig{Name: ob.Name})
			continue
		}
		target, err := settings.Expand(ob.Target)
		if err != nil {
			bad(what, err.Error())
			continue
		}
		expr, err := bindings.ParseExpression(target)
		if err != nil {
			bad(what, err.Error())
			continue
		}
		oc := &OutputConfig{Name: ob.Name, Target: target, Connection: ob.Connection, expr: expr}
		if s, ok := expr.Static(); ok {
			if oc.fixed, err = outputTarget(s); err != nil {
				bad(what, err.Error())
				continue
			}
		}
		out = append(out, oc)
	}
	return out
}

// outputTarget normalises a resolved target: a lower-cased, valid Storage
// Queue name, or a URL with a known scheme.
func outputTarget(s string) (string, error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", errors.New("not a valid URL")
		}
		if _, err := lookupScheme(u.Scheme); err != nil {
			return "", err
		}
		return s, nil
	}
	name := strings.ToLower(s)
	if err := azurequeue.ValidateQueueName(name); err != nil {
		return "", err
	}
	return name, nil
}

// outputs sends the output items of the host's functions and keeps one
// publisher per target, at most maxPublishers of them: targets can come
// from expressions ({customer}), so the least recently used is closed when
// a new one would pass the bound.
type outputs struct {
	settings *AppSettings
	azure    *azureOpener
	encoding func(connection, queue string) bindings.Encoding
	wake     func(connection, queue string)

	mu   sync.Mutex
	pubs map[string]*outPublisher
	tick uint64 // orders uses, for eviction
}

// maxPublishers bounds the publishers outputs keeps open.
const maxPublishers = 256

// outPublisher is the publisher of one output target, opened on first
// use under its own lock (never the host-wide one: dialling a broker must
// not hold up sends to other targets).
type outPublisher struct {
	mu      sync.Mutex
	pub     triggers.Publisher // nil until opened
	storage *azurequeue.Driver
	created bool // the Storage Queue exists (a failed create is tried again)

	// Guarded by outputs.mu:
	used    uint64 // outputs.tick at the last use
	users   int    // sends under way
	evicted bool   // closed by the last user once users falls to 0
}

// target is where one output of an invocation goes, resolved before the
// function runs.
type target struct {
	output, name, connection string
	storage                  bool
}

// resolve works out, before the function runs, where each of fc's outputs
// goes: its expressions need only the trigger message, so an output that
// can never be sent (a missing {property}, a name that is not a valid
// queue) is found without running the function, as WebJobs binds before
// invoking.
func (o *outputs) resolve(fc *FunctionConfig, m *triggers.Message, payload []byte) (map[string]target, error) {
	data := &bindings.Data{Payload: payload, ID: m.ID, DequeueCount: m.DequeueCount}
	out := make(map[string]target, len(fc.Outputs))
	for _, oc := range fc.Outputs {
		if oc.Target == "" {
			continue // kept for the completion callback only
		}
		raw := oc.fixed // checked at start
		if raw == "" {
			var err error
			if raw, err = oc.expr.Resolve(data); err == nil {
				raw, err = outputTarget(raw)
			}
			if err != nil {
				return nil, fmt.Errorf("output %s: %w", oc.Name, err)
			}
		}
		t := target{output: oc.Name, name: raw, connection: oc.Connection, storage: !strings.Contains(raw, "://")}
		if t.storage && t.connection == "" {
			t.connection = "Storage"
		}
		out[oc.Name] = t
	}
	return out, nil
}

// planned is one encoded item ready to send.
type planned struct {
	target
	body []byte
}

// send encodes and checks every item first, then sends them to targets; a
// problem found before sending sends nothing. A problem no retry can mend
// (a value that cannot be encoded, a message over the Storage Queue limit)
// is a functions.Permanent error: the message is poisoned at once.
func (o *outputs) send(ctx context.Context, fc *FunctionConfig, items []invocation.Item, targets map[string]target) error {
	plan := make([]planned, 0, len(items))
	for _, it := range items {
		t, ok := targets[it.Output]
		if !ok {
			continue // kept for the completion callback only
		}
		if it.Err != nil {
			return functions.Permanent(fmt.Errorf("function %s: %w", fc.Name(), it.Err))
		}
		p := planned{target: t, body: it.Body}
		if p.storage {
			p.body = o.encoding(p.connection, p.name).Encode(it.Body)
			if len(p.body) > maxStorageMessage {
				return functions.Permanent(fmt.Errorf("function %s: output %s: the message to queue %s is %d bytes after encoding; a Storage Queue message is at most %d",
					fc.Name(), it.Output, p.name, len(p.body), maxStorageMessage))
			}
		}
		plan = append(plan, p)
	}
	for _, p := range plan {
		if err := o.publish(ctx, p); err != nil {
			return fmt.Errorf("function %s: output %s to %s: %w", fc.Name(), p.output, displayTarget(p.name), err)
		}
		if p.storage {
			o.wake(p.connection, p.name)
		}
	}
	return nil
}

func (o *outputs) publish(ctx context.Context, p planned) error {
	op, evicted := o.acquire(p.connection + "|" + p.name)
	if evicted != nil {
		evicted.close()
	}
	defer o.releasePub(op)
	pub, err := o.open(ctx, op, p.target)
	if err != nil {
		return err
	}
	_, err = pub.Publish(ctx, p.body, nil)
	return err
}

// acquire returns the entry of key, marked in use. When a new entry would
// pass maxPublishers, the least recently used one is dropped: returned as
// evicted for the caller to close when no send uses it, else closed by its
// last user.
func (o *outputs) acquire(key string) (op, evicted *outPublisher) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tick++
	op, ok := o.pubs[key]
	if !ok {
		if len(o.pubs) >= maxPublishers {
			evicted = o.evictLocked()
		}
		op = &outPublisher{}
		o.pubs[key] = op
	}
	op.used = o.tick
	op.users++
	return op, evicted
}

// evictLocked drops the least recently used entry and returns it if no
// send uses it (the caller closes it); otherwise its last user closes it.
func (o *outputs) evictLocked() *outPublisher {
	var oldKey string
	var old *outPublisher
	for k, op := range o.pubs {
		if old == nil || op.used < old.used {
			oldKey, old = k, op
		}
	}
	if old == nil {
		return nil
	}
	delete(o.pubs, oldKey)
	old.evicted = true
	if old.users == 0 {
		return old
	}
	return nil
}

func (o *outputs) releasePub(op *outPublisher) {
	o.mu.Lock()
	op.users--
	closeIt := op.evicted && op.users == 0
	o.mu.Unlock()
	if closeIt {
		op.close()
	}
}

func (op *outPublisher) close() error {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.pub == nil {
		return nil
	}
	err := op.pub.Close()
	op.pub, op.storage, op.created = nil, nil, false
	return err
}

// open returns op's publisher, opening it (and, for a Storage Queue,
// creating the queue) on first use. A failed open or create is not kept:
// the next send tries again.
func (o *outputs) open(ctx context.Context, op *outPublisher, t target) (triggers.Publisher, error) {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.pub == nil {
		if t.storage {
			c, err := o.azure.client(t.connection)
			if err != nil {
				return nil, err
			}
			op.storage = azurequeue.New(c, t.name, azurequeue.Options{CreateIfMissing: true})
			op.pub = op.storage
		} else {
			u, _ := url.Parse(t.name)
			pub, err := OpenPublisher(ctx, u, t.connection, true, o.settings)
			if err != nil {
				return nil, err
			}
			op.pub = pub
		}
	}
	if op.storage != nil && !op.created {
		// The output queue is created when missing, once it succeeds.
		if err := op.storage.Create(ctx); err != nil {
			return nil, err
		}
		op.created = true
	}
	return op.pub, nil
}

// close closes every publisher.
func (o *outputs) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []error
	for _, p := range o.pubs {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}

func displayTarget(t string) string {
	if u, err := url.Parse(t); err == nil && u.Scheme != "" {
		return redact.DisplayURL(u)
	}
	return t
}
