package mempubsub_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/pubsub/pubsubtest"
)

func TestConformance(t *testing.T) {
	drivertest.RunConformanceTests(t, func(*testing.T) drivertest.Harness { return pubsubtest.MemHarness() })
}

// TestSharedTopics closes a publisher and a driver on one mem:// topic: the
// process-wide topic stays usable for the next publisher and driver.
func TestSharedTopics(t *testing.T) {
	s, err := triggers.Lookup("mem")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, _ := url.Parse("mem://shared-" + t.Name())
	for round := range 2 {
		d, err := s.Subscription(ctx, u, triggers.OpenOptions{})
		if err != nil {
			t.Fatalf("round %d: Subscription: %v", round, err)
		}
		p, err := s.Publisher(ctx, u, triggers.OpenOptions{})
		if err != nil {
			t.Fatalf("round %d: Publisher: %v", round, err)
		}
		if _, err := p.Publish(ctx, []byte("hello"), nil); err != nil {
			t.Fatalf("round %d: Publish: %v", round, err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("round %d: publisher Close: %v", round, err)
		}
		var m *triggers.Message
		for m == nil {
			ms, err := d.Receive(ctx, 1, time.Minute)
			if err != nil {
				t.Fatalf("round %d: Receive: %v", round, err)
			}
			if len(ms) > 0 {
				m = ms[0]
			}
		}
		// A retry republishes to the topic the publisher shared.
		if err := d.Retry(ctx, m, 0); err != nil {
			t.Fatalf("round %d: Retry after the publisher closed: %v", round, err)
		}
		var again *triggers.Message
		for again == nil {
			ms, err := d.Receive(ctx, 1, time.Minute)
			if err != nil {
				t.Fatalf("round %d: Receive: %v", round, err)
			}
			if len(ms) > 0 {
				again = ms[0]
			}
		}
		if again.Text() != "hello" || again.DequeueCount != 2 {
			t.Errorf("round %d: retried copy %q DequeueCount %d, want %q and 2", round, again.Body, again.DequeueCount, "hello")
		}
		if err := d.Complete(ctx, again); err != nil {
			t.Fatalf("round %d: Complete: %v", round, err)
		}
		if err := d.Close(); err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
	}
}
