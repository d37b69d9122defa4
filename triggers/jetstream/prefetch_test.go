package jetstream_test

import (
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
)

// expectFull checks that d, holding its Prefetch, gets nothing more within
// its ReceiveWait.
func expectFull(t *testing.T, d *jetstream.Driver, who string) {
	t.Helper()
	if ms, err := d.Receive(ctxFor(t), 10, 30*time.Second); err != nil || len(ms) != 0 {
		t.Fatalf("%s beyond its Prefetch: %d messages, %v; want none", who, len(ms), err)
	}
}

// TestPrefetchPerWorker: Prefetch bounds each worker, not the durable:
// two workers with Prefetch P hold 2P together, a message waiting out a
// retry delay takes no worker's room, and a worker refilling (pulling
// ahead) as completions free room never holds more than P.
func TestPrefetchPerWorker(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	o := f.Options()
	o.Prefetch, o.ReceiveWait = 3, 300*time.Millisecond
	d1, d2 := f.Open(ctx, t, o), f.Open(ctx, t, o)
	for range 20 {
		send(t, f, "m", nil)
	}
	const lease = 30 * time.Second
	held1 := receiveN(t, d1, 3, lease, 5*time.Second)
	held2 := receiveN(t, d2, 3, lease, 5*time.Second)
	expectFull(t, d1, "worker 1")
	expectFull(t, d2, "worker 2")
	awaitAckPending(t, f, d1.Consumer(), 6)

	if err := d1.Retry(ctx, held1[0], time.Minute); err != nil {
		t.Fatal(err)
	}
	receiveN(t, d1, 1, lease, 5*time.Second)
	expectFull(t, d1, "worker 1 after a delayed retry")

	for _, m := range held2 {
		if err := d2.Complete(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	receiveN(t, d2, 3, lease, 5*time.Second)
	expectFull(t, d2, "worker 2 after completing its messages")
	ci, err := f.ConsumerInfo(ctx, d1.Consumer())
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumAckPending != 7 || ci.NumPending == 0 {
		t.Errorf("consumer: %d ack pending, %d not yet delivered; want 7 (3 + 3 held, 1 in retry) and a backlog", ci.NumAckPending, ci.NumPending)
	}
}

// TestMaxAckPendingOption: an existing consumer's lower MaxAckPending (as
// older drivers set it, to one worker's Prefetch) is raised to the
// default, a higher one is kept, and max_ack_pending= sets it as given:
// the server then holds all workers together to it.
func TestMaxAckPendingOption(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	name := jetstream.DefaultConsumerName(f.Stream, f.Subject)
	limit := func() int {
		t.Helper()
		ci, err := f.ConsumerInfo(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return ci.Config.MaxAckPending
	}
	cfg := natsjs.ConsumerConfig{Durable: name, AckPolicy: natsjs.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 3, FilterSubject: f.Subject}
	if _, err := f.JS.CreateConsumer(ctx, f.Stream, cfg); err != nil {
		t.Fatal(err)
	}
	o := f.Options()
	o.Prefetch, o.ReceiveWait = 3, 300*time.Millisecond
	if _, err := f.Open(ctx, t, o).Receive(ctx, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != jetstream.DefaultMaxAckPending {
		t.Errorf("MaxAckPending 3 became %d; want it raised to %d", got, jetstream.DefaultMaxAckPending)
	}
	cfg.MaxAckPending = 2 * jetstream.DefaultMaxAckPending
	if _, err := f.JS.UpdateConsumer(ctx, f.Stream, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Open(ctx, t, o).Receive(ctx, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != cfg.MaxAckPending {
		t.Errorf("MaxAckPending %d became %d; want it kept", cfg.MaxAckPending, got)
	}

	u := f.URL()
	u.RawQuery += "&max_ack_pending=4"
	oo := f.OpenOptions()
	oo.Prefetch = 3
	var ds [2]triggers.Driver
	for i := range ds {
		d, err := jetstream.OpenURL(ctx, u, oo)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		ds[i] = d
	}
	for range 8 {
		send(t, f, "m", nil)
	}
	receiveN(t, ds[0], 3, time.Minute, 5*time.Second)
	if got := limit(); got != 4 {
		t.Errorf("with max_ack_pending=4: MaxAckPending %d", got)
	}
	receiveN(t, ds[1], 1, time.Minute, 5*time.Second)
	awaitAckPending(t, f, name, 4)
	for i, d := range ds {
		if ms, err := d.Receive(ctx, 3, time.Minute); err != nil || len(ms) != 0 {
			t.Errorf("worker %d beyond max_ack_pending=4: %d messages, %v; want none", i+1, len(ms), err)
		}
	}
}

// TestRefillAsSettled: while a backlog lasts, each settlement has the
// driver request the room it frees, so it is back at its Prefetch before
// Receive asks again.
func TestRefillAsSettled(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	o := f.Options()
	o.Prefetch, o.ReceiveWait = 3, 300*time.Millisecond
	d := f.Open(ctx, t, o)
	for range 10 {
		send(t, f, "m", nil)
	}
	for _, m := range receiveN(t, d, 3, time.Minute, 5*time.Second) {
		if err := d.Complete(ctx, m); err != nil {
			t.Fatal(err)
		}
		awaitAckPending(t, f, d.Consumer(), 3)
	}
	receiveN(t, d, 3, time.Minute, 5*time.Second)
	expectFull(t, d, "the worker after taking what it refilled")
}
