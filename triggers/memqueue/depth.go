package memqueue

import (
	"context"

	"github.com/jobhost/jobhost/triggers"
)

var _ triggers.DepthCounter = (*Driver)(nil)

// Depth returns how many messages the driver's queue holds, as Queue.Len
// counts them: visible, leased (received and not yet settled) and delayed
// (sent with a delay or retried with one). Dead-lettered messages are on
// the poison queue and not counted. It never waits; after Close it returns
// an error wrapping triggers.ErrClosed.
func (d *Driver) Depth(context.Context) (int64, error) {
	if err := d.checkOpen("count", ""); err != nil {
		return 0, err
	}
	return int64(d.q.Len()), nil
}
