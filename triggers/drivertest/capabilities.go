package drivertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

// promptly bounds how long a call that must not wait may take.
const promptly = 5 * time.Second

// testReceiveCancelled cancels a Receive while it waits on an empty queue:
// it must return promptly, and a message sent afterwards must reach the
// next Receive at once (a cancelled Receive leaves nothing hidden).
func testReceiveCancelled(t *testing.T, q Queue) {
	ctx := ctxFor(t)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var got []*triggers.Message
	go func() {
		ms, err := q.Driver.Receive(rctx, 4, longLease)
		got = ms
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Receive with a cancelled context: %v, want nil or context.Canceled", err)
		}
		if len(got) != 0 {
			t.Errorf("Receive on an empty queue returned %d messages", len(got))
		}
	case <-time.After(promptly):
		t.Fatalf("Receive did not return within %v of its context being cancelled", promptly)
	}
	send(ctx, t, q, "after cancel", nil)
	m, _ := receiveOne(ctx, t, q.Driver, longLease)
	if string(m.Body) != "after cancel" || m.DequeueCount != 1 {
		t.Errorf("after a cancelled Receive got body %q DequeueCount %d, want %q and 1", m.Body, m.DequeueCount, "after cancel")
	}
	complete(ctx, t, q.Driver, m)
}

// within runs f and fails the test if it takes longer than promptly.
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(promptly):
		t.Fatalf("%s did not return within %v", what, promptly)
		return nil
	}
}

// testAfterClose closes the driver while it holds a message: every method
// then fails promptly with ErrClosed, and Close again returns nil.
func testAfterClose(t *testing.T, q Queue) {
	ctx := ctxFor(t)
	send(ctx, t, q, "held", nil)
	m, _ := receiveOne(ctx, t, q.Driver, q.lease(2*time.Second))
	if err := q.Driver.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ops := []struct {
		name string
		f    func() error
	}{
		{"Receive", func() error { _, err := q.Driver.Receive(ctx, 1, longLease); return err }},
		{"Complete", func() error { return q.Driver.Complete(ctx, m) }},
		{"Retry", func() error { return q.Driver.Retry(ctx, m, 0) }},
		{"ExtendLease", func() error { return q.Driver.ExtendLease(ctx, m, longLease) }},
		{"DeadLetter", func() error { _, err := q.Driver.DeadLetter(ctx, m, "after close"); return err }},
	}
	for _, op := range ops {
		if err := within(t, op.name+" after Close", op.f); !errors.Is(err, triggers.ErrClosed) {
			t.Errorf("%s after Close: %v, want an error wrapping ErrClosed", op.name, err)
		}
	}
	if err := within(t, "a second Close", q.Driver.Close); err != nil {
		t.Errorf("a second Close: %v, want nil", err)
	}
}

// testPublisher publishes through the driver package's publisher opener:
// the driver receives the body (and properties) unchanged, and the
// publisher refuses to publish once closed.
func testPublisher(t *testing.T, q Queue) {
	if q.OpenPublisher == nil {
		t.Skip("driver cannot publish")
	}
	ctx := ctxFor(t)
	pub, err := q.OpenPublisher(ctx)
	if err != nil {
		t.Fatalf("OpenPublisher: %v", err)
	}
	props := map[string]string{"x-trace": "abc 123"}
	buf := []byte(body)
	id, err := pub.Publish(ctx, buf, props)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	copy(buf, "XXXX") // the publisher keeps nothing of the caller's slice
	m, _ := receiveOne(ctx, t, q.Driver, longLease)
	if string(m.Body) != body {
		t.Errorf("published body = %q, want %q", m.Body, body)
	}
	if id != "" && m.ID != id {
		t.Errorf("received ID = %q, Publish returned %q", m.ID, id)
	}
	if m.DequeueCount != 1 {
		t.Errorf("DequeueCount = %d, want 1", m.DequeueCount)
	}
	if q.Capabilities.Properties && m.Properties["x-trace"] != "abc 123" {
		t.Errorf("Properties[x-trace] = %q, want %q", m.Properties["x-trace"], "abc 123")
	}
	complete(ctx, t, q.Driver, m)
	if err := pub.Close(); err != nil {
		t.Fatalf("publisher Close: %v", err)
	}
	if err := within(t, "Publish after Close", func() error { _, err := pub.Publish(ctx, []byte("late"), nil); return err }); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Publish after Close: %v, want an error wrapping ErrClosed", err)
	}
	if err := pub.Close(); err != nil {
		t.Errorf("a second publisher Close: %v, want nil", err)
	}
}

