package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// receiveN polls d until it has n messages, within the given time.
func receiveN(t *testing.T, d triggers.Driver, n int, lease, within time.Duration) []*triggers.Message {
	t.Helper()
	ctx := ctxFor(t)
	var got []*triggers.Message
	deadline := time.Now().Add(within)
	for len(got) < n {
		ms, err := d.Receive(ctx, n-len(got), lease)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		got = append(got, ms...)
		if len(got) < n && time.Now().After(deadline) {
			t.Fatalf("received %d of %d messages within %v", len(got), n, within)
		}
	}
	if len(got) > n {
		t.Fatalf("received %d messages, want %d", len(got), n)
	}
	return got
}

// expectNothing polls d until the given time and fails on any message
// received before then. Messages from a poll that ends after it are
// returned (the caller holds them).
func expectNothing(t *testing.T, d triggers.Driver, until time.Time, why string) []*triggers.Message {
	t.Helper()
	ctx := ctxFor(t)
	for time.Now().Before(until) {
		ms, err := d.Receive(ctx, 16, 30*time.Second)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(ms) > 0 {
			if time.Now().Before(until) {
				t.Fatalf("%s: got message %s (DequeueCount %d) %v too early", why, ms[0].ID, ms[0].DequeueCount, time.Until(until))
			}
			return ms
		}
	}
	return nil
}

func send(t *testing.T, f *jstest.Fixture, body string, props map[string]string) {
	t.Helper()
	if err := f.Send(ctxFor(t), []byte(body), props); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// TestDequeueCount checks that DequeueCount is the server's NumDelivered:
// one more after each Retry, and after a worker abandons a message and
// another opens the same durable consumer.
func TestDequeueCount(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	lease := time.Second
	d1 := f.Open(ctx, t, f.Options())
	send(t, f, "counted", nil)
	m := receiveN(t, d1, 1, lease, 10*time.Second)[0]
	if m.DequeueCount != 1 {
		t.Fatalf("first delivery: DequeueCount = %d, want 1", m.DequeueCount)
	}
	id := m.ID
	if err := d1.Retry(ctx, m, 0); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	m = receiveN(t, d1, 1, lease, 10*time.Second)[0]
	if m.DequeueCount != 2 || m.ID != id {
		t.Fatalf("after Retry: message %s DequeueCount %d, want %s and 2", m.ID, m.DequeueCount, id)
	}
	// The worker goes away without settling: a new one gets it when the
	// ack wait (= lease) ends.
	if err := d1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d1.Complete(ctx, m); err == nil {
		t.Error("Complete after Close succeeded, want an error")
	}
	d2 := f.Open(ctx, t, f.Options())
	m = receiveN(t, d2, 1, lease, 10*time.Second)[0]
	if m.DequeueCount != 3 || m.ID != id {
		t.Fatalf("after reopening: message %s DequeueCount %d, want %s and 3", m.ID, m.DequeueCount, id)
	}
	if err := d2.Complete(ctx, m); err != nil {
		t.Fatalf("Complete: %v", err)
	}
}

// TestRetryDelay checks NakWithDelay, with a delay longer than AckWait.
func TestRetryDelay(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	d := f.Open(ctx, t, f.Options())
	send(t, f, "later", nil)
	m := receiveN(t, d, 1, time.Second, 10*time.Second)[0] // AckWait becomes 1 s
	const delay = 2500 * time.Millisecond
	start := time.Now()
	if err := d.Retry(ctx, m, delay); err != nil {
		t.Fatalf("Retry(%v): %v", delay, err)
	}
	if err := d.Retry(ctx, m, 0); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("second Retry: %v, want ErrLeaseLost", err)
	}
	held := expectNothing(t, d, start.Add(delay-300*time.Millisecond), "after Retry with delay")
	if len(held) == 0 {
		held = receiveN(t, d, 1, 30*time.Second, 10*time.Second)
	}
	again := held[0]
	if el := time.Since(start); el < delay-300*time.Millisecond || el > delay+3*time.Second {
		t.Errorf("redelivered after %v, want about %v", el, delay)
	}
	if again.DequeueCount != 2 {
		t.Errorf("DequeueCount = %d, want 2", again.DequeueCount)
	}
	if err := d.Complete(ctx, again); err != nil {
		t.Fatalf("Complete: %v", err)
	}
}

