package servicebus_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/servicebus"
	"github.com/jobhost/jobhost/triggers/servicebus/sbfake"
)

// poisonEnv is a fake queue (or subscription) with a driver and the
// poison administration of its dead-letter queue.
type poisonEnv struct {
	*env
	p *servicebus.PoisonAdmin
}

func setupPoison(t *testing.T, h sbfake.Harness) *poisonEnv {
	t.Helper()
	t.Parallel()
	if h.Entity.LockDuration == 0 {
		h.Entity.LockDuration = time.Minute
	}
	h.Options = fastOpts(h.Options)
	v := setupOn(t, h)
	p, err := sbfake.NewPoisonAdmin(v.b, v.e, &servicebus.Options{ReceiveWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &poisonEnv{env: v, p: p}
}

func (v *poisonEnv) dlqPath() string { return v.e.Path() + servicebus.DeadLetterSuffix }

// poison sends each message and dead-letters it through the driver.
func (v *poisonEnv) poison(msgs ...*azservicebus.Message) {
	v.t.Helper()
	for _, m := range msgs {
		v.sendMsg(m)
		got := v.receive(time.Minute, 5*time.Second)
		if _, err := v.d.DeadLetter(v.ctx, got, "boom "+string(got.Body)); err != nil {
			v.t.Fatal(err)
		}
	}
}

func (v *poisonEnv) poisonN(n int) {
	v.t.Helper()
	for i := range n {
		v.poison(sbfake.NewMessage(fmt.Appendf(nil, "m%d", i), nil))
	}
}

func (v *poisonEnv) count() int {
	v.t.Helper()
	n, exists, err := v.p.Count(v.ctx)
	if err != nil || !exists {
		v.t.Fatalf("Count = %d, %v, %v", n, exists, err)
	}
	return n
}

// lockedIn counts the locked messages of an entity path.
func (v *poisonEnv) lockedIn(path string) int {
	n := 0
	for _, s := range v.b.Messages(path) {
		if s.Locked {
			n++
		}
	}
	return n
}

func TestPoisonList(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	if v.p.Source() != "queue "+v.e.Queue || v.p.Poison() != "dead-letter queue "+v.dlqPath() {
		t.Errorf("Source, Poison = %q, %q", v.p.Source(), v.p.Poison())
	}
	if ms, err := v.p.List(v.ctx, 10); err != nil || len(ms) != 0 {
		t.Fatalf("List of an empty dead-letter queue = %v, %v", ms, err)
	}
	ct := "text/plain"
	first := sbfake.NewMessage([]byte("first"), map[string]string{"k": "v"})
	first.ContentType = &ct
	first.ApplicationProperties[servicebus.DeliveryCountProperty] = int64(4) // a scheduled retry copy
	v.poison(first, sbfake.NewMessage([]byte("second"), nil))
	ms, err := v.p.List(v.ctx, 10)
	if err != nil || len(ms) != 2 {
		t.Fatalf("List = %d messages, %v", len(ms), err)
	}
	snap := v.b.Messages(v.dlqPath())
	m := ms[0]
	if m.ID != strconv.FormatInt(snap[0].SequenceNumber, 10) || m.Sequence != uint64(snap[0].SequenceNumber) {
		t.Errorf("ID, Sequence = %q, %d; want the sequence number %d", m.ID, m.Sequence, snap[0].SequenceNumber)
	}
	if string(m.Body) != "first" || m.DequeueCount != 5 || m.Reason != servicebus.DeadLetterReason || m.InsertionTime.IsZero() {
		t.Errorf("listed %q: DequeueCount %d Reason %q InsertionTime %v", m.Body, m.DequeueCount, m.Reason, m.InsertionTime)
	}
	for k, want := range map[string]string{
		"k": "v", servicebus.PropMessageID: *first.MessageID, servicebus.PropContentType: ct,
		servicebus.PropDeadLetterReason: servicebus.DeadLetterReason, servicebus.PropDeadLetterErrorDescription: "boom first",
		servicebus.PropDeadLetterSource: v.e.Queue, servicebus.DeliveryCountProperty: "4",
	} {
		if got := m.Properties[k]; got != want {
			t.Errorf("Properties[%q] = %q, want %q", k, got, want)
		}
	}
	if ms, err := v.p.List(v.ctx, 1); err != nil || len(ms) != 1 || string(ms[0].Body) != "first" {
		t.Errorf("List(1) = %v, %v", ms, err)
	}
	if ms, err := v.p.List(v.ctx, 0); err != nil || len(ms) != 0 {
		t.Errorf("List(0) = %v, %v", ms, err)
	}
	if v.lockedIn(v.dlqPath()) != 0 || len(v.b.Messages(v.dlqPath())) != 2 {
		t.Error("List locked or removed messages")
	}
}

func TestPoisonCountByRuntimeProperties(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	v.poisonN(2)
	peeks := v.b.Calls(sbfake.OpPeek)
	if n := v.count(); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}
	if v.b.Calls(sbfake.OpRuntimeProperties) != 1 || v.b.Calls(sbfake.OpPeek) != peeks {
		t.Errorf("Count made %d runtime property and %d peek calls, want 1 and 0", v.b.Calls(sbfake.OpRuntimeProperties), v.b.Calls(sbfake.OpPeek)-peeks)
	}
	// Another failure than a refusal is an error, not a fallback.
	v.b.FailNext(sbfake.OpRuntimeProperties, &azcore.ResponseError{StatusCode: 503})
	if _, _, err := v.p.Count(v.ctx); err == nil {
		t.Error("Count with a failing management endpoint succeeded")
	}
}

func TestPoisonCountByPeekingWhenRefused(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	// More than one page of peeks, dead-lettered straight on the fake.
	const n = 260
	r := v.b.NewReceiver(v.e.Queue)
	for i := range n {
		v.sendText(strconv.Itoa(i))
	}
	for got := 0; got < n; {
		ms, err := r.ReceiveMessages(v.ctx, 100, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if err := r.DeadLetterMessage(v.ctx, m, nil); err != nil {
				t.Fatal(err)
			}
		}
		got += len(ms)
	}
	v.b.FailNext(sbfake.OpRuntimeProperties, fmt.Errorf("GET: %w", &azcore.ResponseError{StatusCode: 401}))
	if got := v.count(); got != n {
		t.Errorf("Count by peeking = %d, want %d", got, n)
	}
	if got := v.count(); got != n {
		t.Errorf("second Count = %d, want %d", got, n)
	}
	if calls := v.b.Calls(sbfake.OpRuntimeProperties); calls != 1 {
		t.Errorf("runtime properties asked %d times, want once (then peeking only)", calls)
	}

	// Without a management client Count peeks from the start.
	p, err := servicebus.NewPoisonAdmin(v.b.NewReceiver(v.dlqPath()), nil, nil, v.e, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got, exists, err := p.Count(v.ctx); got != n || !exists || err != nil {
		t.Errorf("Count without a counter = %d, %v, %v", got, exists, err)
	}
}

func TestPoisonMissingEntity(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	v.b.DeleteQueue(v.e.Queue)
	if _, _, err := v.p.Count(v.ctx); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Count (runtime properties) of a deleted queue = %v, want ErrNotFound", err)
	}
	p, err := servicebus.NewPoisonAdmin(v.b.NewReceiver(v.dlqPath()), nil, nil, v.e, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, _, err := p.Count(v.ctx); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Count (peeking) of a deleted queue = %v, want ErrNotFound", err)
	}
	if _, err := p.List(v.ctx, 1); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("List of a deleted queue = %v, want ErrNotFound", err)
	}
}

