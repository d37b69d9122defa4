package servicebus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/servicebus"
	"github.com/jobhost/jobhost/triggers/servicebus/sbfake"
)

// env is one fake entity with a driver on it.
type env struct {
	t      *testing.T
	b      *sbfake.Broker
	e      servicebus.Entity
	d      *servicebus.Driver
	send   *sbfake.Sender
	ctx    context.Context
	lockDu time.Duration
}

// setup makes a fresh queue with the given lock duration (and other entity
// options) and a driver with opts.
func setup(t *testing.T, eo sbfake.EntityOptions, opts servicebus.Options) *env {
	t.Helper()
	t.Parallel()
	return setupOn(t, sbfake.Harness{Entity: eo, Options: opts})
}

func setupOn(t *testing.T, h sbfake.Harness) *env {
	t.Helper()
	b, e, err := h.NewEntity()
	if err != nil {
		t.Fatal(err)
	}
	opts := h.Options
	d, err := sbfake.Open(b, e, &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	to := e.Queue
	if to == "" {
		to = e.Topic
	}
	ld := h.Entity.LockDuration
	if ld == 0 {
		ld = sbfake.HarnessLockDuration
	}
	return &env{t: t, b: b, e: e, d: d, send: b.NewSender(to), ctx: ctx, lockDu: ld}
}

func (v *env) sendMsg(m *azservicebus.Message) {
	v.t.Helper()
	if err := v.send.SendMessage(v.ctx, m, nil); err != nil {
		v.t.Fatal(err)
	}
}

func (v *env) sendText(body string) *azservicebus.Message {
	v.t.Helper()
	m := sbfake.NewMessage([]byte(body), nil)
	v.sendMsg(m)
	return m
}

// receive waits up to within for one message.
func (v *env) receive(lease, within time.Duration) *triggers.Message {
	v.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ms, err := v.d.Receive(v.ctx, 1, lease)
		if err != nil {
			v.t.Fatalf("Receive: %v", err)
		}
		if len(ms) == 1 {
			return ms[0]
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("no message within %v", within)
		}
	}
}

// tryReceive polls once, briefly.
func (v *env) tryReceive(lease time.Duration) *triggers.Message {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(v.ctx, 50*time.Millisecond)
	defer cancel()
	ms, err := v.d.Receive(ctx, 1, lease)
	if err != nil && ctx.Err() == nil {
		v.t.Fatalf("Receive: %v", err)
	}
	if len(ms) == 0 {
		return nil
	}
	return ms[0]
}

func fastOpts(o servicebus.Options) servicebus.Options {
	if o.ReceiveWait == 0 {
		o.ReceiveWait = 100 * time.Millisecond
	}
	return o
}

func TestMapping(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 30 * time.Second}, fastOpts(servicebus.Options{}))
	when := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	ct, corr, subj := "application/json", "corr-1", "orders.created"
	ttl := time.Hour
	id := "msg-1"
	before := time.Now()
	v.sendMsg(&azservicebus.Message{
		MessageID: &id, Body: []byte("{\"a\":1}\x00\xff"), ContentType: &ct, CorrelationID: &corr, Subject: &subj, TimeToLive: &ttl,
		ApplicationProperties: map[string]any{"s": "x y", "i": int64(42), "b": true, "t": when, "f": 1.5},
	})
	m := v.receive(0, 5*time.Second)
	if m.ID != id || string(m.Body) != "{\"a\":1}\x00\xff" || m.DequeueCount != 1 || m.Source != v.e.Path() || m.PopReceipt != "" {
		t.Errorf("got ID %q body %q DequeueCount %d Source %q PopReceipt %q", m.ID, m.Body, m.DequeueCount, m.Source, m.PopReceipt)
	}
	if m.InsertionTime.Before(before) || m.InsertionTime.After(time.Now()) {
		t.Errorf("InsertionTime = %v, want about now", m.InsertionTime)
	}
	if d := m.ExpirationTime.Sub(m.InsertionTime); d != ttl {
		t.Errorf("ExpirationTime - InsertionTime = %v, want %v", d, ttl)
	}
	snap := v.b.Messages(v.e.Path())[0]
	if !m.NextVisibleTime.Equal(snap.LockedUntil) {
		t.Errorf("NextVisibleTime = %v, want LockedUntil %v", m.NextVisibleTime, snap.LockedUntil)
	}
	want := map[string]string{
		"s": "x y", "i": "42", "b": "true", "t": "2024-05-06T07:08:09Z", "f": "1.5",
		servicebus.PropContentType: ct, servicebus.PropCorrelationID: corr, servicebus.PropSubject: subj,
	}
	if len(m.Properties) != len(want) {
		t.Errorf("Properties = %v, want %v", m.Properties, want)
	}
	for k, w := range want {
		if m.Properties[k] != w {
			t.Errorf("Properties[%q] = %q, want %q", k, m.Properties[k], w)
		}
	}
	if err := v.d.Complete(v.ctx, m); err != nil {
		t.Fatal(err)
	}
	if n := len(v.b.Messages(v.e.Path())); n != 0 {
		t.Errorf("%d messages left after Complete", n)
	}
}

