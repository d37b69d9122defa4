package azurequeue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// The longest delay is accepted (the message's time to live is raised past
// it), a longer one is refused with ErrDelayTooLong and sends nothing.
func TestSendDelayedLimit(t *testing.T) {
	t.Parallel()
	_, d, ctx := setup(t)
	if err := d.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SendDelayed(ctx, "too late", azurequeue.MaxVisibilityTimeout+time.Second); !errors.Is(err, triggers.ErrDelayTooLong) {
		t.Fatalf("SendDelayed(7 days + 1 s) = %v, want an error wrapping ErrDelayTooLong", err)
	}
	if n, err := d.ApproximateCount(ctx); err != nil || n != 0 {
		t.Fatalf("after a refused SendDelayed: count = %d, %v; want 0", n, err)
	}
	id, err := d.SendDelayed(ctx, "in a week", azurequeue.MaxVisibilityTimeout)
	if err != nil || id == "" {
		t.Fatalf("SendDelayed(7 days) = %q, %v", id, err)
	}
	if n, err := d.ApproximateCount(ctx); err != nil || n != 1 {
		t.Fatalf("after SendDelayed(7 days): count = %d, %v; want 1", n, err)
	}
	if ms, err := d.Receive(ctx, 32, time.Minute); err != nil || len(ms) != 0 {
		t.Fatalf("Receive after SendDelayed(7 days) = %d messages, %v; want none", len(ms), err)
	}
	if ms, err := d.Peek(ctx, 32); err != nil || len(ms) != 0 {
		t.Fatalf("Peek after SendDelayed(7 days) = %d messages, %v; want none", len(ms), err)
	}
}

// A delay that is not whole seconds is rounded up, never down, and the
// delayed message lives its full time to live once visible.
func TestSendDelayedRoundsUp(t *testing.T) {
	t.Parallel()
	_, d, ctx := setup(t)
	if err := d.Create(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := d.PublishDelayed(ctx, []byte("later"), nil, 1100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(ctx, t, d, time.Minute)
	// 1.1 s rounds up to 2 s; allow the usual clock slack.
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Errorf("received %v after PublishDelayed(1.1s), want at least about 2 s", el)
	}
	if m.Text() != "later" || m.DequeueCount != 1 {
		t.Errorf("got %q DequeueCount %d", m.Text(), m.DequeueCount)
	}
	if life := m.ExpirationTime.Sub(m.InsertionTime); life < azurequeue.DefaultTimeToLive {
		t.Errorf("ExpirationTime - InsertionTime = %v, want at least %v", life, azurequeue.DefaultTimeToLive)
	}
}