func TestPoisonRequeueCopy(t *testing.T) {
	// Duplicate detection is on: a copy with the old MessageID would be
	// dropped as a duplicate, and the message lost.
	v := setupPoison(t, sbfake.Harness{Entity: sbfake.EntityOptions{DuplicateDetectionWindow: time.Hour}})
	subj := "orders.created"
	sent := sbfake.NewMessage([]byte("payload"), map[string]string{
		"keep": "v", servicebus.DeliveryCountProperty: "3", "X-JobHost-Attempt": "2", "x-jobhost-reason": "r",
		servicebus.OriginalIDProperty: "original-id", servicebus.OriginalEnqueuedTimeProperty: time.Now().UTC().Format(time.RFC3339Nano),
	})
	sent.Subject = &subj
	v.poison(sent)
	listed, err := v.p.List(v.ctx, 1)
	if err != nil || len(listed) != 1 {
		t.Fatalf("List = %v, %v", listed, err)
	}
	var moved []*triggers.PoisonMessage
	found, err := v.p.Requeue(v.ctx, listed[0].ID, 0, func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			t.Errorf("done(%s): %v", m.ID, err)
		}
		moved = append(moved, m)
	})
	if !found || err != nil || len(moved) != 1 || moved[0].ID != listed[0].ID {
		t.Fatalf("Requeue = %v, %v, %v", found, err, moved)
	}
	if n := len(v.b.Messages(v.dlqPath())); n != 0 {
		t.Errorf("dead-letter queue still holds %d messages", n)
	}
	q := v.b.Messages(v.e.Queue)
	if len(q) != 1 {
		t.Fatalf("queue holds %d messages, want the copy", len(q))
	}
	c := q[0]
	if c.MessageID == *sent.MessageID || c.MessageID == "" {
		t.Errorf("copy MessageID = %q, want a new one", c.MessageID)
	}
	want := map[string]any{"keep": "v", servicebus.OriginalIDProperty: "original-id"}
	if len(c.ApplicationProperties) != len(want) {
		t.Errorf("copy properties = %v, want %v", c.ApplicationProperties, want)
	}
	for k, w := range want {
		if c.ApplicationProperties[k] != w {
			t.Errorf("copy property %q = %v, want %v", k, c.ApplicationProperties[k], w)
		}
	}
	m := v.receive(time.Minute, 5*time.Second)
	if m.ID != "original-id" || m.DequeueCount != 1 || m.Text() != "payload" || m.Properties["keep"] != "v" || m.Properties[servicebus.PropSubject] != subj {
		t.Errorf("requeued message: %+v", m)
	}
	for k := range m.Properties {
		if strings.Contains(strings.ToLower(k), "jobhost") {
			t.Errorf("requeued message has bookkeeping property %q", k)
		}
	}
}

