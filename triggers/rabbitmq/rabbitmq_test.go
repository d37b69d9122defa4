package rabbitmq_test

import (
	"context"
	"errors"
	"flag"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// TestMain raises the default -parallel: these tests wait on the broker and
// on timers, not on the CPU, and the conformance suite alone has two dozen
// parallel subtests.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "16")
	}
	os.Exit(m.Run())
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// open opens a driver on queue with a short receive wait.
func open(t *testing.T, queue string, opts rabbitmq.Options) *rabbitmq.Driver {
	t.Helper()
	if opts.ReceiveWait == 0 {
		opts.ReceiveWait = 300 * time.Millisecond
	}
	d, err := rabbitmq.Open(context.Background(), rabbittest.Require(t), queue, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// receiveOne polls until one message arrives.
func receiveOne(ctx context.Context, t *testing.T, d *rabbitmq.Driver) *triggers.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms, err := d.Receive(ctx, 1, time.Minute)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(ms) == 1 {
			return ms[0]
		}
		if time.Now().After(deadline) {
			t.Fatal("no message arrived")
		}
	}
}

func forBoth(t *testing.T, fn func(t *testing.T, quorum bool)) {
	for _, tc := range []struct {
		name   string
		quorum bool
	}{{"quorum", true}, {"classic", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fn(t, tc.quorum)
		})
	}
}

// DequeueCount comes from the broker or from the message, so it keeps
// growing across Retry(0), Retry(delay), a clean restart and a crash.
func TestDequeueCountAcrossRetriesAndRestarts(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		pub := rabbittest.NewPublisher(t)
		const body = "payload ✓"
		if err := pub.Send(ctx, q, []byte(body), map[string]string{"x-trace": "t1", "content-type": "text/plain"}); err != nil {
			t.Fatal(err)
		}
		var id string
		check := func(m *triggers.Message, want int64) {
			t.Helper()
			if m.DequeueCount != want {
				t.Errorf("DequeueCount = %d, want %d", m.DequeueCount, want)
			}
			if id == "" {
				id = m.ID
			}
			if m.ID != id || string(m.Body) != body || m.Properties["x-trace"] != "t1" || m.Properties["content-type"] != "text/plain" {
				t.Errorf("delivery %d: ID %q (want %q), body %q, properties %v", want, m.ID, id, m.Body, m.Properties)
			}
		}

		// Worker 1: a retry at once, then a delayed one, then a clean stop.
		d1 := open(t, q, rabbitmq.Options{})
		m := receiveOne(ctx, t, d1)
		check(m, 1)
		if err := d1.Retry(ctx, m, 0); err != nil {
			t.Fatalf("Retry(0): %v", err)
		}
		m = receiveOne(ctx, t, d1)
		check(m, 2)
		const delay = 700 * time.Millisecond
		start := time.Now()
		if err := d1.Retry(ctx, m, delay); err != nil {
			t.Fatalf("Retry(%v): %v", delay, err)
		}
		d1.Close()

		// Worker 2: the delay outlives worker 1; then it crashes holding the
		// message (Close without settling).
		d2 := open(t, q, rabbitmq.Options{})
		m = receiveOne(ctx, t, d2)
		if el := time.Since(start); el < delay-50*time.Millisecond {
			t.Errorf("redelivered %v after Retry(%v)", el, delay)
		}
		check(m, 3)
		d2.Close()

		// Worker 3: the crash counted; two more retries at once.
		d3 := open(t, q, rabbitmq.Options{})
		m = receiveOne(ctx, t, d3)
		check(m, 4)
		for want := int64(5); want <= 6; want++ {
			if err := d3.Retry(ctx, m, 0); err != nil {
				t.Fatalf("Retry(0): %v", err)
			}
			m = receiveOne(ctx, t, d3)
			check(m, want)
		}
		if err := d3.Complete(ctx, m); err != nil {
			t.Fatal(err)
		}
		conn := rabbittest.Dial(t)
		for _, name := range []string{q, q + rabbitmq.RetrySuffix} {
			if n := rabbittest.QueueDepth(t, conn, name); n != 0 {
				t.Errorf("queue %s has %d messages left, want 0", name, n)
			}
		}
	})
}

