package rabbitmq

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Publish sends body to the driver's queue through the default exchange as
// a persistent message with props as headers, and returns once the broker
// confirmed it (triggers.Publisher). With CreateIfMissing a missing queue is
// declared as a durable quorum queue first. It uses a connection of its own
// with no consumer, so publishing never takes a message off the queue.
func (d *Driver) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	s, err := d.sessionIn(ctx, &d.pub, false)
	if err != nil {
		return "", err
	}
	headers := amqp.Table{}
	for k, v := range props {
		headers[k] = v
	}
	id := uuid.NewString()
	msg := amqp.Publishing{Headers: headers, Body: body, DeliveryMode: amqp.Persistent, MessageId: id, Timestamp: time.Now()}
	var ensure func(context.Context, *session) error
	if d.opts.CreateIfMissing {
		ensure = func(_ context.Context, s *session) error {
			return s.ensureQueue(d.queue, amqp.Table{"x-queue-type": "quorum"})
		}
	}
	if err := s.publish(ctx, d.queue, msg, ensure); err != nil {
		return "", d.wrap(fmt.Errorf("rabbitmq: publish to queue %q: %w", d.queue, err))
	}
	return id, nil
}