func TestMappingNoOptionalFields(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{}, fastOpts(servicebus.Options{}))
	v.sendText("x")
	m := v.receive(0, 5*time.Second)
	if !m.ExpirationTime.IsZero() {
		t.Errorf("ExpirationTime = %v, want zero (no TTL)", m.ExpirationTime)
	}
	if len(m.Properties) != 0 {
		t.Errorf("Properties = %v, want none", m.Properties)
	}
}

func TestDequeueCountIsDeliveryCount(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 200 * time.Millisecond}, fastOpts(servicebus.Options{}))
	v.sendText("x")
	for want := int64(1); want <= 3; want++ {
		m := v.receive(0, 5*time.Second)
		if m.DequeueCount != want {
			t.Fatalf("delivery %d: DequeueCount = %d", want, m.DequeueCount)
		}
		if err := v.d.Retry(v.ctx, m, 0); err != nil {
			t.Fatal(err)
		}
	}
	// A lock that runs out counts as a delivery too (the host died).
	m := v.receive(0, 5*time.Second)
	if m.DequeueCount != 4 {
		t.Fatalf("DequeueCount = %d, want 4", m.DequeueCount)
	}
	m = v.receive(0, 5*time.Second) // after the 200 ms lock ran out
	if m.DequeueCount != 5 {
		t.Fatalf("after lock expiry: DequeueCount = %d, want 5", m.DequeueCount)
	}
	if got := v.b.Messages(v.e.Path())[0].DeliveryCount; got != 5 {
		t.Errorf("broker DeliveryCount = %d, want 5", got)
	}
}

func TestDequeueCountHonoursCarriedCount(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{}, fastOpts(servicebus.Options{}))
	for _, c := range []struct {
		carried any
		want    int64
	}{
		{int64(3), 4}, {int32(2), 3}, {"7", 8}, {"junk", 1}, {int64(-5), 1},
	} {
		m := sbfake.NewMessage([]byte("x"), nil)
		m.ApplicationProperties = map[string]any{servicebus.DeliveryCountProperty: c.carried, "keep": "me"}
		v.sendMsg(m)
		got := v.receive(0, 5*time.Second)
		if got.DequeueCount != c.want {
			t.Errorf("carried %v (%T): DequeueCount = %d, want %d", c.carried, c.carried, got.DequeueCount, c.want)
		}
		if _, ok := got.Properties[servicebus.DeliveryCountProperty]; ok {
			t.Errorf("Properties shows the internal %s: %v", servicebus.DeliveryCountProperty, got.Properties)
		}
		if got.Properties["keep"] != "me" {
			t.Errorf("Properties = %v", got.Properties)
		}
		if err := v.d.Complete(v.ctx, got); err != nil {
			t.Fatal(err)
		}
	}
}

// Service Bus dead-letters by itself at MaxDeliveryCount: this is why
// maxDequeueCount should be at most MaxDeliveryCount.
func TestNativeMaxDeliveryCount(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{MaxDeliveryCount: 2}, fastOpts(servicebus.Options{}))
	v.sendText("x")
	for range 2 {
		if err := v.d.Retry(v.ctx, v.receive(0, 5*time.Second), 0); err != nil {
			t.Fatal(err)
		}
	}
	if m := v.tryReceive(0); m != nil {
		t.Fatalf("third delivery %d happened; want native dead-lettering", m.DequeueCount)
	}
	dl := v.b.Messages(v.e.Path() + servicebus.DeadLetterSuffix)
	if len(dl) != 1 || dl[0].DeadLetterReason != "MaxDeliveryCountExceeded" {
		t.Fatalf("dead-letter queue = %+v", dl)
	}
}

