package jetstream_test

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
)

// deadLetter receives n messages from d and dead-letters them, as the host
// does.
func deadLetter(t *testing.T, d triggers.Driver, n int, reason string) []*triggers.Message {
	t.Helper()
	ms := receiveN(t, d, n, time.Minute, 10*time.Second)
	for _, m := range ms {
		if _, err := d.DeadLetter(ctxFor(t), m, reason); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
	}
	return ms
}

// openPoison opens the fixture's poison administration, closed when the
// test ends.
func openPoison(t *testing.T, f *jstest.Fixture) triggers.PoisonAdmin {
	t.Helper()
	p, err := jetstream.OpenPoisonURL(ctxFor(t), f.URL(), f.OpenOptions())
	if err != nil {
		t.Fatalf("OpenPoisonURL: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// poisonStreamCount returns how many messages the fixture's poison stream
// holds, as the server counts them.
func poisonStreamCount(t *testing.T, f *jstest.Fixture) uint64 {
	t.Helper()
	ctx := ctxFor(t)
	s, err := f.JS.Stream(ctx, f.PoisonStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func count(t *testing.T, p triggers.PoisonAdmin) int {
	t.Helper()
	n, _, err := p.Count(ctxFor(t))
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	return n
}

func requeue(t *testing.T, p triggers.PoisonAdmin, id string, limit int) (moved []*triggers.PoisonMessage, found bool) {
	t.Helper()
	found, err := p.Requeue(ctxFor(t), id, limit, func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			t.Errorf("Requeue %s: %v", m.ID, err)
			return
		}
		moved = append(moved, m)
	})
	if err != nil {
		t.Fatalf("Requeue(%q, %d): %v", id, limit, err)
	}
	return moved, found
}

// TestPoisonAdmin: listing reads the poison stream without touching it;
// requeue publishes each message to the trigger's subject without
// jobhost's and the server's headers, then deletes it from the poison
// stream; purge empties it. (The CLI's TestPoisonJetStream, on the API.)
func TestPoisonAdmin(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	d := f.Open(ctx, t, f.Options())
	// The first has its own Nats-Msg-Id, still in the trigger stream's
	// duplicate window when it is requeued: the copy must not carry it, or
	// the stream would drop it as a duplicate.
	for i, body := range []string{`{"id": 1}`, `{"id": 2}`} {
		h := map[string]string{"Tenant": "contoso", "X-Jobhost-Attempt": "5"}
		if i == 0 {
			h[jetstream.HeaderMsgID] = "order-1"
		}
		send(t, f, body, h)
	}
	p := openPoison(t, f)
	if n, exists, err := p.Count(ctx); n != 0 || exists || err != nil {
		t.Fatalf("Count before anything was poisoned = %d, %v, %v; want 0, false, nil", n, exists, err)
	}
	deadLetter(t, d, 2, "boom")

	if n, exists, err := p.Count(ctx); n != 2 || !exists || err != nil {
		t.Fatalf("Count = %d, %v, %v; want 2, true, nil", n, exists, err)
	}
	for range 2 { // twice: the first listing changed nothing
		ms, err := p.List(ctx, 10)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(ms) != 2 || ms[0].ID != "order-1" || ms[0].Reason != "boom" || string(ms[0].Body) != `{"id": 1}` || ms[0].Sequence == 0 ||
			ms[0].Properties["Tenant"] != "contoso" || ms[0].InsertionTime.IsZero() || ms[1].ID != f.Stream+":2" || ms[1].Sequence <= ms[0].Sequence {
			t.Fatalf("List: %+v", ms)
		}
		if n := poisonStreamCount(t, f); n != 2 {
			t.Fatalf("listing changed the poison stream: %d messages", n)
		}
	}
	if ms, err := p.List(ctx, 1); err != nil || len(ms) != 1 {
		t.Errorf("List(1) = %d messages, %v", len(ms), err)
	}
	if got, want := p.Source(), "subject "+f.Subject+" (stream "+f.Stream+")"; got != want {
		t.Errorf("Source() = %q, want %q", got, want)
	}
	if got, want := p.Poison(), "subject "+f.PoisonSubject+" (stream "+f.PoisonStream+")"; got != want {
		t.Errorf("Poison() = %q, want %q", got, want)
	}

	if moved, found := requeue(t, p, "order-1", 0); !found || len(moved) != 1 || moved[0].ID != "order-1" {
		t.Fatalf("Requeue(order-1) = found %v, moved %+v", found, moved)
	}
	if n := poisonStreamCount(t, f); n != 1 {
		t.Errorf("poison stream has %d, want 1", n)
	}
	if _, found := requeue(t, p, "order-1", 1); found {
		t.Error("Requeue found order-1 a second time")
	}
	if moved, _ := requeue(t, p, "", count(t, p)); len(moved) != 1 {
		t.Fatalf("Requeue(all) moved %d, want 1", len(moved))
	}
	if n := poisonStreamCount(t, f); n != 0 {
		t.Errorf("poison stream has %d", n)
	}
	got := receiveN(t, d, 2, time.Minute, 10*time.Second)
	if bodies := msgTexts(got); !slices.Equal(bodies, []string{`{"id": 1}`, `{"id": 2}`}) {
		t.Errorf("source has %q", bodies)
	}
	for _, m := range got {
		if m.DequeueCount != 1 || m.Properties["Tenant"] != "contoso" || m.Properties[jetstream.HeaderReason] != "" ||
			m.Properties[jetstream.HeaderSource] != "" || m.Properties[jetstream.HeaderMsgID] != "" || m.Properties["X-Jobhost-Attempt"] != "" {
			t.Errorf("requeued: DequeueCount %d, properties %v", m.DequeueCount, m.Properties)
		}
	}

	// Purge: those two fail again.
	for _, m := range got {
		if _, err := d.DeadLetter(ctx, m, "boom again"); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, p); n != 2 {
		t.Fatalf("Count = %d, want 2", n)
	}
	if n, err := p.Purge(ctx, 2); n != 2 || err != nil {
		t.Errorf("Purge = %d, %v; want 2, nil", n, err)
	}
	if n := poisonStreamCount(t, f); n != 0 {
		t.Errorf("poison stream has %d after purge", n)
	}
	if n, exists, err := p.Count(ctx); n != 0 || !exists || err != nil {
		t.Errorf("Count after purge = %d, %v, %v; want 0, true, nil", n, exists, err)
	}
}

// TestPoisonAdminCounted: List, Requeue and Purge act on what the last
// Count saw: a message poisoned since (here, one requeued and poisoned
// again) is left alone, and a limit takes the oldest.
func TestPoisonAdminCounted(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	d := f.Open(ctx, t, f.Options())
	for i := range 3 {
		send(t, f, fmt.Sprintf("m%d", i), nil)
	}
	deadLetter(t, d, 3, "boom")
	p := openPoison(t, f)
	if n := count(t, p); n != 3 {
		t.Fatalf("Count = %d, want 3", n)
	}
	ms, err := p.List(ctx, 10)
	if err != nil || len(ms) != 3 {
		t.Fatalf("List = %d, %v", len(ms), err)
	}
	// Requeue the first by its sequence; it fails again at once.
	if moved, found := requeue(t, p, strconv.FormatUint(ms[0].Sequence, 10), 0); !found || len(moved) != 1 || string(moved[0].Body) != "m0" {
		t.Fatalf("Requeue by sequence = found %v, moved %+v", found, moved)
	}
	again := deadLetter(t, d, 1, "boom again")
	if string(again[0].Body) != "m0" {
		t.Fatalf("received %q, want m0", again[0].Body)
	}
	if ms, err := p.List(ctx, 10); err != nil || len(poisonTexts(ms)) != 2 || !slices.Equal(poisonTexts(ms), []string{"m1", "m2"}) {
		t.Errorf("List after a message was poisoned again = %q, %v; want the counted m1, m2", poisonTexts(ms), err)
	}
	if moved, _ := requeue(t, p, "", 10); !slices.Equal(poisonTexts(moved), []string{"m1", "m2"}) {
		t.Errorf("Requeue(all) moved %q; want the counted m1, m2", poisonTexts(moved))
	}
	if n := poisonStreamCount(t, f); n != 1 {
		t.Errorf("poison stream has %d, want 1 (m0, poisoned after the count)", n)
	}
	deadLetter(t, d, 2, "boom")

	// Purge: a limit takes the oldest; what was poisoned since the count
	// stays.
	if n := count(t, p); n != 3 {
		t.Fatalf("Count = %d, want 3", n)
	}
	send(t, f, "late", nil)
	deadLetter(t, d, 1, "boom")
	if n, err := p.Purge(ctx, 1); n != 1 || err != nil {
		t.Fatalf("Purge(1) = %d, %v; want 1, nil", n, err)
	}
	if n, err := p.Purge(ctx, 10); n != 2 || err != nil {
		t.Fatalf("Purge(10) = %d, %v; want 2 (the rest counted), nil", n, err)
	}
	if ms, err := p.List(ctx, 10); err != nil || len(ms) != 0 {
		t.Errorf("List after purging the counted = %q, %v; want none", poisonTexts(ms), err)
	}
	if n := count(t, p); n != 1 {
		t.Fatalf("Count = %d, want 1 (late)", n)
	}
	if ms, err := p.List(ctx, 10); err != nil || !slices.Equal(poisonTexts(ms), []string{"late"}) {
		t.Errorf("List = %q, %v; want late", poisonTexts(ms), err)
	}
}

func msgTexts(ms []*triggers.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Body)
	}
	return out
}

func poisonTexts(ms []*triggers.PoisonMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Body)
	}
	return out
}

