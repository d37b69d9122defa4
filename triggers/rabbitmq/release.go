package rabbitmq

import (
	"context"
	"fmt"

	"github.com/jobhost/jobhost/triggers"
)

var _ triggers.Releaser = (*Driver)(nil)

// Release gives the delivery back at once without counting it as an
// attempt (triggers.Releaser): a copy carrying x-jobhost-attempt =
// DequeueCount goes to the back of the queue with a publisher confirm, then
// the original is acknowledged. If the copy cannot be made the delivery is
// requeued with basic.nack instead (so this delivery counts) and an error
// says so. See the package documentation.
func (d *Driver) Release(ctx context.Context, m *triggers.Message) error {
	dv, err := d.begin("release", m)
	if err != nil {
		return err
	}
	s := dv.s
	pub := d.copyOf(dv, true)
	pub.Headers[HeaderAttempt] = m.DequeueCount
	if perr := s.publish(ctx, d.queue, pub, nil); perr != nil {
		err := s.ch.Nack(dv.tag, false, true)
		s.acks.settled(dv.tag)
		if err != nil {
			dv.state.Store(stateSettled)
			return d.settleLost("release", m, fmt.Errorf("publish copy: %v; nack: %w", perr, err))
		}
		dv.state.Store(stateSettled)
		return d.wrap(fmt.Errorf("rabbitmq: release message %s in queue %q: publish copy: %w; requeued the delivery with basic.nack instead, so it counts as an attempt", m.ID, d.queue, perr))
	}
	err = s.ch.Ack(dv.tag, false)
	s.acks.settled(dv.tag)
	if err != nil {
		dv.state.Store(stateSettled)
		return d.settleLost("release (copy made, so the message will be delivered twice)", m, err)
	}
	dv.state.Store(stateSettled)
	return nil
}