func TestRetryHoldsShortDelays(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 200 * time.Millisecond}, fastOpts(servicebus.Options{}))
	sent := v.sendText("x")
	m := v.receive(0, 5*time.Second)
	seq := v.b.Messages(v.e.Path())[0].SequenceNumber
	renews := v.b.Calls(sbfake.OpRenew)
	start := time.Now()
	const delay = 700 * time.Millisecond
	if err := v.d.Retry(v.ctx, m, delay); err != nil {
		t.Fatal(err)
	}
	if d := m.NextVisibleTime.Sub(start); d < delay || d > delay+100*time.Millisecond {
		t.Errorf("NextVisibleTime = start + %v, want about %v", d, delay)
	}
	// The lock (200 ms) is shorter than the delay: renewals keep it hidden.
	for time.Since(start) < delay-100*time.Millisecond {
		if got := v.tryReceive(0); got != nil {
			t.Fatalf("redelivered after %v, want after %v", time.Since(start), delay)
		}
	}
	again := v.receive(0, 5*time.Second)
	if el := time.Since(start); el > delay+time.Second {
		t.Errorf("redelivered after %v, want about %v", el, delay)
	}
	if again.ID != *sent.MessageID || again.DequeueCount != 2 {
		t.Errorf("redelivered ID %q DequeueCount %d, want %q and 2", again.ID, again.DequeueCount, *sent.MessageID)
	}
	snap := v.b.Messages(v.e.Path())
	if len(snap) != 1 || snap[0].SequenceNumber != seq {
		t.Errorf("the same message should come back (no copy): %+v", snap)
	}
	if n := v.b.Calls(sbfake.OpRenew) - renews; n < 3 {
		t.Errorf("%d lock renewals during a %v hold with a 200 ms lock, want at least 3", n, delay)
	}
	if n := v.b.Calls(sbfake.OpSchedule); n != 0 {
		t.Errorf("%d copies scheduled, want none", n)
	}
	// Settled from the runtime's view: further calls fail.
	if err := v.d.Complete(v.ctx, m); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("Complete after Retry: %v, want ErrLeaseLost", err)
	}
}

func TestRetryHeldThenClose(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	v.sendText("x")
	m := v.receive(0, 5*time.Second)
	if err := v.d.Retry(v.ctx, m, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := v.d.Close(); err != nil {
		t.Fatal(err)
	}
	// Close abandoned the held message: it is available at once.
	snap := v.b.Messages(v.e.Path())
	if len(snap) != 1 || snap[0].Locked {
		t.Fatalf("after Close: %+v, want one unlocked message", snap)
	}
	if _, err := v.d.Receive(v.ctx, 1, 0); !errors.Is(err, servicebus.ErrClosed) {
		t.Errorf("Receive after Close: %v, want ErrClosed", err)
	}
}

func TestRetryScheduledCopy(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second, DuplicateDetectionWindow: time.Hour},
		fastOpts(servicebus.Options{MaxHeldRetryDelay: 100 * time.Millisecond}))
	ct := "text/plain"
	ttl := time.Hour
	orig := sbfake.NewMessage([]byte("payload"), map[string]string{"x-trace": "abc"})
	orig.ContentType, orig.TimeToLive = &ct, &ttl
	v.sendMsg(orig)
	m := v.receive(0, 5*time.Second)
	inserted, expires := m.InsertionTime, m.ExpirationTime

	for attempt := int64(1); attempt <= 2; attempt++ {
		start := time.Now()
		const delay = 500 * time.Millisecond
		if err := v.d.Retry(v.ctx, m, delay); err != nil {
			t.Fatal(err)
		}
		snap := v.b.Messages(v.e.Path())
		if len(snap) != 1 {
			t.Fatalf("after Retry: %d messages, want only the scheduled copy", len(snap))
		}
		cp := snap[0]
		if cp.MessageID == *orig.MessageID {
			t.Error("the copy reuses the MessageID: duplicate detection would drop it")
		}
		if d := cp.ScheduledEnqueueTime.Sub(start); d < delay || d > delay+100*time.Millisecond {
			t.Errorf("copy scheduled at start + %v, want %v", d, delay)
		}
		if got := cp.ApplicationProperties[servicebus.DeliveryCountProperty]; got != attempt {
			t.Errorf("copy %s = %v (%T), want %d", servicebus.DeliveryCountProperty, got, got, attempt)
		}
		if got := cp.ApplicationProperties[servicebus.OriginalIDProperty]; got != *orig.MessageID {
			t.Errorf("copy %s = %v", servicebus.OriginalIDProperty, got)
		}
		if d := cp.ExpiresAt.Sub(expires).Abs(); d > 10*time.Millisecond {
			t.Errorf("copy expires at %v, the original at %v", cp.ExpiresAt, expires)
		}
		if got := v.tryReceive(0); got != nil && time.Since(start) < delay-50*time.Millisecond {
			t.Fatalf("copy delivered after %v, before its time", time.Since(start))
		}
		m = v.receive(0, 5*time.Second)
		if el := time.Since(start); el < delay-50*time.Millisecond {
			t.Errorf("copy delivered after %v, want %v", el, delay)
		}
		if m.ID != *orig.MessageID || m.DequeueCount != attempt+1 || string(m.Body) != "payload" {
			t.Errorf("copy: ID %q DequeueCount %d body %q, want %q, %d, payload", m.ID, m.DequeueCount, m.Body, *orig.MessageID, attempt+1)
		}
		if !m.InsertionTime.Equal(inserted) {
			t.Errorf("copy InsertionTime = %v, want the original's %v", m.InsertionTime, inserted)
		}
		if m.Properties["x-trace"] != "abc" || m.Properties[servicebus.PropContentType] != ct {
			t.Errorf("copy Properties = %v", m.Properties)
		}
		for _, k := range []string{servicebus.DeliveryCountProperty, servicebus.OriginalIDProperty, servicebus.OriginalEnqueuedTimeProperty} {
			if _, ok := m.Properties[k]; ok {
				t.Errorf("Properties shows internal %s", k)
			}
		}
	}
	// A dead-lettered copy keeps the chain's id.
	id, err := v.d.DeadLetter(v.ctx, m, "boom")
	if err != nil || id != *orig.MessageID {
		t.Fatalf("DeadLetter = %q, %v", id, err)
	}
}