// A message without message-id gets a derived id that survives retries.
func TestDerivedIDIsStable(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		pub := rabbittest.NewPublisher(t)
		if err := pub.Publish(ctx, q, amqp.Publishing{Body: []byte("anonymous"), Headers: amqp.Table{"k": "v"}}); err != nil {
			t.Fatal(err)
		}
		d := open(t, q, rabbitmq.Options{})
		m := receiveOne(ctx, t, d)
		id := m.ID
		if !strings.HasPrefix(id, "sha256:") {
			t.Fatalf("ID = %q, want a derived sha256: id", id)
		}
		if !m.InsertionTime.IsZero() {
			t.Errorf("InsertionTime = %v without a timestamp property", m.InsertionTime)
		}
		for i, delay := range []time.Duration{0, 0, 100 * time.Millisecond} {
			if err := d.Retry(ctx, m, delay); err != nil {
				t.Fatal(err)
			}
			m = receiveOne(ctx, t, d)
			if m.ID != id || m.DequeueCount != int64(i+2) {
				t.Errorf("after retry %d: ID %q DequeueCount %d, want %q %d", i+1, m.ID, m.DequeueCount, id, i+2)
			}
		}
		d.Complete(ctx, m)
	})
}

// The poison copy has the body and headers unchanged, plus the reason.
func TestPoisonCopy(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		poisonName := rabbittest.UniqueName(t)
		pub := rabbittest.NewPublisher(t)
		body := []byte{0, 1, 2, 0xff, 'x'} // not UTF-8: bytes pass unchanged
		headers := amqp.Table{"x-trace": "abc 123", "x-num": int32(42), "x-bin": []byte{0xff, 0}}
		ts := time.Now().Truncate(time.Second)
		if err := pub.Publish(ctx, q, amqp.Publishing{Body: body, Headers: headers, ContentType: "application/octet-stream",
			MessageId: "orig-1", CorrelationId: "corr", Timestamp: ts, Type: "t"}); err != nil {
			t.Fatal(err)
		}
		// Opened through the URL, with the poison queue named there.
		u, _ := url.Parse("rabbit://" + q + "?poison=" + poisonName)
		drv, err := rabbitmq.OpenURL(ctx, u, triggers.OpenOptions{Lookup: func(k string) (string, bool) {
			return rabbittest.ServerURL(), k == rabbitmq.EnvServerURL
		}})
		if err != nil {
			t.Fatal(err)
		}
		d := drv.(*rabbitmq.Driver)
		t.Cleanup(func() { d.Close() })
		if d.PoisonDestination() != poisonName {
			t.Errorf("PoisonDestination() = %q, want %q", d.PoisonDestination(), poisonName)
		}
		m := receiveOne(ctx, t, d)
		if err := d.Retry(ctx, m, 0); err != nil { // give it some history
			t.Fatal(err)
		}
		m = receiveOne(ctx, t, d)
		id, err := d.DeadLetter(ctx, m, "too many failures: boom")
		if err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
		if id != "orig-1" {
			t.Errorf("poison id = %q, want the original message id", id)
		}
		if err := d.Complete(ctx, m); !errors.Is(err, triggers.ErrLeaseLost) {
			t.Errorf("Complete after DeadLetter: %v, want ErrLeaseLost", err)
		}
		conn := rabbittest.Dial(t)
		p, ok := rabbittest.Get(t, conn, poisonName)
		if !ok {
			t.Fatal("nothing in the poison queue")
		}
		if string(p.Body) != string(body) {
			t.Errorf("poison body = %q, want %q", p.Body, body)
		}
		for k, v := range headers {
			if got := p.Headers[k]; !equalHeader(got, v) {
				t.Errorf("poison header %s = %#v, want %#v", k, got, v)
			}
		}
		if p.Headers[rabbitmq.HeaderReason] != "too many failures: boom" || p.Headers[rabbitmq.HeaderSource] != q {
			t.Errorf("poison headers %v: want reason and source", p.Headers)
		}
		if p.ContentType != "application/octet-stream" || p.MessageId != "orig-1" || p.CorrelationId != "corr" ||
			!p.Timestamp.Equal(ts) || p.Type != "t" || p.DeliveryMode != amqp.Persistent {
			t.Errorf("poison properties: %+v", p)
		}
		if _, more := rabbittest.Get(t, conn, poisonName); more {
			t.Error("more than one poison message")
		}
		if n := rabbittest.QueueDepth(t, conn, q); n != 0 {
			t.Errorf("queue has %d messages after DeadLetter", n)
		}
	})
}

func equalHeader(a, b any) bool {
	ab, aok := a.([]byte)
	bb, bok := b.([]byte)
	if aok || bok {
		return aok && bok && string(ab) == string(bb)
	}
	return a == b
}

