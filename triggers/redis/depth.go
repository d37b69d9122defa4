package redis

import (
	"context"

	"github.com/jobhost/jobhost/triggers"
)

var _ triggers.DepthCounter = (*Driver)(nil)

// Depth returns the entries of the stream (waiting and leased: settled
// entries are deleted) plus the messages waiting in the delayed set.
func (d *Driver) Depth(ctx context.Context) (int64, error) {
	if d.closed.Load() {
		return 0, d.fail("count", errClosed)
	}
	pipe := d.l.c.Pipeline()
	n := pipe.XLen(ctx, d.stream)
	z := pipe.ZCard(ctx, d.delayed)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, d.fail("count", err)
	}
	return n.Val() + z.Val(), nil
}