func TestRetryScheduleFailsLeavesOriginal(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{MaxHeldRetryDelay: -1}))
	v.sendText("x")
	m := v.receive(0, 5*time.Second)
	v.b.FailNext(sbfake.OpSchedule, errors.New("server busy"))
	if err := v.d.Retry(v.ctx, m, time.Minute); err == nil || !strings.Contains(err.Error(), "server busy") {
		t.Fatalf("Retry = %v, want the schedule error", err)
	}
	if snap := v.b.Messages(v.e.Path()); len(snap) != 1 || !snap[0].Locked {
		t.Fatalf("original should still be locked: %+v", snap)
	}
	if err := v.d.Complete(v.ctx, m); err != nil {
		t.Fatalf("Complete after a failed Retry: %v", err)
	}
}

func TestRetryCompleteFailsCancelsCopy(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{MaxHeldRetryDelay: -1}))
	v.sendText("x")
	m := v.receive(0, 5*time.Second)
	v.b.FailNext(sbfake.OpComplete, &azservicebus.Error{Code: azservicebus.CodeLockLost})
	err := v.d.Retry(v.ctx, m, time.Minute)
	if !errors.Is(err, triggers.ErrLeaseLost) {
		t.Fatalf("Retry = %v, want ErrLeaseLost", err)
	}
	snap := v.b.Messages(v.e.Path())
	if len(snap) != 1 || !snap[0].ScheduledEnqueueTime.IsZero() {
		t.Fatalf("the copy should be cancelled, the original left: %+v", snap)
	}
	if v.b.Calls(sbfake.OpCancel) != 1 {
		t.Errorf("CancelScheduledMessages called %d times", v.b.Calls(sbfake.OpCancel))
	}

	// If cancelling fails too, the error says the message may come twice.
	v.sendText("y")
	m2 := v.receive(0, 5*time.Second)
	for m2.Text() != "y" {
		m2 = v.receive(0, 5*time.Second)
	}
	v.b.FailNext(sbfake.OpComplete, errors.New("connection reset"))
	v.b.FailNext(sbfake.OpCancel, errors.New("connection reset"))
	if err := v.d.Retry(v.ctx, m2, time.Minute); err == nil || !strings.Contains(err.Error(), "delivered twice") {
		t.Fatalf("Retry = %v, want a warning about a duplicate", err)
	}
}

