package rabbitmq_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/rabbitmq"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

func settings(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestOpenURL(t *testing.T) {
	const server = "amqp://u:p@127.0.0.1:5672/"
	for _, tc := range []struct {
		name    string
		url     string
		opts    triggers.OpenOptions
		queue   string
		poison  string
		wantErr []string // substrings of the error
	}{
		{name: "default", url: "rabbit://orders", opts: triggers.OpenOptions{Lookup: settings("RABBIT_SERVER_URL", server)},
			queue: "orders", poison: "orders-poison"},
		{name: "path", url: "rabbit://orders/eu", opts: triggers.OpenOptions{Lookup: settings("RABBIT_SERVER_URL", server)},
			queue: "orders/eu", poison: "orders/eu-poison"},
		{name: "connection setting", url: "rabbit://orders", opts: triggers.OpenOptions{Connection: "MyRabbit", Lookup: settings("MyRabbit", server)},
			queue: "orders", poison: "orders-poison"},
		{name: "poison param", url: "rabbit://orders?poison=bad-orders", opts: triggers.OpenOptions{Lookup: settings("RABBIT_SERVER_URL", server)},
			queue: "orders", poison: "bad-orders"},
		{name: "PoisonName wins", url: "rabbit://orders?poison=bad-orders", opts: triggers.OpenOptions{PoisonName: "p2", Lookup: settings("RABBIT_SERVER_URL", server)},
			queue: "orders", poison: "p2"},
		{name: "native", url: "rabbit://orders?deadletter=native", opts: triggers.OpenOptions{Lookup: settings("RABBIT_SERVER_URL", server)},
			queue: "orders", poison: `dead-letter exchange of queue "orders"`},
		{name: "unknown params", url: "rabbit://orders?prefetch_count=3&zz=1&poison=x", opts: triggers.OpenOptions{Lookup: settings("RABBIT_SERVER_URL", server)},
			wantErr: []string{"prefetch_count, zz"}},
		{name: "bad deadletter", url: "rabbit://orders?deadletter=yes", opts: triggers.OpenOptions{Lookup: settings("RABBIT_SERVER_URL", server)},
			wantErr: []string{"deadletter=native"}},
		{name: "no server url", url: "rabbit://orders", opts: triggers.OpenOptions{Lookup: settings()},
			wantErr: []string{`"RABBIT_SERVER_URL" is not set`}},
		{name: "connection setting missing", url: "rabbit://orders", opts: triggers.OpenOptions{Connection: "MyRabbit", Lookup: settings("RABBIT_SERVER_URL", server)},
			wantErr: []string{`"MyRabbit" is not set`}},
		{name: "not amqp", url: "rabbit://orders", opts: triggers.OpenOptions{Lookup: settings("RABBIT_SERVER_URL", "http://u:p4ssw0rd@h/")},
			wantErr: []string{"amqp or amqps", "RABBIT_SERVER_URL"}},
		{name: "no queue", url: "rabbit://", opts: triggers.OpenOptions{Lookup: settings("RABBIT_SERVER_URL", server)},
			wantErr: []string{"names no queue"}},
		{name: "scheme", url: "nats://orders", opts: triggers.OpenOptions{Lookup: settings("RABBIT_SERVER_URL", server)},
			wantErr: []string{`"nats"`}},
		{name: "poison is queue", url: "rabbit://orders?poison=orders", opts: triggers.OpenOptions{Lookup: settings("RABBIT_SERVER_URL", server)},
			wantErr: []string{"must be another queue"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			drv, err := rabbitmq.OpenURL(context.Background(), u, tc.opts)
			if len(tc.wantErr) > 0 {
				if err == nil {
					drv.Close()
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "p4ssw0rd") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer drv.Close()
			d := drv.(*rabbitmq.Driver)
			if d.Queue() != tc.queue || d.PoisonDestination() != tc.poison {
				t.Errorf("queue %q poison %q, want %q %q", d.Queue(), d.PoisonDestination(), tc.queue, tc.poison)
			}
			if w, ok := drv.(triggers.Waiter); !ok || !w.ReceiveWaits() {
				t.Error("not a triggers.Waiter that waits")
			}
		})
	}
}

// No error shows the password of the server URL.
func TestPasswordNeverInErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55"
	ctx := testCtx(t)
	host := "127.0.0.1:5672"
	if u, err := url.Parse(rabbittest.ServerURL()); err == nil && u.Host != "" {
		host = u.Host
	}
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		t.Logf("%s: %v", what, err)
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the password: %v", what, err)
		}
	}
	// Unparsable URLs: url.Parse itself would quote them whole.
	for _, raw := range []string{
		"amqp://guest:" + secret + "@" + host + ":notaport/",
		"amqp://guest:" + secret + "@ho st/",
		"amqp://guest:" + secret + "@%zz/",
		"amqps://guest:" + secret + "@" + host + "/?auth_mechanism=bogus",
	} {
		_, err := rabbitmq.Open(ctx, raw, "q", rabbitmq.Options{})
		if err == nil {
			// Parsed: then connecting must fail without showing it.
			d, _ := rabbitmq.Open(ctx, raw, "q", rabbitmq.Options{})
			_, err = d.Receive(ctx, 1, time.Minute)
			d.Close()
		}
		check("bad URL", err)
	}
	rabbittest.Require(t)
	// Wrong password against the real broker, and a closed port.
	for _, raw := range []string{
		"amqp://guest:" + secret + "@" + host + "/",
		"amqp://guest:" + secret + "@127.0.0.1:1/",
	} {
		d, err := rabbitmq.Open(ctx, raw, "q", rabbitmq.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.Receive(ctx, 1, time.Minute)
		d.Close()
		check("connect", err)
	}
	// Through OpenURL and a connection setting.
	u, _ := url.Parse("rabbit://q?zz=1")
	_, err := rabbitmq.OpenURL(ctx, u, triggers.OpenOptions{Connection: "R", Lookup: settings("R", "amqp://guest:"+secret+"@"+host+"/")})
	check("OpenURL", err)
	u, _ = url.Parse("rabbit://q")
	_, err = rabbitmq.OpenURL(ctx, u, triggers.OpenOptions{Connection: "R", Lookup: settings("R", "amqp://guest:"+secret+"@"+host+":x/")})
	check("OpenURL bad port", err)
	// A settle error on a delivery of a dropped connection.
	q := rabbittest.DeclareQueue(t, false, nil)
	pub := rabbittest.NewPublisher(t)
	if err := pub.Send(ctx, q, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	good, _ := url.Parse(rabbittest.ServerURL())
	d, err := rabbitmq.Open(ctx, good.String(), q, rabbitmq.Options{ReceiveWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m := receiveOne(ctx, t, d)
	rabbitmq.CutConnection(d)
	_, err = d.Receive(ctx, 1, time.Minute)
	if pw, ok := good.User.Password(); ok && len(pw) >= 3 && err != nil && strings.Contains(err.Error(), pw) {
		t.Errorf("Receive after a drop shows the password: %v", err)
	}
	err = d.Complete(ctx, m)
	if pw, ok := good.User.Password(); ok && len(pw) >= 3 && err != nil && strings.Contains(err.Error(), pw) {
		t.Errorf("Complete after a drop shows the password: %v", err)
	}
}
