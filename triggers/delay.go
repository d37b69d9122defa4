package triggers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DelayPublisher is implemented by publishers that can send a message that
// stays invisible to receivers for delay.
//
// PublishDelayed is Publish with a delay before the message becomes
// visible: it returns once the broker has accepted the message, and no
// receiver gets it before delay has passed since the call, give or take the
// broker's clock (and the rounding the broker imposes, which is always up:
// a delay may grow, never shrink). After the delay the message is received
// as a message Publish sent, with DequeueCount 1. A delay of zero or less
// is Publish.
//
// Each broker has a longest delay, documented by its driver package; a
// longer delay is an error wrapping ErrDelayTooLong, and nothing is sent: a
// delay is never silently shortened. The delay is kept by the broker, so it
// survives the publisher's process, except where the driver's package
// documentation says otherwise (memqueue's is in process).
//
// Drivers implementing it, with their longest delay:
//
//   - azurequeue: the message's visibility timeout (EnqueueMessage
//     visibilitytimeout), whole seconds, at most 7 days.
//   - memqueue: in process, no limit.
//   - servicebus: ScheduledEnqueueTime, no limit.
//   - rabbitmq: the delay queue "<queue>-retry-q" with a per-message
//     expiration, milliseconds, at most 2^32-1 ms (about 49.7 days).
//   - redis: the delayed set "<stream>:delayed", due time in milliseconds
//     (rounded up), no limit; the delay is kept by Redis, but a message is
//     moved into the stream only by a Receive, so it waits while no worker
//     runs.
//   - postgres: the row's run_at, now() + delay by the server's clock, in
//     whole microseconds rounded up, no limit.
//
// JetStream (nats-server before 2.12 has no message scheduling) and the
// gocloud pubsub schemes do not implement it: a caller asking them for a
// delay must report that the broker cannot delay a message.
type DelayPublisher interface {
	// PublishDelayed sends body with props, as Publish does, so that it
	// becomes visible to receivers only after delay.
	PublishDelayed(ctx context.Context, body []byte, props map[string]string, delay time.Duration) (id string, err error)
}

// ErrDelayTooLong means PublishDelayed was asked for a delay longer than the
// broker allows; nothing was sent.
var ErrDelayTooLong = errors.New("delay longer than the broker allows")

// CheckDelay returns an error wrapping ErrDelayTooLong when delay exceeds
// limit; where (such as `rabbitmq: queue "orders"`) begins its message.
// Drivers call it before sending anything.
func CheckDelay(where string, delay, limit time.Duration) error {
	if delay > limit {
		return fmt.Errorf("%s: publish with a delay of %v: %w (at most %v)", where, delay, ErrDelayTooLong, limit)
	}
	return nil
}