func TestRetrySubscriptionHoldsLongDelays(t *testing.T) {
	t.Parallel()
	v := setupOn(t, sbfake.Harness{Subscription: true, Entity: sbfake.EntityOptions{LockDuration: 200 * time.Millisecond},
		Options: fastOpts(servicebus.Options{MaxHeldRetryDelay: -1})})
	v.sendText("x")
	m := v.receive(0, 5*time.Second)
	start := time.Now()
	if err := v.d.Retry(v.ctx, m, 600*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	again := v.receive(0, 5*time.Second)
	if el := time.Since(start); el < 550*time.Millisecond {
		t.Errorf("redelivered after %v, want 600ms", el)
	}
	if again.DequeueCount != 2 || again.ID != m.ID {
		t.Errorf("redelivered %q count %d", again.ID, again.DequeueCount)
	}
	if n := v.b.Calls(sbfake.OpSchedule); n != 0 {
		t.Errorf("scheduled %d copies on a subscription, want none (it would reach every subscription)", n)
	}
	if other := v.b.Messages(v.e.Topic + "/Subscriptions/other"); len(other) != 1 || other[0].DeliveryCount != 0 {
		t.Errorf("other subscription = %+v, want its own untouched copy", other)
	}
}

func TestOpenRejectsSenderForSubscription(t *testing.T) {
	t.Parallel()
	b := sbfake.NewBroker()
	e := servicebus.Entity{Topic: "t", Subscription: "s"}
	if _, err := servicebus.Open(b.NewReceiver(e.Path()), b.NewSender("t"), e, nil); err == nil {
		t.Error("Open with a sender on a subscription succeeded")
	}
	var nilSender *azservicebus.Sender
	d, err := servicebus.Open(b.NewReceiver(e.Path()), nilSender, e, nil)
	if err != nil {
		t.Fatalf("Open with a typed nil sender: %v", err)
	}
	_ = d.Close()
}

func TestLeaseStretchedBeyondLock(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 200 * time.Millisecond}, fastOpts(servicebus.Options{}))
	v.sendText("x")
	start := time.Now()
	m := v.receive(800*time.Millisecond, 5*time.Second)
	if d := m.NextVisibleTime.Sub(start); d < 750*time.Millisecond || d > 900*time.Millisecond {
		t.Errorf("NextVisibleTime = start + %v, want about the 800ms lease", d)
	}
	for time.Since(start) < 700*time.Millisecond {
		if got := v.tryReceive(0); got != nil {
			t.Fatalf("redelivered after %v, within the 800ms lease", time.Since(start))
		}
	}
	if err := v.d.Complete(v.ctx, m); err != nil {
		t.Fatalf("Complete within the lease: %v", err)
	}
}

func TestLeaseShorterThanLock(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	v.sendText("x")
	m := v.receive(time.Second, 5*time.Second)
	// The lock cannot be shortened: NextVisibleTime is the lock's end.
	if d := time.Until(m.NextVisibleTime); d < 4*time.Second {
		t.Errorf("NextVisibleTime in %v, want the 5s lock", d)
	}
	if n := v.b.Calls(sbfake.OpRenew); n != 0 {
		t.Errorf("%d renewals for a lease within the lock", n)
	}
}

func TestLockRenewalLimit(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 200 * time.Millisecond},
		fastOpts(servicebus.Options{MaxAutoLockRenewalDuration: 500 * time.Millisecond}))
	v.sendText("x")
	start := time.Now()
	m := v.receive(time.Minute, 5*time.Second)
	if d := m.NextVisibleTime.Sub(start); d > 800*time.Millisecond {
		t.Errorf("NextVisibleTime = start + %v, want it capped near the 500ms renewal limit", d)
	}
	if err := v.d.ExtendLease(v.ctx, m, time.Minute); err != nil {
		t.Fatalf("ExtendLease within the limit: %v", err)
	}
	// The background renewal stops at the limit, so the message comes back
	// although the runtime asked for a minute.
	again := v.receive(time.Minute, 5*time.Second)
	el := time.Since(start)
	if el < 450*time.Millisecond || el > 1200*time.Millisecond {
		t.Errorf("redelivered after %v, want soon after the 500ms limit", el)
	}
	if again.DequeueCount != 2 {
		t.Errorf("DequeueCount = %d, want 2", again.DequeueCount)
	}
	if err := v.d.Complete(v.ctx, again); err != nil { // stops its own renewals
		t.Fatal(err)
	}
	renews := v.b.Calls(sbfake.OpRenew)
	err := v.d.ExtendLease(v.ctx, m, time.Minute)
	if !errors.Is(err, servicebus.ErrLockRenewalLimit) {
		t.Fatalf("ExtendLease past the limit = %v, want ErrLockRenewalLimit", err)
	}
	if errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("the limit error should not claim the lease is lost: %v", err)
	}
	if v.b.Calls(sbfake.OpRenew) != renews {
		t.Error("ExtendLease past the limit called RenewMessageLock")
	}
}

