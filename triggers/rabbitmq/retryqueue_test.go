package rabbitmq_test

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// legacyRetry names the classic delay queue of earlier versions.
func legacyRetry(q string) string { return q + "-retry" }

// Delayed retries wait in a quorum queue that dead-letters at least once
// (x-dead-letter-strategy at-least-once, x-overflow reject-publish): out of
// a classic queue dead-lettering is at most once, and a message can be lost
// on its way back.
func TestDelayQueueDeadLettersAtLeastOnce(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		pub := rabbittest.NewPublisher(t)
		if err := pub.Send(ctx, q, []byte("delayed"), nil); err != nil {
			t.Fatal(err)
		}
		d := open(t, q, rabbitmq.Options{})
		m := receiveOne(ctx, t, d)
		const delay = 300 * time.Millisecond
		start := time.Now()
		if err := d.Retry(ctx, m, delay); err != nil {
			t.Fatal(err)
		}
		m = receiveOne(ctx, t, d)
		if el := time.Since(start); el < delay || m.DequeueCount != 2 || string(m.Body) != "delayed" {
			t.Errorf("redelivered after %v with DequeueCount %d, body %q; want after %v, 2, %q", el, m.DequeueCount, m.Body, delay, "delayed")
		}
		if err := d.Complete(ctx, m); err != nil {
			t.Fatal(err)
		}
		if d.RetryQueue() == legacyRetry(q) {
			t.Errorf("RetryQueue() = %q: the name of the classic delay queue of earlier versions, which cannot be redeclared", d.RetryQueue())
		}
		ch, err := rabbittest.Dial(t).Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		// Succeeds only if the queue exists with these arguments.
		if _, err := ch.QueueDeclare(d.RetryQueue(), true, false, false, false, amqp.Table{
			"x-queue-type":              "quorum",
			"x-dead-letter-strategy":    "at-least-once",
			"x-overflow":                "reject-publish",
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": q,
		}); err != nil {
			t.Fatalf("delay queue %q is not a quorum queue dead-lettering at least once into %q: %v", d.RetryQueue(), q, err)
		}
	})
}

// A classic "<queue>-retry" delay queue left by an earlier version is not
// redeclared (that fails with PRECONDITION_FAILED) nor used: what waits in
// it still comes back to the queue by its own arguments, with its count,
// while new delayed retries go to the new delay queue.
func TestLegacyDelayQueueDrains(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		legacy := legacyRetry(q)
		t.Cleanup(func() { rabbittest.DeleteQueues(rabbittest.ServerURL(), legacy) })
		ch, err := rabbittest.Dial(t).Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.QueueDeclare(legacy, true, false, false, false, amqp.Table{
			"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q,
		}); err != nil {
			t.Fatal(err)
		}
		ch.Close()
		pub := rabbittest.NewPublisher(t)
		// As an earlier version's Retry(m, 400ms) of a third delivery left it.
		if err := pub.Publish(ctx, legacy, amqp.Publishing{Body: []byte("old"), MessageId: "old-1", DeliveryMode: amqp.Persistent,
			Expiration: "400", Headers: amqp.Table{rabbitmq.HeaderAttempt: int64(4)}}); err != nil {
			t.Fatal(err)
		}
		if err := pub.Send(ctx, q, []byte("new"), nil); err != nil {
			t.Fatal(err)
		}
		d := open(t, q, rabbitmq.Options{})
		want := map[string]int64{"old": 4, "new": 2}
		got := map[string][]int64{}
		for len(got["old"])+len(got["new"]) < 3 {
			m := receiveOne(ctx, t, d)
			got[string(m.Body)] = append(got[string(m.Body)], m.DequeueCount)
			var err error
			if string(m.Body) == "new" && m.DequeueCount == 1 {
				err = d.Retry(ctx, m, 200*time.Millisecond)
			} else {
				err = d.Complete(ctx, m)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if g := got["old"]; len(g) != 1 || g[0] != want["old"] {
			t.Errorf("message waiting in the legacy delay queue delivered with DequeueCounts %v, want [%d]", g, want["old"])
		}
		if g := got["new"]; len(g) != 2 || g[1] != want["new"] {
			t.Errorf("new message delivered with DequeueCounts %v, want [1 %d]", g, want["new"])
		}
		conn := rabbittest.Dial(t)
		if d.RetryQueue() == legacy {
			t.Errorf("RetryQueue() = %q, the legacy classic delay queue", legacy)
		} else if n := rabbittest.QueueDepth(t, conn, d.RetryQueue()); n != 0 {
			t.Errorf("delay queue %s holds %d messages, want 0", d.RetryQueue(), n)
		}
		for _, name := range []string{q, legacy} {
			if n := rabbittest.QueueDepth(t, conn, name); n != 0 {
				t.Errorf("queue %s holds %d messages, want 0", name, n)
			}
		}
	})
}
