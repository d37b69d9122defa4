// Package drivertest is the conformance suite every triggers.Driver must
// pass, in the manner of gocloud's drivertest. A driver's tests provide a
// Harness that makes a driver on a fresh, empty queue, and call
// RunConformanceTests.
//
// The suite waits for events by polling Receive with bounded deadlines.
// Checks that something does NOT happen (a message stays hidden) are bounded
// waits of one to two seconds by nature. Subtests run in parallel, each with
// its own Harness and queue.
package drivertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

// Harness makes drivers for the suite.
type Harness interface {
	// MakeDriver returns a Queue on a new, empty queue that no other test
	// uses. It registers any cleanup with t.Cleanup.
	MakeDriver(ctx context.Context, t *testing.T) (Queue, error)
}

// Queue is a driver under test together with the broker-side helpers the
// suite needs.
type Queue struct {
	// Driver is the driver under test.
	Driver triggers.Driver
	// Send puts a message on the driver's queue, as another producer would.
	// Drivers without properties ignore props.
	Send func(ctx context.Context, body []byte, props map[string]string) error
	// ReceivePoison returns the messages that have reached the poison
	// destination since the last call (consuming or hiding them), or none
	// yet. Nil when the driver has no poison destination.
	ReceivePoison func(ctx context.Context) ([]*triggers.Message, error)
	// MissingQueue returns a driver on a queue that does not exist. Nil when
	// not applicable.
	MissingQueue func(ctx context.Context) (triggers.Driver, error)
	// Reopen returns a new driver on the same queue, as a restarted worker
	// would open it. Nil when the old driver, left open, sees unsettled
	// messages again once their lease or ack deadline ends.
	Reopen func(ctx context.Context) (triggers.Driver, error)
	// OpenPublisher opens a publisher to the driver's queue through the
	// driver package's publisher opener (the one it registers). Nil when the
	// driver cannot publish. When the publisher is a
	// triggers.DelayPublisher the suite also checks its delays (the
	// PublishDelayed test, skipped otherwise).
	OpenPublisher func(ctx context.Context) (triggers.Publisher, error)
	// OpenPoison opens the poison administration of the driver's queue
	// through the driver package's opener. Nil when the driver has none.
	OpenPoison func(ctx context.Context) (triggers.PoisonAdmin, error)
	// Capabilities says what the broker supports.
	Capabilities Capabilities
}

// Capabilities describes what a broker supports, so the suite can skip or
// relax checks.
type Capabilities struct {
	// Leases means a received message is hidden from other receivers until
	// its lease ends or it is settled, ExtendLease extends the lease, and an
	// expired lease makes the message visible again.
	Leases bool
	// Properties means message properties survive Send, Receive and
	// DeadLetter.
	Properties bool
	// NoInsertionTime means the broker does not record when a message was
	// sent (gocloud's mem://), so InsertionTime stays zero.
	NoInsertionTime bool
	// MinLease is the broker's time granularity for leases and retry delays
	// (Azure Storage Queues: 1 s). Zero means fine-grained.
	MinLease time.Duration
}

const (
	pollInterval = 50 * time.Millisecond
	// arriveWithin bounds waiting for a message that should arrive.
	arriveWithin = 10 * time.Second
	// longLease is a lease that outlasts any subtest.
	longLease = 60 * time.Second
	// earlyTolerance allows for clock and rounding differences when
	// checking that a message stayed hidden long enough.
	earlyTolerance = 500 * time.Millisecond
)

// RunConformanceTests runs the suite. newHarness is called once per subtest
// with that subtest's t (subtests run in parallel).
func RunConformanceTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, q Queue)
	}{
		{"ReceiveBody", testReceiveBody},
		{"ReceiveMax", testReceiveMax},
		{"ReceiveEmpty", testReceiveEmpty},
		{"LeaseHidesMessage", testLeaseHidesMessage},
		{"CompleteRemoves", testCompleteRemoves},
		{"RetryNow", testRetryNow},
		{"RetryDelay", testRetryDelay},
		{"ExtendLease", testExtendLease},
		{"SettleAfterSettled", testSettleAfterSettled},
		{"LeaseLostToOtherReceiver", testLeaseLostToOtherReceiver},
		{"DeadLetter", testDeadLetter},
		{"MissingQueue", testMissingQueue},
		{"ReceiveCancelled", testReceiveCancelled},
		{"AfterClose", testAfterClose},
		{"Publisher", testPublisher},
		{"PublishDelayed", testPublishDelayed},
		{"PoisonAdmin", testPoisonAdmin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			q, err := h.MakeDriver(ctx, t)
			if err != nil {
				t.Fatalf("MakeDriver: %v", err)
			}
			t.Cleanup(func() {
				if err := q.Driver.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, q)
		})
	}
}

