package servicebus_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/servicebus"
	"github.com/jobhost/jobhost/triggers/servicebus/sbfake"
)

const (
	secret     = "c2VjcmV0LWtleS1UT1BTRUNSRVQ="
	connString = "Endpoint=sb://jobhost-test.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=" + secret
)

var _ triggers.OpenURLFunc = servicebus.OpenURL

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		url  string
		want servicebus.Entity
		opts servicebus.Options
	}{
		{"azuresb://orders", servicebus.Entity{Queue: "orders"}, servicebus.Options{}},
		{"azuresb://Orders.v2", servicebus.Entity{Queue: "Orders.v2"}, servicebus.Options{}},
		{"azuresb://sales/orders", servicebus.Entity{Queue: "sales/orders"}, servicebus.Options{}},
		{"azuresb://events?subscription=billing", servicebus.Entity{Topic: "events", Subscription: "billing"}, servicebus.Options{}},
		{"AZURESB://events/eu?subscription=billing", servicebus.Entity{Topic: "events/eu", Subscription: "billing"}, servicebus.Options{}},
		{"azuresb://orders?listener_timeout=500ms&max_recv_batch_size=8", servicebus.Entity{Queue: "orders"},
			servicebus.Options{ReceiveWait: 500 * time.Millisecond, MaxBatch: 8}},
		{"azuresb://orders?max_auto_lock_renewal_duration=00:10:00&max_held_retry_delay=30s", servicebus.Entity{Queue: "orders"},
			servicebus.Options{MaxAutoLockRenewalDuration: 10 * time.Minute, MaxHeldRetryDelay: 30 * time.Second}},
		{"azuresb://orders?max_auto_lock_renewal_duration=-1s&max_held_retry_delay=-00:00:01", servicebus.Entity{Queue: "orders"},
			servicebus.Options{MaxAutoLockRenewalDuration: -time.Second, MaxHeldRetryDelay: -time.Second}},
		{"azuresb://orders?max_auto_lock_renewal_duration=1.00:00:00", servicebus.Entity{Queue: "orders"},
			servicebus.Options{MaxAutoLockRenewalDuration: 24 * time.Hour}},
	} {
		e, o, err := servicebus.ParseURL(mustURL(t, c.url))
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if e != c.want || o != c.opts {
			t.Errorf("%s: got %+v %+v, want %+v %+v", c.url, e, o, c.want, c.opts)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ url, want string }{
		{"rabbit://orders", "scheme"},
		{"azuresb:orders", "want azuresb://"},
		{"azuresb://", "no queue or topic name"},
		{"azuresb:///", "no queue or topic name"},
		{"azuresb://orders?subscription=", "empty subscription"},
		{"azuresb://orders?subscription=a&subscription=b", "given 2 times"},
		{"azuresb://orders?sub=billing", `unknown query parameter "sub"`},
		{"azuresb://orders?listener_timeout=forever", "listener_timeout"},
		{"azuresb://orders?listener_timeout=5m", "listener_timeout"},
		{"azuresb://orders?max_recv_batch_size=0", "max_recv_batch_size"},
		{"azuresb://orders?max_auto_lock_renewal_duration=300", "max_auto_lock_renewal_duration"},
		{"azuresb://orders?max_auto_lock_renewal_duration=0s", "max_auto_lock_renewal_duration"},
		{"azuresb://orders#frag", "fragment"},
		{"azuresb://orders:5671", "port"},
		{"azuresb://user:" + secret + "@orders", "credentials"},
		{"azuresb://orders/$deadletterqueue", "sub-queues"},
		{"azuresb://sales/or%20ders", "only letters"},
		{"azuresb://events?subscription=a/b", "subscription"},
		{"azuresb://orders?a=%zz", "bad query"},
	} {
		u, err := url.Parse(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		_, _, err = servicebus.ParseURL(u)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the secret: %v", c.url, err)
		}
	}
}

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestOpenURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		url      string
		o        triggers.OpenOptions
		dlq      string
		maxBatch int
	}{
		{"queue, connection string from setting", "azuresb://orders", triggers.OpenOptions{Connection: "SB", Lookup: lookup(map[string]string{"SB": connString})}, "orders/$deadletterqueue", 0},
		{"subscription, gocloud variable", "azuresb://events?subscription=billing", triggers.OpenOptions{Lookup: lookup(map[string]string{"SERVICEBUS_CONNECTION_STRING": connString})}, "events/Subscriptions/billing/$deadletterqueue", 0},
		{"identity, fullyQualifiedNamespace", "azuresb://orders?max_recv_batch_size=8", triggers.OpenOptions{Connection: "SB", Prefetch: 4, Lookup: lookup(map[string]string{"SB__fullyQualifiedNamespace": "jobhost-test.servicebus.windows.net"})}, "orders/$deadletterqueue", 4},
		{"identity, host in setting", "azuresb://orders", triggers.OpenOptions{Connection: "SB", Prefetch: 16, PoisonName: "orders/$DeadLetterQueue", Lookup: lookup(map[string]string{"SB": "sb://jobhost-test.servicebus.windows.net/"})}, "orders/$deadletterqueue", 16},
	} {
		d, err := servicebus.OpenURL(ctx, mustURL(t, c.url), c.o)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		sd := d.(*servicebus.Driver)
		if got := d.PoisonDestination(); got != c.dlq {
			t.Errorf("%s: PoisonDestination = %q, want %q", c.name, got, c.dlq)
		}
		if got := sd.Options().MaxBatch; got != c.maxBatch {
			t.Errorf("%s: MaxBatch = %d, want %d", c.name, got, c.maxBatch)
		}
		if got := sd.Options().MaxAutoLockRenewalDuration; got != servicebus.DefaultMaxAutoLockRenewalDuration {
			t.Errorf("%s: MaxAutoLockRenewalDuration = %v", c.name, got)
		}
		// Nothing is dialled before the first Receive: Close is quick.
		if err := d.Close(); err != nil {
			t.Errorf("%s: Close: %v", c.name, err)
		}
	}
}

func TestOpenURLErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		url  string
		o    triggers.OpenOptions
		want []string
	}{
		{"nothing set", "azuresb://orders", triggers.OpenOptions{Lookup: lookup(nil)},
			[]string{"SERVICEBUS_CONNECTION_STRING", "AZURE_SERVICEBUS_HOSTNAME"}},
		{"named connection missing", "azuresb://orders", triggers.OpenOptions{Connection: "MySB", Lookup: lookup(map[string]string{"SERVICEBUS_CONNECTION_STRING": connString})},
			[]string{"MySB", "AzureWebJobsMySB", "MySB__fullyQualifiedNamespace"}},
		{"no endpoint", "azuresb://orders", triggers.OpenOptions{Connection: "SB", Lookup: lookup(map[string]string{"SB": "SharedAccessKeyName=k;SharedAccessKey=" + secret})},
			[]string{"setting SB", "Endpoint"}},
		{"no key name", "azuresb://orders", triggers.OpenOptions{Connection: "SB", Lookup: lookup(map[string]string{"SB": "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey=" + secret})},
			[]string{"setting SB", "SharedAccessKeyName"}},
		{"garbage", "azuresb://orders", triggers.OpenOptions{Connection: "SB", Lookup: lookup(map[string]string{"SB": "Endpoint=sb://x/;garbage;SharedAccessKey=" + secret})},
			[]string{"setting SB", "Key=Value"}},
		{"connection string as namespace", "azuresb://orders", triggers.OpenOptions{Connection: "SB", Lookup: lookup(map[string]string{"SB__fullyQualifiedNamespace": connString})},
			[]string{"SB__fullyQualifiedNamespace", "host name"}},
		{"bad host", "azuresb://orders", triggers.OpenOptions{Lookup: lookup(map[string]string{"AZURE_SERVICEBUS_HOSTNAME": "not a host"})},
			[]string{"AZURE_SERVICEBUS_HOSTNAME"}},
		{"poison name", "azuresb://orders", triggers.OpenOptions{PoisonName: "orders-poison", Lookup: lookup(map[string]string{"SERVICEBUS_CONNECTION_STRING": connString})},
			[]string{"orders-poison", "dead-letter queue"}},
		{"bad url", "azuresb://orders?nope=1", triggers.OpenOptions{Lookup: lookup(map[string]string{"SERVICEBUS_CONNECTION_STRING": connString})},
			[]string{"nope"}},
	} {
		d, err := servicebus.OpenURL(ctx, mustURL(t, c.url), c.o)
		if err == nil {
			_ = d.Close()
			t.Errorf("%s: OpenURL succeeded", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the key: %v", c.name, err)
		}
	}
}

// Broker errors that carry a connection string or SAS are redacted in the
// driver's errors, yet still reachable with errors.As.
func TestNoSecretInErrors(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{LockDuration: 5 * time.Second}, fastOpts(servicebus.Options{}))
	leak := errors.New("dial failed for " + connString + " via https://x.servicebus.windows.net/q?sig=" + secret + "&se=1 and SharedAccessSignature=SharedAccessSignature sr=x&sig=" + secret)
	v.b.FailNext(sbfake.OpReceive, &wrapped{leak})
	_, err := v.d.Receive(v.ctx, 1, time.Minute)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("Receive error shows the secret: %v", err)
	}
	if !strings.Contains(err.Error(), "dial failed") {
		t.Errorf("the cause is lost: %v", err)
	}
	var w *wrapped
	if !errors.As(err, &w) {
		t.Error("the original error is not reachable")
	}
	v.sendText("x")
	m := v.receive(0, 5*time.Second)
	v.b.FailNext(sbfake.OpDeadLetter, leak)
	if _, err := v.d.DeadLetter(v.ctx, m, "x"); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("DeadLetter error shows the secret: %v", err)
	}
}

type wrapped struct{ err error }

func (w *wrapped) Error() string { return w.err.Error() }

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		connString,
		"endpoint=sb://x/;sharedaccesskeyname=k;sharedaccesskey=" + secret + ";EntityPath=q",
		"Endpoint=sb://x/;SharedAccessSignature=SharedAccessSignature sr=sb%3a%2f%2fx&sig=" + secret + "&se=123&skn=k",
		"GET https://x.servicebus.windows.net/q?api-version=1&sig=" + secret,
		"amqps://x.servicebus.windows.net/$cbs?token=" + secret,
		"AccountKey = " + secret,
	} {
		if got := servicebus.Redact(s); strings.Contains(got, secret) {
			t.Errorf("Redact(%q) = %q", s, got)
		}
	}
	if got := servicebus.Redact("queue orders not found"); got != "queue orders not found" {
		t.Errorf("Redact changed a harmless text: %q", got)
	}
}