func TestPoisonRequeueByIDBehindOthers(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	v.poisonN(5)
	listed, err := v.p.List(v.ctx, 10)
	if err != nil || len(listed) != 5 {
		t.Fatalf("List = %d, %v", len(listed), err)
	}
	target := listed[3]
	found, err := v.p.Requeue(v.ctx, target.ID, 1, nil)
	if !found || err != nil {
		t.Fatalf("Requeue(%s) = %v, %v", target.ID, found, err)
	}
	if m := v.receive(time.Minute, 5*time.Second); m.Text() != string(target.Body) {
		t.Errorf("requeued %q, want %q", m.Text(), target.Body)
	}
	if v.lockedIn(v.dlqPath()) != 0 {
		t.Error("messages ahead of the target stay locked")
	}
	if n := v.count(); n != 4 {
		t.Errorf("Count = %d, want 4", n)
	}
	// Gone now, and ids that are not sequence numbers name nothing.
	for _, id := range []string{target.ID, "abc", "-1", "99999"} {
		if found, err := v.p.Requeue(v.ctx, id, 1, nil); found || err != nil {
			t.Errorf("Requeue(%q) = %v, %v; want not found", id, found, err)
		}
	}
	if n, err := v.p.Requeue(v.ctx, "", 0, nil); n || err != nil {
		t.Errorf("Requeue(limit 0) = %v, %v", n, err)
	}
	if n := v.count(); n != 4 {
		t.Errorf("Count = %d, want 4", n)
	}
}

func TestPoisonRequeueLockedElsewhere(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	v.poisonN(2)
	listed, _ := v.p.List(v.ctx, 10)
	other := v.b.NewReceiver(v.dlqPath())
	ms, err := other.ReceiveMessages(v.ctx, 1, nil) // locks the first
	if err != nil || len(ms) != 1 {
		t.Fatalf("lock = %v, %v", ms, err)
	}
	found, err := v.p.Requeue(v.ctx, listed[0].ID, 1, nil)
	if !found || err == nil || !strings.Contains(err.Error(), "could not be locked") {
		t.Errorf("Requeue of a message locked elsewhere = %v, %v", found, err)
	}
	if v.lockedIn(v.dlqPath()) != 1 || len(v.b.Messages(v.e.Queue)) != 0 {
		t.Error("Requeue left a message locked or moved one")
	}
}

func TestPoisonRequeueSendFails(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	v.poisonN(3)
	v.b.FailNext(sbfake.OpSend, errors.New("injected send failure"))
	var errs []error
	_, err := v.p.Requeue(v.ctx, "", 3, func(m *triggers.PoisonMessage, err error) { errs = append(errs, err) })
	if err == nil || len(errs) != 1 || errs[0] == nil || !strings.Contains(err.Error(), "stays in the dead-letter queue") {
		t.Fatalf("Requeue with a failing send = %v, done errors %v", err, errs)
	}
	if len(v.b.Messages(v.dlqPath())) != 3 || v.lockedIn(v.dlqPath()) != 0 || len(v.b.Messages(v.e.Queue)) != 0 {
		t.Fatal("a failed send lost, moved or left locked a message")
	}
	n := 0
	if _, err := v.p.Requeue(v.ctx, "", 3, func(_ *triggers.PoisonMessage, err error) {
		if err == nil {
			n++
		}
	}); err != nil || n != 3 {
		t.Fatalf("Requeue again = %d moved, %v", n, err)
	}
	if len(v.b.Messages(v.e.Queue)) != 3 || v.count() != 0 {
		t.Error("not all moved")
	}
}