// TestDeadLetter checks the poison copy: same body and headers, a reason,
// the source, and the original removed.
func TestDeadLetter(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	d := f.Open(ctx, t, f.Options())
	if got := d.PoisonDestination(); got != f.PoisonSubject || !strings.HasSuffix(got, "-poison") {
		t.Errorf("PoisonDestination() = %q, want %q", got, f.PoisonSubject)
	}
	body := []byte("bin\x00\xff{\"a\":1}\r\n  ")
	msg := &nats.Msg{Subject: f.Subject, Data: body, Header: nats.Header{
		"x-trace":              {"abc 123"},
		"Multi":                {"one", "two"},
		"Nats-Expected-Stream": {f.Stream}, // publish control: not copied
	}}
	if _, err := f.JS.PublishMsg(ctx, msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
	m := receiveN(t, d, 1, 30*time.Second, 10*time.Second)[0]
	pid, err := d.DeadLetter(ctx, m, "bad input:\nline two")
	if err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	ps, err := f.PoisonMessages(ctx)
	if err != nil || len(ps) != 1 {
		t.Fatalf("poison stream %s: %d messages, %v; want 1", f.PoisonStream, len(ps), err)
	}
	p := ps[0]
	if p.Subject != f.PoisonSubject {
		t.Errorf("poison subject = %q, want %q", p.Subject, f.PoisonSubject)
	}
	if !bytes.Equal(p.Data, body) {
		t.Errorf("poison body = %q, want %q", p.Data, body)
	}
	for _, k := range []string{"x-trace", "Multi"} {
		if !slices.Equal(p.Header[k], msg.Header[k]) {
			t.Errorf("poison header %s = %q, want %q", k, p.Header[k], msg.Header[k])
		}
	}
	want := map[string]string{
		jetstream.HeaderReason:         "bad input: line two",
		jetstream.HeaderSource:         f.Stream + "/" + d.Consumer(),
		jetstream.HeaderSourceSequence: "1",
		jetstream.HeaderMsgID:          f.Stream + ":1",
		"Nats-Expected-Stream":         "",
	}
	for k, v := range want {
		if got := p.Header.Get(k); got != v {
			t.Errorf("poison header %s = %q, want %q", k, got, v)
		}
	}
	if pid != f.Stream+":1" {
		t.Errorf("DeadLetter returned %q, want %q", pid, f.Stream+":1")
	}
	if err := d.Complete(ctx, m); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("Complete after DeadLetter: %v, want ErrLeaseLost", err)
	}
	// The original is gone (Term on a work-queue stream deletes it).
	ci, err := f.ConsumerInfo(ctx, d.Consumer())
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumAckPending != 0 || ci.NumPending != 0 {
		t.Errorf("consumer after DeadLetter: %d ack pending, %d pending; want 0, 0", ci.NumAckPending, ci.NumPending)
	}

	// A message with its own Nats-Msg-Id keeps it, and it is the ID.
	send(t, f, "second", map[string]string{jetstream.HeaderMsgID: "order-42"})
	m = receiveN(t, d, 1, 30*time.Second, 10*time.Second)[0]
	if m.ID != "order-42" {
		t.Errorf("ID = %q, want the Nats-Msg-Id order-42", m.ID)
	}
	if pid, err = d.DeadLetter(ctx, m, ""); err != nil || pid != "order-42" {
		t.Fatalf("DeadLetter = %q, %v; want order-42", pid, err)
	}
	ps, _ = f.PoisonMessages(ctx)
	if len(ps) != 1 || string(ps[0].Data) != "second" || ps[0].Header.Get(jetstream.HeaderMsgID) != "order-42" || ps[0].Header.Get(jetstream.HeaderReason) != "" {
		t.Errorf("second poison message: %d messages, %+v", len(ps), ps)
	}
}

