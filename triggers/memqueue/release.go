package memqueue

import (
	"context"

	"github.com/jobhost/jobhost/triggers"
)

var _ triggers.Releaser = (*Driver)(nil)

// Release makes m visible again at once without counting this delivery:
// its next DequeueCount is the same as now (triggers.Releaser; the host
// releases what a shutdown kept from running).
func (d *Driver) Release(ctx context.Context, m *triggers.Message) error {
	e, err := d.held(m, "release")
	if err != nil {
		return err
	}
	q := d.q
	e.holder = nil
	e.dequeues-- // the next Receive counts it again
	q.hidden.remove(e.index)
	q.ready = append(q.ready, e)
	q.wake()
	q.mu.Unlock()
	return nil
}
