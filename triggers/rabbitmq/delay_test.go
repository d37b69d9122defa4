package rabbitmq_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// queueExists reports whether a queue exists (a passive declare).
func queueExists(t *testing.T, conn *amqp.Connection, name string) bool {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	_, err = ch.QueueDeclarePassive(name, true, false, false, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return false
	}
	if err != nil {
		t.Fatalf("passive declare %q: %v", name, err)
	}
	return true
}

// A delayed publish goes through the delay queue Retry uses, declared with
// Retry's arguments, and arrives as a first delivery with its id, body
// and properties, not before its delay; the driver's own PublishDelayed
// does the same.
func TestPublishDelayedThroughDelayQueue(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		p := openPublisher(t, rabbittest.Require(t), q, triggers.OpenOptions{}).(triggers.DelayPublisher)
		d := open(t, q, rabbitmq.Options{})
		const delay = 400 * time.Millisecond
		for i, pub := range []triggers.DelayPublisher{p, d} {
			body := fmt.Sprintf("delayed %d", i)
			start := time.Now()
			id, err := pub.PublishDelayed(ctx, []byte(body), map[string]string{"x-trace": "t1", "content-type": "text/plain"}, delay)
			if err != nil {
				t.Fatalf("%T.PublishDelayed: %v", pub, err)
			}
			m := receiveOne(ctx, t, d)
			if el := time.Since(start); el < delay {
				t.Errorf("%T: received after %v, want at least %v", pub, el, delay)
			}
			if m.ID != id || string(m.Body) != body || m.DequeueCount != 1 || m.Properties["x-trace"] != "t1" || m.Properties["content-type"] != "text/plain" {
				t.Errorf("%T: received ID %q body %q DequeueCount %d props %v; want ID %q, %q, 1", pub, m.ID, m.Body, m.DequeueCount, m.Properties, id, body)
			}
			if err := d.Complete(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		ch, err := rabbittest.Dial(t).Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		// Succeeds only if the queue exists with these arguments.
		if _, err := ch.QueueDeclare(q+rabbitmq.RetrySuffix, true, false, false, false, amqp.Table{
			"x-queue-type":              "quorum",
			"x-dead-letter-strategy":    "at-least-once",
			"x-overflow":                "reject-publish",
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": q,
		}); err != nil {
			t.Fatalf("delay queue is not the one Retry declares: %v", err)
		}
	})
}

// Without CreateIfMissing a delayed publish to a missing queue fails with
// ErrNotFound and leaves nothing behind; with it, the queue and the delay
// queue are declared.
func TestPublishDelayedMissingQueue(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	conn := rabbittest.Dial(t)
	q := rabbittest.UniqueName(t)
	p := openPublisher(t, rabbittest.Require(t), q, triggers.OpenOptions{}).(triggers.DelayPublisher)
	if _, err := p.PublishDelayed(ctx, []byte("x"), nil, time.Second); !errors.Is(err, triggers.ErrNotFound) {
		t.Fatalf("PublishDelayed to a missing queue = %v, want an error wrapping ErrNotFound", err)
	}
	if queueExists(t, conn, q+rabbitmq.RetrySuffix) {
		t.Errorf("delay queue %q was declared for a missing queue", q+rabbitmq.RetrySuffix)
	}

	c := openPublisher(t, rabbittest.Require(t), q, triggers.OpenOptions{CreateIfMissing: true}).(triggers.DelayPublisher)
	if _, err := c.PublishDelayed(ctx, []byte("x"), nil, time.Hour); err != nil {
		t.Fatalf("PublishDelayed with CreateIfMissing: %v", err)
	}
	if !queueExists(t, conn, q) {
		t.Errorf("queue %q was not declared", q)
	}
	if n := rabbittest.QueueDepth(t, conn, q+rabbitmq.RetrySuffix); n != 1 {
		t.Errorf("delay queue holds %d messages, want 1", n)
	}
}

// The longest delay is the longest per-message expiration; a longer one
// is refused with ErrDelayTooLong and sends nothing.
func TestPublishDelayedLimit(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	conn := rabbittest.Dial(t)
	q := rabbittest.DeclareQueue(t, true, nil)
	p := openPublisher(t, rabbittest.Require(t), q, triggers.OpenOptions{}).(triggers.DelayPublisher)
	if _, err := p.PublishDelayed(ctx, []byte("x"), nil, rabbitmq.MaxDelay+time.Millisecond); !errors.Is(err, triggers.ErrDelayTooLong) {
		t.Fatalf("PublishDelayed(MaxDelay + 1 ms) = %v, want an error wrapping ErrDelayTooLong", err)
	}
	if queueExists(t, conn, q+rabbitmq.RetrySuffix) {
		t.Error("a refused delay declared the delay queue")
	}
	if _, err := p.PublishDelayed(ctx, []byte("x"), nil, rabbitmq.MaxDelay); err != nil {
		t.Fatalf("PublishDelayed(MaxDelay): %v", err)
	}
	dv, ok := rabbittest.Get(t, conn, q+rabbitmq.RetrySuffix)
	if !ok || dv.Expiration != "4294967295" {
		t.Errorf("delay queue message: found %v, expiration %q; want 4294967295", ok, dv.Expiration)
	}
}
