// Package rabbittest runs tests against a real RabbitMQ broker: by default
// amqp://guest:guest@127.0.0.1:5672/, or the server named by
// RABBIT_SERVER_URL. Without a reachable broker, tests are skipped with a
// loud message, or fail when JOBHOST_REQUIRE_BROKERS=1.
//
// Every test gets its own uniquely named queues and deletes them (and their
// delay and poison companions, "-retry-q", "-retry" and "-poison") when it
// ends.
package rabbittest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/internal/servertest"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
)

const (
	// EnvRequire set to 1 turns an unreachable broker into a test failure.
	EnvRequire = servertest.EnvRequire
	// DefaultServerURL is used when RABBIT_SERVER_URL is not set.
	DefaultServerURL = "amqp://guest:guest@127.0.0.1:5672/"
)

// ServerURL returns the broker URL the tests use.
func ServerURL() string {
	if s := strings.TrimSpace(os.Getenv(rabbitmq.EnvServerURL)); s != "" {
		return s
	}
	return DefaultServerURL
}

// probe checks once that the broker answers.
var probe = &servertest.Probe{Name: "RABBITMQ", Check: func() error {
	c, err := amqp.DialConfig(ServerURL(), amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		return err
	}
	c.Close()
	return nil
}}

// Require skips (or, with JOBHOST_REQUIRE_BROKERS=1, fails) the test when
// the broker cannot be reached, and returns the server URL.
func Require(t testing.TB) string {
	t.Helper()
	source := "default"
	if os.Getenv(rabbitmq.EnvServerURL) != "" {
		source = "from " + rabbitmq.EnvServerURL
	}
	probe.Require(t, hostOf(ServerURL())+" ("+redactURL(ServerURL())+", "+source+")",
		"Start it (rabbitmq-server -detached) or set "+rabbitmq.EnvServerURL)
	return ServerURL()
}

func hostOf(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return u.Host
	}
	return "(unparsable URL)"
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// Dial returns a connection to the broker, closed when the test ends.
func Dial(t testing.TB) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(Require(t))
	if err != nil {
		t.Fatalf("rabbittest: dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// UniqueName returns a new queue name that mentions the test. It does not
// create the queue, but deletes it (and its delay and poison companions)
// when the test ends.
func UniqueName(t testing.TB) string {
	t.Helper()
	name := servertest.UniqueName(t, "-")
	url := Require(t)
	t.Cleanup(func() {
		DeleteQueues(url, name, name+rabbitmq.RetrySuffix, name+rabbitmq.LegacyRetrySuffix, name+rabbitmq.PoisonSuffix)
	})
	return name
}

// DeleteQueues deletes queues, ignoring errors.
func DeleteQueues(serverURL string, names ...string) {
	c, err := amqp.Dial(serverURL)
	if err != nil {
		return
	}
	defer c.Close()
	for _, n := range names {
		ch, err := c.Channel()
		if err != nil {
			return
		}
		ch.QueueDelete(n, false, false, false)
		ch.Close()
	}
}

// DeclareQueue creates a durable queue (quorum or classic) with extra
// arguments, and returns its name (from UniqueName).
func DeclareQueue(t testing.TB, quorum bool, args amqp.Table) string {
	t.Helper()
	name := UniqueName(t)
	a := amqp.Table{}
	for k, v := range args {
		a[k] = v
	}
	if quorum {
		a["x-queue-type"] = "quorum"
	}
	ch, err := Dial(t).Channel()
	if err != nil {
		t.Fatalf("rabbittest: channel: %v", err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(name, true, false, false, false, a); err != nil {
		t.Fatalf("rabbittest: declare queue %q: %v", name, err)
	}
	return name
}

// Publisher publishes test messages with publisher confirms.
type Publisher struct {
	mu sync.Mutex
	ch *amqp.Channel
}

// NewPublisher returns a publisher on its own connection.
func NewPublisher(t testing.TB) *Publisher {
	t.Helper()
	ch, err := Dial(t).Channel()
	if err != nil {
		t.Fatalf("rabbittest: channel: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("rabbittest: confirm mode: %v", err)
	}
	return &Publisher{ch: ch}
}

// Publish sends msg to queue through the default exchange and waits for the
// broker's confirm.
func (p *Publisher) Publish(ctx context.Context, queue string, msg amqp.Publishing) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("rabbittest: publish not confirmed")
	}
	return nil
}

// Send publishes body as a typical producer does: persistent, with a
// message id and a timestamp; props["content-type"] becomes the content
// type and the other props become headers.
func (p *Publisher) Send(ctx context.Context, queue string, body []byte, props map[string]string) error {
	msg := amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		MessageId:    newID(),
		Timestamp:    time.Now(),
		Body:         body,
	}
	for k, v := range props {
		if k == "content-type" {
			msg.ContentType = v
			continue
		}
		if msg.Headers == nil {
			msg.Headers = amqp.Table{}
		}
		msg.Headers[k] = v
	}
	return p.Publish(ctx, queue, msg)
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// QueueDepth returns the number of ready (not unacknowledged) messages in
// queue, from a passive declare.
func QueueDepth(t testing.TB, conn *amqp.Connection, queue string) int {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("rabbittest: channel: %v", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("rabbittest: passive declare %q: %v", queue, err)
	}
	return q.Messages
}

// Get takes one message from queue (basic.get with auto-ack), or returns
// ok=false when the queue is empty or missing.
func Get(t testing.TB, conn *amqp.Connection, queue string) (amqp.Delivery, bool) {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("rabbittest: channel: %v", err)
	}
	defer ch.Close()
	d, ok, err := ch.Get(queue, true)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return amqp.Delivery{}, false
		}
		t.Fatalf("rabbittest: get from %q: %v", queue, err)
	}
	return d, ok
}

