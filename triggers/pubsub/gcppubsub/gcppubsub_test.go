package gcppubsub

import (
	"net/url"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

func TestRegistered(t *testing.T) {
	if s, err := triggers.Lookup("gcppubsub"); err != nil || s.Publisher == nil || s.Poison == nil {
		t.Fatalf("Lookup(gcppubsub) = %+v, %v", s, err)
	}
}

func TestParseURL(t *testing.T) {
	const sub = "gcppubsub://projects/p/subscriptions/s"
	for _, tc := range []struct {
		in, poisonOverride             string
		sub, topic, poison, poisonName string
	}{
		{sub + "?topic=projects/p/topics/t", "", sub, "gcppubsub://projects/p/topics/t",
			"gcppubsub://projects/p/topics/t-poison", "projects/p/topics/t-poison"},
		{sub, "", sub, "", "", ""},
		// A bare poison name is a topic in the subscription's project.
		{sub + "?poison=dead", "", sub, "", "gcppubsub://projects/p/topics/dead", "projects/p/topics/dead"},
		{sub + "?topic=projects/p/topics/t", "dead", sub, "gcppubsub://projects/p/topics/t",
			"gcppubsub://projects/p/topics/dead", "projects/p/topics/dead"},
		{sub, "projects/q/topics/dead", sub, "", "gcppubsub://projects/q/topics/dead", "projects/q/topics/dead"},
		{"gcppubsub://p/s?topic=p/t", "", "gcppubsub://p/s", "gcppubsub://p/t", "gcppubsub://p/t-poison", "p/t-poison"},
	} {
		u, _ := url.Parse(tc.in)
		e, err := kind.ParseURL(u, tc.poisonOverride)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if e.Subscription != tc.sub || e.Topic != tc.topic || e.Poison != tc.poison || e.PoisonName != tc.poisonName {
			t.Errorf("%s (poison %q): got %+v", tc.in, tc.poisonOverride, e)
		}
	}
	// ackdeadline is the driver's, not sent to Pub/Sub.
	for in, want := range map[string]time.Duration{sub: 10 * time.Second, sub + "?ackdeadline=1m": time.Minute} {
		u, _ := url.Parse(in)
		e, err := kind.ParseURL(u, "")
		if err != nil || e.AckDeadline != want || e.Subscription != sub {
			t.Errorf("%s: got %+v, %v; want ack deadline %v", in, e, err, want)
		}
	}
	for _, bad := range []string{"gcppubsub://", "gcppubsub://s", sub + "?ackdeadline=x"} {
		u, _ := url.Parse(bad)
		if _, err := kind.ParseURL(u, ""); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}
