package rabbitmq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// Depth counts the messages waiting for delivery, ready in the queue or
// delayed in its delay queue, before the driver consumes and while it
// does; deliveries it holds unacknowledged are not counted.
func TestDepth(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	q := rabbittest.DeclareQueue(t, true, nil)
	d := open(t, q, rabbitmq.Options{Prefetch: 2})

	depth := func(want int64) {
		t.Helper()
		n, err := d.Depth(ctx)
		if err != nil || n != want {
			t.Fatalf("Depth = %d, %v; want %d", n, err, want)
		}
	}
	depth(0)
	for range 5 {
		if _, err := d.Publish(ctx, []byte(`{}`), nil); err != nil {
			t.Fatal(err)
		}
	}
	depth(5) // nothing consumed yet: no consumer session needed to count

	held := receiveN(ctx, t, d, 2) // the prefetch: 2 unacknowledged
	depth(3)

	if err := d.Retry(ctx, held[0], time.Hour); err != nil {
		t.Fatal(err)
	}
	receiveN(ctx, t, d, 1) // the broker refills the room the retry freed
	depth(3)               // 2 ready, 1 in the delay queue
	if _, err := d.PublishDelayed(ctx, []byte(`{}`), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	depth(4)

	d.Close()
	if _, err := d.Depth(ctx); !errors.Is(err, triggers.ErrClosed) {
		t.Fatalf("Depth after Close: %v; want an error wrapping ErrClosed", err)
	}
}

// A queue that does not exist is reported as such, not as empty.
func TestDepthMissingQueue(t *testing.T) {
	t.Parallel()
	d := open(t, rabbittest.UniqueName(t), rabbitmq.Options{})
	if n, err := d.Depth(testCtx(t)); !errors.Is(err, triggers.ErrNotFound) {
		t.Fatalf("Depth of a missing queue = %d, %v; want an error wrapping ErrNotFound", n, err)
	}
}

// receiveN receives until it holds n messages.
func receiveN(ctx context.Context, t *testing.T, d *rabbitmq.Driver, n int) []*triggers.Message {
	t.Helper()
	var out []*triggers.Message
	for len(out) < n {
		ms, err := d.Receive(ctx, n-len(out), time.Minute)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		out = append(out, ms...)
	}
	return out
}