// If the poison copy cannot be made the original stays held.
func TestDeadLetterFailureKeepsOriginal(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	q := rabbittest.DeclareQueue(t, false, nil)
	pub := rabbittest.NewPublisher(t)
	if err := pub.Send(ctx, q, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	// Names starting "amq." are reserved: the broker refuses to declare one.
	d := open(t, q, rabbitmq.Options{PoisonQueue: "amq.jobhost-test-refused"})
	m := receiveOne(ctx, t, d)
	if _, err := d.DeadLetter(ctx, m, "r"); err == nil {
		t.Fatal("DeadLetter to a refused poison queue succeeded")
	} else {
		t.Logf("DeadLetter: %v", err)
	}
	if err := d.Complete(ctx, m); err != nil {
		t.Fatalf("Complete after a failed DeadLetter: %v (the message must still be held)", err)
	}
}

// deadletter=native rejects to the queue's own dead-letter exchange.
func TestNativeDeadLetter(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		dlq := rabbittest.DeclareQueue(t, false, nil)
		q := rabbittest.DeclareQueue(t, quorum, amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
		pub := rabbittest.NewPublisher(t)
		if err := pub.Send(ctx, q, []byte("native"), map[string]string{"x-trace": "n"}); err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse("rabbit://" + q + "?deadletter=native")
		drv, err := rabbitmq.OpenURL(ctx, u, triggers.OpenOptions{Lookup: func(k string) (string, bool) {
			return rabbittest.ServerURL(), k == rabbitmq.EnvServerURL
		}})
		if err != nil {
			t.Fatal(err)
		}
		d := drv.(*rabbitmq.Driver)
		t.Cleanup(func() { d.Close() })
		m := receiveOne(ctx, t, d)
		if id, err := d.DeadLetter(ctx, m, "r"); err != nil || id != "" {
			t.Fatalf("DeadLetter = %q, %v", id, err)
		}
		conn := rabbittest.Dial(t)
		deadline := time.Now().Add(5 * time.Second)
		for {
			if p, ok := rabbittest.Get(t, conn, dlq); ok {
				if string(p.Body) != "native" || p.Headers["x-trace"] != "n" || p.Headers["x-death"] == nil {
					t.Errorf("dead-lettered message: body %q headers %v", p.Body, p.Headers)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("nothing reached the dead-letter queue")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// With Prefetch 2 the driver never holds more than 2 unacknowledged
// deliveries, however many it is asked for.
func TestPrefetchBound(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		pub := rabbittest.NewPublisher(t)
		for range 10 {
			if err := pub.Send(ctx, q, []byte("m"), nil); err != nil {
				t.Fatal(err)
			}
		}
		conn := rabbittest.Dial(t)
		d := open(t, q, rabbitmq.Options{Prefetch: 2})
		held := 0
		for round := 0; held < 10; round++ {
			var got []*triggers.Message
			for len(got) < 2 {
				ms, err := d.Receive(ctx, 10, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ms...)
				if len(got) > 2 {
					t.Fatalf("round %d: driver handed out %d messages with Prefetch 2", round, len(got))
				}
			}
			// Holding 2: nothing more comes, and the broker keeps the rest.
			if ms, err := d.Receive(ctx, 10, time.Minute); err != nil || len(ms) != 0 {
				t.Fatalf("round %d: Receive while holding 2 = %d messages, %v", round, len(ms), err)
			}
			if n, want := rabbittest.QueueDepth(t, conn, q), 10-held-2; n != want {
				t.Errorf("round %d: %d messages ready in the queue, want %d", round, n, want)
			}
			for _, m := range got {
				if err := d.Complete(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			held += 2
		}
	})
}

// A dropped connection: settling what it delivered reports ErrLeaseLost,
// Receive reports the loss once and then reconnects, and the broker has
// requeued the message with its count raised.
func TestConnectionDrop(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		pub := rabbittest.NewPublisher(t)
		if err := pub.Send(ctx, q, []byte("survivor"), nil); err != nil {
			t.Fatal(err)
		}
		d := open(t, q, rabbitmq.Options{})
		m := receiveOne(ctx, t, d)
		if !rabbitmq.CutConnection(d) {
			t.Fatal("no connection to cut")
		}
		ms, err := d.Receive(ctx, 10, time.Minute)
		if err == nil {
			t.Fatalf("Receive after the connection dropped = %d messages, no error", len(ms))
		}
		t.Logf("Receive after drop: %v", err)
		for _, op := range []struct {
			name string
			err  error
		}{
			{"Complete", d.Complete(ctx, m)},
			{"Retry", d.Retry(ctx, m, 0)},
			{"ExtendLease", d.ExtendLease(ctx, m, time.Minute)},
		} {
			if !errors.Is(op.err, triggers.ErrLeaseLost) {
				t.Errorf("%s on a delivery of the dropped connection: %v, want ErrLeaseLost", op.name, op.err)
			}
		}
		m2 := receiveOne(ctx, t, d)
		if m2.ID != m.ID || m2.DequeueCount != 2 {
			t.Errorf("after reconnecting: ID %q DequeueCount %d, want %q 2", m2.ID, m2.DequeueCount, m.ID)
		}
		if err := d.Complete(ctx, m2); err != nil {
			t.Fatal(err)
		}
	})
}

// Deleting the queue under a consumer: Receive reports it, wrapping
// ErrNotFound.
func TestQueueDeletedWhileConsuming(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	q := rabbittest.DeclareQueue(t, false, nil)
	d := open(t, q, rabbitmq.Options{})
	if _, err := d.Receive(ctx, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	rabbittest.DeleteQueues(rabbittest.ServerURL(), q)
	var err error
	for i := 0; i < 3 && err == nil; i++ {
		_, err = d.Receive(ctx, 1, time.Minute)
	}
	if !errors.Is(err, triggers.ErrNotFound) {
		t.Fatalf("Receive after the queue was deleted: %v, want ErrNotFound", err)
	}
	if _, err := d.Receive(ctx, 1, time.Minute); !errors.Is(err, triggers.ErrNotFound) {
		t.Fatalf("next Receive: %v, want ErrNotFound", err)
	}
}

// CreateIfMissing declares a quorum queue.
func TestCreateIfMissing(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	q := rabbittest.UniqueName(t)
	d := open(t, q, rabbitmq.Options{CreateIfMissing: true})
	if ms, err := d.Receive(ctx, 1, time.Minute); err != nil || len(ms) != 0 {
		t.Fatalf("Receive = %d, %v", len(ms), err)
	}
	ch, err := rabbittest.Dial(t).Channel()
	if err != nil {
		t.Fatal(err)
	}
	// Succeeds only if the queue is a durable quorum queue without other
	// arguments.
	if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("the queue is not a plain durable quorum queue: %v", err)
	}
}

func TestSettleForeignMessage(t *testing.T) {
	d, err := rabbitmq.Open(context.Background(), "amqp://u:p@127.0.0.1:5672/", "q", rabbitmq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &triggers.Message{ID: "x", DriverData: "not ours"}
	if err := d.Complete(context.Background(), m); err == nil {
		t.Error("Complete of a foreign message succeeded")
	}
	if _, err := d.DeadLetter(context.Background(), m, ""); err == nil {
		t.Error("DeadLetter of a foreign message succeeded")
	}
}

// Per-message TTL expires only at the head of the delay queue: a short
// delay behind a long one waits for the long one. Never early, though.
func TestRetryDelayHeadOfLine(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	q := rabbittest.DeclareQueue(t, false, nil)
	pub := rabbittest.NewPublisher(t)
	for _, b := range []string{"long", "short"} {
		if err := pub.Send(ctx, q, []byte(b), nil); err != nil {
			t.Fatal(err)
		}
	}
	d := open(t, q, rabbitmq.Options{})
	long, short := receiveOne(ctx, t, d), receiveOne(ctx, t, d)
	delays := map[string]time.Duration{"long": 1200 * time.Millisecond, "short": 100 * time.Millisecond}
	start := time.Now()
	for _, m := range []*triggers.Message{long, short} {
		if err := d.Retry(ctx, m, delays[string(m.Body)]); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		m := receiveOne(ctx, t, d)
		el := time.Since(start)
		if el < delays[string(m.Body)] {
			t.Errorf("%s redelivered after %v, before its delay %v", m.Body, el, delays[string(m.Body)])
		}
		t.Logf("%s (delay %v) redelivered after %v", m.Body, delays[string(m.Body)], el.Round(time.Millisecond))
		d.Complete(ctx, m)
	}
}

// Publish never consumes: a message published through a driver that has
// not received arrives at another consumer as a first delivery.
func TestPublishDoesNotConsume(t *testing.T) {
	serverURL := rabbittest.Require(t)
	for _, quorum := range []bool{false, true} {
		name := rabbittest.DeclareQueue(t, quorum, nil)
		ctx := context.Background()
		pub, err := rabbitmq.Open(ctx, serverURL, name, rabbitmq.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(ctx, []byte("hello"), map[string]string{"k": "v"}); err != nil {
			t.Fatal(err)
		}
		pub.Close()
		d, err := rabbitmq.Open(ctx, serverURL, name, rabbitmq.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ms, err := d.Receive(ctx, 1, time.Minute)
		if err != nil || len(ms) != 1 || string(ms[0].Body) != "hello" || ms[0].DequeueCount != 1 || ms[0].Properties["k"] != "v" {
			t.Fatalf("quorum=%v: got %v %v", quorum, ms, err)
		}
		d.Complete(ctx, ms[0])
		d.Close()
	}
}
