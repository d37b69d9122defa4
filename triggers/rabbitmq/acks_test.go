package rabbitmq_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// receiveAll receives until it holds n messages, by body.
func receiveAll(ctx context.Context, t *testing.T, d *rabbitmq.Driver, n int) map[string]*triggers.Message {
	t.Helper()
	got := map[string]*triggers.Message{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n {
		ms, err := d.Receive(ctx, n-len(got), time.Minute)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		for _, m := range ms {
			got[string(m.Body)] = m
		}
		if len(got) < n && time.Now().After(deadline) {
			t.Fatalf("received %d of %d messages", len(got), n)
		}
	}
	return got
}

// drain receives from a new driver on q until a receive (which waits the
// driver's ReceiveWait) comes back empty, completing everything, and
// returns the bodies with their DequeueCount.
func drain(ctx context.Context, t *testing.T, q string) map[string]int64 {
	t.Helper()
	d := open(t, q, rabbitmq.Options{ReceiveWait: time.Second})
	defer d.Close()
	got := map[string]int64{}
	for {
		ms, err := d.Receive(ctx, 16, time.Minute)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(ms) == 0 {
			return got
		}
		for _, m := range ms {
			got[string(m.Body)] = m.DequeueCount
			if err := d.Complete(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func sendBodies(ctx context.Context, t *testing.T, q string, bodies ...string) {
	t.Helper()
	pub := rabbittest.NewPublisher(t)
	for _, b := range bodies {
		if err := pub.Send(ctx, q, []byte(b), nil); err != nil {
			t.Fatal(err)
		}
	}
}

func keys(m map[string]int64) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}

// Acks Complete left pending (an earlier delivery is still held) are sent
// by Close: those messages are not delivered again, the held one is.
func TestPendingAckFlushedOnClose(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		sendBodies(ctx, t, q, "a", "b", "c")
		d := open(t, q, rabbitmq.Options{AckDelay: time.Hour})
		got := receiveAll(ctx, t, d, 3)
		for _, b := range []string{"b", "c"} {
			if err := d.Complete(ctx, got[b]); err != nil {
				t.Fatalf("Complete %s: %v", b, err)
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		left := drain(ctx, t, q)
		if !slices.Equal(keys(left), []string{"a"}) || left["a"] != 2 {
			t.Fatalf("after Close: delivered again %v, want only a (DequeueCount 2)", left)
		}
	})
}

// A connection that drops with acks still pending loses nothing: the
// broker delivers those messages again, with the held one.
func TestPendingAckLostWithConnection(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		sendBodies(ctx, t, q, "a", "b", "c")
		d := open(t, q, rabbitmq.Options{AckDelay: time.Hour})
		got := receiveAll(ctx, t, d, 3)
		for _, b := range []string{"b", "c"} {
			if err := d.Complete(ctx, got[b]); err != nil {
				t.Fatalf("Complete %s: %v", b, err)
			}
		}
		if !rabbitmq.CutConnection(d) {
			t.Fatal("no connection to cut")
		}
		if _, err := d.Receive(ctx, 1, time.Minute); err == nil {
			t.Fatal("Receive after the cut: no error")
		}
		d.Close()
		left := drain(ctx, t, q)
		if !slices.Equal(keys(left), []string{"a", "b", "c"}) {
			t.Fatalf("after the cut: delivered again %v, want a, b and c", left)
		}
	})
}

// A Retry between pending acks is not swallowed by the coalesced ack that
// follows it: the retried message comes back, the completed ones do not.
func TestRetryAmongPendingAcks(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		sendBodies(ctx, t, q, "a", "b", "c", "d")
		d := open(t, q, rabbitmq.Options{AckDelay: time.Hour})
		got := receiveAll(ctx, t, d, 4)
		if err := d.Complete(ctx, got["d"]); err != nil {
			t.Fatal(err)
		}
		if err := d.Retry(ctx, got["b"], 0); err != nil {
			t.Fatal(err)
		}
		if err := d.Complete(ctx, got["c"]); err != nil {
			t.Fatal(err)
		}
		if err := d.Complete(ctx, got["a"]); err != nil { // acks a, c and d in one frame
			t.Fatal(err)
		}
		again := receiveOne(ctx, t, d)
		if string(again.Body) != "b" || again.DequeueCount != 2 {
			t.Fatalf("after Retry: got %q (DequeueCount %d), want b (2)", again.Body, again.DequeueCount)
		}
		if err := d.Complete(ctx, again); err != nil {
			t.Fatal(err)
		}
		d.Close()
		if left := drain(ctx, t, q); len(left) > 0 {
			t.Fatalf("delivered again after their acks: %v", left)
		}
	})
}