// TestDeadLetterLoop refuses a poison subject the consumer itself reads.
func TestDeadLetterLoop(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	s, err := f.JS.Stream(ctx, f.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Subjects = append(cfg.Subjects, f.Subject+"-p")
	if _, err := f.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	d := f.Open(ctx, t, jetstream.Options{Stream: f.Stream, PoisonSubject: f.Subject + "-p"})
	send(t, f, "x", nil)
	m := receiveN(t, d, 1, 30*time.Second, 10*time.Second)[0]
	if _, err := d.DeadLetter(ctx, m, "loop"); err == nil || !strings.Contains(err.Error(), "delivered again") {
		t.Fatalf("DeadLetter to a subject the consumer reads: %v, want a refusal", err)
	}
	if err := d.Complete(ctx, m); err != nil {
		t.Fatalf("Complete after refused DeadLetter: %v", err)
	}
}

// TestExtendLease checks that a lease extended beyond AckWait holds, both
// with one long extension (kept by the driver's InProgress) and with the
// runtime's pattern of short renewals.
func TestExtendLease(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		renew time.Duration // 0: one extension of 6 s
	}{{"Long", 0}, {"Renewals", 400 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t)
			f := jstest.NewFixture(ctx, t)
			d1, d2 := f.Open(ctx, t, f.Options()), f.Open(ctx, t, f.Options())
			send(t, f, "slow", nil)
			m := receiveN(t, d1, 1, time.Second, 10*time.Second)[0] // AckWait 1 s
			start := time.Now()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if tc.renew == 0 {
				if err := d1.ExtendLease(ctx, m, 6*time.Second); err != nil {
					t.Fatalf("ExtendLease: %v", err)
				}
				if nv := time.Until(m.NextVisibleTime); nv < 5*time.Second || nv > 6*time.Second {
					t.Errorf("NextVisibleTime in %v, want about 6s", nv)
				}
			} else {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						case <-time.After(tc.renew):
						}
						if err := d1.ExtendLease(ctx, m, time.Second); err != nil {
							t.Errorf("ExtendLease: %v", err)
							return
						}
					}
				})
			}
			// Another worker sees nothing, well past AckWait.
			if held := expectNothing(t, d2, start.Add(3*time.Second), "while the lease is extended"); len(held) > 0 {
				t.Fatalf("worker 2 got the message %v after the start of an extended lease", time.Since(start))
			}
			close(stop)
			wg.Wait()
			if err := d1.Complete(ctx, m); err != nil {
				t.Fatalf("Complete after %v: %v", time.Since(start), err)
			}
			// Complete does not wait for the server (acks are not awaited):
			// the ack is seen within a moment.
			ci, err := f.ConsumerInfo(ctx, d1.Consumer())
			for deadline := time.Now().Add(5 * time.Second); err == nil && ci.NumAckPending != 0 && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond) // polling the server: not synchronisation
				ci, err = f.ConsumerInfo(ctx, d1.Consumer())
			}
			if err != nil {
				t.Fatal(err)
			}
			if ci.Config.AckWait != time.Second || ci.NumAckPending != 0 || ci.NumRedelivered != 0 {
				t.Errorf("consumer: AckWait %v, %d ack pending, %d redelivered; want 1s, 0, 0", ci.Config.AckWait, ci.NumAckPending, ci.NumRedelivered)
			}
		})
	}
}

// TestLeaseLostElsewhere: after the lease ends and another worker has the
// message, the first worker's settlements fail with ErrLeaseLost and do
// not touch the server.
func TestLeaseLostElsewhere(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	d1, d2 := f.Open(ctx, t, f.Options()), f.Open(ctx, t, f.Options())
	send(t, f, "x", nil)
	m := receiveN(t, d1, 1, time.Second, 10*time.Second)[0]
	m2 := receiveN(t, d2, 1, 30*time.Second, 10*time.Second)[0]
	if m2.ID != m.ID || m2.DequeueCount != 2 {
		t.Fatalf("worker 2 got %s (DequeueCount %d), want %s (2)", m2.ID, m2.DequeueCount, m.ID)
	}
	stale := *m
	for name, err := range map[string]error{
		"ExtendLease": d1.ExtendLease(ctx, &stale, time.Minute),
		"Retry":       d1.Retry(ctx, &stale, 0),
		"Complete":    d1.Complete(ctx, m),
	} {
		if !errors.Is(err, triggers.ErrLeaseLost) {
			t.Errorf("%s by worker 1: %v, want ErrLeaseLost", name, err)
		}
	}
	if _, err := d1.DeadLetter(ctx, m, "x"); !errors.Is(err, triggers.ErrLeaseLost) {
		t.Errorf("DeadLetter by worker 1: %v, want ErrLeaseLost", err)
	}
	if err := d2.Complete(ctx, m2); err != nil {
		t.Fatalf("Complete by worker 2: %v", err)
	}
}

