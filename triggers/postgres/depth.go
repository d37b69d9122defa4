package postgres

import (
	"context"
	"fmt"

	"github.com/jobhost/jobhost/triggers"
)

var _ triggers.DepthCounter = (*Driver)(nil)

// Depth returns how many messages the queue holds: waiting, delayed and
// leased.
func (d *Driver) Depth(ctx context.Context) (int64, error) {
	if d.closed.Load() {
		return 0, d.errClosed("count")
	}
	if err := d.ready(ctx); err != nil {
		return 0, err
	}
	var n int64
	if err := d.sc.pool.QueryRow(ctx, `SELECT count(*) FROM `+d.t.messages+` WHERE queue = $1`, d.queue).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: count %s: %w", d.where(), err)
	}
	return n, nil
}
