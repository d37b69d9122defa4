package kafka_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	gcpubsub "gocloud.dev/pubsub"
	"gocloud.dev/pubsub/kafkapubsub"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub/kafka"
	"github.com/jobhost/jobhost/triggers/pubsub/kafka/kafkatest"
)

// open opens a kafka:// trigger on c for group and topic.
func open(ctx context.Context, t *testing.T, c *kafkatest.Cluster, group, topic string) triggers.Driver {
	t.Helper()
	s, err := triggers.Lookup("kafka")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(fmt.Sprintf("kafka://%s?topic=%s", group, topic))
	d, err := s.Subscription(ctx, u, triggers.OpenOptions{Lookup: c.Lookup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func send(ctx context.Context, t *testing.T, c *kafkatest.Cluster, topic string, bodies ...string) {
	t.Helper()
	p, err := kafkapubsub.OpenTopic(strings.Split(c.Brokers, ","), kafka.Config(), topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	for _, b := range bodies {
		if err := p.Send(ctx, &gcpubsub.Message{Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
}

// receive receives until it has n messages or within passes.
func receive(ctx context.Context, t *testing.T, d triggers.Driver, n int, within time.Duration) []*triggers.Message {
	t.Helper()
	var out []*triggers.Message
	for deadline := time.Now().Add(within); len(out) < n && time.Now().Before(deadline); {
		ms, err := d.Receive(ctx, n-len(out), time.Minute)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		out = append(out, ms...)
	}
	return out
}

// TestStartsAtOldest sends before the consumer group has ever joined: a
// worker started after its producers gets what they sent. With sarama's
// default initial offset (the newest) this message was skipped.
func TestStartsAtOldest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := kafkatest.NewCluster(t, "early")
	send(ctx, t, c, "early", "sent before the group existed")
	d := open(ctx, t, c, "workers", "early")
	ms := receive(ctx, t, d, 1, 15*time.Second)
	if len(ms) != 1 || ms[0].Text() != "sent before the group existed" {
		t.Fatalf("received %d messages, want the one sent before the group joined", len(ms))
	}
	if err := d.Complete(ctx, ms[0]); err != nil {
		t.Fatal(err)
	}
}

// TestRestartRedelivers holds a message unsettled and closes the driver,
// as a worker that dies mid-function: the next member of the group gets it
// again; what was completed before it was committed and is not redelivered
// once everything is settled.
func TestRestartRedelivers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := kafkatest.NewCluster(t, "orders")
	send(ctx, t, c, "orders", "a", "b", "c")
	d1 := open(ctx, t, c, "workers", "orders")
	ms := receive(ctx, t, d1, 3, 15*time.Second)
	if len(ms) != 3 {
		t.Fatalf("first worker received %d messages, want 3", len(ms))
	}
	held := ms[0]
	for _, m := range ms[1:] {
		if err := d1.Complete(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := d1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	d2 := open(ctx, t, c, "workers", "orders")
	var again []string
	found := false
	for deadline := time.Now().Add(15 * time.Second); !found && time.Now().Before(deadline); {
		for _, m := range receive(ctx, t, d2, 1, time.Second) {
			again = append(again, m.Text())
			found = found || m.Text() == held.Text()
			if err := d2.Complete(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !found {
		t.Fatalf("after a restart the group gave back %q, want the unsettled %q among them", again, held.Text())
	}
	// Messages completed after the held one (in the order received) may come
	// back too: kafkapubsub commits only up to the first unacked message.
	t.Logf("after the restart: %q (held %q)", again, held.Text())
	// Drain what else comes back, then a third worker gets nothing.
	for _, m := range receive(ctx, t, d2, 3, 2*time.Second) {
		d2.Complete(ctx, m)
	}
	if err := d2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	d3 := open(ctx, t, c, "workers", "orders")
	if ms := receive(ctx, t, d3, 1, 3*time.Second); len(ms) != 0 {
		t.Errorf("with everything completed and committed, a new member got %q", ms[0].Text())
	}
}
