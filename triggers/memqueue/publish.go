package memqueue

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

var (
	_ triggers.OpenPublisherFunc = OpenPublisherURL
	_ triggers.DelayPublisher    = (*publisher)(nil)
	_ triggers.DelayPublisher    = (*Driver)(nil)
)

// OpenPublisherURL opens a publisher to memqueue://name on Default (the
// queue is created on first use). Closing it closes nothing else. The
// publisher is a triggers.DelayPublisher.
func OpenPublisherURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Publisher, error) {
	return Default.OpenPublisherURL(ctx, u, o)
}

// OpenPublisherURL opens a publisher to memqueue://name on b, as the
// package's OpenPublisherURL does on Default.
func (b *Broker) OpenPublisherURL(_ context.Context, u *url.URL, _ triggers.OpenOptions) (triggers.Publisher, error) {
	name, _, err := parseURL(u, triggers.OpenOptions{})
	if err != nil {
		return nil, err
	}
	return &publisher{q: b.Queue(name)}, nil
}

// publisher publishes to one Queue.
type publisher struct {
	q      *Queue
	closed atomic.Bool
}

// Publish sends a copy of body and props to the queue.
func (p *publisher) Publish(_ context.Context, body []byte, props map[string]string) (string, error) {
	if p.closed.Load() {
		return "", fmt.Errorf("memqueue: publish to %s://%s: publisher %w", Scheme, p.q.name, triggers.ErrClosed)
	}
	return p.q.Send(body, props), nil
}

// PublishDelayed sends a copy of body and props that no Receive returns
// before delay has passed (triggers.DelayPublisher); see
// Queue.SendDelayed.
func (p *publisher) PublishDelayed(_ context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	if p.closed.Load() {
		return "", fmt.Errorf("memqueue: publish to %s://%s: publisher %w", Scheme, p.q.name, triggers.ErrClosed)
	}
	return p.q.SendDelayed(body, props, delay), nil
}

// Close makes Publish fail; it is idempotent.
func (p *publisher) Close() error {
	p.closed.Store(true)
	return nil
}

// PublishDelayed sends a message to the driver's queue that becomes
// visible after delay (triggers.DelayPublisher); see Queue.SendDelayed.
func (d *Driver) PublishDelayed(_ context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	if err := d.checkOpen("publish to", ""); err != nil {
		return "", err
	}
	return d.q.SendDelayed(body, props, delay), nil
}

// SendDelayed appends a message that stays hidden until delay has passed
// and returns its id; a delay of zero or less is Send. body and props are
// copied. The delay is kept in process (there is no longest delay): it is
// lost, with the message, when the process ends. Once visible the message
// is delivered behind those already visible, with DequeueCount 1; its
// InsertionTime is when it was sent. Len counts it while it is hidden.
func (q *Queue) SendDelayed(body []byte, props map[string]string, delay time.Duration) string {
	if delay <= 0 {
		return q.Send(body, props)
	}
	now := time.Now()
	e := &entry{q: q, body: bytes.Clone(body), props: copyProps(props), inserted: now, index: -1, until: now.Add(delay)}
	q.mu.Lock()
	q.seq++
	e.id = strconv.FormatUint(q.seq, 10)
	q.hidden.push(e) // holder nil: no delivery holds it
	// Waiting receivers look again, so that they wait no longer than until
	// this message is due.
	q.wake()
	q.mu.Unlock()
	return e.id
}
