package servicebus_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/servicebus"
	"github.com/jobhost/jobhost/triggers/servicebus/sbfake"
)

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
