package rabbitmq

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
)

var _ triggers.DepthCounter = (*Driver)(nil)

// Depth returns how many messages wait for delivery: those ready in the
// queue plus those waiting out a delay in its delay queue (Retry with a
// delay, PublishDelayed), each as a passive queue.declare reports it. It
// asks on a channel of its own on the connection the driver's publishers
// share (dialled if need be), never on the consumer's.
//
// A declare counts only ready messages: deliveries that consumers hold
// unacknowledged (this driver's, up to Prefetch, and every other
// worker's) are not included; only the management API counts those,
// and the driver does not use it. A missing queue is an error wrapping
// triggers.ErrNotFound; a missing delay queue (no delayed message yet)
// counts as empty.
func (d *Driver) Depth(ctx context.Context) (int64, error) {
	if d.closed.Load() {
		return 0, d.closedErr("count")
	}
	p, err := d.publisher()
	if err != nil {
		return 0, d.closedErr("count")
	}
	conn, err := p.sc.get(ctx)
	if err != nil {
		return 0, d.depthErr(err)
	}
	ready, err := passiveCount(conn, d.queue)
	if err != nil {
		if isCode(err, amqp.NotFound) {
			return 0, d.depthErr(fmt.Errorf("%w: %w", triggers.ErrNotFound, err))
		}
		return 0, d.depthErr(err)
	}
	delayed, err := passiveCount(conn, d.retryQueue)
	if err != nil && !isCode(err, amqp.NotFound) {
		return 0, d.depthErr(fmt.Errorf("delay queue %q: %w", d.retryQueue, err))
	}
	return int64(ready) + int64(delayed), nil
}

// passiveCount returns the ready messages of queue from a passive declare
// on a new channel (a 404 closes the channel it is asked on).
func passiveCount(conn *amqp.Connection, queue string) (int, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("open a channel: %w", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	return q.Messages, nil
}

func (d *Driver) depthErr(err error) error {
	return d.wrap(fmt.Errorf("rabbitmq: count queue %q on %s: %w", d.queue, d.display, err))
}