// lease returns d, raised to the broker's granularity.
func (q Queue) lease(d time.Duration) time.Duration { return max(d, q.Capabilities.MinLease) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func send(ctx context.Context, t *testing.T, q Queue, body string, props map[string]string) {
	t.Helper()
	if err := q.Send(ctx, []byte(body), props); err != nil {
		t.Fatalf("Send(%q): %v", body, err)
	}
}

// receiveN polls Receive until it has n messages in total, failing the
// test if fewer arrive within the given time. It also returns the time just
// before the Receive call that returned the last message: the broker
// started that message's lease no earlier than this.
func receiveN(ctx context.Context, t *testing.T, d triggers.Driver, n int, lease, within time.Duration) ([]*triggers.Message, time.Time) {
	t.Helper()
	var got []*triggers.Message
	deadline := time.Now().Add(within)
	for {
		start := time.Now()
		ms, err := d.Receive(ctx, n-len(got), lease)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		got = append(got, ms...)
		if len(got) > n {
			t.Fatalf("received %d messages, want %d", len(got), n)
		}
		if len(got) == n {
			return got, start
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d messages within %v", len(got), n, within)
		}
		sleep(ctx, pollInterval)
	}
}

// receiveOne waits for exactly one message; see receiveN.
func receiveOne(ctx context.Context, t *testing.T, d triggers.Driver, lease time.Duration) (*triggers.Message, time.Time) {
	t.Helper()
	ms, start := receiveN(ctx, t, d, 1, lease, arriveWithin)
	return ms[0], start
}

// expectNone polls Receive for the given window and fails if any message is
// delivered: for messages that must be gone for good.
func expectNone(ctx context.Context, t *testing.T, d triggers.Driver, window time.Duration, why string) {
	t.Helper()
	deadline := time.Now().Add(window)
	for {
		ms, err := d.Receive(ctx, 32, longLease)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(ms) > 0 {
			t.Fatalf("%s: got message %s (DequeueCount %d, body %q), want none", why, ms[0].ID, ms[0].DequeueCount, ms[0].Body)
		}
		if time.Now().After(deadline) {
			return
		}
		sleep(ctx, pollInterval)
	}
}

// expectHidden polls Receive until the given time and fails if a poll that
// completed before then delivers a message: the broker must keep it hidden
// until at least then. A message from a poll that straddles the deadline
// proves nothing (the broker may have served it after the deadline); such
// messages are returned to the caller, who now holds them.
func expectHidden(ctx context.Context, t *testing.T, d triggers.Driver, until time.Time, why string) []*triggers.Message {
	t.Helper()
	for time.Now().Before(until) {
		ms, err := d.Receive(ctx, 32, longLease)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(ms) > 0 {
			if end := time.Now(); end.Before(until) {
				t.Fatalf("%s: got message %s (DequeueCount %d) %v before it may be visible", why, ms[0].ID, ms[0].DequeueCount, until.Sub(end))
			}
			return ms
		}
		sleep(ctx, min(pollInterval, time.Until(until)))
	}
	return nil
}

// receiveAfter returns the message held back by expectHidden, or waits for
// one.
func receiveAfter(ctx context.Context, t *testing.T, d triggers.Driver, held []*triggers.Message) *triggers.Message {
	t.Helper()
	if len(held) > 1 {
		t.Fatalf("got %d messages, want 1", len(held))
	}
	if len(held) == 1 {
		return held[0]
	}
	m, _ := receiveOne(ctx, t, d, longLease)
	return m
}

func sleep(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

func complete(ctx context.Context, t *testing.T, d triggers.Driver, m *triggers.Message) {
	t.Helper()
	if err := d.Complete(ctx, m); err != nil {
		t.Fatalf("Complete(%s): %v", m.ID, err)
	}
}

func checkSame(t *testing.T, got, want *triggers.Message, wantCount int64) {
	t.Helper()
	if got.ID != want.ID {
		t.Errorf("redelivered ID = %q, want %q", got.ID, want.ID)
	}
	if !bytes.Equal(got.Body, want.Body) {
		t.Errorf("redelivered body = %q, want %q", got.Body, want.Body)
	}
	if got.DequeueCount != wantCount {
		t.Errorf("redelivered DequeueCount = %d, want %d", got.DequeueCount, wantCount)
	}
}

// body is a message body that survives XML, JSON and base64-naive brokers
// only if they really pass bytes through unchanged.
const body = "{\"greeting\":\"héllo wörld ✓\",\"xml\":\"<a href='x'>&amp;</a>\"}\tbase64:aGVsbG8=  "

func testReceiveBody(t *testing.T, q Queue) {
	ctx := ctxFor(t)
	props := map[string]string{"content-type": "application/json", "x-trace": "abc 123"}
	before := time.Now().Add(-time.Minute) // brokers' clocks may differ a bit
	send(ctx, t, q, body, props)
	m, _ := receiveOne(ctx, t, q.Driver, longLease)
	if m.ID == "" {
		t.Error("ID is empty")
	}
	if !bytes.Equal(m.Body, []byte(body)) {
		t.Errorf("Body = %q, want %q", m.Body, body)
	}
	if m.Text() != body {
		t.Errorf("Text() = %q, want %q", m.Text(), body)
	}
	if m.DequeueCount != 1 {
		t.Errorf("DequeueCount = %d, want 1", m.DequeueCount)
	}
	if m.InsertionTime.IsZero() {
		if !q.Capabilities.NoInsertionTime {
			t.Error("InsertionTime is zero")
		}
	} else if m.InsertionTime.Before(before) || m.InsertionTime.After(time.Now().Add(time.Minute)) {
		t.Errorf("InsertionTime = %v, want about now", m.InsertionTime)
	}
	if q.Capabilities.Leases && !m.NextVisibleTime.IsZero() && m.NextVisibleTime.Before(time.Now().Add(longLease/2)) {
		t.Errorf("NextVisibleTime = %v, want about %v from now", m.NextVisibleTime, longLease)
	}
	if m.Source == "" {
		t.Error("Source is empty")
	}
	if q.Capabilities.Properties {
		for k, v := range props {
			if m.Properties[k] != v {
				t.Errorf("Properties[%q] = %q, want %q (all: %v)", k, m.Properties[k], v, m.Properties)
			}
		}
	}
	complete(ctx, t, q.Driver, m)
}

func testReceiveMax(t *testing.T, q Queue) {
	ctx := ctxFor(t)
	const n = 5
	want := map[string]bool{}
	for i := range n {
		b := fmt.Sprintf("message %d", i)
		want[b] = true
		send(ctx, t, q, b, nil)
	}
	var got []*triggers.Message
	deadline := time.Now().Add(arriveWithin)
	for len(got) == 0 {
		ms, err := q.Driver.Receive(ctx, 2, longLease)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(ms) > 2 {
			t.Fatalf("Receive(max=2) returned %d messages", len(ms))
		}
		got = ms
		if len(got) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no message arrived")
			}
			sleep(ctx, pollInterval)
		}
	}
	rest, _ := receiveN(ctx, t, q.Driver, n-len(got), longLease, arriveWithin)
	got = append(got, rest...)
	ids := map[string]bool{}
	for _, m := range got {
		if !want[string(m.Body)] {
			t.Errorf("unexpected or duplicate body %q", m.Body)
		}
		delete(want, string(m.Body))
		if ids[m.ID] {
			t.Errorf("duplicate ID %q", m.ID)
		}
		ids[m.ID] = true
	}
	// Settle concurrently, as the runtime does.
	var wg sync.WaitGroup
	errs := make(chan error, len(got))
	for _, m := range got {
		wg.Go(func() { errs <- q.Driver.Complete(ctx, m) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Complete: %v", err)
		}
	}
	if ms, err := q.Driver.Receive(ctx, 32, longLease); err != nil || len(ms) != 0 {
		t.Errorf("after completing all: Receive = %d messages, %v; want none", len(ms), err)
	}
}

func testReceiveEmpty(t *testing.T, q Queue) {
	ctx := ctxFor(t)
	start := time.Now()
	ms, err := q.Driver.Receive(ctx, 10, longLease)
	if err != nil {
		t.Fatalf("Receive on an empty queue: %v", err)
	}
	if len(ms) != 0 {
		t.Fatalf("Receive on an empty queue returned %d messages", len(ms))
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Receive on an empty queue took %v, want at most a few seconds", el)
	}
}

func testLeaseHidesMessage(t *testing.T, q Queue) {
	if !q.Capabilities.Leases {
		t.Skip("broker has no leases")
	}
	ctx := ctxFor(t)
	lease := q.lease(2 * time.Second)
	send(ctx, t, q, body, nil)
	m, leaseStart := receiveOne(ctx, t, q.Driver, lease)
	held := expectHidden(ctx, t, q.Driver, leaseStart.Add(lease-earlyTolerance), "during the lease")
	// When the lease ends the message is delivered again: this is what
	// happens when a host dies mid-function.
	again := receiveAfter(ctx, t, q.Driver, held)
	checkSame(t, again, m, 2)
	complete(ctx, t, q.Driver, again)
}

func testCompleteRemoves(t *testing.T, q Queue) {
	ctx := ctxFor(t)
	lease := q.lease(time.Second)
	send(ctx, t, q, body, nil)
	m, _ := receiveOne(ctx, t, q.Driver, lease)
	complete(ctx, t, q.Driver, m)
	// Past the lease it would have had: it must not come back.
	expectNone(ctx, t, q.Driver, lease+time.Second, "after Complete")
}

func testRetryNow(t *testing.T, q Queue) {
	ctx := ctxFor(t)
	send(ctx, t, q, body, nil)
	m, _ := receiveOne(ctx, t, q.Driver, longLease)
	start := time.Now()
	if err := q.Driver.Retry(ctx, m, 0); err != nil {
		t.Fatalf("Retry(0): %v", err)
	}
	again, _ := receiveOne(ctx, t, q.Driver, longLease)
	if el := time.Since(start); el > 3*time.Second+q.Capabilities.MinLease {
		t.Errorf("Retry(0): redelivered after %v, want at once", el)
	}
	checkSame(t, again, m, 2)
	complete(ctx, t, q.Driver, again)
}

func testRetryDelay(t *testing.T, q Queue) {
	ctx := ctxFor(t)
	delay := q.lease(2 * time.Second)
	send(ctx, t, q, body, nil)
	m, _ := receiveOne(ctx, t, q.Driver, longLease)
	start := time.Now()
	if err := q.Driver.Retry(ctx, m, delay); err != nil {
		t.Fatalf("Retry(%v): %v", delay, err)
	}
	held := expectHidden(ctx, t, q.Driver, start.Add(delay-earlyTolerance), fmt.Sprintf("after Retry(%v)", delay))
	again := receiveAfter(ctx, t, q.Driver, held)
	if el := time.Since(start); el > delay+5*time.Second {
		t.Errorf("Retry(%v): redelivered after %v, want about %v", delay, el, delay)
	}
	checkSame(t, again, m, 2)
	complete(ctx, t, q.Driver, again)
}

func testExtendLease(t *testing.T, q Queue) {
	ctx := ctxFor(t)
	lease := q.lease(time.Second)
	extended := q.lease(3 * time.Second)
	send(ctx, t, q, body, nil)
	m, _ := receiveOne(ctx, t, q.Driver, lease)
	start := time.Now()
	if err := q.Driver.ExtendLease(ctx, m, extended); err != nil {
		t.Fatalf("ExtendLease(%v): %v", extended, err)
	}
	if !q.Capabilities.Leases {
		complete(ctx, t, q.Driver, m)
		return
	}
	// Past the original lease (which ended about lease after the receive)
	// it is still hidden. Stop a second before the extended lease ends, so
	// that the message is still ours for Complete.
	if held := expectHidden(ctx, t, q.Driver, start.Add(extended-time.Second), "after ExtendLease, past the original lease"); len(held) > 0 {
		t.Logf("inconclusive: the broker answered too slowly to tell (message %s redelivered near the end of the extended lease)", held[0].ID)
		complete(ctx, t, q.Driver, held[0])
		return
	}
	// Complete works after the lease was renewed (Azure: it needs the
	// latest pop receipt).
	complete(ctx, t, q.Driver, m)
	// And it is really gone: past the extended lease, nothing.
	expectNone(ctx, t, q.Driver, time.Until(start.Add(extended+time.Second)), "after ExtendLease and Complete")
}

func testSettleAfterSettled(t *testing.T, q Queue) {
	ctx := ctxFor(t)
	send(ctx, t, q, body, nil)
	m, _ := receiveOne(ctx, t, q.Driver, longLease)
	complete(ctx, t, q.Driver, m)
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, triggers.ErrLeaseLost) {
			t.Errorf("%s after Complete: error %v, want one wrapping ErrLeaseLost", op, err)
		}
	}
	check("Complete", q.Driver.Complete(ctx, m))
	check("Retry", q.Driver.Retry(ctx, m, 0))
	if q.Capabilities.Leases {
		check("ExtendLease", q.Driver.ExtendLease(ctx, m, time.Minute))
	}
}

