package azurequeue

import (
	"context"

	"github.com/jobhost/jobhost/triggers"
)

var _ triggers.DepthCounter = (*Driver)(nil)

// Depth returns the queue's approximate message count (visible and
// hidden messages alike), as the Get Queue Metadata call gives it.
func (d *Driver) Depth(ctx context.Context) (int64, error) {
	n, err := d.ApproximateCount(ctx)
	return int64(n), err
}
