package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/redis"
	"github.com/jobhost/jobhost/triggers/redis/redistest"
)

const (
	arriveWithin = 10 * time.Second
	longLease    = time.Minute
)

// fixture is one fresh stream with its group, and a raw client.
type fixture struct {
	c      *goredis.Client
	stream string
	url    *url.URL
	lookup func(string) (string, bool)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	redistest.Require(t)
	f := &fixture{c: redistest.Client(t), stream: redistest.UniqueStream(t), lookup: redistest.Lookup(t)}
	f.url = redistest.StreamURL(f.stream)
	redistest.CreateGroup(t, f.c, f.stream, redis.DefaultGroup)
	return f
}

// open opens a driver on the fixture's stream, closed when the test ends.
func (f *fixture) open(t *testing.T, o triggers.OpenOptions) *redis.Driver {
	t.Helper()
	o.Lookup = f.lookup
	d, err := redis.OpenURL(context.Background(), f.url, o)
	if err != nil {
		t.Fatalf("OpenURL: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*redis.Driver)
}

func (f *fixture) send(t *testing.T, body string, props map[string]string) string {
	t.Helper()
	id, err := redistest.Send(context.Background(), f.c, f.stream, []byte(body), props)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return id
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// receiveN polls Receive until n messages arrived, within arriveWithin.
func receiveN(ctx context.Context, t *testing.T, d triggers.Driver, n int, lease time.Duration) []*triggers.Message {
	t.Helper()
	var got []*triggers.Message
	deadline := time.Now().Add(arriveWithin)
	for len(got) < n {
		ms, err := d.Receive(ctx, n-len(got), lease)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		got = append(got, ms...)
		if len(got) < n && time.Now().After(deadline) {
			t.Fatalf("received %d of %d messages within %v", len(got), n, arriveWithin)
		}
	}
	if len(got) > n {
		t.Fatalf("received %d messages, want %d", len(got), n)
	}
	return got
}

func receiveOne(ctx context.Context, t *testing.T, d triggers.Driver, lease time.Duration) *triggers.Message {
	t.Helper()
	return receiveN(ctx, t, d, 1, lease)[0]
}

// pending returns the group's pending entries.
func (f *fixture) pending(t *testing.T) []goredis.XPendingExt {
	t.Helper()
	p, err := f.c.XPendingExt(context.Background(), &goredis.XPendingExtArgs{Stream: f.stream, Group: redis.DefaultGroup, Start: "-", End: "+", Count: 1000}).Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	return p
}

// TestCompetingConsumers: two drivers on one stream and group each hold
// their own consumer; every entry goes to exactly one of them.
func TestCompetingConsumers(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	a, b := f.open(t, triggers.OpenOptions{}), f.open(t, triggers.OpenOptions{})
	if a.Consumer() == b.Consumer() {
		t.Fatalf("two drivers share the consumer name %q", a.Consumer())
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(a.Consumer(), host+"-") {
		t.Errorf("consumer %q does not start with the host name %q", a.Consumer(), host)
	}
	const n = 60
	for i := range n {
		f.send(t, fmt.Sprintf("m%02d", i), nil)
	}
	// A holds five; B then gets none of them.
	held := receiveN(ctx, t, a, 5, longLease)
	first := receiveN(ctx, t, b, 5, longLease)
	for _, m := range held {
		for _, o := range first {
			if m.ID == o.ID {
				t.Fatalf("entry %s delivered to both consumers", m.ID)
			}
		}
	}
	owners := map[string]string{}
	for _, p := range f.pending(t) {
		owners[p.ID] = p.Consumer
	}
	for _, m := range held {
		if owners[m.ID] != a.Consumer() {
			t.Errorf("entry %s pending for %q, want A's consumer %q", m.ID, owners[m.ID], a.Consumer())
		}
	}
	// Both drain the rest concurrently.
	var mu sync.Mutex
	seen := map[string]string{}
	for _, m := range held {
		seen[string(m.Body)] = "a"
	}
	for _, m := range first {
		seen[string(m.Body)] = "b"
	}
	var wg sync.WaitGroup
	for name, d := range map[string]*redis.Driver{"a": a, "b": b} {
		wg.Go(func() {
			deadline := time.Now().Add(arriveWithin)
			for time.Now().Before(deadline) {
				mu.Lock()
				done := len(seen) >= n
				mu.Unlock()
				if done {
					return
				}
				ms, err := d.Receive(ctx, 4, longLease)
				if err != nil {
					t.Errorf("Receive: %v", err)
					return
				}
				for _, m := range ms {
					mu.Lock()
					if prev, dup := seen[string(m.Body)]; dup {
						t.Errorf("%s delivered to %s and %s", m.Body, prev, name)
					}
					seen[string(m.Body)] = name
					mu.Unlock()
					if err := d.Complete(ctx, m); err != nil {
						t.Errorf("Complete: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d of %d messages delivered", len(seen), n)
	}
	for _, m := range held {
		if err := a.Complete(ctx, m); err != nil {
			t.Errorf("Complete: %v", err)
		}
	}
	for _, m := range first {
		if err := b.Complete(ctx, m); err != nil {
			t.Errorf("Complete: %v", err)
		}
	}
	if l := f.c.XLen(ctx, f.stream).Val(); l != 0 {
		t.Errorf("stream holds %d entries after all were completed, want 0 (Complete deletes)", l)
	}
	if p := f.pending(t); len(p) != 0 {
		t.Errorf("%d entries still pending", len(p))
	}
}

// TestLeaseExpiryTakeover: a lease that runs out lets another consumer
// take the entry over (XAUTOCLAIM) with the delivery counted; the first
// holder then gets ErrLeaseLost from every settlement.
func TestLeaseExpiryTakeover(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	a, b := f.open(t, triggers.OpenOptions{}), f.open(t, triggers.OpenOptions{})
	f.send(t, "job", map[string]string{"k": "v"})
	const lease = 1500 * time.Millisecond
	start := time.Now()
	m := receiveOne(ctx, t, a, lease)
	// B polls: nothing until the lease has run out.
	var got *triggers.Message
	deadline := time.Now().Add(arriveWithin)
	for got == nil {
		ms, err := b.Receive(ctx, 4, longLease)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) > 0 {
			if el := time.Since(start); el < lease-100*time.Millisecond {
				t.Fatalf("B got the entry %v after A's receive, before A's %v lease ran out", el, lease)
			}
			got = ms[0]
		} else if time.Now().After(deadline) {
			t.Fatal("B never took the entry over")
		}
	}
	if got.ID != m.ID || got.DequeueCount != 2 || string(got.Body) != "job" || got.Properties["k"] != "v" {
		t.Errorf("taken over: id %s count %d body %q props %v; want id %s count 2, body and props kept", got.ID, got.DequeueCount, got.Body, got.Properties, m.ID)
	}
	p := f.pending(t)
	if len(p) != 1 || p[0].Consumer != b.Consumer() || p[0].RetryCount != 2 {
		t.Errorf("pending = %+v, want the entry with B's consumer %q and 2 deliveries", p, b.Consumer())
	}
	for name, err := range map[string]error{
		"ExtendLease": a.ExtendLease(ctx, m, longLease),
		"Complete":    a.Complete(ctx, m),
		"Retry":       a.Retry(ctx, m, 0),
		"Release":     a.Release(ctx, m),
		"DeadLetter": func() error {
			_, err := a.DeadLetter(ctx, m, "late")
			return err
		}(),
	} {
		if !errors.Is(err, triggers.ErrLeaseLost) {
			t.Errorf("A's %s after B took the entry over: %v, want ErrLeaseLost", name, err)
		}
	}
	if err := b.Complete(ctx, got); err != nil {
		t.Fatalf("B's Complete: %v", err)
	}
}

// TestDeliveryCountAcrossRetries: the count goes on through Retry (at
// once and delayed, through the delayed set), lease expiry, and Release
// (which does not count), and reaches the poison entry; the message id,
// insertion time, body and properties stay.
func TestDeliveryCountAcrossRetries(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	d := f.open(t, triggers.OpenOptions{})
	body := "bin\x00ary:\xff\xfe 3:abc jh1;"
	props := map[string]string{"tenant": "contoso", "empty": ""}
	id := f.send(t, body, props)
	check := func(m *triggers.Message, want int64, step string) {
		t.Helper()
		if m.ID != id || m.DequeueCount != want || string(m.Body) != body || len(m.Properties) != 2 || m.Properties["tenant"] != "contoso" {
			t.Fatalf("%s: id %s count %d body %q props %v; want id %s count %d, body and props unchanged", step, m.ID, m.DequeueCount, m.Body, m.Properties, id, want)
		}
		if m.InsertionTime.IsZero() {
			t.Fatalf("%s: InsertionTime is zero", step)
		}
	}
	m := receiveOne(ctx, t, d, longLease)
	check(m, 1, "first delivery")
	inserted := m.InsertionTime

	if err := d.Retry(ctx, m, 0); err != nil {
		t.Fatal(err)
	}
	m = receiveOne(ctx, t, d, longLease)
	check(m, 2, "after Retry(0)")

	if err := d.Retry(ctx, m, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n := f.c.ZCard(ctx, f.stream+redis.DelayedSuffix).Val(); n != 1 {
		t.Errorf("delayed set holds %d after Retry(300ms), want 1", n)
	}
	if l := f.c.XLen(ctx, f.stream).Val(); l != 0 {
		t.Errorf("stream holds %d entries while the retry waits, want 0", l)
	}
	if p := f.pending(t); len(p) != 0 {
		t.Errorf("%d entries pending while the retry waits, want 0", len(p))
	}
	m = receiveOne(ctx, t, d, 500*time.Millisecond)
	check(m, 3, "after Retry(300ms)")
	if n := f.c.ZCard(ctx, f.stream+redis.DelayedSuffix).Val(); n != 0 {
		t.Errorf("delayed set holds %d after the retry was delivered, want 0", n)
	}

	// The 500 ms lease runs out: the same driver takes it over.
	m = receiveOne(ctx, t, d, longLease)
	check(m, 4, "after the lease ran out")

	if err := d.Release(ctx, m); err != nil {
		t.Fatal(err)
	}
	m = receiveOne(ctx, t, d, longLease)
	check(m, 4, "after Release")

	if err := d.ExtendLease(ctx, m, 2*longLease); err != nil {
		t.Fatal(err)
	}
	if err := d.Retry(ctx, m, 0); err != nil {
		t.Fatal(err)
	}
	m = receiveOne(ctx, t, d, longLease)
	check(m, 5, "after ExtendLease and Retry(0)")
	if !m.InsertionTime.Equal(inserted) {
		t.Errorf("InsertionTime changed from %v to %v", inserted, m.InsertionTime)
	}

	pid, err := d.DeadLetter(ctx, m, "too many attempts")
	if err != nil {
		t.Fatal(err)
	}
	xs := f.c.XRange(ctx, f.stream+redis.PoisonSuffix, "-", "+").Val()
	if len(xs) != 1 || xs[0].ID != pid {
		t.Fatalf("poison stream = %v, want one entry %s", xs, pid)
	}
	v := xs[0].Values
	want := map[string]string{"body": body, "tenant": "contoso", "empty": "", redis.FieldReason: "too many attempts",
		redis.FieldSource: f.stream, redis.FieldSourceID: id, redis.FieldDequeueCount: "5"}
	if len(v) != len(want) {
		t.Errorf("poison fields %v, want %v", v, want)
	}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("poison field %s = %q, want %q", k, v[k], w)
		}
	}
	if l := f.c.XLen(ctx, f.stream).Val(); l != 0 {
		t.Errorf("stream holds %d entries after DeadLetter, want 0", l)
	}

	// Requeued, it starts afresh: no bookkeeping fields.
	p, err := redis.OpenPoisonURL(ctx, f.url, triggers.OpenOptions{Lookup: f.lookup})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	found, err := p.Requeue(ctx, pid, 1, func(pm *triggers.PoisonMessage, err error) {
		if err != nil || pm.DequeueCount != 5 || pm.Reason != "too many attempts" || string(pm.Body) != body {
			t.Errorf("requeued %+v, %v", pm, err)
		}
	})
	if !found || err != nil {
		t.Fatalf("Requeue = %v, %v", found, err)
	}
	m = receiveOne(ctx, t, d, longLease)
	if m.DequeueCount != 1 || string(m.Body) != body || len(m.Properties) != 2 || m.ID == id {
		t.Errorf("requeued message: id %s count %d body %q props %v; want a new message, count 1", m.ID, m.DequeueCount, m.Body, m.Properties)
	}
	if err := d.Complete(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// TestReceiveIsBounded: Receive takes no more than max (and Prefetch),
// and nothing beyond what it returns is pending.
func TestReceiveIsBounded(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	d := f.open(t, triggers.OpenOptions{Prefetch: 3})
	for i := range 10 {
		f.send(t, fmt.Sprint(i), nil)
	}
	ms, err := d.Receive(ctx, 2, longLease)
	if err != nil || len(ms) != 2 {
		t.Fatalf("Receive(2) = %d, %v", len(ms), err)
	}
	if p := f.pending(t); len(p) != 2 {
		t.Errorf("%d pending after Receive(2), want 2: nothing read ahead", len(p))
	}
	more, err := d.Receive(ctx, 10, longLease)
	if err != nil || len(more) != 3 {
		t.Fatalf("Receive(10) with Prefetch 3 = %d, %v; want 3", len(more), err)
	}
	if p := f.pending(t); len(p) != 5 {
		t.Errorf("%d pending, want 5", len(p))
	}
}

// TestDelayedMovedBoundedPerReceive: due delayed messages are moved into
// the stream at most 100 per Receive, atomically with their removal from
// the set; a malformed member goes to the poison stream.
func TestDelayedMovedBoundedPerReceive(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	d := f.open(t, triggers.OpenOptions{})
	for i := range 150 {
		if _, err := d.PublishDelayed(ctx, fmt.Appendf(nil, "d%d", i), nil, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	delayed := f.stream + redis.DelayedSuffix
	f.c.ZAdd(ctx, delayed, goredis.Z{Score: 1, Member: "not jobhost's"})
	// Wait until all are due (server time): the newest score is in the past.
	deadline := time.Now().Add(arriveWithin)
	for {
		tm := f.c.Time(ctx).Val()
		last := f.c.ZRangeWithScores(ctx, delayed, -1, -1).Val()
		if len(last) == 1 && int64(last[0].Score) < tm.UnixMilli() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("delayed messages never fell due")
		}
		pause()
	}
	ms, err := d.Receive(ctx, 1, longLease)
	if err != nil || len(ms) != 1 {
		t.Fatalf("Receive(1) = %d, %v", len(ms), err)
	}
	// 100 moved: the malformed member (the oldest) to poison, 99 to the
	// stream, one of which Receive(1) delivered.
	if n := f.c.ZCard(ctx, delayed).Val(); n != 51 {
		t.Errorf("delayed set holds %d after one Receive, want 51 (100 moved)", n)
	}
	if l := f.c.XLen(ctx, f.stream).Val(); l != 99 {
		t.Errorf("stream holds %d, want 99", l)
	}
	receiveN(ctx, t, d, 149, longLease)
	if n := f.c.ZCard(ctx, delayed).Val(); n != 0 {
		t.Errorf("delayed set holds %d, want 0", n)
	}
	xs := f.c.XRange(ctx, f.stream+redis.PoisonSuffix, "-", "+").Val()
	if len(xs) != 1 || xs[0].Values["body"] != "not jobhost's" || !strings.Contains(fmt.Sprint(xs[0].Values[redis.FieldReason]), "malformed") {
		t.Errorf("poison stream = %v, want the malformed member", xs)
	}
}

// TestMissingStreamOrGroup: without CreateIfMissing a missing stream or
// group is ErrNotFound; with it, both are created.
func TestMissingStreamOrGroup(t *testing.T) {
	redistest.Require(t)
	ctx := ctxFor(t)
	c := redistest.Client(t)
	lookup := redistest.Lookup(t)
	open := func(stream string, create bool, query string) triggers.Driver {
		u := redistest.StreamURL(stream)
		u.RawQuery = query
		d, err := redis.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, CreateIfMissing: create})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	missing := redistest.UniqueStream(t)
	if _, err := open(missing, false, "").Receive(ctx, 1, longLease); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Receive on a missing stream: %v, want ErrNotFound", err)
	}
	noGroup := redistest.UniqueStream(t)
	redistest.Send(ctx, c, noGroup, []byte("x"), nil)
	if _, err := open(noGroup, false, "group=other").Receive(ctx, 1, longLease); !errors.Is(err, triggers.ErrNotFound) {
		t.Errorf("Receive with a missing group: %v, want ErrNotFound", err)
	}
	// With createQueues: the group reads from the start, so what was
	// published before is delivered.
	d := open(noGroup, true, "group=other")
	m := receiveOne(ctx, t, d, longLease)
	if string(m.Body) != "x" {
		t.Errorf("body %q", m.Body)
	}
	created := redistest.UniqueStream(t)
	if ms, err := open(created, true, "").Receive(ctx, 1, longLease); err != nil || len(ms) != 0 {
		t.Errorf("Receive with CreateIfMissing on a missing stream = %d, %v", len(ms), err)
	}
	if g, err := c.XInfoGroups(ctx, created).Result(); err != nil || len(g) != 1 || g[0].Name != redis.DefaultGroup {
		t.Errorf("groups of the created stream = %v, %v", g, err)
	}
	// A publisher with CreateIfMissing (outputs, the CLI's send) creates
	// the group too.
	pubbed := redistest.UniqueStream(t)
	p, err := redis.OpenPublisherURL(ctx, redistest.StreamURL(pubbed), triggers.OpenOptions{Lookup: lookup, CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Publish(ctx, []byte("y"), nil); err != nil {
		t.Fatal(err)
	}
	m = receiveOne(ctx, t, open(pubbed, false, ""), longLease)
	if string(m.Body) != "y" {
		t.Errorf("body %q", m.Body)
	}
}

// TestReceiveCancelledWhileWaiting: a Receive waiting on an empty stream
// returns at once when ctx ends, and takes nothing.
func TestReceiveCancelledWhileWaiting(t *testing.T) {
	f := newFixture(t)
	// A client name of its own, to find the driver's blocked XREAD in
	// CLIENT LIST.
	name := "jobhost-test-" + strings.ReplaceAll(f.stream[len(f.stream)-12:], ":", "")
	serverURL := redistest.URL() + "?client_name=" + name
	if strings.Contains(redistest.URL(), "?") {
		serverURL = redistest.URL() + "&client_name=" + name
	}
	f.lookup = func(k string) (string, bool) { return serverURL, k == redis.EnvServerURL }
	d := f.open(t, triggers.OpenOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var held []*triggers.Message // what the cancelled Receive returned
	start := time.Now()
	go func() {
		ms, err := d.Receive(ctx, 4, longLease)
		held = ms
		done <- err
	}()
	// Cancel once the Receive waits: poll the server for its blocked
	// XREAD (client list shows the command).
	deadline := time.Now().Add(arriveWithin)
	for !blockedIn(f.c.ClientList(context.Background()).Val(), name, "xread") {
		if time.Now().After(deadline) {
			t.Fatal("Receive never waited in XREAD")
		}
		pause()
	}
	sent := f.send(t, "late", nil) // wakes the XREAD, which takes nothing
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Receive: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Receive did not return within 1s of its context ending")
	}
	t.Logf("cancelled Receive returned after %v", time.Since(start))
	if len(held) > 0 {
		// The wake-up won the race with the cancel: the Receive returned
		// the message it took, as the contract allows ("with what it
		// holds"); it is not hidden, it is held.
		if len(held) != 1 || held[0].ID != sent || held[0].DequeueCount != 1 {
			t.Fatalf("the cancelled Receive returned %d messages, want the one sent", len(held))
		}
		return
	}
	m := receiveOne(ctxFor(t), t, d, longLease)
	if m.ID != sent || m.DequeueCount != 1 {
		t.Errorf("after the cancelled Receive: %s count %d, want %s count 1", m.ID, m.DequeueCount, sent)
	}
}

// TestCloseDeletesIdleConsumer: Close deletes the driver's consumer when
// it holds nothing, and keeps it (and its pending entries) otherwise.
func TestCloseDeletesIdleConsumer(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	idle, busy := f.open(t, triggers.OpenOptions{}), f.open(t, triggers.OpenOptions{})
	f.send(t, "done", nil)
	if err := idle.Complete(ctx, receiveOne(ctx, t, idle, longLease)); err != nil {
		t.Fatal(err)
	}
	f.send(t, "held", nil)
	receiveOne(ctx, t, busy, longLease)
	consumers := func() map[string]int64 {
		names := map[string]int64{}
		for _, c := range f.c.XInfoConsumers(ctx, f.stream, redis.DefaultGroup).Val() {
			names[c.Name] = c.Pending
		}
		return names
	}
	if n := consumers(); len(n) != 2 {
		t.Fatalf("consumers before Close: %v, want both drivers'", n)
	}
	idle.Close()
	busy.Close()
	names := consumers()
	if _, ok := names[idle.Consumer()]; ok {
		t.Errorf("consumer %s with nothing pending survived Close", idle.Consumer())
	}
	if len(names) != 1 || names[busy.Consumer()] != 1 {
		t.Errorf("consumers %v: want %s kept with its pending entry", names, busy.Consumer())
	}
	// A new driver takes the entry over when its lease runs out (made to
	// run out here: idle = the horizon).
	id := f.pending(t)[0].ID
	f.c.Do(ctx, "XCLAIM", f.stream, redis.DefaultGroup, busy.Consumer(), 0, id, "IDLE", redis.MaxLease.Milliseconds(), "JUSTID")
	m := receiveOne(ctx, t, f.open(t, triggers.OpenOptions{}), longLease)
	if string(m.Body) != "held" || m.DequeueCount != 2 {
		t.Errorf("taken over: body %q count %d, want held and 2", m.Body, m.DequeueCount)
	}
}

// TestLeaseLimits: a lease beyond MaxLease is refused; a lease of zero
// leaves the entry available at once.
func TestLeaseLimits(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	d := f.open(t, triggers.OpenOptions{})
	if _, err := d.Receive(ctx, 1, redis.MaxLease+time.Second); err == nil {
		t.Error("Receive with a lease over MaxLease succeeded")
	}
	f.send(t, "x", nil)
	m := receiveOne(ctx, t, d, redis.MaxLease)
	if err := d.ExtendLease(ctx, m, redis.MaxLease+time.Second); err == nil {
		t.Error("ExtendLease over MaxLease succeeded")
	}
	if err := d.ExtendLease(ctx, m, 0); err != nil {
		t.Fatal(err)
	}
	again := receiveOne(ctx, t, d, longLease)
	if again.ID != m.ID || again.DequeueCount != 2 {
		t.Errorf("after a zero lease: %s count %d", again.ID, again.DequeueCount)
	}
}

// TestPublishFields: Publish lays out the body field then the properties,
// refuses reserved names, and honours field=.
func TestPublishFields(t *testing.T) {
	redistest.Require(t)
	ctx := ctxFor(t)
	c := redistest.Client(t)
	stream := redistest.UniqueStream(t)
	u := redistest.StreamURL(stream)
	u.RawQuery = "field=payload"
	p, err := redis.OpenPublisherURL(ctx, u, triggers.OpenOptions{Lookup: redistest.Lookup(t), CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	id, err := p.Publish(ctx, []byte("b"), map[string]string{"z": "1", "a": "2"})
	if err != nil {
		t.Fatal(err)
	}
	raw := c.Do(ctx, "XRANGE", stream, id, id).Val()
	if fmt.Sprint(raw) != fmt.Sprintf("[[%s [payload b a 2 z 1]]]", id) {
		t.Errorf("entry = %v", raw)
	}
	for _, k := range []string{"payload", redis.FieldAttempt, redis.FieldID} {
		if _, err := p.Publish(ctx, []byte("b"), map[string]string{k: "x"}); err == nil {
			t.Errorf("Publish with property %q succeeded", k)
		}
	}
	d, err := redis.OpenURL(ctx, u, triggers.OpenOptions{Lookup: redistest.Lookup(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m := receiveOne(ctx, t, d, longLease)
	if string(m.Body) != "b" || m.Properties["a"] != "2" || m.Properties["z"] != "1" || m.ID != id {
		t.Errorf("received %s %q %v", m.ID, m.Body, m.Properties)
	}
}

// TestEntryWithoutBodyField: an entry another producer added without the
// body field is delivered with an empty body and all fields as properties.
func TestEntryWithoutBodyField(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	d := f.open(t, triggers.OpenOptions{})
	f.c.XAdd(ctx, &goredis.XAddArgs{Stream: f.stream, Values: []interface{}{"event", "signup", "user", "42"}})
	m := receiveOne(ctx, t, d, longLease)
	if len(m.Body) != 0 || m.Properties["event"] != "signup" || m.Properties["user"] != "42" {
		t.Errorf("body %q props %v", m.Body, m.Properties)
	}
	if err := d.Retry(ctx, m, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	m = receiveOne(ctx, t, d, longLease)
	if len(m.Body) != 0 || len(m.Properties) != 2 || m.DequeueCount != 2 {
		t.Errorf("after a delayed retry: body %q props %v count %d", m.Body, m.Properties, m.DequeueCount)
	}
}

// TestEntryDeletedWhileHeld: an entry deleted under its holder (XDEL) is
// reported lost on settlement and leaves the pending list.
func TestEntryDeletedWhileHeld(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	d := f.open(t, triggers.OpenOptions{})
	f.send(t, "x", nil)
	m := receiveOne(ctx, t, d, longLease)
	f.c.XDel(ctx, f.stream, m.ID)
	if err := d.Retry(ctx, m, 0); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("Retry of a deleted entry: %v, want ErrLeaseLost", err)
	}
	if p := f.pending(t); len(p) != 0 {
		t.Errorf("pending = %v, want none", p)
	}
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	env := func(vals map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := vals[k]; return v, ok }
	}
	for _, tc := range []struct {
		url    string
		o      triggers.OpenOptions
		stream string
		poison string
		err    string
	}{
		{url: "redis://orders", stream: "orders", poison: "orders-poison"},
		{url: "redis:///app:orders", stream: "app:orders", poison: "app:orders-poison"},
		{url: "redis:///%7Borders%7D:q?poison=dead", stream: "{orders}:q", poison: "dead"},
		{url: "redis://a/b/", stream: "a/b/", poison: "a/b/-poison"},
		{url: "redis://orders/", stream: "orders", poison: "orders-poison"},
		{url: "redis://orders?poison=p", o: triggers.OpenOptions{PoisonName: "q"}, stream: "orders", poison: "q"},
		{url: "redis://orders?group=g&field=payload", stream: "orders", poison: "orders-poison"},
		{url: "redis://orders?topic=x", err: "unknown query parameter(s) topic"},
		{url: "redis://orders?group=", err: `parameter "group" must be given once`},
		{url: "redis://orders?field=jobhost-x", err: "body field"},
		{url: "redis://orders?poison=orders", err: "must be another key"},
		{url: "redis://localhost:6379/orders", err: "names a stream, not a server"},
		{url: "redis://user:secret@orders", err: "must not hold credentials"},
		{url: "redis://", err: "names no stream"},
		{url: "rabbit://orders", err: `URL scheme "rabbit"`},
		{url: "redis://orders", o: triggers.OpenOptions{Connection: "MyRedis"}, err: `app setting "MyRedis" is not set`},
		{url: "redis://orders", o: triggers.OpenOptions{Lookup: env(map[string]string{"R": "amqp://u:hunter22@h"}), Connection: "R"}, err: "scheme must be redis"},
		{url: "redis://orders", o: triggers.OpenOptions{Lookup: env(map[string]string{redis.EnvServerURL: "redis://u:hunter22@h:6379/x"})}, err: "invalid database number"},
		{url: "redis://orders", o: triggers.OpenOptions{Lookup: env(map[string]string{redis.EnvServerURL: "redis://:hunter22@h:6379/0?frob=1"})}, err: "unexpected option"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if tc.o.Lookup == nil {
				tc.o.Lookup = env(nil)
			}
			d, err := redis.OpenURL(ctx, u, tc.o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("OpenURL(%s) = %v, want an error containing %q", tc.url, err, tc.err)
				}
				if strings.Contains(err.Error(), "hunter22") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenURL(%s): %v", tc.url, err)
			}
			defer d.Close()
			rd := d.(*redis.Driver)
			if rd.Stream() != tc.stream || rd.PoisonDestination() != tc.poison {
				t.Errorf("stream %q poison %q, want %q and %q", rd.Stream(), rd.PoisonDestination(), tc.stream, tc.poison)
			}
		})
	}
}

// TestServerURLSetting: REDIS_SERVER_URL, or the connection named, or the
// default; a wrong password is reported without the password.
func TestServerURLSetting(t *testing.T) {
	redistest.Require(t)
	ctx := ctxFor(t)
	stream := redistest.UniqueStream(t)
	c := redistest.Client(t)
	redistest.CreateGroup(t, c, stream, redis.DefaultGroup)
	u := redistest.StreamURL(stream)
	for name, o := range map[string]triggers.OpenOptions{
		"default":    {Lookup: func(string) (string, bool) { return "", false }},
		"env":        {Lookup: redistest.Lookup(t)},
		"connection": {Lookup: func(k string) (string, bool) { return redistest.URL(), k == "Mine" }, Connection: "Mine"},
	} {
		if name == "default" && redistest.URL() != redis.DefaultServerURL {
			continue
		}
		d, err := redis.OpenURL(ctx, u, o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := d.Receive(ctx, 1, longLease); err != nil {
			t.Errorf("%s: Receive: %v", name, err)
		}
		d.Close()
	}
	bad := strings.Replace(redistest.URL(), "redis://", "redis://nobody:hunter22@", 1)
	d, err := redis.OpenURL(ctx, u, triggers.OpenOptions{Lookup: func(k string) (string, bool) { return bad, k == redis.EnvServerURL }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.Receive(ctx, 1, longLease)
	if err == nil || strings.Contains(err.Error(), "hunter22") || !strings.Contains(err.Error(), "nobody:xxxxx@") {
		t.Errorf("Receive with a wrong password: %v; want an error without the password", err)
	}
}

// TestSharedClient: drivers and publishers of one server URL share one
// client; closing one leaves the others working.
func TestSharedClient(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	a := f.open(t, triggers.OpenOptions{})
	p, err := redis.OpenPublisherURL(ctx, f.url, triggers.OpenOptions{Lookup: f.lookup})
	if err != nil {
		t.Fatal(err)
	}
	b := f.open(t, triggers.OpenOptions{})
	a.Close()
	if _, err := p.Publish(ctx, []byte("x"), nil); err != nil {
		t.Fatalf("Publish after another user's Close: %v", err)
	}
	m := receiveOne(ctx, t, b, longLease)
	p.Close()
	if err := b.Complete(ctx, m); err != nil {
		t.Fatalf("Complete after another user's Close: %v", err)
	}
	if _, err := a.Receive(ctx, 1, longLease); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Receive after Close: %v", err)
	}
	if _, err := a.Publish(ctx, []byte("x"), nil); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
}

// TestBinaryBodyThroughDelayedSet: the delayed set's encoding keeps any
// bytes (NUL, ':', invalid UTF-8, the encoding's own prefix).
func TestBinaryBodyThroughDelayedSet(t *testing.T) {
	f := newFixture(t)
	ctx := ctxFor(t)
	d := f.open(t, triggers.OpenOptions{})
	body := make([]byte, 0, 512)
	for i := range 256 {
		body = append(body, byte(i), ':')
	}
	body = append(body, "jh1;4:abcd"...)
	props := map[string]string{"k:1": "v\x00:2", "": "empty name"}
	if _, err := d.PublishDelayed(ctx, body, props, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(ctx, t, d, longLease)
	if !bytes.Equal(m.Body, body) || m.Properties["k:1"] != "v\x00:2" || m.Properties[""] != "empty name" || m.DequeueCount != 1 {
		t.Fatalf("delayed publish: body %q props %q count %d", m.Body, m.Properties, m.DequeueCount)
	}
	if err := d.Retry(ctx, m, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	again := receiveOne(ctx, t, d, longLease)
	if !bytes.Equal(again.Body, body) || again.Properties["k:1"] != "v\x00:2" || again.DequeueCount != 2 || again.ID != m.ID {
		t.Fatalf("delayed retry: body %q props %q count %d id %s (was %s)", again.Body, again.Properties, again.DequeueCount, again.ID, m.ID)
	}
}

// pause is the interval between polls of the server.
func pause() { time.Sleep(10 * time.Millisecond) }

// blockedIn reports whether CLIENT LIST output shows the client named
// name blocked in cmd.
func blockedIn(list, name, cmd string) bool {
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		if slices.Contains(f, "name="+name) && slices.Contains(f, "cmd="+cmd) && slices.ContainsFunc(f, func(s string) bool {
			return strings.HasPrefix(s, "flags=") && strings.Contains(s, "b")
		}) {
			return true
		}
	}
	return false
}
