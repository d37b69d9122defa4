package pubsub_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/pubsub"
	"github.com/jobhost/jobhost/triggers/pubsub/pubsubtest"
)

func TestConformanceMem(t *testing.T) {
	drivertest.RunConformanceTests(t, func(t *testing.T) drivertest.Harness { return pubsubtest.MemHarness() })
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, poisonOverride             string
		sub, topic, poison, poisonName string
	}{
		{"mem://orders", "", "mem://orders", "mem://orders", "mem://orders-poison", "orders-poison"},
		{"mem://orders?ackdeadline=5m&poison=dead", "", "mem://orders?ackdeadline=5m", "mem://orders", "mem://dead", "dead"},
		{"mem://orders", "bad-orders", "mem://orders", "mem://orders", "mem://bad-orders", "bad-orders"},
		{"awssqs://sqs.us-east-2.amazonaws.com/99/orders?region=us-east-2", "",
			"awssqs://sqs.us-east-2.amazonaws.com/99/orders?region=us-east-2",
			"awssqs://sqs.us-east-2.amazonaws.com/99/orders?region=us-east-2",
			"awssqs://sqs.us-east-2.amazonaws.com/99/orders-poison?region=us-east-2", "sqs.us-east-2.amazonaws.com/99/orders-poison"},
		{"gcppubsub://projects/p/subscriptions/s?topic=projects/p/topics/t", "",
			"gcppubsub://projects/p/subscriptions/s", "gcppubsub://projects/p/topics/t",
			"gcppubsub://projects/p/topics/t-poison", "projects/p/topics/t-poison"},
		{"gcppubsub://projects/p/subscriptions/s", "", "gcppubsub://projects/p/subscriptions/s", "", "", ""},
		{"kafka://workers?topic=orders", "", "kafka://workers?topic=orders", "kafka://orders", "kafka://orders-poison", "orders-poison"},
	} {
		u, _ := url.Parse(tc.in)
		e, err := pubsub.ParseURL(u, tc.poisonOverride)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if e.Subscription != tc.sub || e.Topic != tc.topic || e.Poison != tc.poison || e.PoisonName != tc.poisonName {
			t.Errorf("%s: got %+v", tc.in, e)
		}
	}
	for _, bad := range []string{"mem://", "kafka://workers", "kafka://?topic=x", "ftp://x"} {
		u, _ := url.Parse(bad)
		if _, err := pubsub.ParseURL(u, ""); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

func TestAttempts(t *testing.T) {
	for _, tc := range []struct {
		md     map[string]string
		native int64
		want   int64
	}{
		{nil, 0, 1}, {nil, 3, 3}, {map[string]string{pubsub.AttemptKey: "4"}, 0, 4},
		{map[string]string{pubsub.AttemptKey: "4"}, 2, 5}, {map[string]string{pubsub.AttemptKey: "junk"}, 1, 1},
	} {
		if got := pubsub.Attempts(tc.md, tc.native); got != tc.want {
			t.Errorf("Attempts(%v, %d) = %d, want %d", tc.md, tc.native, got, tc.want)
		}
	}
}

func TestNoCredentialsInErrors(t *testing.T) {
	u, _ := url.Parse("kafka://user:s3cret@?topic=")
	_, err := pubsub.ParseURL(u, "")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("got %v", err)
	}
}
