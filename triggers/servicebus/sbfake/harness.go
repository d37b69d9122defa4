package sbfake

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/uuid"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/servicebus"
)

// HarnessLockDuration is the Harness's default LockDuration: short, so
// that the conformance suite's lease checks run quickly.
const HarnessLockDuration = time.Second

var names atomic.Int64

// Harness is a drivertest.Harness on a fake broker: each MakeDriver makes
// a fresh queue (or topic subscription) and a servicebus driver on it, and
// gives the suite a servicebus.Publisher on it and, for a queue, a
// servicebus.PoisonAdmin of its dead-letter queue (a subscription cannot be
// requeued into, so the suite's PoisonAdmin test is skipped there).
type Harness struct {
	// Broker holds the entities; nil means a new broker per driver.
	Broker *Broker
	// Entity configures the entities made; a zero LockDuration means
	// HarnessLockDuration.
	Entity EntityOptions
	// Options configures the driver.
	Options servicebus.Options
	// Subscription makes a topic with two subscriptions and tests the
	// driver on one of them (no sender: delayed retries are held).
	Subscription bool
}

var _ drivertest.Harness = Harness{}

// NewEntity makes a fresh, uniquely named queue (or topic with
// subscriptions "sub" and "other") on h's broker and returns the broker and
// the entity to receive from.
func (h Harness) NewEntity() (*Broker, servicebus.Entity, error) {
	b := h.Broker
	if b == nil {
		b = NewBroker()
	}
	o := h.Entity
	if o.LockDuration == 0 {
		o.LockDuration = HarnessLockDuration
	}
	n := names.Add(1)
	if h.Subscription {
		t := fmt.Sprintf("topic-%d", n)
		if err := b.CreateTopic(t, o, "sub", "other"); err != nil {
			return nil, servicebus.Entity{}, err
		}
		return b, servicebus.Entity{Topic: t, Subscription: "sub"}, nil
	}
	q := fmt.Sprintf("queue-%d", n)
	if err := b.CreateQueue(q, o); err != nil {
		return nil, servicebus.Entity{}, err
	}
	return b, servicebus.Entity{Queue: q}, nil
}

// Open opens a driver on e of b the way OpenClient would: a receiver, and
// for a queue a sender.
func Open(b *Broker, e servicebus.Entity, o *servicebus.Options) (*servicebus.Driver, error) {
	if e.Queue != "" && !e.DeadLetterQueue {
		return servicebus.Open(b.NewReceiver(e.Path()), b.NewSender(e.Queue), e, o)
	}
	return servicebus.Open(b.NewReceiver(e.Path()), nil, e, o)
}

// NewPublisher returns a servicebus.Publisher that sends to e's queue, or
// to its topic, through a sender of b, as OpenPublisherURL does.
func NewPublisher(b *Broker, e servicebus.Entity) (*servicebus.Publisher, error) {
	to := e.Queue
	if to == "" {
		to = e.Topic
	}
	return servicebus.NewPublisher(b.NewSender(to), to)
}

// NewPoisonAdmin returns the servicebus.PoisonAdmin of e's dead-letter queue
// on b, as OpenPoisonURL does: a dead-letter queue receiver, a sender for a
// queue, and b's runtime properties for Count. o may be nil.
func NewPoisonAdmin(b *Broker, e servicebus.Entity, o *servicebus.Options) (*servicebus.PoisonAdmin, error) {
	dl := e
	dl.DeadLetterQueue = true
	var s *Sender
	if e.Queue != "" {
		s = b.NewSender(e.Queue)
	}
	if s == nil {
		return servicebus.NewPoisonAdmin(b.NewReceiver(dl.Path()), nil, b, e, o)
	}
	return servicebus.NewPoisonAdmin(b.NewReceiver(dl.Path()), s, b, e, o)
}

// MakeDriver implements drivertest.Harness.
func (h Harness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	b, e, err := h.NewEntity()
	if err != nil {
		return drivertest.Queue{}, err
	}
	opts := h.Options
	d, err := Open(b, e, &opts)
	if err != nil {
		return drivertest.Queue{}, err
	}
	dlqEntity := e
	dlqEntity.DeadLetterQueue = true
	dlq, err := Open(b, dlqEntity, &servicebus.Options{ReceiveWait: 50 * time.Millisecond})
	if err != nil {
		return drivertest.Queue{}, err
	}
	t.Cleanup(func() { _ = dlq.Close() })
	sendTo := e.Queue
	if sendTo == "" {
		sendTo = e.Topic
	}
	snd := b.NewSender(sendTo)
	var openPoison func(ctx context.Context) (triggers.PoisonAdmin, error)
	if !h.Subscription {
		openPoison = func(context.Context) (triggers.PoisonAdmin, error) {
			return NewPoisonAdmin(b, e, &servicebus.Options{ReceiveWait: 200 * time.Millisecond})
		}
	}
	return drivertest.Queue{
		Driver: d,
		Send: func(ctx context.Context, body []byte, props map[string]string) error {
			return snd.SendMessage(ctx, NewMessage(body, props), nil)
		},
		ReceivePoison: func(ctx context.Context) ([]*triggers.Message, error) {
			return ReceiveAll(ctx, dlq)
		},
		MissingQueue: func(ctx context.Context) (triggers.Driver, error) {
			missing := servicebus.Entity{Queue: fmt.Sprintf("missing-%d", names.Add(1))}
			if h.Subscription {
				missing = servicebus.Entity{Topic: e.Topic, Subscription: "missing"}
			}
			return Open(b, missing, nil)
		},
		OpenPublisher: func(context.Context) (triggers.Publisher, error) {
			return NewPublisher(b, e)
		},
		OpenPoison:   openPoison,
		Capabilities: drivertest.Capabilities{Leases: true, Properties: true},
	}, nil
}

// NewMessage returns a message with body, props as application properties
// and a fresh MessageID.
func NewMessage(body []byte, props map[string]string) *azservicebus.Message {
	id := uuid.NewString()
	m := &azservicebus.Message{Body: body, MessageID: &id}
	if len(props) > 0 {
		m.ApplicationProperties = map[string]any{}
		for k, v := range props {
			m.ApplicationProperties[k] = v
		}
	}
	return m
}

// ReceiveAll receives what d has at once and completes it: it consumes a
// dead-letter queue for drivertest's ReceivePoison.
func ReceiveAll(ctx context.Context, d triggers.Driver) ([]*triggers.Message, error) {
	ms, err := d.Receive(ctx, 32, time.Minute)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if err := d.Complete(ctx, m); err != nil {
			return nil, err
		}
	}
	return ms, nil
}
