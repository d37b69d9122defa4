package servicebus

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/uuid"
	"gocloud.dev/pubsub/azuresb"

	"github.com/jobhost/jobhost/triggers"
)

// Publish sends body to the queue with a new MessageID, which it returns.
// props become application properties, except ContentType, CorrelationID
// and Subject, which set those system properties (as Receive maps them). A
// driver on a topic subscription or a dead-letter queue cannot publish.
func (d *Driver) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	if d.isClosed() {
		return "", closedErr("publish to " + d.path)
	}
	if d.send == nil {
		return "", fmt.Errorf("servicebus: cannot publish to %s: only a queue driver can (send to the topic with the broker's tools)", d.path)
	}
	return publish(ctx, d.send, d.path, body, props, 0)
}

// PublishDelayed sends body as Publish does, with ScheduledEnqueueTime =
// now + delay (triggers.DelayPublisher): the broker makes it available
// only then. There is no longest delay. A delay of zero or less is
// Publish.
func (d *Driver) PublishDelayed(ctx context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	if d.isClosed() {
		return "", closedErr("publish to " + d.path)
	}
	if d.send == nil {
		return "", fmt.Errorf("servicebus: cannot publish to %s: only a queue driver can (send to the topic with the broker's tools)", d.path)
	}
	return publish(ctx, d.send, d.path, body, props, delay)
}

// publish sends body with props through s (see Driver.Publish), scheduled
// for delay from now when delay is positive.
func publish(ctx context.Context, s sender, to string, body []byte, props map[string]string, delay time.Duration) (string, error) {
	id := uuid.NewString()
	msg := &azservicebus.Message{Body: body, MessageID: &id}
	if delay > 0 {
		// The broker compares it with its own clock: the host's must be
		// right (NTP), as for lock renewal.
		at := time.Now().Add(delay).UTC()
		msg.ScheduledEnqueueTime = &at
	}
	for k, v := range props {
		switch k {
		case PropContentType:
			msg.ContentType = &v
		case PropCorrelationID:
			msg.CorrelationID = &v
		case PropSubject:
			msg.Subject = &v
		default:
			if msg.ApplicationProperties == nil {
				msg.ApplicationProperties = map[string]any{}
			}
			msg.ApplicationProperties[k] = v
		}
	}
	if err := s.SendMessage(ctx, msg, nil); err != nil {
		return "", wrapErr("publish to "+to, err, false)
	}
	return id, nil
}

// Publisher sends messages to one queue or topic (a triggers.Publisher).
// It is safe for concurrent use.
type Publisher struct {
	to      string
	send    sender
	release func(context.Context) error // nil: no shared client

	mu     sync.Mutex
	closed bool
}

var (
	_ triggers.Publisher      = (*Publisher)(nil)
	_ triggers.DelayPublisher = (*Publisher)(nil)
	_ triggers.DelayPublisher = (*Driver)(nil)
)

// NewPublisher returns a publisher that sends to queueOrTopic through s,
// normally an *azservicebus.Sender on it. The publisher owns s: Close
// closes it.
func NewPublisher(s sender, queueOrTopic string) (*Publisher, error) {
	if ps, ok := s.(*azservicebus.Sender); s == nil || (ok && ps == nil) {
		return nil, fmt.Errorf("servicebus: NewPublisher %s: nil sender", queueOrTopic)
	}
	if err := validName("queue or topic", queueOrTopic, 260, true); err != nil {
		return nil, err
	}
	return &Publisher{to: queueOrTopic, send: s}, nil
}

// OpenPublisherURL opens a publisher (a triggers.OpenPublisherFunc,
// registered for the azuresb scheme) to the queue or topic u names:
// azuresb://<queue-or-topic>, or azuresb://<topic>?subscription=<name>,
// which publishes to the topic (so to every subscription). The connection
// is found as for OpenURL and shared with the drivers and publishers on the
// same connection; the other query parameters and options are checked but
// not used.
func OpenPublisherURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Publisher, error) {
	e, _, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	to := e.Queue
	if to == "" {
		to = e.Topic
	}
	sc, release, err := acquireConn(o)
	if err != nil {
		return nil, fmt.Errorf("servicebus: %s: %w", to, err)
	}
	// gocloud's topic sender: Service Bus sends to a queue or a topic alike.
	s, err := azuresb.NewSender(sc.client, to, nil)
	if err != nil {
		releaseNow(ctx, release)
		return nil, wrapErr("open sender for "+to, err, false)
	}
	p, err := NewPublisher(s, to)
	if err != nil {
		_ = closeParts(ctx, "", s, nil, release)
		return nil, err
	}
	p.release = release
	return p, nil
}

// Publish sends body with a new MessageID, which it returns, once the
// broker has accepted it. props become application properties, except
// ContentType, CorrelationID and Subject, which set those system
// properties (as Driver.Receive maps them).
func (p *Publisher) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return "", closedErr("publish to " + p.to)
	}
	return publish(ctx, p.send, p.to, body, props, 0)
}

// PublishDelayed sends body as Publish does, with ScheduledEnqueueTime =
// now + delay (triggers.DelayPublisher): the broker keeps it until then,
// on a topic for every subscription. There is no longest delay. A delay
// of zero or less is Publish.
func (p *Publisher) PublishDelayed(ctx context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return "", closedErr("publish to " + p.to)
	}
	return publish(ctx, p.send, p.to, body, props, delay)
}

// Close closes the sender and drops the publisher's reference to the
// shared client. It is idempotent; afterwards Publish returns an error
// wrapping ErrClosed.
func (p *Publisher) Close() error {
	if !markClosed(&p.mu, &p.closed, nil) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := p.send.Close(ctx)
	if p.release != nil {
		if rerr := p.release(ctx); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("servicebus: close publisher to %s: %s", p.to, Redact(err.Error()))
	}
	return nil
}