func testLeaseLostToOtherReceiver(t *testing.T, q Queue) {
	if !q.Capabilities.Leases {
		t.Skip("broker has no leases")
	}
	ctx := ctxFor(t)
	lease := q.lease(time.Second)
	send(ctx, t, q, body, nil)
	first, _ := receiveOne(ctx, t, q.Driver, lease)
	stale := *first
	stale.Properties = maps.Clone(first.Properties)
	// The lease ends and another receiver takes the message.
	second, _ := receiveOne(ctx, t, q.Driver, longLease)
	checkSame(t, second, first, 2)
	for _, op := range []struct {
		name string
		err  error
	}{
		{"ExtendLease", q.Driver.ExtendLease(ctx, &stale, time.Minute)},
		{"Complete", q.Driver.Complete(ctx, first)},
	} {
		if !errors.Is(op.err, triggers.ErrLeaseLost) {
			t.Errorf("%s by the first receiver after its lease was lost: error %v, want one wrapping ErrLeaseLost", op.name, op.err)
		}
	}
	complete(ctx, t, q.Driver, second)
}

func testDeadLetter(t *testing.T, q Queue) {
	if q.ReceivePoison == nil {
		if dest := q.Driver.PoisonDestination(); dest != "" {
			t.Errorf("ReceivePoison is nil but PoisonDestination() = %q", dest)
		}
		t.Skip("driver has no poison destination")
	}
	if q.Driver.PoisonDestination() == "" {
		t.Error("PoisonDestination() is empty")
	}
	ctx := ctxFor(t)
	props := map[string]string{"x-trace": "abc 123"}
	lease := q.lease(time.Second)
	send(ctx, t, q, body, props)
	m, _ := receiveOne(ctx, t, q.Driver, lease)
	poisonID, err := q.Driver.DeadLetter(ctx, m, "conformance test")
	if err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	var got []*triggers.Message
	for deadline := time.Now().Add(arriveWithin); len(got) == 0; {
		got, err = q.ReceivePoison(ctx)
		if err != nil {
			t.Fatalf("ReceivePoison: %v", err)
		}
		if len(got) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("nothing reached the poison destination")
			}
			sleep(ctx, pollInterval)
		}
	}
	if len(got) != 1 {
		t.Fatalf("poison destination got %d messages, want 1", len(got))
	}
	p := got[0]
	if !bytes.Equal(p.Body, m.Body) {
		t.Errorf("poison body = %q, want %q", p.Body, m.Body)
	}
	if poisonID != "" && p.ID != poisonID {
		t.Errorf("poison message ID = %q, DeadLetter returned %q", p.ID, poisonID)
	}
	if q.Capabilities.Properties {
		for k, v := range props {
			if p.Properties[k] != v {
				t.Errorf("poison Properties[%q] = %q, want %q", k, p.Properties[k], v)
			}
		}
	}
	// The original is gone: it does not come back after its lease.
	expectNone(ctx, t, q.Driver, lease+time.Second, "after DeadLetter")
}

func testMissingQueue(t *testing.T, q Queue) {
	if q.MissingQueue == nil {
		t.Skip("driver has no notion of a missing queue")
	}
	ctx := ctxFor(t)
	d, err := q.MissingQueue(ctx)
	if err != nil {
		t.Fatalf("MissingQueue: %v", err)
	}
	defer d.Close()
	ms, err := d.Receive(ctx, 1, time.Minute)
	if !errors.Is(err, triggers.ErrNotFound) {
		t.Fatalf("Receive on a missing queue = %d messages, error %v; want an error wrapping ErrNotFound", len(ms), err)
	}
}
