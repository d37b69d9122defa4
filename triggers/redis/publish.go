package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobhost/jobhost/triggers"
)

// target publishes to one stream: XADD, or the delayed set.
type target struct {
	l       *link
	server  string
	stream  string
	delayed string
	group   string
	field   string
	create  bool         // create the stream and group before the first publish
	created atomic.Bool  // done
	closed  *atomic.Bool // the owner's
}

// Publisher publishes to one stream (triggers.Publisher and
// triggers.DelayPublisher). It is safe for concurrent use.
type Publisher struct {
	t      *target
	closed atomic.Bool
}

var (
	_ triggers.Publisher         = (*Publisher)(nil)
	_ triggers.DelayPublisher    = (*Publisher)(nil)
	_ triggers.OpenPublisherFunc = OpenPublisherURL
)

// OpenPublisherURL opens a publisher to the stream of redis://<stream>,
// with the server URL found as OpenURL finds it. With o.CreateIfMissing
// (output bindings and the CLI's send set it) the first publish creates
// the stream and the URL's consumer group (reading from the start, so the
// trigger misses nothing). It does not connect; the first publish does.
func OpenPublisherURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Publisher, error) {
	c, err := parseURL(u, o)
	if err != nil {
		return nil, err
	}
	if c.opts, err = c.opts.normalize(c.stream); err != nil {
		return nil, err
	}
	l, err := dial(c.serverURL)
	if err != nil {
		return nil, c.wrap(err)
	}
	p := &Publisher{}
	p.t = &target{l: l, server: l.s.display, stream: c.stream, delayed: c.stream + DelayedSuffix, group: c.opts.Group, field: c.opts.BodyField, create: o.CreateIfMissing, closed: &p.closed}
	return p, nil
}

// Publish adds body and props as an entry (XADD): body in the body field,
// each property a field of its own.
func (p *Publisher) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	return p.t.publish(ctx, body, props)
}

// PublishDelayed puts body and props in the delayed set, due delay from
// now (server time, rounded up to the millisecond); a Receive moves it
// into the stream when it is due. It returns "": the message's id is the
// id of the entry it gets then. A delay of zero or less is Publish.
func (p *Publisher) PublishDelayed(ctx context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	return p.t.publishDelayed(ctx, body, props, delay)
}

// Close releases the publisher's share of the client; it is idempotent.
func (p *Publisher) Close() error {
	if !p.closed.Swap(true) {
		p.t.l.release()
	}
	return nil
}

// Publish adds a message to the driver's stream, as Publisher.Publish.
func (d *Driver) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	return d.pub.publish(ctx, body, props)
}

// PublishDelayed adds a delayed message for the driver's stream, as
// Publisher.PublishDelayed.
func (d *Driver) PublishDelayed(ctx context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	return d.pub.publishDelayed(ctx, body, props, delay)
}

func (t *target) fail(op string, err error) error {
	if t.closed.Load() {
		return fmt.Errorf("redis: %s stream %q: publisher %w", op, t.stream, triggers.ErrClosed)
	}
	return t.l.scrub(fmt.Errorf("redis: %s stream %q on %s: %w", op, t.stream, t.server, err))
}

// fields lays out an entry: the body field, then the properties sorted by
// name. A property may not be the body field or one of the fields the
// driver keeps its count and id in.
func (t *target) fields(body []byte, props map[string]string) ([]interface{}, error) {
	keys := make([]string, 0, len(props))
	for k := range props {
		switch k {
		case t.field, FieldAttempt, FieldID:
			return nil, fmt.Errorf("redis: publish to stream %q: property %q is reserved (the body field or the driver's bookkeeping)", t.stream, k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	f := make([]interface{}, 0, 2+2*len(keys))
	f = append(f, t.field, string(body)) // a copy: nothing of the caller's slice is kept
	for _, k := range keys {
		f = append(f, k, props[k])
	}
	return f, nil
}

// ensure creates the stream and group once, when asked to.
func (t *target) ensure(ctx context.Context) error {
	if !t.create || t.created.Load() {
		return nil
	}
	err := t.l.c.XGroupCreateMkStream(ctx, t.stream, t.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return t.fail("create consumer group "+strconv.Quote(t.group)+" of", err)
	}
	t.created.Store(true)
	return nil
}

func (t *target) check(ctx context.Context) error {
	if t.closed.Load() {
		return t.fail("publish to", nil)
	}
	return ctx.Err()
}

func (t *target) publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	if err := t.check(ctx); err != nil {
		return "", err
	}
	f, err := t.fields(body, props)
	if err != nil {
		return "", err
	}
	if err := t.ensure(ctx); err != nil {
		return "", err
	}
	id, err := t.l.c.XAdd(ctx, &goredis.XAddArgs{Stream: t.stream, Values: f}).Result()
	if err != nil {
		return "", t.fail("publish to", err)
	}
	return id, nil
}

func (t *target) publishDelayed(ctx context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	if delay <= 0 {
		return t.publish(ctx, body, props)
	}
	if err := t.check(ctx); err != nil {
		return "", err
	}
	f, err := t.fields(body, props)
	if err != nil {
		return "", err
	}
	if err := t.ensure(ctx); err != nil {
		return "", err
	}
	var tok [12]byte
	_, _ = rand.Read(tok[:])
	items := make([]string, 0, 1+len(f))
	items = append(items, "p"+hex.EncodeToString(tok[:]))
	for _, v := range f {
		items = append(items, v.(string))
	}
	delayMS := int64((delay + time.Millisecond - 1) / time.Millisecond)
	if err := delayScript.Run(ctx, t.l.c, []string{t.delayed}, delayMS, encodeDelayed(items...)).Err(); err != nil {
		return "", t.fail("publish with a delay to", err)
	}
	return "", nil
}
