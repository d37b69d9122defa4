package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

var isolated atomic.Int64

// isolatedServerURL returns the test broker's URL made unique (with a
// connection_timeout the dialler ignores), so that its shared connection
// is this test's alone.
func isolatedServerURL(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(rabbittest.Require(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("connection_timeout", fmt.Sprint(20000+isolated.Add(1)))
	u.RawQuery = q.Encode()
	return u.String()
}

func openPublisher(t *testing.T, serverURL, queue string, o triggers.OpenOptions) triggers.Publisher {
	t.Helper()
	u, _ := url.Parse(rabbitmq.Scheme + "://" + queue)
	o.Lookup = settings(rabbitmq.EnvServerURL, serverURL)
	p, err := rabbitmq.OpenPublisherURL(context.Background(), u, o)
	if err != nil {
		t.Fatalf("OpenPublisherURL: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// The scheme is registered with all three openers.
func TestRegistered(t *testing.T) {
	s, err := triggers.Lookup(rabbitmq.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	if s.Subscription == nil || s.Publisher == nil || s.Poison == nil {
		t.Errorf("registration %+v lacks an opener", s)
	}
}

// Publishers of one server URL share one connection, which outlives all
// but the last Close; a connection that died is redialled on the next
// Publish.
func TestPublishersShareConnection(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	serverURL := isolatedServerURL(t)
	q1, q2 := rabbittest.DeclareQueue(t, false, nil), rabbittest.DeclareQueue(t, true, nil)
	p1 := openPublisher(t, serverURL, q1, triggers.OpenOptions{})
	p2 := openPublisher(t, serverURL, q2, triggers.OpenOptions{})
	d, err := rabbitmq.Open(ctx, serverURL, q1, rabbitmq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, p := range []interface {
		Publish(context.Context, []byte, map[string]string) (string, error)
	}{p1, p2, d} {
		if _, err := p.Publish(ctx, []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	c := rabbitmq.SharedConn(p1)
	if c == nil || rabbitmq.SharedConn(p2) != c || rabbitmq.SharedConn(d) != c {
		t.Fatal("the publishers do not share one connection")
	}
	if !rabbitmq.CutShared(p1) {
		t.Fatal("no connection to cut")
	}
	if _, err := p2.Publish(ctx, []byte("after the cut"), nil); err != nil {
		t.Fatalf("Publish after the connection died: %v", err)
	}
	c2 := rabbitmq.SharedConn(p2)
	if c2 == nil || c2 == c {
		t.Fatal("the dead connection was not replaced")
	}
	if _, err := p1.Publish(ctx, []byte("y"), nil); err != nil || rabbitmq.SharedConn(p1) != c2 {
		t.Fatalf("p1 after the redial: %v, same connection %v", err, rabbitmq.SharedConn(p1) == c2)
	}
	p1.Close()
	d.Close()
	if c2.IsClosed() {
		t.Fatal("closing one publisher closed the shared connection")
	}
	if _, err := p2.Publish(ctx, []byte("z"), nil); err != nil {
		t.Fatal(err)
	}
	p2.Close()
	if !c2.IsClosed() {
		t.Error("the last Close left the shared connection open")
	}
	if _, err := p2.Publish(ctx, []byte("late"), nil); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	conn := rabbittest.Dial(t)
	if n1, n2 := rabbittest.QueueDepth(t, conn, q1), rabbittest.QueueDepth(t, conn, q2); n1 != 3 || n2 != 3 {
		t.Errorf("queue depths %d %d, want 3 3", n1, n2)
	}
}

// Concurrent Publish calls on one publisher, and a Close among them: every
// Publish either succeeds or reports ErrClosed.
func TestPublishConcurrentWithClose(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	q := rabbittest.DeclareQueue(t, false, nil)
	p := openPublisher(t, isolatedServerURL(t), q, triggers.OpenOptions{})
	var wg sync.WaitGroup
	var ok atomic.Int64
	start := make(chan struct{})
	for i := range 16 {
		wg.Go(func() {
			<-start
			for j := range 10 {
				_, err := p.Publish(ctx, []byte(fmt.Sprint(i, j)), map[string]string{"i": fmt.Sprint(i)})
				switch {
				case err == nil:
					ok.Add(1)
				case !errors.Is(err, triggers.ErrClosed):
					t.Errorf("Publish: %v", err)
				}
			}
		})
	}
	close(start)
	for ok.Load() < 20 {
		if _, err := p.Publish(ctx, []byte("main"), nil); err != nil {
			t.Fatal(err)
		}
		ok.Add(1)
	}
	p.Close()
	wg.Wait()
	// A publish cut short by Close may have reached the queue all the same.
	if n := rabbittest.QueueDepth(t, rabbittest.Dial(t), q); n < int(ok.Load()) {
		t.Errorf("queue has %d messages, %d publishes succeeded", n, ok.Load())
	}
}

// Without CreateIfMissing a missing queue is ErrNotFound; with it, a
// durable quorum queue is declared.
func TestPublisherMissingQueue(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	serverURL := rabbittest.Require(t)
	missing := rabbittest.UniqueName(t)
	if _, err := openPublisher(t, serverURL, missing, triggers.OpenOptions{}).Publish(ctx, []byte("x"), nil); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Publish to a missing queue: %v, want ErrNotFound", err)
	}
	if _, err := openPublisher(t, serverURL, missing, triggers.OpenOptions{CreateIfMissing: true}).Publish(ctx, []byte("x"), nil); err != nil {
		t.Fatalf("Publish with CreateIfMissing: %v", err)
	}
	ch, err := rabbittest.Dial(t).Channel()
	if err != nil {
		t.Fatal(err)
	}
	if q, err := ch.QueueDeclare(missing, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil || q.Messages != 1 {
		t.Fatalf("not a plain durable quorum queue holding the message: %v, %d messages", err, q.Messages)
	}
}

// Publisher errors never show the password.
func TestPublisherPasswordNeverInErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55"
	ctx := testCtx(t)
	host := "127.0.0.1:5672"
	if u, err := url.Parse(rabbittest.ServerURL()); err == nil && u.Host != "" {
		host = u.Host
	}
	rabbittest.Require(t)
	for _, raw := range []string{"amqp://guest:" + secret + "@" + host + "/", "amqp://guest:" + secret + "@127.0.0.1:1/"} {
		p := openPublisher(t, raw, "q", triggers.OpenOptions{})
		_, err := p.Publish(ctx, []byte("x"), nil)
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("Publish with a wrong server: %v", err)
		}
	}
	u, _ := url.Parse("rabbit://q")
	_, err := rabbitmq.OpenPublisherURL(ctx, u, triggers.OpenOptions{Lookup: settings(rabbitmq.EnvServerURL, "amqp://guest:"+secret+"@"+host+":x/")})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("OpenPublisherURL with a bad server URL: %v", err)
	}
}

// A Receive whose context ends while it connects or waits returns at once
// with the context's error.
func TestReceiveCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	q := rabbittest.DeclareQueue(t, false, nil)
	d := open(t, q, rabbitmq.Options{ReceiveWait: time.Minute})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := d.Receive(rctx, 1, time.Minute)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Receive: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Receive did not return after its context was cancelled")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Publish(ctx, []byte("x"), nil); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}
