package gcppubsub_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
	"github.com/jobhost/jobhost/triggers/pubsub/gcppubsub"
	"github.com/jobhost/jobhost/triggers/pubsub/gcppubsub/gcppubsubtest"
)

func openPoisonURL(ctx context.Context, t *testing.T, u *url.URL) triggers.PoisonAdmin {
	t.Helper()
	s, err := triggers.Lookup("gcppubsub")
	if err != nil || s.Poison == nil {
		t.Fatalf("Lookup(gcppubsub) = %+v, %v; want a Poison opener", s, err)
	}
	p, err := s.Poison(ctx, u, triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestPoisonSubscriptionMadeAtOpen: opening the trigger creates
// <poison>-jobhost, so a message poisoned before any administration was
// opened is kept, and listing it twice shows it twice (List gives it back)
// with its reason; the administration reports the subscription it reads.
func TestPoisonSubscriptionMadeAtOpen(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, q, d := openQueue(ctx, t, gcppubsubtest.Options{})
	want := q.Poison[len("projects/"+gcppubsubtest.Project+"/topics/"):] + gcppubsub.PoisonSubscriptionSuffix
	if _, err := srv.Sub.GetSubscription(ctx, &pb.GetSubscriptionRequest{Subscription: gcppubsubtest.SubscriptionPath(want)}); err != nil {
		t.Fatalf("after the trigger opened, subscription %s: %v", want, err)
	}
	t.Cleanup(func() {
		srv.Sub.DeleteSubscription(context.Background(), &pb.DeleteSubscriptionRequest{Subscription: gcppubsubtest.SubscriptionPath(want)})
	})
	if _, err := srv.Publish(ctx, q.Topic, []byte("x"), map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	m, _ := receiveBy(ctx, t, d, time.Now().Add(10*time.Second))
	if m == nil {
		t.Fatal("not delivered")
	}
	if _, err := d.DeadLetter(ctx, m, "boom"); err != nil {
		t.Fatal(err)
	}
	p := openPoisonURL(ctx, t, q.URL())
	if p.Poison() == "" || p.Source() == "" {
		t.Errorf("Poison() %q, Source() %q", p.Poison(), p.Source())
	}
	for round := range 2 {
		ms, err := p.List(ctx, 10)
		if err != nil || len(ms) != 1 {
			t.Fatalf("round %d: List = %d, %v; want 1", round, len(ms), err)
		}
		if got := ms[0]; string(got.Body) != "x" || got.Reason != "boom" || got.Properties["k"] != "v" || got.InsertionTime.IsZero() {
			t.Errorf("round %d: listed %q reason %q properties %v inserted %v", round, got.Body, got.Reason, got.Properties, got.InsertionTime)
		}
	}
}

// TestPoisonRequeueNeedsTopic: without topic= there is nothing to requeue
// into; the message stays.
func TestPoisonRequeueNeedsTopic(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, q, _ := openQueue(ctx, t, gcppubsubtest.Options{})
	u, _ := url.Parse("gcppubsub://" + q.Subscription + "?poison=" + q.Poison)
	p := openPoisonURL(ctx, t, u)
	_, err := p.Requeue(ctx, "", 10, func(*triggers.PoisonMessage, error) {})
	if !errors.Is(err, pubsub.ErrNoSourceTopic) {
		t.Errorf("Requeue without topic=: %v, want ErrNoSourceTopic", err)
	}
}

// TestPoisonMissingTopic: a poison topic that does not exist is "nothing
// poisoned".
func TestPoisonMissingTopic(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, q, _ := openQueue(ctx, t, gcppubsubtest.Options{})
	u, _ := url.Parse("gcppubsub://" + q.Subscription + "?topic=" + q.Topic + "&poison=no-such-topic")
	p := openPoisonURL(ctx, t, u)
	if n, exists, err := p.Count(ctx); err != nil || exists || n != 0 {
		t.Errorf("Count = %d, exists %v, %v; want 0, false, nil", n, exists, err)
	}
}

// TestPoisonNamedSubscription: poisonsubscription= names the subscription
// read; when it is missing Count creates it and reports that nothing was
// kept, and from then on it keeps what is poisoned.
func TestPoisonNamedSubscription(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, q, _ := openQueue(ctx, t, gcppubsubtest.Options{})
	name := q.Subscription[len("projects/"+gcppubsubtest.Project+"/subscriptions/"):] + "-mine"
	u, _ := url.Parse("gcppubsub://" + q.Subscription + "?topic=" + q.Topic + "&poisonsubscription=" + name)
	p := openPoisonURL(ctx, t, u)
	t.Cleanup(func() {
		srv.Sub.DeleteSubscription(context.Background(), &pb.DeleteSubscriptionRequest{Subscription: gcppubsubtest.SubscriptionPath(name)})
	})
	if n, exists, err := p.Count(ctx); err != nil || exists || n != 0 {
		t.Fatalf("first Count = %d, exists %v, %v; want 0, false (just created), nil", n, exists, err)
	}
	if _, err := srv.Publish(ctx, q.Poison, []byte("late"), nil); err != nil {
		t.Fatal(err)
	}
	if n, exists, err := p.Count(ctx); err != nil || !exists || n != 1 {
		t.Fatalf("Count after a poisoning = %d, exists %v, %v; want 1, true, nil", n, exists, err)
	}
	if n, err := p.Purge(ctx, 1); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v", n, err)
	}
	if n, _, err := p.Count(ctx); err != nil || n != 0 {
		t.Errorf("Count after Purge = %d, %v; want 0", n, err)
	}
}
