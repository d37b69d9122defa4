package client

import (
	"context"
	"fmt"
	"maps"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/tracing"
	"github.com/jobhost/jobhost/triggers"
)

// MaxStorageMessage is the Storage Queue limit on a message, after
// encoding.
const MaxStorageMessage = 64 * 1024

// SendOption changes one send.
type SendOption func(*sendOptions)

type sendOptions struct {
	delay      time.Duration
	connection string
	encoding   *bindings.Encoding
	meta       bindings.Meta
	props      map[string]string
}

func collect(opts []SendOption) sendOptions {
	var o sendOptions
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}

// Delay keeps the message invisible to receivers for d (rounded up as the
// broker rounds it). A broker that cannot delay fails the send with
// ErrDelayUnsupported; one whose longest delay is shorter, with an error
// wrapping triggers.ErrDelayTooLong. Nothing is sent in either case.
func Delay(d time.Duration) SendOption { return func(o *sendOptions) { o.delay = d } }

// Connection names the connection of a target given by name (Send,
// SendBatch, Queue): the app setting with the Storage connection string or
// the broker's server URL.
func Connection(name string) SendOption { return func(o *sendOptions) { o.connection = name } }

// Encoding overrides the destination's messageEncoding (base64 or none).
func Encoding(e bindings.Encoding) SendOption { return func(o *sendOptions) { o.encoding = &e } }

// WithMeta attaches jobhost metadata: in properties on brokers that have
// them, in the JSON body (bindings.WrapMeta) on Storage Queues, where the
// payload must then be JSON.
func WithMeta(m bindings.Meta) SendOption { return func(o *sendOptions) { o.meta = m } }

// Properties sets message properties (headers) on brokers that have them;
// a Storage Queue has none (ErrNoProperties).
func Properties(p map[string]string) SendOption {
	return func(o *sendOptions) { o.props = maps.Clone(p) }
}

// Prepared is a message encoded and checked for its target, ready to send.
type Prepared struct {
	target Target
	body   []byte
	props  map[string]string
	delay  time.Duration
	enc    bindings.Encoding
	// For a Storage Queue: the payload before the envelope and encoding,
	// and the metadata, so that a send can add its trace context to the
	// body (Options.TraceStorageQueueBody).
	raw  []byte
	meta bindings.Meta
}

// Target returns where the message goes.
func (p *Prepared) Target() Target { return p.target }

// Body returns the message as it will be sent (encoded).
func (p *Prepared) Body() []byte { return p.body }

// Size returns the message's size as sent, in bytes.
func (p *Prepared) Size() int { return len(p.body) }

// Encoding returns the encoding applied.
func (p *Prepared) Encoding() bindings.Encoding { return p.enc }

// EncodingFor returns the messageEncoding a message for t gets unless an
// Encoding option (or, for SendTo and Enqueue, the function's own
// encoding) says otherwise: Options.StorageEncoding's for a Storage Queue
// when it is set; else that of the first function in Options.Functions
// reading t; else base64 for a Storage Queue, Options.URLEncoding for a
// URL.
func (c *Client) EncodingFor(t Target) bindings.Encoding { return c.encodingFor(t) }

// Prepare encodes payload (the message body as the function will bind it)
// for t and checks it as the broker would, without sending anything: the
// destination's messageEncoding applied, metadata placed, and on a Storage
// Queue the XML-text check under encoding none (*NotXMLError) and the
// 64 KiB limit (*TooLargeError). Prepare keeps payload without copying it
// until the message is sent.
func (c *Client) Prepare(t Target, payload []byte, opts ...SendOption) (*Prepared, error) {
	return c.prepare(t, payload, nil, collect(opts))
}

// prepare is Prepare with the encoding of the function addressed (nil: the
// client's rule for t).
func (c *Client) prepare(t Target, payload []byte, fnEnc *bindings.Encoding, o sendOptions) (*Prepared, error) {
	if t.name == "" {
		return nil, fmt.Errorf("client: no target")
	}
	enc := c.encodingFor(t)
	switch {
	case o.encoding != nil:
		enc = *o.encoding
	case fnEnc != nil:
		enc = *fnEnc
	}
	if enc != bindings.Base64 && enc != bindings.None {
		return nil, fmt.Errorf("client: encoding must be %q or %q, got %q", bindings.Base64, bindings.None, enc)
	}
	p := &Prepared{target: t, delay: max(o.delay, 0), enc: enc, props: o.props}
	body := payload
	if t.IsStorage() {
		p.raw, p.meta = payload, o.meta
		if len(o.props) > 0 {
			return nil, fmt.Errorf("%w (queue %s)", ErrNoProperties, t)
		}
		if !o.meta.IsZero() {
			wrapped, err := bindings.WrapMeta(payload, o.meta)
			if err != nil {
				return nil, fmt.Errorf("queue %s: %w", t, err)
			}
			body = wrapped
		}
		if enc == bindings.None {
			if why := notXMLText(body); why != "" {
				return nil, &NotXMLError{Queue: t.String(), Reason: why}
			}
		}
	} else if !o.meta.IsZero() {
		p.props = bindings.MetaToProps(o.meta, p.props)
	}
	p.body = enc.Encode(body)
	if t.IsStorage() && len(p.body) > MaxStorageMessage {
		return nil, &TooLargeError{Size: len(p.body), Limit: MaxStorageMessage, Queue: t.String()}
	}
	return p, nil
}