// TestExistingConsumer: an existing durable keeps its AckWait (unless
// Options.AckWait is set) and its MaxAckPending is raised to the default
// (TestMaxAckPendingOption has the rest); an unusable one is refused with
// a clear error.
func TestExistingConsumer(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	name := jetstream.DefaultConsumerName(f.Stream, f.Subject)
	if _, err := f.JS.CreateConsumer(ctx, f.Stream, natsjs.ConsumerConfig{
		Durable: name, AckPolicy: natsjs.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 1000, FilterSubject: f.Subject,
	}); err != nil {
		t.Fatal(err)
	}
	d := f.Open(ctx, t, f.Options())
	if _, err := d.Receive(ctx, 1, 3*time.Second); err != nil {
		t.Fatalf("Receive: %v", err)
	}
	ci, err := f.ConsumerInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if ci.Config.AckWait != time.Minute || ci.Config.MaxAckPending != jetstream.DefaultMaxAckPending {
		t.Errorf("updated consumer: AckWait %v MaxAckPending %d; want 1m, %d", ci.Config.AckWait, ci.Config.MaxAckPending, jetstream.DefaultMaxAckPending)
	}
	o := f.Options()
	o.AckWait = 5 * time.Second
	if _, err := f.Open(ctx, t, o).Receive(ctx, 1, 3*time.Second); err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if ci, err = f.ConsumerInfo(ctx, name); err != nil || ci.Config.AckWait != 5*time.Second {
		t.Errorf("with Options.AckWait 5s: consumer AckWait %v, %v", ci.Config.AckWait, err)
	}

	// Work-queue streams allow explicit ack only: use a limits stream.
	o = jetstream.Options{Stream: f.Stream + "_LIMITS", Subject: f.Subject + ".limits", Consumer: "ackall"}
	if err := jstest.CreateStream(ctx, f.JS, natsjs.StreamConfig{Name: o.Stream, Subjects: []string{o.Subject}, Storage: natsjs.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.DeleteStreams(t, o.Stream) })
	if _, err := f.JS.CreateConsumer(ctx, o.Stream, natsjs.ConsumerConfig{Durable: o.Consumer, AckPolicy: natsjs.AckAllPolicy, FilterSubject: o.Subject}); err != nil {
		t.Fatal(err)
	}
	d2 := f.Open(ctx, t, o)
	if _, err := d2.Receive(ctx, 1, time.Second); err == nil || !strings.Contains(err.Error(), "ack policy") {
		t.Errorf("Receive on an AckAll consumer: %v, want a refusal naming the ack policy", err)
	}
}

