package rabbitmq_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// poisonAll publishes msgs to queue and dead-letters them with the driver,
// as the host does.
func poisonAll(ctx context.Context, t *testing.T, queue string, msgs ...amqp.Publishing) {
	t.Helper()
	pub := rabbittest.NewPublisher(t)
	for _, m := range msgs {
		if err := pub.Publish(ctx, queue, m); err != nil {
			t.Fatal(err)
		}
	}
	d := open(t, queue, rabbitmq.Options{})
	for range msgs {
		if _, err := d.DeadLetter(ctx, receiveOne(ctx, t, d), "boom"); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
}

func openPoison(t *testing.T, rawURL string) triggers.PoisonAdmin {
	t.Helper()
	u, _ := url.Parse(rawURL)
	p, err := rabbitmq.OpenPoisonURL(context.Background(), u, triggers.OpenOptions{Lookup: settings(rabbitmq.EnvServerURL, rabbittest.Require(t))})
	if err != nil {
		t.Fatalf("OpenPoisonURL: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func requeue(ctx context.Context, t *testing.T, p triggers.PoisonAdmin, id string, limit int) (moved int, failed []error) {
	t.Helper()
	found, err := p.Requeue(ctx, id, limit, func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			failed = append(failed, err)
		} else {
			moved++
		}
	})
	if err != nil || (id != "" && !found) {
		t.Fatalf("Requeue(%q, %d) = found %v, %v", id, limit, found, err)
	}
	return moved, failed
}

// Requeueing keeps the body, the AMQP properties and the application's
// headers (with their types) and drops jobhost's attempt, reason and
// source headers and the broker's, so the attempt count starts afresh;
// listing leaves the messages in place.
func TestPoisonRequeueKeepsProperties(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	queue := rabbittest.DeclareQueue(t, false, nil)
	first := amqp.Publishing{
		Headers:         amqp.Table{"tenant": "contoso", "n": int32(7), rabbitmq.HeaderAttempt: int64(5)},
		ContentType:     "application/json",
		ContentEncoding: "identity",
		Priority:        3,
		CorrelationId:   "corr-1", ReplyTo: "replies", MessageId: "m-1", Type: "order", AppId: "shop",
		Timestamp:    time.Unix(1700000000, 0),
		DeliveryMode: amqp.Persistent,
		Body:         []byte(`{"id": 1}`),
	}
	second := amqp.Publishing{Headers: amqp.Table{"tenant": "fabrikam"}, MessageId: "m-2", Body: []byte("two")}
	poisonAll(ctx, t, queue, first, second)
	p := openPoison(t, "rabbit://"+queue)
	conn := rabbittest.Dial(t)
	poisonQ := queue + rabbitmq.PoisonSuffix
	if p.Source() != "queue "+queue || p.Poison() != "queue "+poisonQ {
		t.Errorf("Source %q Poison %q", p.Source(), p.Poison())
	}

	ms, err := p.List(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].ID != "m-1" || ms[0].Reason != "boom" || ms[0].DequeueCount != 5 ||
		string(ms[0].Body) != `{"id": 1}` || ms[0].Properties["tenant"] != "contoso" || ms[1].ID != "m-2" || ms[1].DequeueCount != 1 {
		t.Errorf("List: %+v", ms)
	}
	if n := rabbittest.QueueDepth(t, conn, poisonQ); n != 2 {
		t.Fatalf("listing took messages: %d left", n)
	}

	if moved, failed := requeue(ctx, t, p, "m-2", 1); moved != 1 || failed != nil {
		t.Fatalf("Requeue m-2: %d moved, %v", moved, failed)
	}
	d, ok := rabbittest.Get(t, conn, queue)
	if !ok || d.MessageId != "m-2" || string(d.Body) != "two" || d.Headers["tenant"] != "fabrikam" || len(d.Headers) != 1 {
		t.Errorf("requeued m-2: %v %+v", ok, d)
	}
	if n := rabbittest.QueueDepth(t, conn, poisonQ); n != 1 {
		t.Errorf("poison has %d, want 1", n)
	}

	if moved, failed := requeue(ctx, t, p, "", 10); moved != 1 || failed != nil {
		t.Fatalf("Requeue all: %d moved, %v", moved, failed)
	}
	d, ok = rabbittest.Get(t, conn, queue)
	if !ok {
		t.Fatal("nothing in the source queue")
	}
	if string(d.Body) != string(first.Body) || d.ContentType != first.ContentType || d.ContentEncoding != first.ContentEncoding ||
		d.Priority != first.Priority || d.CorrelationId != first.CorrelationId || d.ReplyTo != first.ReplyTo ||
		d.MessageId != first.MessageId || d.Type != first.Type || d.AppId != first.AppId ||
		!d.Timestamp.Equal(first.Timestamp) || d.DeliveryMode != amqp.Persistent {
		t.Errorf("properties changed: %+v", d)
	}
	if want := (amqp.Table{"tenant": "contoso", "n": int32(7)}); !tablesEqual(d.Headers, want) {
		t.Errorf("headers %#v, want %#v", d.Headers, want)
	}
	if d.Redelivered {
		t.Error("the copy is marked redelivered")
	}
	if n, exists, err := p.Count(ctx); n != 0 || !exists || err != nil {
		t.Errorf("Count = %d, %v, %v; want 0, true, nil", n, exists, err)
	}

	// The driver sees the requeued message as a first delivery.
	poisonAll(ctx, t, queue, first)
	requeue(ctx, t, p, "", 10)
	m := receiveOne(ctx, t, open(t, queue, rabbitmq.Options{}))
	if m.DequeueCount != 1 || m.Properties[rabbitmq.HeaderAttempt] != "" || m.Properties["tenant"] != "contoso" {
		t.Errorf("driver sees DequeueCount %d, properties %v", m.DequeueCount, m.Properties)
	}
}

func tablesEqual(a, b amqp.Table) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// A message that cannot go back (the source queue is gone) stays in
// poison and is reported.
func TestPoisonRequeueNeverLoses(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	queue := rabbittest.DeclareQueue(t, false, nil)
	poisonAll(ctx, t, queue, amqp.Publishing{MessageId: "m-1", Body: []byte("one")})
	rabbittest.DeleteQueues(rabbittest.ServerURL(), queue)
	p := openPoison(t, "rabbit://"+queue)
	moved, failed := requeue(ctx, t, p, "", 10)
	if moved != 0 || len(failed) != 1 || !strings.Contains(failed[0].Error(), "not copied to queue "+queue) {
		t.Errorf("Requeue to a deleted queue: %d moved, %v", moved, failed)
	}
	if n := rabbittest.QueueDepth(t, rabbittest.Dial(t), queue+rabbitmq.PoisonSuffix); n != 1 {
		t.Errorf("poison has %d, want 1", n)
	}
	// Once the queue is back, the message goes.
	ch, err := rabbittest.Dial(t).Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if moved, failed := requeue(ctx, t, p, "m-1", 1); moved != 1 || failed != nil {
		t.Errorf("Requeue once the queue is back: %d moved, %v", moved, failed)
	}
}

func TestPoisonPurge(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	queue := rabbittest.DeclareQueue(t, true, nil)
	p := openPoison(t, "rabbit://"+queue)
	if n, exists, err := p.Count(ctx); n != 0 || exists || err != nil {
		t.Errorf("Count before any poisoning = %d, %v, %v; want 0, false, nil", n, exists, err)
	}
	if n, err := p.Purge(ctx, 10); n != 0 || err != nil {
		t.Errorf("Purge of a missing poison queue = %d, %v", n, err)
	}
	poisonAll(ctx, t, queue, amqp.Publishing{Body: []byte("one")}, amqp.Publishing{Body: []byte("two")}, amqp.Publishing{Body: []byte("three")})
	if n, err := p.Purge(ctx, 2); n != 2 || err != nil {
		t.Fatalf("Purge(2) = %d, %v", n, err)
	}
	if n, _, err := p.Count(ctx); n != 1 || err != nil {
		t.Errorf("Count after Purge(2) = %d, %v; want 1", n, err)
	}
	if n := rabbittest.QueueDepth(t, rabbittest.Dial(t), queue); n != 0 {
		t.Errorf("purged messages went to the source: %d", n)
	}
}

// deadletter=native has no poison queue; after Close every method fails
// with ErrClosed.
func TestPoisonOpenAndClose(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	u, _ := url.Parse("rabbit://orders?deadletter=native")
	if _, err := rabbitmq.OpenPoisonURL(ctx, u, triggers.OpenOptions{Lookup: settings(rabbitmq.EnvServerURL, "amqp://u:p4ssw0rd@127.0.0.1/")}); err == nil ||
		!strings.Contains(err.Error(), "deadletter=native") || strings.Contains(err.Error(), "p4ssw0rd") {
		t.Errorf("OpenPoisonURL with deadletter=native: %v", err)
	}
	p := openPoison(t, "rabbit://"+rabbittest.UniqueName(t)+"?poison=elsewhere")
	if p.Poison() != "queue elsewhere" {
		t.Errorf("Poison() = %q", p.Poison())
	}
	if _, _, err := p.Count(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, errCount := p.Count(ctx)
	_, errList := p.List(ctx, 1)
	_, errRequeue := p.Requeue(ctx, "", 1, func(*triggers.PoisonMessage, error) {})
	_, errPurge := p.Purge(ctx, 1)
	for i, err := range []error{errCount, errList, errRequeue, errPurge} {
		if !errors.Is(err, triggers.ErrClosed) {
			t.Errorf("call %d after Close: %v, want ErrClosed", i, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