// notXMLText says why p cannot travel as XML 1.0 text unchanged ("" when it
// can): it must be valid UTF-8 of characters XML allows. The Storage Queue
// client would put U+FFFD in place of the rest.
func notXMLText(p []byte) string {
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 {
			return fmt.Sprintf("byte %d (0x%02X) is not valid UTF-8", i, p[i])
		}
		if !(r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000) {
			return fmt.Sprintf("character %U at byte %d is not allowed in XML", r, i)
		}
		i += n
	}
	return ""
}

// Open opens t's publisher now (it is otherwise opened by the first send),
// so a connection problem (an unset setting, a broker not linked) shows
// before anything is sent. It creates nothing.
func (c *Client) Open(ctx context.Context, t Target) error {
	if c.closed.Load() {
		return ErrClosed
	}
	e := c.pubs.acquire(t.key())
	defer c.pubs.release(e)
	_, err := c.pubs.open(ctx, e, t, false)
	return err
}

// SendPrepared sends ps in order and returns the ids the brokers gave
// ("" where a broker gives none). It first opens every target's publisher
// (creating a missing Storage Queue) and checks each delay can be kept
// (ErrDelayUnsupported), so such a problem sends nothing; a failure while
// sending returns the ids of the messages sent before it.
func (c *Client) SendPrepared(ctx context.Context, ps ...*Prepared) ([]string, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	pubs := make([]triggers.Publisher, len(ps))
	entries := map[string]*entry{}
	defer func() {
		for _, e := range entries {
			c.pubs.release(e)
		}
	}()
	for i, p := range ps {
		key := p.target.key()
		e := entries[key]
		if e == nil {
			e = c.pubs.acquire(key)
			entries[key] = e
		}
		pub, err := c.pubs.open(ctx, e, p.target, true)
		if err != nil {
			return nil, err
		}
		if _, ok := pub.(triggers.DelayPublisher); p.delay > 0 && !ok {
			return nil, fmt.Errorf("%w (%s)", ErrDelayUnsupported, p.target)
		}
		pubs[i] = pub
	}
	ids := make([]string, 0, len(ps))
	for i, p := range ps {
		var id string
		var err error
		sctx, body, props := ctx, p.body, p.props
		var span trace.Span // nil while tracing is off
		if tracing.Enabled() {
			sctx, body, props, span = c.traceSend(ctx, p)
		}
		if p.delay > 0 {
			id, err = pubs[i].(triggers.DelayPublisher).PublishDelayed(sctx, body, props, p.delay)
		} else {
			id, err = pubs[i].Publish(sctx, body, props)
		}
		endSend(span, id, err)
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
		if c.opts.OnSent != nil {
			c.opts.OnSent(p.target.connection, p.target.name)
		}
	}
	return ids, nil
}

// SendPayload sends an already encoded payload (JSON, text or bytes, as
// the function will bind it) to t and returns the broker's message id.
func (c *Client) SendPayload(ctx context.Context, t Target, payload []byte, opts ...SendOption) (string, error) {
	p, err := c.Prepare(t, payload, opts...)
	if err != nil {
		return "", err
	}
	ids, err := c.SendPrepared(ctx, p)
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// encodeValue encodes v as functions' outputs encode it: JSON, a string or
// []byte as it is.
func encodeValue(v any) ([]byte, error) {
	b, err := functions.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotEncodable, err)
	}
	return b, nil
}

// Send sends value to target and returns the broker's message id. target
// is a Storage Queue name or a URL and may use %Setting%; value is encoded
// as a function's outputs encode it (JSON; a string, []byte or
// json.RawMessage as it is) with the target's messageEncoding.
func (c *Client) Send(ctx context.Context, target string, value any, opts ...SendOption) (string, error) {
	ids, err := c.SendBatch(ctx, target, []any{value}, opts...)
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// SendBatch sends values to target, in order, as Send does. Every value is
// encoded and checked first: one that cannot be sent sends none.
func (c *Client) SendBatch(ctx context.Context, target string, values []any, opts ...SendOption) ([]string, error) {
	o := collect(opts)
	t, err := c.Target(target, o.connection)
	if err != nil {
		return nil, err
	}
	return c.sendValues(ctx, t, nil, nil, values, o)
}

// SendTo sends value to the queue of the function named function (one of
// Options.Functions), encoded as that function decodes it, after checking
// value binds to its argument (*InputError).
func (c *Client) SendTo(ctx context.Context, function string, value any, opts ...SendOption) (string, error) {
	f, err := c.function(function)
	if err != nil {
		return "", err
	}
	ids, err := c.sendValues(ctx, f.target, f.Encoding, f.Validate, []any{value}, collect(opts))
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// sendValues encodes, validates and prepares every value, then sends them.
func (c *Client) sendValues(ctx context.Context, t Target, fnEnc *bindings.Encoding, validate func([]byte) error, values []any, o sendOptions) ([]string, error) {
	ps := make([]*Prepared, len(values))
	for i, v := range values {
		payload, err := encodeValue(v)
		if err == nil && validate != nil {
			err = inputError(validate(payload))
		}
		if err == nil {
			ps[i], err = c.prepare(t, payload, fnEnc, o)
		}
		if err != nil {
			if len(values) > 1 {
				err = fmt.Errorf("value %d of %d: %w", i+1, len(values), err)
			}
			return nil, err
		}
	}
	return c.SendPrepared(ctx, ps...)
}
