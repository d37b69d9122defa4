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

// release gives m back as the host does at shutdown: Release where the
// driver has it (triggers.Releaser), else Retry(0).
func release(ctx context.Context, d triggers.Driver, m *triggers.Message) error {
	if r, ok := d.(triggers.Releaser); ok {
		return r.Release(ctx, m)
	}
	return d.Retry(ctx, m, 0)
}

// A released message comes back with its DequeueCount unchanged, on both
// queue types, however often it is released; Retry (at once or delayed)
// and a crash still count.
func TestReleaseKeepsDequeueCount(t *testing.T) {
	t.Parallel()
	forBoth(t, func(t *testing.T, quorum bool) {
		ctx := testCtx(t)
		q := rabbittest.DeclareQueue(t, quorum, nil)
		pub := rabbittest.NewPublisher(t)
		if err := pub.Send(ctx, q, []byte("released"), map[string]string{"x-trace": "r1"}); err != nil {
			t.Fatal(err)
		}
		d := open(t, q, rabbitmq.Options{})
		if _, ok := triggers.Driver(d).(triggers.Releaser); !ok {
			t.Error("*rabbitmq.Driver does not implement triggers.Releaser: the host releases with Retry(0)")
		}
		m := receiveOne(ctx, t, d)
		id := m.ID
		check := func(what string, want int64) {
			t.Helper()
			if m.DequeueCount != want || m.ID != id || string(m.Body) != "released" || m.Properties["x-trace"] != "r1" {
				t.Errorf("after %s: DequeueCount %d, ID %q, body %q, properties %v; want DequeueCount %d, ID %q",
					what, m.DequeueCount, m.ID, m.Body, m.Properties, want, id)
			}
		}
		step := func(what string, settle func(*triggers.Message) error, want int64) {
			t.Helper()
			if err := settle(m); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			m = receiveOne(ctx, t, d)
			check(what, want)
		}
		rel := func(m *triggers.Message) error { return release(ctx, d, m) }
		retry := func(delay time.Duration) func(*triggers.Message) error {
			return func(m *triggers.Message) error { return d.Retry(ctx, m, delay) }
		}
		check("the first delivery", 1)
		old := m
		step("Release", rel, 1)
		if err := d.Complete(ctx, old); !errors.Is(err, triggers.ErrLeaseLost) {
			t.Errorf("Complete after Release: %v, want ErrLeaseLost", err)
		}
		step("a second Release", rel, 1)
		step("Retry(0)", retry(0), 2)
		step("Release after Retry(0)", rel, 2)
		step("Retry(0) after Release", retry(0), 3)
		step("Retry(100ms)", retry(100*time.Millisecond), 4)
		step("Release after Retry(100ms)", rel, 4)

		// A crash (Close without settling) still counts.
		d.Close()
		d = open(t, q, rabbitmq.Options{})
		m = receiveOne(ctx, t, d)
		check("a crash", 5)
		step("Release after a crash", rel, 5)
		if err := d.Complete(ctx, m); err != nil {
			t.Fatal(err)
		}
		if n := rabbittest.QueueDepth(t, rabbittest.Dial(t), q); n != 0 {
			t.Errorf("queue has %d messages left, want 0", n)
		}
	})
}
