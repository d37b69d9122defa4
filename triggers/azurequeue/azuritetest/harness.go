package azuritetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/drivertest"
)

// Harness returns a drivertest.Harness whose queues are fresh queues on s.
func (s *Server) Harness() drivertest.Harness { return harness{s} }

type harness struct{ srv *Server }

func (h harness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	svc := h.srv.ServiceClient(t)
	name := h.srv.NewQueue(t)
	d := azurequeue.New(svc, name, azurequeue.Options{})
	poison := azurequeue.New(svc, azurequeue.PoisonQueueName(name), azurequeue.Options{})
	return drivertest.Queue{
		Driver: d,
		Send: func(ctx context.Context, body []byte, _ map[string]string) error {
			_, err := d.Send(ctx, string(body))
			return err
		},
		ReceivePoison: func(ctx context.Context) ([]*triggers.Message, error) {
			ms, err := poison.Receive(ctx, 32, time.Minute)
			if errors.Is(err, triggers.ErrNotFound) {
				return nil, nil // not created yet
			}
			return ms, err
		},
		MissingQueue: func(ctx context.Context) (triggers.Driver, error) {
			return azurequeue.New(svc, UniqueQueueName(t), azurequeue.Options{}), nil
		},
		OpenPublisher: func(context.Context) (triggers.Publisher, error) {
			// A second driver on the queue: the publisher outputs use.
			return azurequeue.New(svc, name, azurequeue.Options{}), nil
		},
		OpenPoison: func(context.Context) (triggers.PoisonAdmin, error) {
			return azurequeue.OpenPoison(svc, name)
		},
		Capabilities: drivertest.Capabilities{Leases: true, MinLease: time.Second},
	}, nil
}