// testPublishDelayed publishes through the driver package's publisher
// when it is a triggers.DelayPublisher: a message sent with a delay is not
// received before the delay (less earlyTolerance) has passed, and then is,
// as a first delivery with its body and properties; one sent with delay 0
// after it arrives at once, before it. After Close PublishDelayed fails
// with ErrClosed.
func testPublishDelayed(t *testing.T, q Queue) {
	if q.OpenPublisher == nil {
		t.Skip("driver cannot publish")
	}
	ctx := ctxFor(t)
	pub, err := q.OpenPublisher(ctx)
	if err != nil {
		t.Fatalf("OpenPublisher: %v", err)
	}
	defer pub.Close()
	dp, ok := pub.(triggers.DelayPublisher)
	if !ok {
		t.Skip("publisher is not a triggers.DelayPublisher: the broker cannot delay a message")
	}
	props := map[string]string{"x-trace": "abc 123"}
	delay := q.lease(2 * time.Second)
	start := time.Now()
	id, err := dp.PublishDelayed(ctx, []byte(body), props, delay)
	if err != nil {
		t.Fatalf("PublishDelayed(%v): %v", delay, err)
	}
	// Delay 0 is Publish: this one arrives at once, ahead of the other.
	id0, err := dp.PublishDelayed(ctx, []byte("no delay"), props, 0)
	if err != nil {
		t.Fatalf("PublishDelayed(0): %v", err)
	}
	now, _ := receiveOne(ctx, t, q.Driver, longLease)
	if string(now.Body) != "no delay" {
		t.Fatalf("first message received %v after PublishDelayed(%v) is %q, want the one sent with delay 0", time.Since(start), delay, now.Body)
	}
	if id0 != "" && now.ID != id0 {
		t.Errorf("delay 0: received ID = %q, PublishDelayed returned %q", now.ID, id0)
	}
	if now.DequeueCount != 1 {
		t.Errorf("delay 0: DequeueCount = %d, want 1", now.DequeueCount)
	}
	complete(ctx, t, q.Driver, now)

	held := expectHidden(ctx, t, q.Driver, start.Add(delay-earlyTolerance), fmt.Sprintf("after PublishDelayed(%v)", delay))
	m := receiveAfter(ctx, t, q.Driver, held)
	if el := time.Since(start); el > delay+5*time.Second {
		t.Errorf("PublishDelayed(%v): received after %v, want about %v", delay, el, delay)
	}
	if string(m.Body) != body {
		t.Errorf("delayed body = %q, want %q", m.Body, body)
	}
	if id != "" && m.ID != id {
		t.Errorf("delayed message: received ID = %q, PublishDelayed returned %q", m.ID, id)
	}
	if m.DequeueCount != 1 {
		t.Errorf("delayed message: DequeueCount = %d, want 1", m.DequeueCount)
	}
	if q.Capabilities.Properties && m.Properties["x-trace"] != "abc 123" {
		t.Errorf("delayed message: Properties[x-trace] = %q, want %q", m.Properties["x-trace"], "abc 123")
	}
	complete(ctx, t, q.Driver, m)

	if err := pub.Close(); err != nil {
		t.Fatalf("publisher Close: %v", err)
	}
	if err := within(t, "PublishDelayed after Close", func() error {
		_, err := dp.PublishDelayed(ctx, []byte("late"), nil, delay)
		return err
	}); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("PublishDelayed after Close: %v, want an error wrapping ErrClosed", err)
	}
}

// poisonN dead-letters n messages body-0..body-(n-1), with props.
func poisonN(ctx context.Context, t *testing.T, q Queue, prefix string, n int, props map[string]string) {
	t.Helper()
	for i := range n {
		send(ctx, t, q, fmt.Sprintf("%s-%d", prefix, i), props)
	}
	ms, _ := receiveN(ctx, t, q.Driver, n, longLease, arriveWithin)
	for _, m := range ms {
		if _, err := q.Driver.DeadLetter(ctx, m, "conformance test"); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
	}
}

// waitCount polls Count until it reports n (brokers may count lazily).
func waitCount(ctx context.Context, t *testing.T, p triggers.PoisonAdmin, n int) {
	t.Helper()
	deadline := time.Now().Add(arriveWithin)
	for {
		got, exists, err := p.Count(ctx)
		if err != nil {
			t.Fatalf("poison Count: %v", err)
		}
		if got == n && (exists || n == 0) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("poison Count = %d (exists %v), want %d", got, exists, n)
		}
		sleep(ctx, pollInterval)
	}
}

