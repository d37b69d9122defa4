package jetstream_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
)

// ownServerURL returns the test server's URL with credentials it does not
// ask for, unique to the test: a server URL, and so a shared connection,
// that no other test uses.
func ownServerURL(t *testing.T) string {
	su, err := url.Parse(jstest.URL())
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	su.User = url.UserPassword("jobhost-test", hex.EncodeToString(b[:]))
	return su.String()
}

// TestSharedConnection: drivers, publishers and poison administrations on
// one server URL share one connection, which the last Close closes; a
// driver with NATSOptions has its own.
func TestSharedConnection(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	server := ownServerURL(t)
	o := triggers.OpenOptions{Connection: "MY_NATS", Lookup: func(n string) (string, bool) {
		return server, n == "MY_NATS"
	}}
	open := func() *jetstream.Driver {
		t.Helper()
		d, err := jetstream.OpenURL(ctx, f.URL(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d.(*jetstream.Driver)
	}
	d1, d2 := open(), open()
	nc := d1.Conn()
	if d2.Conn() != nc {
		t.Fatal("two drivers on one server URL have different connections")
	}
	pub, err := jetstream.OpenPublisherURL(ctx, f.URL(), o)
	if err != nil {
		t.Fatal(err)
	}
	adm, err := jetstream.OpenPoisonURL(ctx, f.URL(), o)
	if err != nil {
		t.Fatal(err)
	}
	own, err := jetstream.Open(ctx, server, jetstream.Options{Stream: f.Stream, Subject: f.Subject, NATSOptions: []nats.Option{nats.Name("own")}})
	if err != nil {
		t.Fatal(err)
	}
	if own.Conn() == nc {
		t.Error("a driver with NATSOptions shares the connection")
	}
	if err := own.Close(); err != nil || !own.Conn().IsClosed() {
		t.Errorf("Close of a driver with its own connection: %v, closed %v", err, own.Conn().IsClosed())
	}
	if nc.IsClosed() {
		t.Fatal("closing a driver with its own connection closed the shared one")
	}

	// Each Close gives back one reference: the others keep working.
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, []byte("one"), nil); err != nil {
		t.Fatalf("Publish after a driver closed: %v", err)
	}
	m := receiveN(t, d2, 1, 30*time.Second, 10*time.Second)[0]
	if err := d2.Complete(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if nc.IsClosed() {
		t.Fatal("the connection closed while a publisher and a poison administration used it")
	}
	if _, err := pub.Publish(ctx, []byte("two"), nil); err != nil {
		t.Fatalf("Publish after the drivers closed: %v", err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := adm.Count(ctx); err != nil {
		t.Fatalf("Count after the publisher closed: %v", err)
	}
	if err := adm.Close(); err != nil {
		t.Fatal(err)
	}
	if !nc.IsClosed() {
		t.Fatal("the last Close left the connection open")
	}
	// A new user gets a new connection.
	d3 := open()
	if d3.Conn() == nc || d3.Conn().IsClosed() {
		t.Error("a driver opened after the last Close got the closed connection")
	}
}

// TestOpenPublisherURL: the publisher creates a missing stream with
// CreateIfMissing but no consumer, returns the Nats-Msg-Id as the id when
// the message has one, refuses wildcard subjects, and after Close fails
// with ErrClosed.
func TestOpenPublisherURL(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	stream, subject := f.Stream+"_PUB", f.Subject+".pub"
	t.Cleanup(func() { f.DeleteStreams(t, stream) })
	u, _ := url.Parse("nats://" + subject + "?stream=" + stream)
	o := f.OpenOptions()
	if p, err := jetstream.OpenPublisherURL(ctx, u, o); err != nil {
		t.Fatal(err)
	} else {
		if _, err := p.Publish(ctx, []byte("x"), nil); err == nil {
			t.Error("Publish with no stream and no CreateIfMissing succeeded")
		}
		p.Close()
	}
	o.CreateIfMissing = true
	p, err := jetstream.OpenPublisherURL(ctx, u, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.(*jetstream.Publisher).Subject(); got != subject {
		t.Errorf("Subject() = %q, want %q", got, subject)
	}
	id, err := p.Publish(ctx, []byte("first"), nil)
	if err != nil || id != "1" {
		t.Fatalf("Publish creating the stream = %q, %v; want sequence 1", id, err)
	}
	if id, err := p.Publish(ctx, []byte("second"), map[string]string{jetstream.HeaderMsgID: "order-7"}); err != nil || id != "order-7" {
		t.Errorf("Publish with a Nats-Msg-Id = %q, %v; want order-7", id, err)
	}
	s, err := f.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream was not created: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 || info.State.Consumers != 0 {
		t.Errorf("created stream: %d messages, %d consumers; want 2, 0", info.State.Msgs, info.State.Consumers)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx, []byte("late"), nil); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}

	// The driver's own Publish also fails with ErrClosed after Close.
	d := f.Open(ctx, t, f.Options())
	d.Close()
	if _, err := d.Publish(ctx, []byte("late"), nil); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Driver.Publish after Close: %v, want ErrClosed", err)
	}

	for _, raw := range []string{"nats://" + f.Subject + ".*?stream=" + f.Stream, "nats://ORDERS?subject=a.>"} {
		wu, _ := url.Parse(raw)
		if _, err := jetstream.OpenPublisherURL(ctx, wu, f.OpenOptions()); err == nil || !strings.Contains(err.Error(), "wildcard") {
			t.Errorf("OpenPublisherURL(%s): %v, want a wildcard refusal", raw, err)
		}
	}
	if _, err := jetstream.OpenPublisherURL(ctx, f.URL(), triggers.OpenOptions{}); err == nil || !strings.Contains(err.Error(), jetstream.ServerURLSetting) {
		t.Errorf("OpenPublisherURL without a server URL: %v", err)
	}
}

// TestRegistered: the package registers nats:// with every opener.
func TestRegistered(t *testing.T) {
	s, err := triggers.Lookup(jetstream.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	if s.Subscription == nil || s.Publisher == nil || s.Poison == nil {
		t.Errorf("nats:// registration lacks an opener: %+v", s)
	}
}

// JetStream cannot delay a message before nats-server 2.12 (message
// scheduling), so neither publisher claims to: callers report that the
// broker cannot delay instead of sending at once.
func TestNotDelayPublisher(t *testing.T) {
	for _, p := range []any{&jetstream.Publisher{}, &jetstream.Driver{}} {
		if _, ok := p.(triggers.DelayPublisher); ok {
			t.Errorf("%T is a triggers.DelayPublisher", p)
		}
	}
}
