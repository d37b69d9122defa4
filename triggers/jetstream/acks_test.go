package jetstream_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
)

// TestAckFlushedOnClose: Complete does not wait for the server, and Close
// right after it does not lose the ack: the message is gone from the
// work-queue stream and never delivered again.
func TestAckFlushedOnClose(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	send(t, f, "once", nil)
	o := f.Options()
	d := f.Open(ctx, t, o)
	m := receiveN(t, d, 1, time.Second, 10*time.Second)[0]
	if err := d.Complete(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// A redelivery would come once the ack wait (1 s, the first lease) is
	// over: watch for twice that.
	d2 := f.Open(ctx, t, o)
	if ms := expectNothing(t, d2, time.Now().Add(2*time.Second), "after Complete and Close"); len(ms) > 0 {
		t.Fatalf("message delivered again after its ack was flushed: %q (DequeueCount %d)", ms[0].Body, ms[0].DequeueCount)
	}
	awaitAckPending(t, f, d2.Consumer(), 0)
	s, err := f.JS.Stream(ctx, f.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("stream holds %d messages after the ack, want 0", n)
	}
}

// TestAckLostWithConnection: an ack that never reaches the server (the
// connection drops with it unflushed) means a redelivery once the ack wait
// is over, not a loss.
func TestAckLostWithConnection(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	su, err := url.Parse(jstest.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := newDropProxy(t, su.Host)
	o := f.Options()
	o.NATSOptions = []nats.Option{nats.ReconnectWait(100 * time.Millisecond), nats.ReconnectJitter(0, 0)}
	d, err := jetstream.Open(ctx, "nats://"+p.addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	send(t, f, "survivor", nil)
	m := receiveN(t, d, 1, time.Second, 10*time.Second)[0]
	p.drop.Store(true) // what the client sends from now on is lost
	if err := d.Complete(ctx, m); err != nil {
		t.Fatalf("Complete (not awaited): %v", err)
	}
	select {
	case <-p.ackDropped:
	case <-ctx.Done():
		t.Fatal("the ack was never written")
	}
	p.cut()
	p.drop.Store(false)

	var again *triggers.Message
	for deadline := time.Now().Add(15 * time.Second); again == nil; {
		ms, err := d.Receive(ctx, 1, time.Second)
		if err == nil && len(ms) > 0 {
			again = ms[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the message whose ack was lost was not delivered again (last error %v)", err)
		}
		if err != nil {
			<-time.After(50 * time.Millisecond) // reconnecting: poll again shortly
		}
	}
	if string(again.Body) != "survivor" || again.DequeueCount != 2 {
		t.Fatalf("redelivered %q with DequeueCount %d, want survivor 2", again.Body, again.DequeueCount)
	}
	if err := d.Complete(ctx, again); err != nil {
		t.Fatal(err)
	}
}

// TestAckSync: with ack=sync Complete waits for the server's reply, and a
// consumer gone under it is reported as a lost lease.
func TestAckSync(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	u, err := url.Parse("nats://" + f.Subject + "?stream=" + f.Stream + "&ack=sync")
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(n string) (string, bool) { return jstest.URL(), n == jetstream.ServerURLSetting }
	drv, err := jetstream.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup})
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	send(t, f, "one", nil)
	send(t, f, "two", nil)
	ms := receiveN(t, drv, 2, 30*time.Second, 10*time.Second)
	if err := drv.Complete(ctx, ms[0]); err != nil {
		t.Fatal(err)
	}
	d := drv.(*jetstream.Driver)
	if err := f.JS.DeleteConsumer(ctx, f.Stream, d.Consumer()); err != nil {
		t.Fatal(err)
	}
	err = drv.Complete(ctx, ms[1])
	if !errors.Is(err, triggers.ErrLeaseLost) {
		t.Fatalf("Complete (ack=sync) after the consumer was deleted: %v, want ErrLeaseLost", err)
	}

	bad, _ := url.Parse("nats://" + f.Subject + "?stream=" + f.Stream + "&ack=maybe")
	if d, err := jetstream.OpenURL(ctx, bad, triggers.OpenOptions{Lookup: lookup}); err == nil {
		d.Close()
		t.Fatal("OpenURL with ack=maybe succeeded")
	}
}

// dropProxy is a TCP proxy to the NATS server that can drop what the
// client sends (drop) and cut its connections (cut); it keeps listening.
type dropProxy struct {
	addr       string
	target     string
	drop       atomic.Bool
	ackDropped chan struct{} // closed once a dropped write held an ack
	mu         sync.Mutex
	conns      []net.Conn
	dropped    []byte
}

func newDropProxy(t *testing.T, target string) *dropProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{addr: ln.Addr().String(), target: target, ackDropped: make(chan struct{})}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go p.upstream(c, s)
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

// upstream copies client to server, dropping what arrives while drop is set.
func (p *dropProxy) upstream(c, s net.Conn) {
	defer s.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 && p.drop.Load() {
			p.mu.Lock()
			had := bytes.Contains(p.dropped, []byte("+ACK"))
			p.dropped = append(p.dropped, buf[:n]...)
			if !had && bytes.Contains(p.dropped, []byte("+ACK")) {
				close(p.ackDropped)
			}
			p.mu.Unlock()
		} else if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *dropProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