// testPoisonAdmin dead-letters messages, lists them unchanged, requeues one
// by id and the rest by limit (each arrives on the source as a first
// delivery with its body and properties), and purges.
func testPoisonAdmin(t *testing.T, q Queue) {
	if q.OpenPoison == nil {
		t.Skip("driver has no poison administration")
	}
	ctx := ctxFor(t)
	p, err := q.OpenPoison(ctx)
	if err != nil {
		t.Fatalf("OpenPoison: %v", err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("poison Close: %v", err)
		}
	}()
	if p.Source() == "" || p.Poison() == "" {
		t.Errorf("Source() = %q, Poison() = %q; want both named", p.Source(), p.Poison())
	}
	if n, _, err := p.Count(ctx); err != nil || n != 0 {
		t.Fatalf("Count before anything was poisoned = %d, %v; want 0, nil", n, err)
	}
	props := map[string]string{"x-trace": "abc 123"}
	poisonN(ctx, t, q, "poisoned", 3, props)
	waitCount(ctx, t, p, 3)

	listed, err := p.List(ctx, 10)
	if err != nil {
		t.Fatalf("poison List: %v", err)
	}
	if len(listed) != 3 {
		t.Fatalf("poison List = %d messages, want 3", len(listed))
	}
	bodies := map[string]bool{}
	for _, m := range listed {
		bodies[string(m.Body)] = true
		if m.ID == "" {
			t.Errorf("poison message %q has no ID", m.Body)
		}
		if q.Capabilities.Properties && m.Properties["x-trace"] != "abc 123" {
			t.Errorf("poison message %q: Properties[x-trace] = %q, want %q", m.Body, m.Properties["x-trace"], "abc 123")
		}
	}
	for i := range 3 {
		if b := fmt.Sprintf("poisoned-%d", i); !bodies[b] {
			t.Errorf("poison List lacks %q (got %v)", b, bodies)
		}
	}
	// Listing removed nothing.
	waitCount(ctx, t, p, 3)

	// Requeue one by its id: it arrives on the source as a first delivery.
	one := listed[0]
	var moved []*triggers.PoisonMessage
	found, err := p.Requeue(ctx, one.ID, 1, func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			t.Errorf("Requeue %s: %v", m.ID, err)
		}
		moved = append(moved, m)
	})
	if err != nil || !found || len(moved) != 1 {
		t.Fatalf("Requeue(id %s) = found %v, %v, %d moved; want found, nil, 1", one.ID, found, err, len(moved))
	}
	m, _ := receiveOne(ctx, t, q.Driver, longLease)
	if !bytes.Equal(m.Body, one.Body) || m.DequeueCount != 1 {
		t.Errorf("requeued message: body %q DequeueCount %d, want %q and 1", m.Body, m.DequeueCount, one.Body)
	}
	if q.Capabilities.Properties && m.Properties["x-trace"] != "abc 123" {
		t.Errorf("requeued message: Properties[x-trace] = %q, want %q", m.Properties["x-trace"], "abc 123")
	}
	complete(ctx, t, q.Driver, m)
	waitCount(ctx, t, p, 2)

	if found, err := p.Requeue(ctx, "no-such-id", 1, func(*triggers.PoisonMessage, error) {}); err != nil || found {
		t.Errorf("Requeue of an unknown id = found %v, %v; want not found, nil", found, err)
	}

	// Requeue the rest by limit.
	n := 0
	if _, err := p.Requeue(ctx, "", 2, func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			t.Errorf("Requeue %s: %v", m.ID, err)
		}
		n++
	}); err != nil || n != 2 {
		t.Fatalf("Requeue(limit 2) = %d moved, %v; want 2, nil", n, err)
	}
	for _, m := range receiveNAll(ctx, t, q.Driver, 2) {
		if m.DequeueCount != 1 {
			t.Errorf("requeued %q: DequeueCount %d, want 1", m.Body, m.DequeueCount)
		}
		complete(ctx, t, q.Driver, m)
	}
	waitCount(ctx, t, p, 0)

	// Purge.
	poisonN(ctx, t, q, "purged", 2, nil)
	waitCount(ctx, t, p, 2)
	purged, err := p.Purge(ctx, 2)
	if err != nil || purged != 2 {
		t.Fatalf("Purge = %d, %v; want 2, nil", purged, err)
	}
	waitCount(ctx, t, p, 0)
	expectNone(ctx, t, q.Driver, time.Second, "after Purge (nothing goes back to the source)")
}

func receiveNAll(ctx context.Context, t *testing.T, d triggers.Driver, n int) []*triggers.Message {
	t.Helper()
	ms, _ := receiveN(ctx, t, d, n, longLease, arriveWithin)
	return ms
}
