package jetstream

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// TestAcquire: one connection per server URL, counted; the last release
// closes it; extra options get a connection of their own. No server is
// needed: connections are made in the background.
func TestAcquire(t *testing.T) {
	const server = "nats://user:pa55word@127.0.0.1:1"
	a, err := acquire(server, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := acquire(server, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a.nc != b.nc {
		t.Fatal("two acquires of one server URL have different connections")
	}
	if a.server != "nats://REDACTED@127.0.0.1:1" {
		t.Errorf("server = %q", a.server)
	}
	own, err := acquire(server, []nats.Option{nats.Name("own")})
	if err != nil {
		t.Fatal(err)
	}
	if own.nc == a.nc {
		t.Error("an acquire with extra options shares the connection")
	}
	own.release()
	if !own.nc.IsClosed() {
		t.Error("the last release of a private connection left it open")
	}
	a.release()
	if a.nc.IsClosed() {
		t.Fatal("the first of two releases closed the connection")
	}
	b.release()
	if !a.nc.IsClosed() {
		t.Fatal("the last release left the connection open")
	}
	c, err := acquire(server, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.release()
	if c == a || c.nc.IsClosed() {
		t.Fatal("an acquire after the last release got the closed connection")
	}

	// A connection closed under its users is replaced for new ones.
	c.nc.Close()
	d, err := acquire(server, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.release()
	if d == c || d.nc.IsClosed() {
		t.Fatal("an acquire got a connection closed by someone else")
	}

	// A link releases once, however often it is asked.
	var l link
	if err := l.dial(server, nil); err != nil {
		t.Fatal(err)
	}
	if l.conn != d {
		t.Error("a link did not share the connection")
	}
	l.release()
	l.release()
	if d.nc.IsClosed() {
		t.Error("a link released twice")
	}

	if _, err := acquire("http://127.0.0.1:1", nil); err == nil {
		t.Error("acquire of an http URL succeeded")
	}
}