// harness implements drivertest.Harness.
type harness struct{ quorum bool }

// Harness returns a drivertest.Harness whose drivers use a fresh quorum or
// classic queue each, opened through rabbitmq.OpenURL, with publishers and
// poison administrations from rabbitmq.OpenPublisherURL and
// rabbitmq.OpenPoisonURL.
func Harness(t *testing.T, quorum bool) drivertest.Harness {
	t.Helper()
	Require(t)
	return harness{quorum: quorum}
}

func (h harness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	serverURL := Require(t)
	name := DeclareQueue(t, h.quorum, nil)
	lookup := func(k string) (string, bool) {
		if k == rabbitmq.EnvServerURL {
			return serverURL, true
		}
		return "", false
	}
	u, _ := url.Parse(rabbitmq.Scheme + "://" + name)
	d, err := rabbitmq.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, Prefetch: 16})
	if err != nil {
		return drivertest.Queue{}, err
	}
	pub := NewPublisher(t)
	poison, err := rabbitmq.Open(ctx, serverURL, name+rabbitmq.PoisonSuffix, rabbitmq.Options{ReceiveWait: 200 * time.Millisecond})
	if err != nil {
		return drivertest.Queue{}, err
	}
	t.Cleanup(func() { poison.Close() })
	return drivertest.Queue{
		Driver: d,
		Send: func(ctx context.Context, body []byte, props map[string]string) error {
			return pub.Send(ctx, name, body, props)
		},
		ReceivePoison: func(ctx context.Context) ([]*triggers.Message, error) {
			ms, err := poison.Receive(ctx, 32, time.Minute)
			if errors.Is(err, triggers.ErrNotFound) {
				return nil, nil // not created yet
			}
			for _, m := range ms {
				if err := poison.Complete(ctx, m); err != nil {
					return nil, err
				}
			}
			return ms, err
		},
		MissingQueue: func(ctx context.Context) (triggers.Driver, error) {
			return rabbitmq.Open(ctx, serverURL, UniqueName(t), rabbitmq.Options{})
		},
		// Unacked deliveries return to the queue when their channel closes,
		// so a restarted worker is a new driver.
		Reopen: func(ctx context.Context) (triggers.Driver, error) {
			return rabbitmq.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, Prefetch: 16})
		},
		OpenPublisher: func(ctx context.Context) (triggers.Publisher, error) {
			p, err := rabbitmq.OpenPublisherURL(ctx, u, triggers.OpenOptions{Lookup: lookup})
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		OpenPoison: func(ctx context.Context) (triggers.PoisonAdmin, error) {
			p, err := rabbitmq.OpenPoisonURL(ctx, u, triggers.OpenOptions{Lookup: lookup})
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		Capabilities: drivertest.Capabilities{Leases: false, Properties: true},
	}, nil
}
