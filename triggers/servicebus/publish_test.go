package servicebus_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/servicebus"
	"github.com/jobhost/jobhost/triggers/servicebus/sbfake"
)

func TestPublish(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	id, err := v.d.Publish(v.ctx, []byte("hello"), map[string]string{"k": "v", servicebus.PropContentType: "text/plain"})
	if err != nil || id == "" {
		t.Fatalf("Publish = %q, %v", id, err)
	}
	m := v.receive(0, 5*time.Second)
	if m.ID != id || m.Text() != "hello" || m.Properties["k"] != "v" || m.Properties[servicebus.PropContentType] != "text/plain" {
		t.Errorf("received %+v", m)
	}
	v.b.DeleteQueue(v.e.Queue)
	if _, err := v.d.Publish(v.ctx, []byte("x"), nil); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Publish to a deleted queue = %v, want ErrNotFound", err)
	}

	s := setupOn(t, sbfake.Harness{Subscription: true})
	if _, err := s.d.Publish(s.ctx, []byte("x"), nil); err == nil {
		t.Error("Publish on a subscription driver succeeded")
	}
}

func TestPublisherQueue(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	p, err := sbfake.NewPublisher(v.b, v.e)
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.Publish(v.ctx, []byte("hello"), map[string]string{"k": "v", servicebus.PropCorrelationID: "c-1"})
	if err != nil || id == "" {
		t.Fatalf("Publish = %q, %v", id, err)
	}
	m := v.receive(0, 5*time.Second)
	if m.ID != id || m.Text() != "hello" || m.Properties["k"] != "v" || m.Properties[servicebus.PropCorrelationID] != "c-1" {
		t.Errorf("received %+v", m)
	}
	v.b.DeleteQueue(v.e.Queue)
	if _, err := p.Publish(v.ctx, []byte("x"), nil); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Publish to a deleted queue = %v, want ErrNotFound", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(v.ctx, []byte("x"), nil); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// A publisher on a topic reaches every subscription.
func TestPublisherTopic(t *testing.T) {
	t.Parallel()
	h := sbfake.Harness{Subscription: true}
	b, e, err := h.NewEntity()
	if err != nil {
		t.Fatal(err)
	}
	p, err := sbfake.NewPublisher(b, e)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Publish(t.Context(), []byte("fan out"), nil); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"sub", "other"} {
		if got := b.Messages(e.Topic + "/Subscriptions/" + sub); len(got) != 1 || string(got[0].Body) != "fan out" {
			t.Errorf("subscription %s: %+v", sub, got)
		}
	}
}

func TestNewPublisherErrors(t *testing.T) {
	t.Parallel()
	if _, err := servicebus.NewPublisher(nil, "q"); err == nil {
		t.Error("NewPublisher(nil) succeeded")
	}
	if _, err := servicebus.NewPublisher(sbfake.NewBroker().NewSender("a b"), "a b"); err == nil {
		t.Error("NewPublisher with an invalid name succeeded")
	}
}

// PublishDelayed schedules the message on the broker (ScheduledEnqueueTime
// = now + delay), accepts long delays, and with delay 0 sends at once.
func TestPublishDelayed(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	p, err := sbfake.NewPublisher(v.b, v.e)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const month = 30 * 24 * time.Hour
	start := time.Now()
	for _, pub := range []triggers.DelayPublisher{p, v.d} {
		if _, err := pub.PublishDelayed(v.ctx, []byte("next month"), map[string]string{"k": "v"}, month); err != nil {
			t.Fatalf("%T.PublishDelayed(30 days): %v", pub, err)
		}
	}
	id, err := p.PublishDelayed(v.ctx, []byte("now"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := v.b.Messages(v.e.Queue)
	if len(got) != 3 {
		t.Fatalf("queue holds %d messages, want 3", len(got))
	}
	for _, s := range got[:2] {
		if at := s.ScheduledEnqueueTime.Sub(start); at < month || at > month+5*time.Second {
			t.Errorf("%q: ScheduledEnqueueTime is %v from the call, want %v", s.Body, at, month)
		}
	}
	if !got[2].ScheduledEnqueueTime.IsZero() {
		t.Errorf("delay 0: ScheduledEnqueueTime = %v, want none", got[2].ScheduledEnqueueTime)
	}
	if m := v.receive(0, 5*time.Second); m.ID != id || m.Text() != "now" {
		t.Errorf("received %q (%s), want the undelayed %s", m.Text(), m.ID, id)
	}

	s := setupOn(t, sbfake.Harness{Subscription: true})
	if _, err := s.d.PublishDelayed(s.ctx, []byte("x"), nil, time.Second); err == nil {
		t.Error("PublishDelayed on a subscription driver succeeded")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishDelayed(v.ctx, []byte("x"), nil, time.Second); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("PublishDelayed after Close = %v, want ErrClosed", err)
	}
}
