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