func TestLockRenewalUnlimited(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 200 * time.Millisecond},
		fastOpts(servicebus.Options{MaxAutoLockRenewalDuration: -1}))
	v.sendText("x")
	start := time.Now()
	m := v.receive(time.Minute, 5*time.Second)
	for time.Since(start) < 700*time.Millisecond {
		if got := v.tryReceive(0); got != nil {
			t.Fatalf("redelivered after %v despite unlimited renewal", time.Since(start))
		}
	}
	if err := v.d.ExtendLease(v.ctx, m, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := v.d.Complete(v.ctx, m); err != nil {
		t.Fatal(err)
	}
}

func TestExtendLeaseUpdatesNextVisible(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 300 * time.Millisecond}, fastOpts(servicebus.Options{}))
	v.sendText("x")
	m := v.receive(0, 5*time.Second)
	before := m.NextVisibleTime
	time.Sleep(50 * time.Millisecond)
	if err := v.d.ExtendLease(v.ctx, m, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(m.NextVisibleTime); !m.NextVisibleTime.After(before) || d < 1500*time.Millisecond {
		t.Errorf("NextVisibleTime %v from now (was %v), want about the 2s lease", d, before)
	}
}

func TestLockLostMapping(t *testing.T) {
	cases := []struct {
		name string
		err  error
	}{
		{"sdk code", &azservicebus.Error{Code: azservicebus.CodeLockLost}},
		{"amqp condition", &amqp.Error{Condition: "com.microsoft:message-lock-lost", Description: "lock lost"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
			v.sendText("x")
			m := v.receive(0, 5*time.Second)
			v.b.FailNext(sbfake.OpComplete, c.err)
			err := v.d.Complete(v.ctx, m)
			if !errors.Is(err, triggers.ErrLeaseLost) {
				t.Fatalf("Complete = %v, want ErrLeaseLost", err)
			}
			var sbErr *azservicebus.Error
			var aErr *amqp.Error
			if !errors.As(err, &sbErr) && !errors.As(err, &aErr) {
				t.Errorf("the original error is not reachable with errors.As: %v", err)
			}
			// Known lost: later calls fail without asking the broker.
			calls := v.b.Calls(sbfake.OpRenew)
			if err := v.d.ExtendLease(v.ctx, m, time.Minute); !errors.Is(err, triggers.ErrLeaseLost) {
				t.Errorf("ExtendLease after lock lost = %v", err)
			}
			if v.b.Calls(sbfake.OpRenew) != calls {
				t.Error("ExtendLease asked the broker about a lost lock")
			}
		})
	}
}

func TestLockExpiredMapping(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 100 * time.Millisecond}, fastOpts(servicebus.Options{}))
	v.sendText("x")
	m := v.receive(0, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	for name, f := range map[string]func() error{
		"Complete":    func() error { return v.d.Complete(v.ctx, m) },
		"Retry":       func() error { return v.d.Retry(v.ctx, m, 0) },
		"ExtendLease": func() error { return v.d.ExtendLease(v.ctx, m, time.Minute) },
		"DeadLetter":  func() error { _, err := v.d.DeadLetter(v.ctx, m, "x"); return err },
	} {
		if err := f(); !errors.Is(err, triggers.ErrLeaseLost) {
			t.Errorf("%s after the lock ran out = %v, want ErrLeaseLost", name, err)
		}
	}
}

func TestTransientSettleErrorKeepsLock(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	v.sendText("x")
	m := v.receive(0, 5*time.Second)
	v.b.FailNext(sbfake.OpComplete, &azservicebus.Error{Code: azservicebus.CodeConnectionLost})
	err := v.d.Complete(v.ctx, m)
	if err == nil || errors.Is(err, triggers.ErrLeaseLost) || errors.Is(err, triggers.ErrNotFound) {
		t.Fatalf("Complete = %v, want a plain error", err)
	}
	if err := v.d.Complete(v.ctx, m); err != nil {
		t.Fatalf("second Complete: %v", err)
	}
}

