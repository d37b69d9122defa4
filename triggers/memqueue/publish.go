package memqueue

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"

	"github.com/jobhost/jobhost/triggers"
)

var _ triggers.OpenPublisherFunc = OpenPublisherURL

// OpenPublisherURL opens a publisher to memqueue://name on Default (the
// queue is created on first use). Closing it closes nothing else.
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

// Close makes Publish fail; it is idempotent.
func (p *publisher) Close() error {
	p.closed.Store(true)
	return nil
}
