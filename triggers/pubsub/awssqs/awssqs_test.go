package awssqs

import (
	"net/url"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
)

func TestRegistered(t *testing.T) {
	if s, err := triggers.Lookup("awssqs"); err != nil || s.Publisher == nil || s.Poison == nil {
		t.Fatalf("Lookup(awssqs) = %+v, %v", s, err)
	}
}

func TestParseURL(t *testing.T) {
	const q = "awssqs://sqs.us-east-2.amazonaws.com/99/orders?region=us-east-2"
	for _, tc := range []struct {
		in, poisonOverride             string
		sub, topic, poison, poisonName string
	}{
		{q, "", q, q,
			"awssqs://sqs.us-east-2.amazonaws.com/99/orders-poison?region=us-east-2", "sqs.us-east-2.amazonaws.com/99/orders-poison"},
		// A bare poison name is a queue beside the source, a path the whole queue path.
		{q + "&poison=dead", "", q, q,
			"awssqs://sqs.us-east-2.amazonaws.com/99/dead?region=us-east-2", "sqs.us-east-2.amazonaws.com/99/dead"},
		{q, "77/dead", q, q,
			"awssqs://sqs.us-east-2.amazonaws.com/77/dead?region=us-east-2", "sqs.us-east-2.amazonaws.com/77/dead"},
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
	// visibilitytimeout is the driver's, not sent to SQS.
	for in, want := range map[string]time.Duration{q: 30 * time.Second, q + "&visibilitytimeout=2m": 2 * time.Minute} {
		u, _ := url.Parse(in)
		e, err := kind.ParseURL(u, "")
		if err != nil || e.AckDeadline != want || e.Subscription != q || e.Topic != q {
			t.Errorf("%s: got %+v, %v; want ack deadline %v", in, e, err, want)
		}
	}
	for _, bad := range []string{"awssqs://", "awssqs://host", "awssqs://host/", q + "&visibilitytimeout=-1s"} {
		u, _ := url.Parse(bad)
		if _, err := kind.ParseURL(u, ""); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}
