package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/jobhost/jobhost/triggers"
)

var _ triggers.DepthCounter = (*Driver)(nil)

// Depth returns what the durable consumer has yet to see settled, from
// its consumer info: NumPending (messages matching its filter not yet
// delivered) plus NumAckPending (delivered and not yet acknowledged: held
// by any worker, waiting in a driver after a pull ahead, awaiting a
// redelivery, or retried with a delay, which the server keeps pending
// until it redelivers). Acked, terminated and dead-lettered messages are
// not counted; an ack sent an instant earlier (acks are not awaited) may
// still be. Until the consumer exists (the driver creates it on its first
// Receive) it returns the stream's messages on the filter subject, what
// a new consumer would have pending. A missing stream is an error
// wrapping triggers.ErrNotFound.
func (d *Driver) Depth(ctx context.Context) (int64, error) {
	if d.isClosed() {
		return 0, d.closedErr("count")
	}
	if !d.nc.IsConnected() {
		return 0, d.notConnected("count")
	}
	c, err := d.js.Consumer(ctx, d.opts.Stream, d.opts.Consumer)
	switch {
	case err == nil:
		info := c.CachedInfo()
		return int64(info.NumPending) + int64(info.NumAckPending), nil
	case errors.Is(err, natsjs.ErrStreamNotFound):
		return 0, fmt.Errorf("jetstream: count %s: stream %q does not exist: %w", d.source, d.opts.Stream, triggers.ErrNotFound)
	case !errors.Is(err, natsjs.ErrConsumerNotFound):
		return 0, d.apiErr("count "+d.source, err)
	}
	s, err := d.js.Stream(ctx, d.opts.Stream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return 0, fmt.Errorf("jetstream: count %s: stream %q does not exist: %w", d.source, d.opts.Stream, triggers.ErrNotFound)
	}
	if err != nil {
		return 0, d.apiErr("count "+d.source, err)
	}
	if d.opts.Subject == "" {
		return int64(s.CachedInfo().State.Msgs), nil
	}
	info, err := s.Info(ctx, natsjs.WithSubjectFilter(d.opts.Subject))
	if err != nil {
		return 0, d.apiErr("count "+d.source+" on subject "+strconv.Quote(d.opts.Subject), err)
	}
	var n uint64
	for _, k := range info.State.Subjects {
		n += k
	}
	return int64(n), nil
}
