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
	static     bool
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
			oc.static = true
			if _, err := outputTarget(s); err != nil {
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
// publisher per target.
type outputs struct {
	settings *AppSettings
	azure    *azureOpener
	encoding func(connection, queue string) bindings.Encoding
	wake     func(connection, queue string)

	mu   sync.Mutex
	pubs map[string]*outPublisher
}

// outPublisher is the publisher of one output target, opened on first
// use under its own lock (never the host-wide one: dialling a broker must
// not hold up sends to other targets).
type outPublisher struct {
	mu      sync.Mutex
	pub     triggers.Publisher // nil until opened
	storage *azurequeue.Driver
	created bool // the Storage Queue exists (a failed create is tried again)
}

// planned is one encoded item ready to send.
type planned struct {
	output, target, connection string
	storage                    bool
	body                       []byte
}

// send resolves, encodes and checks every item first, then sends them; a
// problem found before sending sends nothing.
func (o *outputs) send(ctx context.Context, fc *FunctionConfig, items []invocation.Item, m *triggers.Message, payload []byte) error {
	byName := make(map[string]*OutputConfig, len(fc.Outputs))
	for _, oc := range fc.Outputs {
		byName[oc.Name] = oc
	}
	data := &bindings.Data{Payload: payload, ID: m.ID, DequeueCount: m.DequeueCount}
	plan := make([]planned, 0, len(items))
	for _, it := range items {
		oc := byName[it.Output]
		if oc.Target == "" {
			continue // kept for the completion callback only
		}
		if it.Err != nil {
			return fmt.Errorf("function %s: %w", fc.Name(), it.Err)
		}
		raw, err := oc.expr.Resolve(data)
		if err == nil {
			raw, err = outputTarget(raw)
		}
		if err != nil {
			return fmt.Errorf("function %s: output %s: %w", fc.Name(), it.Output, err)
		}
		p := planned{output: it.Output, target: raw, connection: oc.Connection, storage: !strings.Contains(raw, "://"), body: it.Body}
		if p.storage {
			if p.connection == "" {
				p.connection = "Storage"
			}
			p.body = o.encoding(p.connection, raw).Encode(it.Body)
			if len(p.body) > maxStorageMessage {
				return fmt.Errorf("function %s: output %s: the message to queue %s is %d bytes after encoding; a Storage Queue message is at most %d",
					fc.Name(), it.Output, raw, len(p.body), maxStorageMessage)
			}
		}
		plan = append(plan, p)
	}
	for _, p := range plan {
		if err := o.publish(ctx, p); err != nil {
			return fmt.Errorf("function %s: output %s to %s: %w", fc.Name(), p.output, displayTarget(p.target), err)
		}
		if p.storage {
			o.wake(p.connection, p.target)
		}
	}
	return nil
}

func (o *outputs) publish(ctx context.Context, p planned) error {
	pub, err := o.publisher(ctx, p)
	if err != nil {
		return err
	}
	_, err = pub.Publish(ctx, p.body, nil)
	return err
}

// publisher returns the open publisher of p's target, opening it (and, for
// a Storage Queue, creating the queue) on first use. A failed open or
// create is not kept: the next send tries again.
func (o *outputs) publisher(ctx context.Context, p planned) (triggers.Publisher, error) {
	key := p.connection + "|" + p.target
	o.mu.Lock()
	op, ok := o.pubs[key]
	if !ok {
		op = &outPublisher{}
		o.pubs[key] = op
	}
	o.mu.Unlock()

	op.mu.Lock()
	defer op.mu.Unlock()
	if op.pub == nil {
		if p.storage {
			c, err := o.azure.client(p.connection)
			if err != nil {
				return nil, err
			}
			op.storage = azurequeue.New(c, p.target, azurequeue.Options{CreateIfMissing: true})
			op.pub = op.storage
		} else {
			u, _ := url.Parse(p.target)
			pub, err := OpenPublisher(ctx, u, p.connection, true, o.settings)
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
		p.mu.Lock()
		if p.pub != nil {
			errs = append(errs, p.pub.Close())
		}
		p.mu.Unlock()
	}
	return errors.Join(errs...)
}

func displayTarget(t string) string {
	if u, err := url.Parse(t); err == nil && u.Scheme != "" {
		return redact.DisplayURL(u)
	}
	return t
}
