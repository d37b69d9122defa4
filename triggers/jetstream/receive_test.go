package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
)

// awaitWaiting polls the consumer until n pull requests wait at the server
// (the server has no event for it).
func awaitWaiting(t *testing.T, f *jstest.Fixture, consumer string, n int) {
	t.Helper()
	ctx := ctxFor(t)
	for {
		ci, err := f.ConsumerInfo(ctx, consumer)
		if err != nil {
			t.Fatal(err)
		}
		if ci.NumWaiting == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("consumer %s: %d pull requests waiting, want %d", consumer, ci.NumWaiting, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// setUp has d create its consumer (AckWait = lease) with a first message.
func setUp(t *testing.T, f *jstest.Fixture, d *jetstream.Driver, lease time.Duration) {
	t.Helper()
	send(t, f, "set up", nil)
	m := receiveN(t, d, 1, lease, 10*time.Second)[0]
	if err := d.Complete(ctxFor(t), m); err != nil {
		t.Fatal(err)
	}
}

// receiveAsync runs Receive in a goroutine; its error arrives on the
// channel (the test fails if it returns messages).
func receiveAsync(t *testing.T, ctx context.Context, d triggers.Driver) <-chan error {
	done := make(chan error, 1)
	go func() {
		ms, err := d.Receive(ctx, 4, 30*time.Second)
		if len(ms) > 0 {
			t.Errorf("Receive returned %d messages, want none", len(ms))
		}
		done <- err
	}()
	return done
}

// TestReceiveCancelledInPull cancels a Receive whose pull request waits at
// the server: Receive returns at once, and a message the request delivers
// afterwards goes to the next Receive as a first delivery, long before the
// request would have expired.
func TestReceiveCancelledInPull(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	o := f.Options()
	o.ReceiveWait = 5 * time.Second
	d := f.Open(ctx, t, o)
	setUp(t, f, d, 30*time.Second)

	rctx, cancel := context.WithCancel(ctx)
	done := receiveAsync(t, rctx, d)
	awaitWaiting(t, f, d.Consumer(), 1)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Receive: %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Receive did not return within 1s of its context being cancelled")
	}
	send(t, f, "after cancel", nil)
	m := receiveN(t, d, 1, 30*time.Second, 10*time.Second)[0]
	if string(m.Body) != "after cancel" || m.DequeueCount != 1 {
		t.Errorf("got %q DequeueCount %d, want %q 1", m.Body, m.DequeueCount, "after cancel")
	}
	if el := time.Since(start); el >= o.ReceiveWait {
		t.Errorf("the message came %v after the cancel; want it before the cancelled request expired (%v)", el, o.ReceiveWait)
	}
	if err := d.Complete(ctx, m); err != nil {
		t.Fatal(err)
	}
	ci, err := f.ConsumerInfo(ctx, d.Consumer())
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumRedelivered != 0 || ci.NumAckPending != 0 {
		t.Errorf("consumer: %d redelivered, %d ack pending; want 0, 0", ci.NumRedelivered, ci.NumAckPending)
	}
}

// TestCloseDuringReceive closes a driver whose Receive waits at the
// server: Receive fails at once with ErrClosed; Close waits for the
// request to end and gives back what it delivered, so another worker gets
// it long before AckWait.
func TestCloseDuringReceive(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	o := f.Options()
	d1 := f.Open(ctx, t, o)
	setUp(t, f, d1, 30*time.Second) // AckWait 30s

	done := receiveAsync(t, ctx, d1)
	awaitWaiting(t, f, d1.Consumer(), 1)
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- d1.Close() }()
	select {
	case err := <-done:
		if !errors.Is(err, triggers.ErrClosed) {
			t.Errorf("Receive during Close: %v, want ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Receive did not return within 1s of Close")
	}
	send(t, f, "during close", nil)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(jetstream.DefaultReceiveWait + 3*time.Second):
		t.Fatal("Close did not return after the pull request ended")
	}
	t.Logf("Close took %v", time.Since(start))
	if _, err := d1.Receive(ctx, 1, time.Second); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Receive after Close: %v, want ErrClosed", err)
	}
	d2 := f.Open(ctx, t, o)
	m := receiveN(t, d2, 1, 30*time.Second, 10*time.Second)[0]
	t.Logf("worker 2 got %q, DequeueCount %d", m.Body, m.DequeueCount)
	if string(m.Body) != "during close" {
		t.Errorf("worker 2 got %q", m.Body)
	}
	if err := d2.Complete(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// TestReceiveWaitsOnCancelledRequest: a Receive that finds a cancelled
// Receive's request still open waits on it, and Close ends that wait.
func TestReceiveWaitsOnCancelledRequest(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	o := f.Options()
	o.ReceiveWait = 5 * time.Second
	d := f.Open(ctx, t, o)
	setUp(t, f, d, 30*time.Second)
	rctx, cancel := context.WithCancel(ctx)
	first := receiveAsync(t, rctx, d)
	awaitWaiting(t, f, d.Consumer(), 1)
	cancel()
	<-first
	second := receiveAsync(t, ctx, d)
	go func() { _ = d.Close() }()
	select {
	case err := <-second:
		if !errors.Is(err, triggers.ErrClosed) {
			t.Errorf("Receive waiting on a cancelled request, during Close: %v, want ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Receive did not return within 1s of Close")
	}
}
