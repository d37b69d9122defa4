package jetstream

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/jobhost/jobhost/triggers"
)

// Publish sends body with props as headers to the driver's subject and
// waits for the stream's acknowledgement (triggers.Publisher). With
// CreateIfMissing a missing stream is created first. It returns the
// message's ID as Receive reports it: its Nats-Msg-Id header, else the
// stream sequence.
func (d *Driver) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	subj := sourceSubject(d.opts)
	if strings.ContainsAny(subj, "*>") {
		return "", fmt.Errorf("jetstream: cannot publish to the wildcard subject %q", subj)
	}
	if d.isClosed() {
		return "", d.closedErr("publish to")
	}
	return d.publish(ctx, d.opts, subj, body, props)
}

// publish sends body with props as headers to subj and waits for the
// stream's acknowledgement. When no stream answers and opts.CreateIfMissing
// is set, it creates opts's stream (createTriggerStream) and sends again.
// Nothing of body or props is kept.
func (l *link) publish(ctx context.Context, opts Options, subj string, body []byte, props map[string]string) (string, error) {
	msg := &nats.Msg{Subject: subj, Data: body, Header: nats.Header{}}
	for k, v := range props {
		msg.Header.Set(k, v)
	}
	ack, err := l.js.PublishMsg(ctx, msg)
	if errors.Is(err, natsjs.ErrNoStreamResponse) && opts.CreateIfMissing {
		if _, cerr := createTriggerStream(ctx, l.js, opts); cerr != nil {
			return "", l.apiErr("create stream", cerr)
		}
		ack, err = l.js.PublishMsg(ctx, msg)
	}
	if err != nil {
		return "", l.apiErr("publish", err)
	}
	if id := msg.Header.Get(HeaderMsgID); id != "" {
		return id, nil
	}
	return strconv.FormatUint(ack.Sequence, 10), nil
}

// Publisher publishes to the subject of a trigger URL with JetStream
// publish acknowledgements (triggers.Publisher). It is safe for
// concurrent use.
type Publisher struct {
	link
	opts    Options
	subject string
	closed  atomic.Bool
}

var (
	_ triggers.Publisher         = (*Publisher)(nil)
	_ triggers.OpenPublisherFunc = OpenPublisherURL
)

// OpenPublisherURL opens a Publisher to the subject of a trigger URL (see
// OpenURL): its filter subject, or the stream name when it has none; a
// wildcard subject is refused. The server URL comes from app settings as
// for OpenURL, and the connection is shared with the drivers, publishers
// and poison administrations of this package on the same server URL. With
// o.CreateIfMissing a publish that no stream captures creates the stream
// as the driver does; no consumer is created.
func OpenPublisherURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Publisher, error) {
	opts, server, setting, err := resolveOpen(ctx, u, o)
	if err != nil {
		return nil, err
	}
	subj := sourceSubject(opts)
	if strings.ContainsAny(subj, "*>") {
		return nil, fmt.Errorf("jetstream: URL %q: cannot publish to the wildcard subject %q", u.Redacted(), subj)
	}
	p := &Publisher{opts: opts, subject: subj}
	p.name = "subject " + subj
	if err := p.dial(server, nil); err != nil {
		return nil, fromSetting(err, setting)
	}
	return p, nil
}

// Subject returns the subject the publisher publishes to.
func (p *Publisher) Subject() string { return p.subject }

// Publish sends body with props as headers and waits for the stream's
// acknowledgement. It returns the message's ID as the driver reports it:
// its Nats-Msg-Id header, else the stream sequence. After Close it returns
// an error wrapping triggers.ErrClosed.
func (p *Publisher) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	if p.closed.Load() {
		return "", fmt.Errorf("jetstream: publish to %s: publisher %w", p.subject, triggers.ErrClosed)
	}
	id, err := p.publish(ctx, p.opts, p.subject, body, props)
	if err != nil && p.closed.Load() {
		return "", fmt.Errorf("jetstream: publish to %s: publisher %w while publishing: %w", p.subject, triggers.ErrClosed, err)
	}
	return id, err
}

// Close gives back the publisher's connection (closing it when it was the
// last user). It is idempotent.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	p.release()
	return nil
}