// TestCreateIfMissing creates the stream and consumer from a URL.
func TestCreateIfMissing(t *testing.T) {
	t.Parallel()
	jstest.Require(t)
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t) // for a connection and cleanup helpers
	stream, subject := f.Stream+"_NEW", f.Subject+".new"
	t.Cleanup(func() { f.DeleteStreams(t, stream) })
	u, _ := url.Parse("nats://" + subject + "?stream=" + stream)
	lookup := func(n string) (string, bool) {
		if n == "MY_NATS" {
			return jstest.URL(), true
		}
		return "", false
	}
	drv, err := jetstream.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, Connection: "MY_NATS", Prefetch: 5, CreateIfMissing: true})
	if err != nil {
		t.Fatalf("OpenURL: %v", err)
	}
	defer drv.Close()
	if w, ok := drv.(triggers.Waiter); !ok || !w.ReceiveWaits() {
		t.Error("driver is not a Waiter that waits")
	}
	if ms, err := drv.Receive(ctx, 1, 3*time.Second); err != nil || len(ms) != 0 {
		t.Fatalf("Receive on a created stream: %d, %v", len(ms), err)
	}
	s, err := f.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream was not created: %v", err)
	}
	sc := s.CachedInfo().Config
	if !slices.Equal(sc.Subjects, []string{subject}) || sc.Retention != natsjs.WorkQueuePolicy || sc.Storage != natsjs.FileStorage {
		t.Errorf("created stream: subjects %v, retention %v, storage %v", sc.Subjects, sc.Retention, sc.Storage)
	}
	c, err := f.JS.Consumer(ctx, stream, jetstream.DefaultConsumerName(stream, subject))
	if err != nil {
		t.Fatalf("consumer was not created: %v", err)
	}
	cc := c.CachedInfo().Config
	if cc.AckPolicy != natsjs.AckExplicitPolicy || cc.AckWait != 3*time.Second || cc.MaxAckPending != jetstream.DefaultMaxAckPending || cc.FilterSubject != subject || cc.MaxDeliver != -1 {
		t.Errorf("created consumer: %+v", cc)
	}
	if _, err := f.JS.Publish(ctx, subject, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	var got []*triggers.Message
	for deadline := time.Now().Add(10 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
		got, err = drv.Receive(ctx, 5, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || string(got[0].Body) != "hello" || got[0].Source != stream+"/"+jetstream.DefaultConsumerName(stream, subject) {
		t.Fatalf("got %v", got)
	}
	if err := drv.Complete(ctx, got[0]); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialsNotInErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55"
	ctx := ctxFor(t)
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the credentials: %v", what, err)
		}
	}
	// Unreachable servers: Open succeeds (it connects in the background),
	// Receive reports the failure.
	for _, u := range []string{
		"nats://alice:" + secret + "@127.0.0.1:1",
		"nats://" + secret + "@127.0.0.1:1", // a token
		"alice:" + secret + "@127.0.0.1:1",
		"nats://alice:" + secret + "@127.0.0.1:1, nats://bob:" + secret + "@127.0.0.1:2",
	} {
		d, err := jetstream.Open(ctx, u, jetstream.Options{Stream: "S"})
		if err != nil {
			check("Open", err)
			continue
		}
		_, err = d.Receive(ctx, 1, time.Second)
		check("Receive from an unreachable server", err)
		d.Close()
	}
	// Invalid URLs.
	for _, u := range []string{
		"nats://alice:" + secret + "@127.0.0.1:notaport",
		"nats://alice:" + secret + "@[::1",
		"http://alice:" + secret + "@127.0.0.1:4222",
		"nats://alice:" + secret + "@127.0.0.1:4222/\x7f",
	} {
		d, err := jetstream.Open(ctx, u, jetstream.Options{Stream: "S"})
		if err == nil {
			d.Close()
		}
		check("Open("+strings.ReplaceAll(u, secret, "***")+")", err)
	}
	// Through OpenURL and an app setting.
	tu, _ := url.Parse("nats://orders?stream=ORDERS")
	_, err := jetstream.OpenURL(ctx, tu, triggers.OpenOptions{Lookup: func(string) (string, bool) {
		return "nats://alice:" + secret + "@127.0.0.1:bad", true
	}})
	check("OpenURL", err)
	if err != nil && !strings.Contains(err.Error(), jetstream.ServerURLSetting) {
		t.Errorf("OpenURL error does not name the setting: %v", err)
	}
	// A real server, with credentials it does not ask for.
	jstest.Require(t)
	su, err := url.Parse(jstest.URL())
	if err != nil {
		t.Fatal(err)
	}
	su.User = url.UserPassword("alice", secret)
	d, err := jetstream.Open(ctx, su.String(), jetstream.Options{Stream: "JOBHOST_TEST_NO_SUCH_STREAM"})
	if err != nil {
		check("Open", err)
		return
	}
	defer d.Close()
	for deadline := time.Now().Add(5 * time.Second); !d.Conn().IsConnected() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	_, err = d.Receive(ctx, 1, time.Second)
	check("Receive", err)
}

// proxy is a TCP proxy to the NATS server that can be cut and restored.
type proxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
}

func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) start() {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
}

