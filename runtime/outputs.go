package runtime

import (
	"context"
	"fmt"
	"strings"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/triggers"
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
// Queue name, or a URL with a known scheme (client.ParseTarget).
func outputTarget(s string) (string, error) {
	t, err := client.ParseTarget(s, "")
	if err != nil {
		return "", err
	}
	return t.Name(), nil
}

// outputs sends the output items of the host's functions through a
// client.Client, the same code as the CLI's send and web apps: it keeps
// one publisher per target (at most client.MaxPublishers), creates missing
// Storage Queues and encodes and checks messages as the client does.
type outputs struct {
	settings *AppSettings
	azure    *azureOpener
	encoding func(connection, queue string) bindings.Encoding
	wake     func(connection, queue string)
	client   *client.Client
}

// newOutputs returns the host's outputs, sending as the host's functions
// read: encoding is the host's Storage Queue rule, URL functions' encodings
// and extensions.pubsub.messageEncoding decide for URLs, and wake is told
// of every message sent.
func newOutputs(cfg *Config, settings *AppSettings, az *azureOpener, funcs []*FunctionConfig,
	encoding func(connection, queue string) bindings.Encoding, wake func(connection, queue string)) (*outputs, error) {
	o := &outputs{settings: settings, azure: az, encoding: encoding, wake: wake}
	opts := clientOptions(cfg, settings, funcs)
	opts.StorageEncoding, opts.OnSent, opts.StorageClient = encoding, wake, az.client
	c, err := client.New(opts)
	if err != nil {
		return nil, err
	}
	o.client = c
	return o, nil
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

// planned is one item to send.
type planned struct {
	target
	body []byte
}

// send encodes and checks every item first, then sends them to targets; a
// problem found before sending sends nothing. A problem no retry can mend
// (a value that cannot be encoded, a message over the Storage Queue limit
// or not XML text) is a functions.Permanent error: the message is
// poisoned at once. While tracing is on, each message is sent in the trace
// of the invocation that produced it (the client's send span, a child of
// the invocation's span, and its context in the message).
func (o *outputs) send(ctx context.Context, fc *FunctionConfig, items []invocation.Item, targets map[string]target) error {
	c := o.client
	ctx = outputContext(ctx, items) // the invocation's trace, while tracing is on
	plan := make([]*client.Prepared, 0, len(items))
	names := make([]string, 0, len(items))
	for _, it := range items {
		t, ok := targets[it.Output]
		if !ok {
			continue // kept for the completion callback only
		}
		if it.Err != nil {
			return functions.Permanent(fmt.Errorf("function %s: %w", fc.Name(), it.Err))
		}
		p, err := o.prepare(c, planned{target: t, body: it.Body})
		if err != nil {
			return functions.Permanent(fmt.Errorf("function %s: output %s: %w", fc.Name(), it.Output, err))
		}
		plan, names = append(plan, p), append(names, it.Output)
	}
	for i, p := range plan {
		if _, err := c.SendPrepared(ctx, p); err != nil {
			err = fmt.Errorf("function %s: output %s to %s: %w", fc.Name(), names[i], p.Target(), err)
			if client.Unsendable(err) {
				return functions.Permanent(err)
			}
			return err
		}
	}
	return nil
}

// prepare encodes and checks one item for its target.
func (o *outputs) prepare(c *client.Client, p planned) (*client.Prepared, error) {
	t, err := client.ParseTarget(p.name, p.connection)
	if err != nil {
		return nil, err
	}
	return c.Prepare(t, p.body)
}

// publish sends one item at once.
func (o *outputs) publish(ctx context.Context, p planned) error {
	c := o.client
	pr, err := o.prepare(c, p)
	if err != nil {
		return err
	}
	_, err = c.SendPrepared(ctx, pr)
	return err
}

// close closes every publisher.
func (o *outputs) close() error {
	return o.client.Close()
}
