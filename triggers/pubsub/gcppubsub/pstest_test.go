package gcppubsub_test

import (
	"context"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub/gcppubsub/gcppubsubtest"
)

// openQueue makes a fresh queue on the shared pstest server and a driver on
// it.
func openQueue(ctx context.Context, t *testing.T, o gcppubsubtest.Options) (*gcppubsubtest.Server, gcppubsubtest.Queue, triggers.Driver) {
	t.Helper()
	srv := gcppubsubtest.Shared(t)
	q, err := srv.NewQueue(ctx, t, o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := triggers.Lookup("gcppubsub")
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Subscription(ctx, q.URL(), triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return srv, q, d
}

// receiveBy receives until a message arrives or until passes, and returns
// it (nil if none) and when it arrived.
func receiveBy(ctx context.Context, t *testing.T, d triggers.Driver, until time.Time) (*triggers.Message, time.Time) {
	t.Helper()
	for time.Now().Before(until) {
		ms, err := d.Receive(ctx, 1, time.Minute)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(ms) > 0 {
			return ms[0], time.Now()
		}
	}
	return nil, time.Time{}
}

// TestAckDeadlineRedelivery leaves a message unsettled past the
// subscription's ack deadline: Pub/Sub delivers it again, and with a
// dead-letter policy its DeliveryAttempt counts that delivery, also on top
// of a retried copy's jobhost-attempt. Without one Pub/Sub does not count:
// the redelivery is attempt 1 again.
func TestAckDeadlineRedelivery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		policy bool
		// DequeueCount of: the redelivery, the retried copy, the copy's
		// redelivery.
		want [3]int64
	}{
		{"DeadLetterPolicy", true, [3]int64{2, 3, 4}},
		{"Plain", false, [3]int64{1, 2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			srv, q, d := openQueue(ctx, t, gcppubsubtest.Options{DeadLetterPolicy: tc.policy})
			if _, err := srv.Publish(ctx, q.Topic, []byte("x"), map[string]string{"k": "v"}); err != nil {
				t.Fatal(err)
			}
			first, _ := receiveBy(ctx, t, d, time.Now().Add(10*time.Second))
			if first == nil || first.DequeueCount != 1 {
				t.Fatalf("first delivery: %+v, want DequeueCount 1", first)
			}
			redelivered := func(what string, prev *triggers.Message, want int64) *triggers.Message {
				t.Helper()
				start := time.Now()
				m, at := receiveBy(ctx, t, d, start.Add(gcppubsubtest.AckDeadline+5*time.Second))
				switch {
				case m == nil:
					t.Fatalf("%s: not redelivered within the ack deadline and 5 s", what)
				case m.ID != prev.ID || m.Text() != "x" || m.Properties["k"] != "v":
					t.Fatalf("%s: got %s %q %v, want %s %q with k=v", what, m.ID, m.Body, m.Properties, prev.ID, "x")
				case m.DequeueCount != want:
					t.Errorf("%s: DequeueCount %d, want %d", what, m.DequeueCount, want)
				}
				t.Logf("%s after %v: DequeueCount %d", what, at.Sub(start), m.DequeueCount)
				return m
			}
			again := redelivered("redelivery at the ack deadline", first, tc.want[0])
			if err := d.Retry(ctx, again, 0); err != nil {
				t.Fatal(err)
			}
			cp, _ := receiveBy(ctx, t, d, time.Now().Add(10*time.Second))
			if cp == nil || cp.ID != first.ID || cp.DequeueCount != tc.want[1] {
				t.Fatalf("retried copy: %+v, want %s with DequeueCount %d", cp, first.ID, tc.want[1])
			}
			last := redelivered("the copy's redelivery at the ack deadline", cp, tc.want[2])
			if err := d.Complete(ctx, last); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRetryPastAckDeadline retries with a delay longer than the ack
// deadline: the copy carries jobhost-not-before and is held and
// republished every half deadline until due, so it comes back once, after
// the delay, with its count one higher; Pub/Sub never redelivers a held
// copy with its count reset, and nothing is left behind.
func TestRetryPastAckDeadline(t *testing.T) {
	t.Parallel()
	const delay = gcppubsubtest.AckDeadline + 2*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, q, d := openQueue(ctx, t, gcppubsubtest.Options{})
	// watch sees every message sent to the topic, to bound the republishing.
	watch := q.Subscription + "-watch"
	if err := srv.CreateSubscription(ctx, t, &pb.Subscription{Name: watch, Topic: q.Topic, AckDeadlineSeconds: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Publish(ctx, q.Topic, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	m, _ := receiveBy(ctx, t, d, time.Now().Add(10*time.Second))
	if m == nil {
		t.Fatal("not delivered")
	}
	start := time.Now()
	if err := d.Retry(ctx, m, delay); err != nil {
		t.Fatal(err)
	}
	again, at := receiveBy(ctx, t, d, start.Add(delay+5*time.Second))
	switch {
	case again == nil:
		t.Fatalf("not redelivered within %v", delay+5*time.Second)
	case at.Before(start.Add(delay - 50*time.Millisecond)):
		t.Fatalf("redelivered after %v (DequeueCount %d), want after %v", at.Sub(start), again.DequeueCount, delay)
	case again.ID != m.ID || again.DequeueCount != 2:
		t.Fatalf("redelivered %s with DequeueCount %d, want %s and 2", again.ID, again.DequeueCount, m.ID)
	}
	t.Logf("redelivered after %v", at.Sub(start))
	if err := d.Complete(ctx, again); err != nil {
		t.Fatal(err)
	}
	if extra, at := receiveBy(ctx, t, d, time.Now().Add(3*time.Second)); extra != nil {
		t.Errorf("after Complete: %s delivered again at %v with DequeueCount %d", extra.ID, at, extra.DequeueCount)
	}
	var sent int
	for {
		ms, err := srv.Drain(ctx, watch)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		sent += len(ms)
	}
	// The original, the retry's copy, one republish per half deadline of
	// remaining delay, and the last one when due.
	t.Logf("%d messages sent to the topic", sent)
	if limit := 2 + int(2*delay/gcppubsubtest.AckDeadline) + 2; sent > limit {
		t.Errorf("%d messages sent to the topic, want at most %d", sent, limit)
	}
}
