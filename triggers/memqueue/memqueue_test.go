package memqueue_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

func receive(t *testing.T, d *memqueue.Driver, n int) []*triggers.Message {
	t.Helper()
	ms, err := d.Receive(context.Background(), n, time.Minute)
	if err != nil || len(ms) != n {
		t.Fatalf("Receive = %d messages, %v; want %d", len(ms), err, n)
	}
	return ms
}

func openPoison(t *testing.T, b *memqueue.Broker, queue string) triggers.PoisonAdmin {
	t.Helper()
	p, err := b.OpenPoisonURL(context.Background(), &url.URL{Scheme: memqueue.Scheme, Host: queue}, triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// No delivery, poison copy or listing shares bytes or properties with the
// sender or with another holder: what BodiesPrivate promises the runtime.
func TestBytesOwnership(t *testing.T) {
	ctx := context.Background()
	b := memqueue.NewBroker()
	q := b.Queue("a")
	d := memqueue.New(q, b.Queue("a-poison"))
	defer d.Close()
	if !d.BodiesPrivate() {
		t.Fatal("BodiesPrivate = false")
	}

	body, props := []byte("hello"), map[string]string{"k": "v"}
	q.Send(body, props)
	copy(body, "XXXXX")
	props["k"] = "sender"
	m := receive(t, d, 1)[0]
	if string(m.Body) != "hello" || m.Properties["k"] != "v" {
		t.Fatalf("delivered %q %v after the sender changed its slice and map", m.Body, m.Properties)
	}
	copy(m.Body, "YYYYY")
	m.Properties["k"] = "holder"
	if err := d.Retry(ctx, m, 0); err != nil {
		t.Fatal(err)
	}
	m = receive(t, d, 1)[0]
	if string(m.Body) != "hello" || m.Properties["k"] != "v" || m.DequeueCount != 2 {
		t.Fatalf("redelivered %q %v (DequeueCount %d) after the first holder changed its copy", m.Body, m.Properties, m.DequeueCount)
	}
	copy(m.Body, "ZZZZZ")
	if _, err := d.DeadLetter(ctx, m, "boom"); err != nil {
		t.Fatal(err)
	}

	p := openPoison(t, b, "a")
	listed, err := p.List(ctx, 10)
	if err != nil || len(listed) != 1 {
		t.Fatalf("List = %d, %v", len(listed), err)
	}
	pm := listed[0]
	if string(pm.Body) != "hello" || pm.Properties["k"] != "v" || pm.Reason != "boom" || pm.DequeueCount != 2 || pm.InsertionTime.IsZero() {
		t.Fatalf("poison message %+v, want body hello, k=v, reason boom, DequeueCount 2", pm)
	}
	copy(pm.Body, "WWWWW")
	pm.Properties["k"] = "lister"
	if again, _ := p.List(ctx, 1); string(again[0].Body) != "hello" || again[0].Properties["k"] != "v" {
		t.Errorf("listed again %q %v after the lister changed its copy", again[0].Body, again[0].Properties)
	}

	// Publish copies too.
	buf := []byte("published")
	if _, err := d.Publish(ctx, buf, nil); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXX")
	if m := receive(t, d, 1)[0]; string(m.Body) != "published" {
		t.Errorf("published %q after the publisher changed its slice", m.Body)
	}
}

// Bodies of one batch share a buffer but cannot overwrite one another.
func TestBatchBodiesDoNotOverlap(t *testing.T) {
	b := memqueue.NewBroker()
	q := b.Queue("a")
	d := memqueue.New(q, nil)
	defer d.Close()
	q.Send([]byte("ab"), nil)
	q.Send([]byte("cd"), nil)
	ms := receive(t, d, 2)
	_ = append(ms[0].Body, "XY"...)
	if string(ms[1].Body) != "cd" {
		t.Errorf("second body %q after appending to the first", ms[1].Body)
	}
}

func TestPoisonAdmin(t *testing.T) {
	ctx := context.Background()
	b := memqueue.NewBroker()
	q := b.Queue("src")
	d := memqueue.New(q, b.Queue("src-poison"))
	defer d.Close()
	p := openPoison(t, b, "src")
	if p.Source() != "queue memqueue://src" || p.Poison() != "queue memqueue://src-poison" {
		t.Errorf("Source %q, Poison %q", p.Source(), p.Poison())
	}
	if n, exists, err := p.Count(ctx); n != 0 || exists || err != nil {
		t.Errorf("Count before anything was poisoned = %d, %v, %v; want 0, false, nil", n, exists, err)
	}
	for _, s := range []string{"a", "b", "c", "d"} {
		q.Send([]byte(s), nil)
	}
	for _, m := range receive(t, d, 4) {
		if _, err := d.DeadLetter(ctx, m, "reason "+string(m.Body)); err != nil {
			t.Fatal(err)
		}
	}
	listed, _ := p.List(ctx, 10)
	if len(listed) != 4 || listed[2].Reason != "reason c" || listed[2].DequeueCount != 1 {
		t.Fatalf("List: %+v", listed)
	}

	// By id, from the middle: the others keep their order.
	var moved []string
	done := func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			t.Errorf("Requeue %s: %v", m.ID, err)
		}
		moved = append(moved, string(m.Body))
	}
	if found, err := p.Requeue(ctx, listed[1].ID, 10, done); !found || err != nil {
		t.Fatalf("Requeue(id) = %v, %v", found, err)
	}
	if m := receive(t, d, 1)[0]; string(m.Body) != "b" || m.DequeueCount != 1 {
		t.Errorf("requeued %q DequeueCount %d", m.Body, m.DequeueCount)
	}
	if rest, _ := p.List(ctx, 10); len(rest) != 3 || string(rest[0].Body) != "a" || string(rest[1].Body) != "c" || string(rest[2].Body) != "d" {
		t.Errorf("left in poison: %v", rest)
	}

	// A message a receiver on the poison queue holds is counted and purged,
	// but neither listed nor requeued.
	pd := memqueue.New(b.Queue("src-poison"), nil)
	defer pd.Close()
	held := receive(t, pd, 1)[0]
	if n, exists, _ := p.Count(ctx); n != 3 || !exists {
		t.Errorf("Count = %d, %v; want 3, true", n, exists)
	}
	if found, err := p.Requeue(ctx, held.ID, 1, done); found || err != nil {
		t.Errorf("Requeue of a held message = %v, %v; want not found", found, err)
	}
	moved = nil
	if found, err := p.Requeue(ctx, "", 10, done); found || err != nil || len(moved) != 2 {
		t.Errorf("Requeue(limit 10) = %v, %v, moved %q; want c and d", found, err, moved)
	}
	receive(t, d, 2)
	if n, err := p.Purge(ctx, 5); n != 1 || err != nil {
		t.Errorf("Purge = %d, %v; want 1", n, err)
	}
	if err := pd.Complete(ctx, held); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("Complete of a purged message: %v, want ErrLeaseLost", err)
	}
	if n, exists, _ := p.Count(ctx); n != 0 || !exists {
		t.Errorf("Count after Purge = %d, %v; want 0, true", n, exists)
	}

	// A cancelled context stops Requeue before it moves anything.
	q.Send([]byte("e"), nil)
	if _, err := d.DeadLetter(ctx, receive(t, d, 1)[0], "x"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Requeue(cctx, "", 1, done); !errors.Is(err, context.Canceled) {
		t.Errorf("Requeue with a cancelled context: %v", err)
	}
	if n, err := p.Purge(ctx, 1); n != 1 || err != nil {
		t.Errorf("Purge = %d, %v; want 1", n, err)
	}
}