func TestPoisonRequeueCompleteFails(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	v.poisonN(2)
	v.b.FailNext(sbfake.OpComplete, errors.New("injected complete failure"))
	var errs []error
	_, err := v.p.Requeue(v.ctx, "", 2, func(m *triggers.PoisonMessage, err error) { errs = append(errs, err) })
	if err == nil || len(errs) != 1 || !strings.Contains(err.Error(), "in both") {
		t.Fatalf("Requeue with a failing complete = %v, done errors %v", err, errs)
	}
	// Duplicated, never lost; nothing stays locked.
	if len(v.b.Messages(v.e.Queue)) != 1 || len(v.b.Messages(v.dlqPath())) != 2 || v.lockedIn(v.dlqPath()) != 0 {
		t.Errorf("queue %d, dead-letter queue %d (%d locked)", len(v.b.Messages(v.e.Queue)), len(v.b.Messages(v.dlqPath())), v.lockedIn(v.dlqPath()))
	}
}

func TestPoisonRequeueToMissingQueue(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	v.poisonN(1)
	// The copy's destination does not exist: the send fails with
	// not-found, and Requeue stops there.
	p, err := servicebus.NewPoisonAdmin(v.b.NewReceiver(v.dlqPath()), v.b.NewSender("missing"), v.b, v.e, &servicebus.Options{ReceiveWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Requeue(v.ctx, "", 1, nil); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Requeue to a missing queue = %v, want ErrNotFound", err)
	}
	if v.count() != 1 || v.lockedIn(v.dlqPath()) != 0 {
		t.Error("the message left the dead-letter queue or stayed locked")
	}
}

func TestPoisonPurge(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	v.poisonN(5)
	if n, err := v.p.Purge(v.ctx, 3); n != 3 || err != nil {
		t.Fatalf("Purge(3) = %d, %v", n, err)
	}
	if n := v.count(); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}
	if n, err := v.p.Purge(v.ctx, 0); n != 0 || err != nil {
		t.Errorf("Purge(0) = %d, %v", n, err)
	}
	if n, err := v.p.Purge(v.ctx, 10); n != 2 || err != nil {
		t.Errorf("Purge(10) = %d, %v", n, err)
	}
	if len(v.b.Messages(v.e.Queue)) != 0 || v.count() != 0 {
		t.Error("Purge moved a message or left one")
	}
}

func TestPoisonSubscription(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{Subscription: true})
	if v.p.Source() != "subscription "+v.e.Path() {
		t.Errorf("Source = %q", v.p.Source())
	}
	v.poisonN(2)
	if n := v.count(); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}
	if ms, err := v.p.List(v.ctx, 10); err != nil || len(ms) != 2 {
		t.Errorf("List = %d, %v", len(ms), err)
	}
	if _, err := v.p.Requeue(v.ctx, "", 2, nil); !errors.Is(err, servicebus.ErrRequeueSubscription) {
		t.Errorf("Requeue into a subscription = %v, want ErrRequeueSubscription", err)
	}
	if n, err := v.p.Purge(v.ctx, 2); n != 2 || err != nil {
		t.Errorf("Purge = %d, %v", n, err)
	}
	dl := v.e
	dl.DeadLetterQueue = true
	if _, err := servicebus.NewPoisonAdmin(v.b.NewReceiver(dl.Path()), v.b.NewSender(v.e.Topic), nil, v.e, nil); err == nil {
		t.Error("NewPoisonAdmin with a sender to the topic succeeded")
	}
	if _, err := servicebus.NewPoisonAdmin(v.b.NewReceiver(dl.Path()), nil, nil, dl, nil); err == nil {
		t.Error("NewPoisonAdmin of a dead-letter queue succeeded")
	}
}

func TestPoisonCancelled(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	v.poisonN(2)
	ctx, cancel := context.WithCancel(v.ctx)
	cancel()
	if _, err := v.p.Requeue(ctx, "", 2, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Requeue with a cancelled context = %v", err)
	}
	if _, err := v.p.Purge(ctx, 2); !errors.Is(err, context.Canceled) {
		t.Errorf("Purge with a cancelled context = %v", err)
	}
	if v.count() != 2 || v.lockedIn(v.dlqPath()) != 0 || len(v.b.Messages(v.e.Queue)) != 0 {
		t.Error("a cancelled operation changed or locked something")
	}
}

func TestPoisonAfterClose(t *testing.T) {
	v := setupPoison(t, sbfake.Harness{})
	v.poisonN(1)
	if err := v.p.Close(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Count":   func() error { _, _, err := v.p.Count(v.ctx); return err }(),
		"List":    func() error { _, err := v.p.List(v.ctx, 1); return err }(),
		"Requeue": func() error { _, err := v.p.Requeue(v.ctx, "", 1, nil); return err }(),
		"Purge":   func() error { _, err := v.p.Purge(v.ctx, 1); return err }(),
	} {
		if !errors.Is(err, triggers.ErrClosed) || !errors.Is(err, servicebus.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if err := v.p.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if n := len(v.b.Messages(v.dlqPath())); n != 1 {
		t.Error("Close changed the dead-letter queue")
	}
}
