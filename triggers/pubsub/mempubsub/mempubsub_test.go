package mempubsub

import (
	"net/url"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, poisonOverride             string
		sub, topic, poison, poisonName string
	}{
		{"mem://orders", "", "mem://orders", "mem://orders", "mem://orders-poison", "orders-poison"},
		{"mem://orders?ackdeadline=5m&poison=dead", "", "mem://orders?ackdeadline=5m", "mem://orders", "mem://dead", "dead"},
		{"mem://orders", "bad-orders", "mem://orders", "mem://orders", "mem://bad-orders", "bad-orders"},
	} {
		u, _ := url.Parse(tc.in)
		e, err := kind.ParseURL(u, tc.poisonOverride)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if e.Subscription != tc.sub || e.Topic != tc.topic || e.Poison != tc.poison || e.PoisonName != tc.poisonName {
			t.Errorf("%s: got %+v", tc.in, e)
		}
	}
	for in, want := range map[string]time.Duration{"mem://a": time.Minute, "mem://a?ackdeadline=5s": 5 * time.Second} {
		u, _ := url.Parse(in)
		if e, err := kind.ParseURL(u, ""); err != nil || e.AckDeadline != want {
			t.Errorf("%s: ack deadline %v, %v; want %v", in, e.AckDeadline, err, want)
		}
	}
	for _, bad := range []string{"mem://", "kafka://x", "mem://a?ackdeadline=0s", "mem://a?ackdeadline=soon"} {
		u, _ := url.Parse(bad)
		if _, err := kind.ParseURL(u, ""); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}