// TestReconnect: while the server is unreachable Receive fails; when it is
// back, Receive works again on the same driver.
func TestReconnect(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	su, err := url.Parse(jstest.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, su.Host)
	o := f.Options()
	o.NATSOptions = []nats.Option{nats.ReconnectWait(100 * time.Millisecond), nats.ReconnectJitter(0, 0)}
	d, err := jetstream.Open(ctx, "nats://"+p.addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	send(t, f, "before", nil)
	m := receiveN(t, d, 1, 30*time.Second, 10*time.Second)[0]
	if err := d.Complete(ctx, m); err != nil {
		t.Fatal(err)
	}

	p.stop()
	var downErr error
	for deadline := time.Now().Add(10 * time.Second); downErr == nil && time.Now().Before(deadline); {
		_, downErr = d.Receive(ctx, 1, 30*time.Second)
	}
	if downErr == nil {
		t.Fatal("Receive kept succeeding with the server unreachable")
	}
	t.Logf("while down: %v", downErr)
	send(t, f, "after", nil)
	p.start()

	var got []*triggers.Message
	var errs int
	for deadline := time.Now().Add(15 * time.Second); len(got) == 0; {
		ms, err := d.Receive(ctx, 1, 30*time.Second)
		if err != nil {
			errs++
			time.Sleep(50 * time.Millisecond)
		}
		got = ms
		if time.Now().After(deadline) {
			t.Fatalf("no message after the server came back (%d errors, last %v)", errs, err)
		}
	}
	if string(got[0].Body) != "after" {
		t.Fatalf("got %q, want %q", got[0].Body, "after")
	}
	if err := d.Complete(ctx, got[0]); err != nil {
		t.Fatalf("Complete after reconnecting: %v", err)
	}
}

func TestOpenURL(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	lookup := func(n string) (string, bool) {
		if n == jetstream.ServerURLSetting {
			return "nats://127.0.0.1:4222", true
		}
		return "", false
	}
	for _, tc := range []struct {
		url, stream, subject, consumer, poison string
	}{
		{"nats://orders?stream=ORDERS", "ORDERS", "orders", "orders", "orders-poison"},
		{"nats://orders.*?stream=ORDERS&consumer=billing&poison=orders-failed", "ORDERS", "orders.*", "billing", "orders-failed"},
		{"nats://orders.>?stream=ORDERS", "ORDERS", "orders.>", "orders_#", "ORDERS-poison"},
		{"nats://ORDERS", "ORDERS", "", "jobhost-ORDERS", "ORDERS-poison"},
		{"nats://ORDERS?subject=orders.new", "ORDERS", "orders.new", "orders_new", "orders.new-poison"},
		{"nats://work-poison?stream=W", "W", "work-poison", "work-poison", ""},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		drv, err := jetstream.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup})
		if err != nil {
			t.Errorf("OpenURL(%s): %v", tc.url, err)
			continue
		}
		d := drv.(*jetstream.Driver)
		if d.Stream() != tc.stream || d.Subject() != tc.subject || d.Consumer() != tc.consumer || d.PoisonDestination() != tc.poison {
			t.Errorf("OpenURL(%s) = stream %q subject %q consumer %q poison %q; want %q %q %q %q", tc.url,
				d.Stream(), d.Subject(), d.Consumer(), d.PoisonDestination(), tc.stream, tc.subject, tc.consumer, tc.poison)
		}
		d.Close()
	}

	for _, tc := range []struct {
		url  string
		o    triggers.OpenOptions
		want string
	}{
		{"nats://orders?stream=ORDERS&foo=1", triggers.OpenOptions{Lookup: lookup}, `unknown parameter "foo"`},
		{"nats://orders?stream=A&stream=B", triggers.OpenOptions{Lookup: lookup}, "given once"},
		{"nats://u:p@orders?stream=S", triggers.OpenOptions{Lookup: lookup}, "credentials"},
		{"nats://orders:4222?stream=S", triggers.OpenOptions{Lookup: lookup}, "not a server"},
		{"nats://orders/x?stream=S", triggers.OpenOptions{Lookup: lookup}, "path"},
		{"nats://orders?stream=S&subject=x", triggers.OpenOptions{Lookup: lookup}, "drop subject="},
		{"nats://orders?stream=BAD.NAME", triggers.OpenOptions{Lookup: lookup}, "stream name"},
		{"nats://a..b?stream=S", triggers.OpenOptions{Lookup: lookup}, "empty token"},
		{"nats://?stream=S", triggers.OpenOptions{Lookup: lookup}, "names no subject"},
		{"nats://orders?stream=S&poison=p.*", triggers.OpenOptions{Lookup: lookup}, "wildcards"},
		{"nats://orders?stream=S&poison=p", triggers.OpenOptions{Lookup: lookup, PoisonName: "q"}, "contradicts"},
		{"nats://orders?stream=S", triggers.OpenOptions{Lookup: lookup, Prefetch: -1}, "negative"},
		{"nats://orders?stream=S&max_ack_pending=0", triggers.OpenOptions{Lookup: lookup}, "max_ack_pending=0"},
		{"nats://orders?stream=S&max_ack_pending=-2", triggers.OpenOptions{Lookup: lookup}, "max_ack_pending=-2"},
		{"nats://orders?stream=S&max_ack_pending=many", triggers.OpenOptions{Lookup: lookup}, "max_ack_pending=many"},
		{"nats://orders?stream=S", triggers.OpenOptions{}, `app setting "NATS_SERVER_URL" is not set`},
		{"nats://orders?stream=S", triggers.OpenOptions{Lookup: lookup, Connection: "MY_NATS"}, `app setting "MY_NATS" is not set`},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		d, err := jetstream.OpenURL(ctx, u, tc.o)
		if err == nil {
			d.Close()
			t.Errorf("OpenURL(%s) succeeded, want an error containing %q", tc.url, tc.want)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenURL(%s): %v, want an error containing %q", tc.url, err, tc.want)
		}
	}

	// PoisonName sets the poison subject.
	u, _ := url.Parse("nats://orders?stream=ORDERS")
	drv, err := jetstream.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, PoisonName: "dead.orders"})
	if err != nil {
		t.Fatal(err)
	}
	if got := drv.PoisonDestination(); got != "dead.orders" {
		t.Errorf("PoisonDestination() = %q, want dead.orders", got)
	}
	drv.Close()
}

