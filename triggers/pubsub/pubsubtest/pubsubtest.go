// Package pubsubtest provides a drivertest.Harness for the gocloud driver
// over in-memory topics (mem://), opened through the scheme the mempubsub
// package registers.
package pubsubtest

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gcpubsub "gocloud.dev/pubsub"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/pubsub"
	_ "github.com/jobhost/jobhost/triggers/pubsub/mempubsub" // mem://
)

var seq atomic.Int64

// MemHarness returns a harness whose queues are fresh mem:// topics.
func MemHarness() drivertest.Harness { return memHarness{} }

type memHarness struct{}

func (memHarness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	s, err := triggers.Lookup("mem")
	if err != nil {
		return drivertest.Queue{}, err
	}
	name := fmt.Sprintf("jobhost-test-%d-%d", time.Now().UnixNano(), seq.Add(1))
	// A short ack deadline: unsettled messages come back quickly.
	u, _ := url.Parse("mem://" + name + "?ackdeadline=2s")
	drv, err := s.Subscription(ctx, u, triggers.OpenOptions{})
	if err != nil {
		return drivertest.Queue{}, err
	}
	t.Cleanup(func() { drv.Close() })
	// mem:// topics are process-wide: this is the driver's own topic, left
	// open (as the driver leaves it).
	topic, err := gcpubsub.OpenTopic(ctx, "mem://"+name)
	if err != nil {
		return drivertest.Queue{}, err
	}
	// Subscribe to the poison topic now, so it sees every poisoned message.
	poisonSub, err := gcpubsub.OpenSubscription(ctx, "mem://"+name+"-poison")
	if err != nil {
		return drivertest.Queue{}, err
	}
	t.Cleanup(func() { poisonSub.Shutdown(context.Background()) })
	var mu sync.Mutex
	return drivertest.Queue{
		Driver: drv,
		Send: func(ctx context.Context, body []byte, props map[string]string) error {
			return topic.Send(ctx, &gcpubsub.Message{Body: body, Metadata: props})
		},
		ReceivePoison: func(ctx context.Context) ([]*triggers.Message, error) {
			mu.Lock()
			defer mu.Unlock()
			var out []*triggers.Message
			for {
				rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				m, err := poisonSub.Receive(rctx)
				cancel()
				if err != nil {
					return out, nil
				}
				m.Ack()
				out = append(out, &triggers.Message{ID: m.Metadata[pubsub.IDKey], Body: m.Body, Properties: m.Metadata})
			}
		},
		OpenPublisher: func(ctx context.Context) (triggers.Publisher, error) {
			pu, _ := url.Parse("mem://" + name)
			p, err := s.Publisher(ctx, pu, triggers.OpenOptions{})
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		OpenPoison: func(ctx context.Context) (triggers.PoisonAdmin, error) {
			p, err := s.Poison(ctx, u, triggers.OpenOptions{})
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		Capabilities: drivertest.Capabilities{Properties: true, NoInsertionTime: true},
	}, nil
}