func TestPoisonAdminClosed(t *testing.T) {
	ctx := context.Background()
	p := openPoison(t, memqueue.NewBroker(), "q")
	for range 2 {
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	_, _, err := p.Count(ctx)
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, triggers.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
	check("Count", err)
	_, err = p.List(ctx, 1)
	check("List", err)
	_, err = p.Requeue(ctx, "", 1, func(*triggers.PoisonMessage, error) {})
	check("Requeue", err)
	_, err = p.Purge(ctx, 1)
	check("Purge", err)

	d := memqueue.New(memqueue.NewBroker().Queue("q"), nil)
	d.Close()
	_, err = d.Publish(ctx, []byte("x"), nil)
	check("Driver.Publish", err)
}

// The package registers memqueue:// with its three openers, on Default.
func TestRegistered(t *testing.T) {
	ctx := context.Background()
	s, err := triggers.Lookup(memqueue.Scheme)
	if err != nil || s.Subscription == nil || s.Publisher == nil || s.Poison == nil {
		t.Fatalf("Lookup(%q) = %+v, %v", memqueue.Scheme, s, err)
	}
	u, _ := url.Parse("memqueue://registered-test")
	pub, err := s.Publisher(ctx, u, triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	before := memqueue.Default.Queue("registered-test").Len() // -count > 1
	if _, err := pub.Publish(ctx, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if n := memqueue.Default.Queue("registered-test").Len(); n != before+1 {
		t.Errorf("Default queue has %d messages, want %d", n, before+1)
	}
	p, err := s.Poison(ctx, u, triggers.OpenOptions{PoisonName: "registered-dead"})
	if err != nil || p.Poison() != "queue memqueue://registered-dead" {
		t.Fatalf("Poison opener = %v, %v", p, err)
	}
	p.Close()
	for _, bad := range []string{"memqueue://", "memqueue://q?x=1"} {
		u, _ := url.Parse(bad)
		if _, err := s.Publisher(ctx, u, triggers.OpenOptions{}); err == nil {
			t.Errorf("Publisher(%s): no error", bad)
		}
		if _, err := s.Poison(ctx, u, triggers.OpenOptions{}); err == nil {
			t.Errorf("Poison(%s): no error", bad)
		}
	}
	if _, err := s.Poison(ctx, u, triggers.OpenOptions{PoisonName: "registered-test"}); err == nil {
		t.Error("Poison with the queue as its own poison queue: no error")
	}
}

// TestReleaseKeepsDequeueCount: a released message comes back at once with
// the same DequeueCount; Retry counts an attempt.
func TestReleaseKeepsDequeueCount(t *testing.T) {
	ctx := context.Background()
	u, _ := url.Parse("memqueue://release-test")
	drv, err := memqueue.NewBroker().OpenURL(ctx, u, triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := drv.(*memqueue.Driver)
	defer d.Close()
	if _, err := d.Publish(ctx, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	receive := func(want int64) *triggers.Message {
		t.Helper()
		ms, err := d.Receive(ctx, 1, time.Minute)
		if err != nil || len(ms) != 1 {
			t.Fatalf("Receive = %v, %v", ms, err)
		}
		if ms[0].DequeueCount != want {
			t.Fatalf("DequeueCount = %d, want %d", ms[0].DequeueCount, want)
		}
		return ms[0]
	}
	for range 2 {
		if err := d.Release(ctx, receive(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Retry(ctx, receive(1), 0); err != nil {
		t.Fatal(err)
	}
	receive(2)
}
