// Package kafkatest provides a drivertest.Harness for the kafka:// scheme
// against a real Kafka protocol peer: franz-go's kfake cluster, in the
// test process on a loopback port, reached by the driver through gocloud's
// kafkapubsub (sarama) exactly as it reaches a broker named by
// KAFKA_BROKERS.
package kafkatest

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	gcpubsub "gocloud.dev/pubsub"
	"gocloud.dev/pubsub/kafkapubsub"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/pubsub"
	"github.com/jobhost/jobhost/triggers/pubsub/kafka"
)

// Partitions is the number of partitions of each test topic: more than one,
// so that a consumer group member holds several claims as in production.
const Partitions = 3

var seq atomic.Int64

// Cluster is a kfake cluster of one broker on 127.0.0.1.
type Cluster struct {
	c *kfake.Cluster
	// Brokers is the comma-separated listen address, the KAFKA_BROKERS value.
	Brokers string
}

// NewCluster starts a cluster with the given topics (Partitions each) and
// stops it when t ends.
func NewCluster(t testing.TB, topics ...string) *Cluster {
	t.Helper()
	return NewClusterPartitions(t, Partitions, topics...)
}

// NewClusterPartitions is NewCluster with partitions partitions per topic.
func NewClusterPartitions(t testing.TB, partitions int32, topics ...string) *Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(partitions, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &Cluster{c: c, Brokers: strings.Join(c.ListenAddrs(), ",")}
}

// Lookup is an app-settings lookup that names the cluster as KAFKA_BROKERS.
func (c *Cluster) Lookup(name string) (string, bool) {
	if name == kafka.BrokersSetting {
		return c.Brokers, true
	}
	return "", false
}

// NewHarness returns a harness whose queues are fresh topics, each on its
// own kfake cluster.
func NewHarness(t *testing.T) drivertest.Harness { return harness{} }

type harness struct{}

func (harness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	s, err := triggers.Lookup("kafka")
	if err != nil {
		return drivertest.Queue{}, err
	}
	n := seq.Add(1)
	topic := fmt.Sprintf("jobhost-test-%d", n)
	poison := topic + "-poison"
	c := NewCluster(t, topic, poison)
	o := triggers.OpenOptions{Lookup: c.Lookup}
	u, _ := url.Parse(fmt.Sprintf("kafka://workers-%d?topic=%s", n, topic))
	open := func(ctx context.Context) (triggers.Driver, error) {
		d, err := s.Subscription(ctx, u, o)
		if err == nil {
			t.Cleanup(func() { d.Close() })
		}
		return d, err
	}
	drv, err := open(ctx)
	if err != nil {
		return drivertest.Queue{}, err
	}
	producer, err := kafkapubsub.OpenTopic(strings.Split(c.Brokers, ","), kafka.Config(), topic, nil)
	if err != nil {
		return drivertest.Queue{}, err
	}
	t.Cleanup(func() { producer.Shutdown(context.Background()) })
	// The poison topic's own reader: a consumer group of its own, from the
	// oldest offset, so it sees every poisoned message.
	poisonSub, err := kafkapubsub.OpenSubscription(strings.Split(c.Brokers, ","), kafka.Config(), "poison-reader", []string{poison}, nil)
	if err != nil {
		return drivertest.Queue{}, err
	}
	t.Cleanup(func() { poisonSub.Shutdown(context.Background()) })
	var mu sync.Mutex
	return drivertest.Queue{
		Driver: drv,
		Send: func(ctx context.Context, body []byte, props map[string]string) error {
			return producer.Send(ctx, &gcpubsub.Message{Body: body, Metadata: props})
		},
		ReceivePoison: func(ctx context.Context) ([]*triggers.Message, error) {
			mu.Lock()
			defer mu.Unlock()
			var out []*triggers.Message
			for {
				rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				m, err := poisonSub.Receive(rctx)
				cancel()
				if err != nil {
					return out, nil
				}
				m.Ack()
				out = append(out, &triggers.Message{ID: m.Metadata[pubsub.IDKey], Body: m.Body, Properties: m.Metadata})
			}
		},
		MissingQueue: func(ctx context.Context) (triggers.Driver, error) {
			mq, _ := url.Parse(fmt.Sprintf("kafka://workers-%d?topic=%s-missing", n, topic))
			return s.Subscription(ctx, mq, o)
		},
		// Kafka never redelivers to a member that holds a message: a
		// restarted worker (a new member of the group) gets what was not
		// committed.
		Reopen: open,
		OpenPublisher: func(ctx context.Context) (triggers.Publisher, error) {
			pu, _ := url.Parse("kafka://" + topic)
			p, err := s.Publisher(ctx, pu, o)
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		OpenPoison: func(ctx context.Context) (triggers.PoisonAdmin, error) {
			p, err := s.Poison(ctx, u, o)
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		Capabilities: drivertest.Capabilities{Properties: true},
	}, nil
}