func TestNotFoundMapping(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	v.sendText("x")
	m := v.receive(0, 5*time.Second)
	v.b.DeleteQueue(v.e.Queue)
	err := v.d.Complete(v.ctx, m)
	if !errors.Is(err, triggers.ErrNotFound) || !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("Complete on a deleted queue = %v, want ErrNotFound and ErrLeaseLost", err)
	}
	if _, err := v.d.Receive(v.ctx, 1, time.Minute); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Receive on a deleted queue = %v, want ErrNotFound", err)
	}
	v.b.FailNext(sbfake.OpReceive, &azservicebus.Error{Code: azservicebus.CodeNotFound})
	if _, err := v.d.Receive(v.ctx, 1, time.Minute); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Receive with CodeNotFound = %v, want ErrNotFound", err)
	}
	v.b.FailNext(sbfake.OpReceive, &amqp.LinkError{RemoteErr: &amqp.Error{Condition: amqp.ErrCondNotFound}})
	if _, err := v.d.Receive(v.ctx, 1, time.Minute); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Receive with a link error = %v, want ErrNotFound", err)
	}
}

func TestDeadLetter(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	if got, want := v.d.PoisonDestination(), v.e.Queue+"/$deadletterqueue"; got != want {
		t.Errorf("PoisonDestination = %q, want %q", got, want)
	}
	sent := sbfake.NewMessage([]byte("body"), map[string]string{"k": "v"})
	v.sendMsg(sent)
	m := v.receive(0, 5*time.Second)
	long := strings.Repeat("é", 3000) // 6000 bytes
	id, err := v.d.DeadLetter(v.ctx, m, long)
	if err != nil || id != *sent.MessageID {
		t.Fatalf("DeadLetter = %q, %v", id, err)
	}
	dl := v.b.Messages(v.d.PoisonDestination())
	if len(dl) != 1 {
		t.Fatalf("dead-letter queue has %d messages", len(dl))
	}
	p := dl[0]
	if p.DeadLetterReason != servicebus.DeadLetterReason {
		t.Errorf("DeadLetterReason = %q", p.DeadLetterReason)
	}
	if n := len(p.DeadLetterErrorDescription); n > servicebus.MaxErrorDescription || n < servicebus.MaxErrorDescription-4 {
		t.Errorf("DeadLetterErrorDescription is %d bytes, want at most and about %d", n, servicebus.MaxErrorDescription)
	}
	if !strings.HasPrefix(long, strings.TrimSuffix(p.DeadLetterErrorDescription, "…")) || !strings.HasSuffix(p.DeadLetterErrorDescription, "…") {
		t.Error("description not cut on a rune boundary with a mark")
	}
	if string(p.Body) != "body" || p.ApplicationProperties["k"] != "v" || p.DeadLetterSource != v.e.Queue {
		t.Errorf("dead-lettered message = %+v", p)
	}
	if err := v.d.Complete(v.ctx, m); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("Complete after DeadLetter = %v", err)
	}

	// A driver on the dead-letter queue reads it, and cannot dead-letter.
	dle := v.e
	dle.DeadLetterQueue = true
	dld, err := sbfake.Open(v.b, dle, &servicebus.Options{ReceiveWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer dld.Close()
	if dld.PoisonDestination() != "" {
		t.Errorf("dead-letter queue driver PoisonDestination = %q", dld.PoisonDestination())
	}
	ms, err := dld.Receive(v.ctx, 10, time.Minute)
	if err != nil || len(ms) != 1 || ms[0].ID != id || ms[0].Source != v.e.Queue+servicebus.DeadLetterSuffix {
		t.Fatalf("dead-letter queue Receive = %v, %v", ms, err)
	}
	if _, err := dld.DeadLetter(v.ctx, ms[0], "again"); !errors.Is(err, servicebus.ErrNoDeadLetterQueue) {
		t.Errorf("DeadLetter from a dead-letter queue = %v", err)
	}
}

func TestReceiveBatchCapsAndWait(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, servicebus.Options{MaxBatch: 2, ReceiveWait: 300 * time.Millisecond})
	if !v.d.ReceiveWaits() {
		t.Error("ReceiveWaits = false")
	}
	start := time.Now()
	ms, err := v.d.Receive(v.ctx, 10, time.Minute)
	if err != nil || len(ms) != 0 {
		t.Fatalf("empty Receive = %v, %v", ms, err)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > time.Second {
		t.Errorf("empty Receive took %v, want the 300ms wait", el)
	}
	// A cancelled caller gets its own error back.
	ctx, cancel := context.WithCancel(v.ctx)
	cancel()
	if _, err := v.d.Receive(ctx, 1, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Receive with a cancelled context = %v", err)
	}
	for range 5 {
		v.sendText("x")
	}
	if ms, err = v.d.Receive(v.ctx, 10, time.Minute); err != nil || len(ms) != 2 {
		t.Fatalf("Receive(10) with MaxBatch 2 = %d messages, %v", len(ms), err)
	}
	if ms, err = v.d.Receive(v.ctx, 1, time.Minute); err != nil || len(ms) != 1 {
		t.Fatalf("Receive(1) = %d messages, %v", len(ms), err)
	}
	// Only what was asked for is locked: no prefetch.
	locked := 0
	for _, s := range v.b.Messages(v.e.Queue) {
		if s.Locked {
			locked++
		}
	}
	if locked != 3 {
		t.Errorf("%d messages locked, want the 3 received", locked)
	}
}

func TestConcurrentReceive(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	for range 20 {
		v.sendText("x")
	}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got int
	)
	for range 4 {
		wg.Go(func() {
			for range 5 {
				ms, err := v.d.Receive(v.ctx, 1, time.Minute)
				if err != nil {
					t.Errorf("concurrent Receive: %v", err)
					return
				}
				mu.Lock()
				got += len(ms)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got != 20 {
		t.Errorf("received %d of 20", got)
	}
}

func TestForeignMessage(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{}, fastOpts(servicebus.Options{}))
	m := &triggers.Message{ID: "x"}
	if err := v.d.Complete(v.ctx, m); err == nil {
		t.Error("Complete of a message this driver did not receive succeeded")
	}
	if err := v.d.Complete(v.ctx, nil); err == nil {
		t.Error("Complete(nil) succeeded")
	}
}

func TestEntityValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		e    servicebus.Entity
		ok   bool
		path string
	}{
		{servicebus.Entity{Queue: "orders"}, true, "orders"},
		{servicebus.Entity{Queue: "a/b.c-d_e"}, true, "a/b.c-d_e"},
		{servicebus.Entity{Topic: "t", Subscription: "s"}, true, "t/Subscriptions/s"},
		{servicebus.Entity{Topic: "t", Subscription: "s", DeadLetterQueue: true}, true, "t/Subscriptions/s/$deadletterqueue"},
		{servicebus.Entity{}, false, ""},
		{servicebus.Entity{Queue: "q", Topic: "t"}, false, ""},
		{servicebus.Entity{Topic: "t"}, false, ""},
		{servicebus.Entity{Subscription: "s"}, false, ""},
		{servicebus.Entity{Queue: "a b"}, false, ""},
		{servicebus.Entity{Queue: "a//b"}, false, ""},
		{servicebus.Entity{Topic: "t", Subscription: "a/b"}, false, ""},
		{servicebus.Entity{Queue: strings.Repeat("q", 261)}, false, ""},
	} {
		err := c.e.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%+v: Validate = %v", c.e, err)
		}
		if c.ok && c.e.Path() != c.path {
			t.Errorf("%+v: Path = %q, want %q", c.e, c.e.Path(), c.path)
		}
	}
}

func TestPublish(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	id, err := v.d.Publish(v.ctx, []byte("hello"), map[string]string{"k": "v", servicebus.PropContentType: "text/plain"})
	if err != nil || id == "" {
		t.Fatalf("Publish = %q, %v", id, err)
	}
	m := v.receive(0, 5*time.Second)
	if m.ID != id || m.Text() != "hello" || m.Properties["k"] != "v" || m.Properties[servicebus.PropContentType] != "text/plain" {
		t.Errorf("received %+v", m)
	}
	v.b.DeleteQueue(v.e.Queue)
	if _, err := v.d.Publish(v.ctx, []byte("x"), nil); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Publish to a deleted queue = %v, want ErrNotFound", err)
	}

	s := setupOn(t, sbfake.Harness{Subscription: true})
	if _, err := s.d.Publish(s.ctx, []byte("x"), nil); err == nil {
		t.Error("Publish on a subscription driver succeeded")
	}
}