// TestPoisonAdminNeverLoses: a message that cannot go back (the trigger's
// stream is gone) stays in poison and is reported.
func TestPoisonAdminNeverLoses(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	d := f.Open(ctx, t, f.Options())
	send(t, f, "one", nil)
	deadLetter(t, d, 1, "boom")
	f.DeleteStreams(t, f.Stream)
	p := openPoison(t, f)
	count(t, p)
	var errs []error
	found, err := p.Requeue(ctx, "", 10, func(m *triggers.PoisonMessage, err error) { errs = append(errs, err) })
	if err != nil || found || len(errs) != 1 || errs[0] == nil || !strings.Contains(errs[0].Error(), "not copied") {
		t.Fatalf("Requeue to a missing stream = found %v, %v, per message %v; want one 'not copied' error", found, err, errs)
	}
	if n := poisonStreamCount(t, f); n != 1 {
		t.Errorf("poison stream has %d, want 1", n)
	}
}

// TestOpenPoisonURL: refusals, and methods after Close.
func TestOpenPoisonURL(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	o := f.OpenOptions()
	u, _ := url.Parse("nats://work-poison?stream=W")
	if _, err := jetstream.OpenPoisonURL(ctx, u, o); err == nil || !strings.Contains(err.Error(), "no poison subject") {
		t.Errorf("OpenPoisonURL(%s): %v, want no poison subject", u, err)
	}
	if _, err := jetstream.OpenPoisonURL(ctx, f.URL(), triggers.OpenOptions{}); err == nil || !strings.Contains(err.Error(), jetstream.ServerURLSetting) {
		t.Errorf("OpenPoisonURL without a server URL: %v", err)
	}
	o.PoisonName = "custom.dead"
	p, err := jetstream.OpenPoisonURL(ctx, f.URL(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Poison(); got != "subject custom.dead" {
		t.Errorf("Poison() with PoisonName = %q", got)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, _, checks["Count"] = p.Count(ctx)
	_, checks["List"] = p.List(ctx, 1)
	_, checks["Requeue"] = p.Requeue(ctx, "", 1, func(*triggers.PoisonMessage, error) {})
	_, checks["Purge"] = p.Purge(ctx, 1)
	for op, err := range checks {
		if !errors.Is(err, triggers.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// A wildcard trigger cannot be requeued to.
	wu, _ := url.Parse("nats://" + f.Subject + ".*?stream=" + f.Stream)
	wp, err := jetstream.OpenPoisonURL(ctx, wu, f.OpenOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer wp.Close()
	if _, err := wp.Requeue(ctx, "", 1, func(*triggers.PoisonMessage, error) {}); err == nil || !strings.Contains(err.Error(), "wildcards") {
		t.Errorf("Requeue for a wildcard subject: %v", err)
	}
}
