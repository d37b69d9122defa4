package kafka_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
	"github.com/jobhost/jobhost/triggers/pubsub/kafka/kafkatest"
)

// openPoison opens the registered poison administration of group/topic, as
// the CLI does (each call is a new run).
func openPoison(ctx context.Context, t *testing.T, c *kafkatest.Cluster, group, topic string) triggers.PoisonAdmin {
	t.Helper()
	s, err := triggers.Lookup("kafka")
	if err != nil || s.Poison == nil {
		t.Fatalf("Lookup(kafka) = %+v, %v; want a Poison opener", s, err)
	}
	u, _ := url.Parse(fmt.Sprintf("kafka://%s?topic=%s", group, topic))
	p, err := s.Poison(ctx, u, triggers.OpenOptions{Lookup: c.Lookup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func count(ctx context.Context, t *testing.T, p triggers.PoisonAdmin) int {
	t.Helper()
	n, exists, err := p.Count(ctx)
	if err != nil || !exists {
		t.Fatalf("Count = %d, exists %v, %v", n, exists, err)
	}
	return n
}

// TestPoisonCursorPersists poisons three messages, requeues the middle one
// by id and purges the first: each later run (a new administration, as a
// new CLI command) sees only what is left, with its reason; the requeued
// copy reaches the trigger without jobhost's reason, as attempt 1.
func TestPoisonCursorPersists(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// One partition each, so that the order is the order poisoned.
	c := kafkatest.NewClusterPartitions(t, 1, "jobs", "jobs-poison")
	d := open(ctx, t, c, "workers", "jobs")
	send(ctx, t, c, "jobs", "a", "b", "c")
	for _, m := range receive(ctx, t, d, 3, 15*time.Second) {
		if _, err := d.DeadLetter(ctx, m, "bad "+m.Text()); err != nil {
			t.Fatal(err)
		}
	}
	p := openPoison(ctx, t, c, "workers", "jobs")
	if n := count(ctx, t, p); n != 3 {
		t.Fatalf("Count = %d, want 3", n)
	}
	listed, err := p.List(ctx, 10)
	if err != nil || len(listed) != 3 {
		t.Fatalf("List = %d messages, %v; want 3", len(listed), err)
	}
	for i, want := range []string{"a", "b", "c"} {
		if got := listed[i]; string(got.Body) != want || got.Reason != "bad "+want || got.Properties[pubsub.SourceKey] == "" {
			t.Errorf("listed[%d] = %q reason %q properties %v, want %q with reason %q", i, got.Body, got.Reason, got.Properties, want, "bad "+want)
		}
	}
	// Requeue the middle one: it cannot move the cursor, which keeps it.
	found, err := p.Requeue(ctx, listed[1].ID, 1, func(m *triggers.PoisonMessage, err error) {
		if err != nil {
			t.Errorf("requeue %s: %v", m.ID, err)
		}
	})
	if err != nil || !found {
		t.Fatalf("Requeue(%s) = %v, %v", listed[1].ID, found, err)
	}
	back := receive(ctx, t, d, 1, 15*time.Second)
	if len(back) != 1 || back[0].Text() != "b" || back[0].DequeueCount != 1 || back[0].Properties[pubsub.ReasonKey] != "" {
		t.Fatalf("requeued: %+v, want b as attempt 1 without %s", back, pubsub.ReasonKey)
	}
	if err := d.Complete(ctx, back[0]); err != nil {
		t.Fatal(err)
	}

	p2 := openPoison(ctx, t, c, "workers", "jobs")
	if n := count(ctx, t, p2); n != 2 {
		t.Fatalf("after requeueing one, a new run counts %d, want 2", n)
	}
	if n, err := p2.Purge(ctx, 1); err != nil || n != 1 {
		t.Fatalf("Purge(1) = %d, %v", n, err)
	}
	p3 := openPoison(ctx, t, c, "workers", "jobs")
	left, err := p3.List(ctx, 10)
	if err != nil || len(left) != 1 || string(left[0].Body) != "c" {
		t.Fatalf("after purging the oldest, a new run lists %v, %v; want only c", left, err)
	}
	if n := count(ctx, t, p3); n != 1 {
		t.Errorf("Count = %d, want 1", n)
	}
}

// TestPoisonMissingTopic: a poison topic that does not exist is "nothing
// poisoned", and looking does not create it.
func TestPoisonMissingTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := kafkatest.NewCluster(t, "lonely")
	p := openPoison(ctx, t, c, "workers", "lonely")
	for range 2 {
		if n, exists, err := p.Count(ctx); err != nil || exists || n != 0 {
			t.Fatalf("Count = %d, exists %v, %v; want 0, false, nil", n, exists, err)
		}
	}
}
