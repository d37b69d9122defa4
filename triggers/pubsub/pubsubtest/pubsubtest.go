// Package pubsubtest provides a drivertest.Harness for the gocloud driver
// over in-memory topics (mem://).
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
)

var seq atomic.Int64

// MemHarness returns a harness whose queues are fresh mem:// topics.
func MemHarness() drivertest.Harness { return memHarness{} }

type memHarness struct{}

func (memHarness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	name := fmt.Sprintf("jobhost-test-%d-%d", time.Now().UnixNano(), seq.Add(1))
	// A short ack deadline: unsettled messages come back quickly.
	u, _ := url.Parse("mem://" + name + "?ackdeadline=2s")
	drv, err := pubsub.OpenURL(ctx, u, triggers.OpenOptions{})
	if err != nil {
		return drivertest.Queue{}, err
	}
	t.Cleanup(func() { drv.Close() })
	topic, err := gcpubsub.OpenTopic(ctx, "mem://"+name)
	if err != nil {
		return drivertest.Queue{}, err
	}
	t.Cleanup(func() { topic.Shutdown(context.Background()) })
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
		Capabilities: drivertest.Capabilities{Properties: true, NoInsertionTime: true},
	}, nil
}
