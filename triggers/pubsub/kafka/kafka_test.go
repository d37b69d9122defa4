package kafka

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

func TestRegistered(t *testing.T) {
	if s, err := triggers.Lookup("kafka"); err != nil || s.Publisher == nil || s.Poison == nil {
		t.Fatalf("Lookup(kafka) = %+v, %v", s, err)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, poisonOverride             string
		sub, topic, poison, poisonName string
	}{
		{"kafka://workers?topic=orders", "", "kafka://workers?topic=orders", "kafka://orders", "kafka://orders-poison", "orders-poison"},
		{"kafka://workers?topic=orders&poison=dead", "", "kafka://workers?topic=orders", "kafka://orders", "kafka://dead", "dead"},
	} {
		u, _ := url.Parse(tc.in)
		e, err := kind.ParseURL(u, tc.poisonOverride)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if e.Subscription != tc.sub || e.Topic != tc.topic || e.Poison != tc.poison || e.PoisonName != tc.poisonName ||
			e.AckDeadline != pubsub.NoAckDeadline {
			t.Errorf("%s: got %+v", tc.in, e)
		}
	}
	for _, bad := range []string{"kafka://workers", "kafka://?topic=x"} {
		u, _ := url.Parse(bad)
		if _, err := kind.ParseURL(u, ""); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

func TestNoCredentialsInErrors(t *testing.T) {
	u, _ := url.Parse("kafka://user:s3cret@?topic=")
	_, err := kind.ParseURL(u, "")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("got %v", err)
	}
}

// TestNoBrokers opens without a brokers setting: the error names the
// setting to set, before any connection is tried.
func TestNoBrokers(t *testing.T) {
	u, _ := url.Parse("kafka://workers?topic=orders")
	none := func(string) (string, bool) { return "", false }
	for _, tc := range []struct{ connection, want string }{{"", BrokersSetting}, {"MY_KAFKA", "MY_KAFKA"}} {
		o := triggers.OpenOptions{Lookup: none, Connection: tc.connection}
		if _, err := kind.OpenURL(context.Background(), u, o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenURL with connection %q: %v, want an error naming %s", tc.connection, err, tc.want)
		}
		if _, err := kind.OpenPublisher(context.Background(), u, o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenPublisher with connection %q: %v, want an error naming %s", tc.connection, err, tc.want)
		}
	}
}
