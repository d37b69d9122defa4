package mempubsub_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	gcpubsub "gocloud.dev/pubsub"

	"github.com/jobhost/jobhost/triggers"
)

// TestRetryPastAckDeadline retries, round after round, with a delay three
// times the ack deadline (issue item 14): each time the message comes back
// once, after the delay, with its count one higher, and after the last it
// never comes back. Holding the original for the delay let the broker
// redeliver it at the deadline with its count reset, the copy following as
// a duplicate.
func TestRetryPastAckDeadline(t *testing.T) {
	const deadline, delay, rounds = time.Second, 3 * time.Second, 3
	s, err := triggers.Lookup("mem")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "retry-" + t.Name()
	u, _ := url.Parse("mem://" + name + "?ackdeadline=" + deadline.String())
	d, err := s.Subscription(ctx, u, triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	topic, err := gcpubsub.OpenTopic(ctx, "mem://"+name) // the driver's, shared
	if err != nil {
		t.Fatal(err)
	}
	// watch sees every copy sent to the topic, to bound the republishing.
	watch, err := gcpubsub.OpenSubscription(ctx, "mem://"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Shutdown(context.Background())
	if err := topic.Send(ctx, &gcpubsub.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}

	m, _ := receiveBy(ctx, t, d, time.Now().Add(10*time.Second))
	if m == nil || m.DequeueCount != 1 {
		t.Fatalf("first delivery: %+v, want DequeueCount 1", m)
	}
	id := m.ID
	for round := int64(2); round <= rounds+1; round++ {
		start := time.Now()
		if err := d.Retry(ctx, m, delay); err != nil {
			t.Fatalf("round %d: Retry: %v", round, err)
		}
		var at time.Time
		m, at = receiveBy(ctx, t, d, start.Add(delay+3*time.Second))
		switch {
		case m == nil:
			t.Fatalf("round %d: not redelivered within %v", round, delay+3*time.Second)
		case at.Before(start.Add(delay - 50*time.Millisecond)):
			t.Fatalf("round %d: redelivered after %v (DequeueCount %d), want after %v", round, at.Sub(start), m.DequeueCount, delay)
		case m.DequeueCount != round || m.ID != id:
			t.Fatalf("round %d: redelivered %s with DequeueCount %d, want %s and %d", round, m.ID, m.DequeueCount, id, round)
		}
		t.Logf("round %d: redelivered after %v", round, at.Sub(start))
	}
	if err := d.Complete(ctx, m); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	// Past two ack deadlines nothing else comes: no copy was left behind.
	if extra, at := receiveBy(ctx, t, d, time.Now().Add(2*deadline+500*time.Millisecond)); extra != nil {
		t.Errorf("after Complete: %s delivered again at %v with DequeueCount %d", extra.ID, at, extra.DequeueCount)
	}

	// Each round publishes the retry's copy, then republishes it about
	// once per half deadline until it is due, and once more then.
	sent := 0
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		gm, err := watch.Receive(rctx)
		cancel()
		if err != nil {
			break
		}
		gm.Ack()
		sent++
	}
	t.Logf("%d messages sent to the topic", sent)
	if limit := 1 + rounds*int(2*delay/deadline+4); sent > limit {
		t.Errorf("%d messages sent to the topic, want at most %d", sent, limit)
	}
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
