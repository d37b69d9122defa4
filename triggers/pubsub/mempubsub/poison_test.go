package mempubsub_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

// TestPoisonOtherProcess: for a mem:// poison topic no trigger of this
// process uses (as in the CLI, another process) the opener fails, saying
// why, instead of showing an empty topic.
func TestPoisonOtherProcess(t *testing.T) {
	s, err := triggers.Lookup("mem")
	if err != nil || s.Poison == nil {
		t.Fatalf("Lookup(mem) = %+v, %v; want a Poison opener", s, err)
	}
	u, _ := url.Parse("mem://never-opened-" + t.Name())
	if p, err := s.Poison(context.Background(), u, triggers.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("Poison of a topic no trigger uses = %v, %v; want an error about another process", p, err)
	}
}

// TestPoisonRequeueCopy poisons a retried message: the listed copy has its
// reason and attempt count; the requeued one arrives with the same ID and
// the user's metadata, as attempt 1, without jobhost's reason and source.
func TestPoisonRequeueCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, _ := triggers.Lookup("mem")
	u, _ := url.Parse("mem://requeue-" + t.Name())
	d, err := s.Subscription(ctx, u, triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pub, err := s.Publisher(ctx, u, triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if _, err := pub.Publish(ctx, []byte("job"), map[string]string{"x-trace": "t1"}); err != nil {
		t.Fatal(err)
	}
	m, _ := receiveBy(ctx, t, d, time.Now().Add(10*time.Second))
	if err := d.Retry(ctx, m, 0); err != nil {
		t.Fatal(err)
	}
	m2, _ := receiveBy(ctx, t, d, time.Now().Add(10*time.Second))
	if m2 == nil || m2.DequeueCount != 2 {
		t.Fatalf("retried copy %+v, want DequeueCount 2", m2)
	}
	if _, err := d.DeadLetter(ctx, m2, "gave up"); err != nil {
		t.Fatal(err)
	}
	p, err := s.Poison(ctx, u, triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var listed []*triggers.PoisonMessage
	for deadline := time.Now().Add(10 * time.Second); len(listed) == 0 && time.Now().Before(deadline); {
		if listed, err = p.List(ctx, 10); err != nil {
			t.Fatal(err)
		}
	}
	if len(listed) != 1 || listed[0].Reason != "gave up" || listed[0].DequeueCount != 2 || listed[0].InsertionTime.IsZero() {
		t.Fatalf("listed %+v, want one with reason %q, DequeueCount 2 and an insertion time", listed, "gave up")
	}
	if found, err := p.Requeue(ctx, listed[0].ID, 1, func(*triggers.PoisonMessage, error) {}); err != nil || !found {
		t.Fatalf("Requeue = %v, %v", found, err)
	}
	back, _ := receiveBy(ctx, t, d, time.Now().Add(10*time.Second))
	switch {
	case back == nil:
		t.Fatal("requeued message not delivered")
	case back.ID != m.ID || back.DequeueCount != 1 || back.Properties["x-trace"] != "t1":
		t.Errorf("requeued %s DequeueCount %d properties %v, want %s, 1 and x-trace=t1", back.ID, back.DequeueCount, back.Properties, m.ID)
	case back.Properties[pubsub.ReasonKey] != "" || back.Properties[pubsub.SourceKey] != "" || back.Properties[pubsub.AttemptKey] != "":
		t.Errorf("requeued copy kept jobhost's bookkeeping: %v", back.Properties)
	}
	if n, exists, err := p.Count(ctx); err != nil || !exists || n != 0 {
		t.Errorf("Count after Requeue = %d, %v, %v; want 0", n, exists, err)
	}
}
