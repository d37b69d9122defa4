package cli

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// poisonRabbit publishes msgs to queue and dead-letters them with the
// driver, as the host does.
func poisonRabbit(t *testing.T, serverURL, queue string, msgs ...amqp.Publishing) {
	t.Helper()
	ctx := context.Background()
	pub := rabbittest.NewPublisher(t)
	for _, m := range msgs {
		if err := pub.Publish(ctx, queue, m); err != nil {
			t.Fatal(err)
		}
	}
	d, err := rabbitmq.Open(ctx, serverURL, queue, rabbitmq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for n, tries := 0, 0; n < len(msgs); tries++ {
		if tries == 10 {
			t.Fatalf("received %d of %d", n, len(msgs))
		}
		got, err := d.Receive(ctx, len(msgs), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range got {
			if _, err := d.DeadLetter(ctx, m, "boom"); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
}

// Requeueing from a RabbitMQ poison queue keeps the body, the AMQP
// properties and the application's headers (with their types) and drops
// jobhost's attempt, reason and source headers, so the attempt count starts
// afresh; listing leaves the messages in place.
func TestPoisonRabbitRequeue(t *testing.T) {
	serverURL := rabbittest.Require(t)
	queue := rabbittest.DeclareQueue(t, false, nil)
	first := amqp.Publishing{
		Headers:       amqp.Table{"tenant": "contoso", "n": int32(7), rabbitmq.HeaderAttempt: int64(5)},
		ContentType:   "application/json",
		CorrelationId: "corr-1", MessageId: "m-1", Type: "order", AppId: "shop",
		Timestamp:    time.Unix(1700000000, 0),
		DeliveryMode: amqp.Persistent,
		Body:         []byte(`{"id": 1}`),
	}
	second := amqp.Publishing{Headers: amqp.Table{"tenant": "fabrikam"}, MessageId: "m-2", Body: []byte("two")}
	poisonRabbit(t, serverURL, queue, first, second)
	env := []string{"RABBIT_SERVER_URL=" + serverURL, "OrdersSubscription=rabbit://" + queue}
	conn := rabbittest.Dial(t)
	poisonQ := queue + rabbitmq.PoisonSuffix

	code, out, errs := run(t, t.TempDir(), registry(), env, "poison", "list", "--queue", "%OrdersSubscription%", "--output", "json")
	if code != ExitOK {
		t.Fatalf("list: exit %d %s", code, errs)
	}
	var rows []poisonRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(rows) != 2 || rows[0].ID != "m-1" || rows[0].Reason != "boom" || rows[0].DequeueCount != 5 ||
		rows[0].Text != `{"id": 1}` || rows[0].Properties["tenant"] != "contoso" || rows[1].ID != "m-2" {
		t.Errorf("list: %+v", rows)
	}
	if n := rabbittest.QueueDepth(t, conn, poisonQ); n != 2 {
		t.Fatalf("listing took messages: %d left", n)
	}

	code, out, errs = run(t, t.TempDir(), registry(), env, "poison", "requeue", "--queue", "rabbit://"+queue, "--id", "m-2")
	if code != ExitOK || !strings.Contains(out, "requeued 1 message(s) from queue "+poisonQ+" to queue "+queue) {
		t.Fatalf("requeue --id: exit %d\n%s\n%s", code, out, errs)
	}
	d, ok := rabbittest.Get(t, conn, queue)
	if !ok || d.MessageId != "m-2" || string(d.Body) != "two" || d.Headers["tenant"] != "fabrikam" || len(d.Headers) != 1 {
		t.Errorf("requeued m-2: %v %+v", ok, d)
	}
	if n := rabbittest.QueueDepth(t, conn, poisonQ); n != 1 {
		t.Errorf("poison has %d, want 1", n)
	}

	code, out, errs = run(t, t.TempDir(), registry(), env, "poison", "requeue", "--queue", "rabbit://"+queue, "--all", "--yes")
	if code != ExitOK || !strings.Contains(out, "requeued 1 message(s)") {
		t.Fatalf("requeue --all: exit %d\n%s\n%s", code, out, errs)
	}
	d, ok = rabbittest.Get(t, conn, queue)
	if !ok {
		t.Fatal("nothing in the source queue")
	}
	if string(d.Body) != string(first.Body) || d.ContentType != first.ContentType || d.CorrelationId != first.CorrelationId ||
		d.MessageId != first.MessageId || d.Type != first.Type || d.AppId != first.AppId || !d.Timestamp.Equal(first.Timestamp) {
		t.Errorf("properties changed: %+v", d)
	}
	if want := (amqp.Table{"tenant": "contoso", "n": int32(7)}); !tablesEqual(d.Headers, want) {
		t.Errorf("headers %#v, want %#v", d.Headers, want)
	}
	if d.Redelivered {
		t.Error("the copy is marked redelivered")
	}
	if n := rabbittest.QueueDepth(t, conn, poisonQ); n != 0 {
		t.Errorf("poison has %d left", n)
	}

	// The driver sees the requeued message as a first delivery.
	poisonRabbit(t, serverURL, queue, first)
	if code, _, errs := run(t, t.TempDir(), registry(), env, "poison", "requeue", "--queue", "rabbit://"+queue, "--all", "--yes"); code != ExitOK {
		t.Fatal(errs)
	}
	drv, err := rabbitmq.Open(context.Background(), serverURL, queue, rabbitmq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	msgs, err := drv.Receive(context.Background(), 1, time.Minute)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receive: %v %d", err, len(msgs))
	}
	if m := msgs[0]; m.DequeueCount != 1 || m.Properties[rabbitmq.HeaderAttempt] != "" || m.Properties["tenant"] != "contoso" {
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
// poison, is reported and counted, and the exit status says so.
func TestPoisonRabbitRequeueNeverLoses(t *testing.T) {
	serverURL := rabbittest.Require(t)
	queue := rabbittest.DeclareQueue(t, false, nil)
	poisonRabbit(t, serverURL, queue, amqp.Publishing{MessageId: "m-1", Body: []byte("one")})
	rabbittest.DeleteQueues(serverURL, queue)
	env := []string{"RABBIT_SERVER_URL=" + serverURL}
	code, out, errs := run(t, t.TempDir(), registry(), env, "poison", "requeue", "--queue", "rabbit://"+queue, "--all", "--yes", "--output", "json")
	if code != ExitFailed || strings.TrimSpace(out) != `{"requeued":0,"failed":1}` || !strings.Contains(errs, "message m-1: not copied") {
		t.Errorf("exit %d\n%s\n%s", code, out, errs)
	}
	if n := rabbittest.QueueDepth(t, rabbittest.Dial(t), queue+rabbitmq.PoisonSuffix); n != 1 {
		t.Errorf("poison has %d, want 1", n)
	}
}

func TestPoisonRabbitPurge(t *testing.T) {
	serverURL := rabbittest.Require(t)
	queue := rabbittest.DeclareQueue(t, true, nil)
	poisonRabbit(t, serverURL, queue, amqp.Publishing{Body: []byte("one")}, amqp.Publishing{Body: []byte("two")})
	env := []string{"RABBIT_SERVER_URL=" + serverURL}
	conn := rabbittest.Dial(t)
	poisonQ := queue + rabbitmq.PoisonSuffix
	code, _, errs := runIn(t, t.TempDir(), registry(), env, answer("n\n"), "poison", "purge", "--queue", "rabbit://"+queue)
	if code != ExitFailed || !strings.Contains(errs, "Delete 2 message(s) from queue "+poisonQ+"?") {
		t.Errorf("n: exit %d %s", code, errs)
	}
	if n := rabbittest.QueueDepth(t, conn, poisonQ); n != 2 {
		t.Fatalf("declined purge deleted: %d left", n)
	}
	code, out, errs := run(t, t.TempDir(), registry(), env, "poison", "purge", "--queue", "rabbit://"+queue, "--yes")
	if code != ExitOK || out != "purged 2 message(s) from queue "+poisonQ+"\n" {
		t.Errorf("--yes: exit %d\n%s\n%s", code, out, errs)
	}
	if n := rabbittest.QueueDepth(t, conn, poisonQ); n != 0 {
		t.Errorf("%d left", n)
	}
}

// JetStream: listing reads the poison stream without touching it; requeue
// publishes each message to the trigger's subject without jobhost's and the
// server's headers, then deletes it from the poison stream; purge empties it.
func TestPoisonJetStream(t *testing.T) {
	ctx := context.Background()
	f := jstest.NewFixture(ctx, t)
	d := f.Open(ctx, t, f.Options())
	// The first has its own Nats-Msg-Id, still in the trigger stream's
	// duplicate window when it is requeued: the copy must not carry it, or
	// the stream would drop it as a duplicate.
	for i, body := range []string{`{"id": 1}`, `{"id": 2}`} {
		h := map[string]string{"Tenant": "contoso"}
		if i == 0 {
			h[jetstream.HeaderMsgID] = "order-1"
		}
		if err := f.Send(ctx, []byte(body), h); err != nil {
			t.Fatal(err)
		}
	}
	deadLetter := func(n int) {
		t.Helper()
		for got, tries := 0, 0; got < n; tries++ {
			if tries == 10 {
				t.Fatalf("received %d of %d", got, n)
			}
			msgs, err := d.Receive(ctx, n, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if _, err := d.DeadLetter(ctx, m, "boom"); err != nil {
					t.Fatal(err)
				}
				got++
			}
		}
	}
	deadLetter(2)
	env := []string{"NATS_SERVER_URL=" + jstest.URL()}
	trigger := "nats://" + f.Subject + "?stream=" + f.Stream
	poisonCount := func() uint64 {
		t.Helper()
		s, err := f.JS.Stream(ctx, f.PoisonStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	for range 2 { // twice: the first listing changed nothing
		code, out, errs := run(t, t.TempDir(), registry(), env, "poison", "list", "--queue", trigger, "--output", "json")
		if code != ExitOK {
			t.Fatalf("list: exit %d %s", code, errs)
		}
		var rows []poisonRow
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		if len(rows) != 2 || rows[0].ID != "order-1" || rows[0].Reason != "boom" || rows[0].Text != `{"id": 1}` || rows[0].Sequence == 0 ||
			rows[0].Properties["Tenant"] != "contoso" || rows[1].ID == "" {
			t.Fatalf("list: %+v", rows)
		}
	}

	code, out, errs := run(t, t.TempDir(), registry(), env, "poison", "requeue", "--queue", trigger, "--id", "order-1")
	if code != ExitOK || !strings.Contains(out, "requeued 1 message(s) from subject "+f.PoisonSubject+" (stream "+f.PoisonStream+") to subject "+f.Subject) {
		t.Fatalf("requeue --id: exit %d\n%s\n%s", code, out, errs)
	}
	if n := poisonCount(); n != 1 {
		t.Errorf("poison stream has %d, want 1", n)
	}
	code, out, errs = run(t, t.TempDir(), registry(), env, "poison", "requeue", "--queue", trigger, "--all", "--yes")
	if code != ExitOK || !strings.Contains(out, "requeued 1 message(s)") {
		t.Fatalf("requeue --all: exit %d\n%s\n%s", code, out, errs)
	}
	if n := poisonCount(); n != 0 {
		t.Errorf("poison stream has %d", n)
	}
	var got []*triggers.Message
	for tries := 0; len(got) < 2 && tries < 10; tries++ {
		msgs, err := d.Receive(ctx, 2, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, msgs...)
	}
	if got := texts(got); !slices.Equal(got, []string{`{"id": 1}`, `{"id": 2}`}) {
		t.Errorf("source has %q", got)
	}
	for _, m := range got {
		if m.DequeueCount != 1 || m.Properties["Tenant"] != "contoso" || m.Properties[jetstream.HeaderReason] != "" ||
			m.Properties[jetstream.HeaderSource] != "" || m.Properties[jetstream.HeaderMsgID] != "" {
			t.Errorf("requeued: DequeueCount %d, properties %v", m.DequeueCount, m.Properties)
		}
	}

	// Purge: those two fail again.
	for _, m := range got {
		if _, err := d.DeadLetter(ctx, m, "boom again"); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs = runIn(t, t.TempDir(), registry(), env, answer("y\n"), "poison", "purge", "--queue", trigger)
	if code != ExitOK || !strings.Contains(out, "purged 2 message(s)") {
		t.Errorf("purge: exit %d\n%s\n%s", code, out, errs)
	}
	if n := poisonCount(); n != 0 {
		t.Errorf("poison stream has %d after purge", n)
	}
}
