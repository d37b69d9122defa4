// Package memqueuetest provides a drivertest.Harness for in-process queues.
package memqueuetest

import (
	"context"
	"fmt"
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
func Harness() drivertest.Harness { return harness{} }

type harness struct{}

func (harness) MakeDriver(_ context.Context, t *testing.T) (drivertest.Queue, error) {
	b := memqueue.NewBroker()
	name := fmt.Sprintf("q%d", seq.Add(1))
	q, poison := b.Queue(name), b.Queue(name+"-poison")
	drv := memqueue.New(q, poison)
	t.Cleanup(func() { drv.Close() })
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
		Capabilities: drivertest.Capabilities{Leases: true, Properties: true},
	}, nil
}
