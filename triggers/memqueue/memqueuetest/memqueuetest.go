// Package memqueuetest provides a drivertest.Harness for in-process queues.
package memqueuetest

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

var seq atomic.Int64

// Harness returns a harness whose queues are fresh, each on its own broker.
// Drivers, publishers and poison administrations are opened through the
// broker's URL openers (the package registers the same ones, on Default).
func Harness() drivertest.Harness { return harness{} }

type harness struct{}

func (harness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	b := memqueue.NewBroker()
	name := fmt.Sprintf("q%d", seq.Add(1))
	u := &url.URL{Scheme: memqueue.Scheme, Host: name}
	d, err := b.OpenURL(ctx, u, triggers.OpenOptions{})
	if err != nil {
		return drivertest.Queue{}, err
	}
	drv := d.(*memqueue.Driver)
	t.Cleanup(func() { drv.Close() })
	q, poison := b.Queue(name), b.Queue(drv.PoisonDestination())
	pd := memqueue.New(poison, nil)
	var mu sync.Mutex
	return drivertest.Queue{
		Driver: drv,
		Send: func(_ context.Context, body []byte, props map[string]string) error {
			q.Send(body, props)
			return nil
		},
		ReceivePoison: func(ctx context.Context) ([]*triggers.Message, error) {
			mu.Lock()
			defer mu.Unlock()
			if poison.Len() == 0 {
				return nil, nil
			}
			return pd.Receive(ctx, 1000, 24*time.Hour)
		},
		Reopen: func(context.Context) (triggers.Driver, error) {
			return memqueue.New(q, poison), nil
		},
		OpenPublisher: func(ctx context.Context) (triggers.Publisher, error) {
			return b.OpenPublisherURL(ctx, u, triggers.OpenOptions{})
		},
		OpenPoison: func(ctx context.Context) (triggers.PoisonAdmin, error) {
			return b.OpenPoisonURL(ctx, u, triggers.OpenOptions{})
		},
		Capabilities: drivertest.Capabilities{Leases: true, Properties: true},
	}, nil
}
