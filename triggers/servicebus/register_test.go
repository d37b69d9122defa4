package servicebus_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/servicebus"
)

var (
	_ triggers.OpenPublisherFunc = servicebus.OpenPublisherURL
	_ triggers.OpenPoisonFunc    = servicebus.OpenPoisonURL
)

// Importing the package registers azuresb with all three openers.
func TestRegistered(t *testing.T) {
	t.Parallel()
	s, err := triggers.Lookup(servicebus.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != servicebus.Scheme || s.Subscription == nil || s.Publisher == nil || s.Poison == nil {
		t.Fatalf("registration = %+v", s)
	}
	// The registered openers are the package's: they resolve the
	// connection the same way (and dial nothing before use).
	o := triggers.OpenOptions{Connection: "SB", Lookup: lookup(map[string]string{"SB": connString})}
	u := mustURL(t, "azuresb://orders")
	ctx := context.Background()
	pub, err := s.Publisher(ctx, u, o)
	if err != nil {
		t.Fatalf("Publisher: %v", err)
	}
	if _, ok := pub.(*servicebus.Publisher); !ok {
		t.Errorf("Publisher opened a %T", pub)
	}
	p, err := s.Poison(ctx, u, o)
	if err != nil {
		t.Fatalf("Poison: %v", err)
	}
	if p.Source() != "queue orders" || p.Poison() != "dead-letter queue orders/$deadletterqueue" {
		t.Errorf("Source, Poison = %q, %q", p.Source(), p.Poison())
	}
	for _, c := range []func() error{pub.Close, p.Close, pub.Close, p.Close} {
		if err := c(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func TestOpenPublisherAndPoisonURLErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := lookup(map[string]string{"SERVICEBUS_CONNECTION_STRING": connString})
	for _, c := range []struct {
		name   string
		url    string
		o      triggers.OpenOptions
		poison bool
		want   string
	}{
		{"publisher: nothing set", "azuresb://orders", triggers.OpenOptions{Lookup: lookup(nil)}, false, "SERVICEBUS_CONNECTION_STRING"},
		{"publisher: bad url", "azuresb://orders?nope=1", triggers.OpenOptions{Lookup: cs}, false, "nope"},
		{"publisher: bad key", "azuresb://orders", triggers.OpenOptions{Connection: "SB", Lookup: lookup(map[string]string{"SB": "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey=" + secret})}, false, "SharedAccessKeyName"},
		{"poison: nothing set", "azuresb://orders", triggers.OpenOptions{Lookup: lookup(nil)}, true, "SERVICEBUS_CONNECTION_STRING"},
		{"poison: other poison name", "azuresb://orders", triggers.OpenOptions{PoisonName: "orders-poison", Lookup: cs}, true, "dead-letter queue"},
		{"poison: bad key", "azuresb://orders?subscription=s", triggers.OpenOptions{Connection: "SB", Lookup: lookup(map[string]string{"SB": "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey=" + secret})}, true, "SharedAccessKeyName"},
	} {
		var err error
		if c.poison {
			var p triggers.PoisonAdmin
			if p, err = servicebus.OpenPoisonURL(ctx, mustURL(t, c.url), c.o); err == nil {
				_ = p.Close()
			}
		} else {
			var p triggers.Publisher
			if p, err = servicebus.OpenPublisherURL(ctx, mustURL(t, c.url), c.o); err == nil {
				_ = p.Close()
			}
		}
		if err == nil {
			t.Errorf("%s: opened", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error %q; want it to mention %q and not the key", c.name, err, c.want)
		}
	}
}