// awaitAckPending polls the consumer until n messages are delivered and
// unacknowledged (the server has no event for it).
func awaitAckPending(t *testing.T, f *jstest.Fixture, consumer string, n int) {
	t.Helper()
	ctx := ctxFor(t)
	for {
		ci, err := f.ConsumerInfo(ctx, consumer)
		if err != nil {
			t.Fatal(err)
		}
		if ci.NumAckPending == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("consumer %s: %d ack pending, want %d", consumer, ci.NumAckPending, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestPullAhead: after a full batch from a backlog the driver pulls the
// next one ahead; messages waiting in the driver outlive AckWait without
// a redelivery, and their lease starts when Receive hands them out.
func TestPullAhead(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	o := f.Options()
	o.Prefetch, o.AckWait = 8, time.Second
	d := f.Open(ctx, t, o)
	for range 12 {
		send(t, f, "m", nil)
	}
	first := receiveN(t, d, 4, 30*time.Second, 10*time.Second)
	awaitAckPending(t, f, d.Consumer(), 8) // 4 handed out, 4 waiting in the driver
	// What is under test is time passing: three AckWaits.
	time.Sleep(3 * time.Second)
	start := time.Now()
	next, err := d.Receive(ctx, 4, 30*time.Second)
	if err != nil || len(next) != 4 {
		t.Fatalf("Receive after waiting: %d messages, %v; want the 4 pulled ahead", len(next), err)
	}
	for _, m := range next {
		if m.DequeueCount != 1 {
			t.Errorf("message %s: DequeueCount %d; want 1 (no redelivery while it waited)", m.ID, m.DequeueCount)
		}
		if m.NextVisibleTime.Before(start.Add(29 * time.Second)) {
			t.Errorf("message %s: lease ends %v after hand-out; want 30s", m.ID, m.NextVisibleTime.Sub(start))
		}
	}
	ci, err := f.ConsumerInfo(ctx, d.Consumer())
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumRedelivered != 0 {
		t.Errorf("consumer: %d redelivered; want 0", ci.NumRedelivered)
	}
	for _, m := range append(first, next...) {
		if err := d.Complete(ctx, m); err != nil {
			t.Errorf("Complete %s: %v", m.ID, err)
		}
	}
	receiveN(t, d, 4, 30*time.Second, 10*time.Second)
}

// TestCloseGivesBackWaiting: Close hands messages pulled ahead back at
// once (another worker gets them long before AckWait), while messages
// handed out stay leased to the closed worker until AckWait.
func TestCloseGivesBackWaiting(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	o := f.Options()
	o.Prefetch, o.AckWait = 4, 30*time.Second
	d1 := f.Open(ctx, t, o)
	for range 6 {
		send(t, f, "m", nil)
	}
	held := receiveN(t, d1, 2, 30*time.Second, 10*time.Second)
	awaitAckPending(t, f, d1.Consumer(), 4)
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := f.Open(ctx, t, o)
	got := receiveN(t, d2, 2, 30*time.Second, 10*time.Second)
	for _, m := range got {
		if m.DequeueCount != 2 || m.ID == held[0].ID || m.ID == held[1].ID {
			t.Errorf("worker 2 got message %s (DequeueCount %d); want one of those worker 1 pulled ahead, delivered a second time", m.ID, m.DequeueCount)
		}
	}
}
