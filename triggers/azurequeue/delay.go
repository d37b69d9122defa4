package azurequeue

import (
	"context"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/triggers"
)

// DefaultTimeToLive is how long the service keeps a message it was not
// told otherwise about: 7 days from when it was enqueued.
const DefaultTimeToLive = 7 * 24 * time.Hour

var _ triggers.DelayPublisher = (*Driver)(nil)

// SendDelayed enqueues text unchanged, as Send does, with a visibility
// timeout of delay: no receiver gets the message before delay has passed
// by the service's clock. delay is rounded up to whole seconds; zero or
// less is Send. A delay over MaxVisibilityTimeout (7 days) is an error
// wrapping triggers.ErrDelayTooLong, and nothing is sent. The message's
// time to live is the service's default (7 days) counted from when it
// becomes visible, so a delayed message lives as long as an undelayed one
// once it can be received (and the service, which requires the visibility
// timeout to end before the expiry, accepts the full 7 days).
func (d *Driver) SendDelayed(ctx context.Context, text string, delay time.Duration) (id string, err error) {
	if delay <= 0 {
		return d.Send(ctx, text)
	}
	if err := d.usable(); err != nil {
		return "", err
	}
	if err := triggers.CheckDelay(fmt.Sprintf("azurequeue: queue %q", d.name), delay, MaxVisibilityTimeout); err != nil {
		return "", err
	}
	vis := seconds(delay, 1)
	ttl := vis + int32(DefaultTimeToLive/time.Second)
	return d.enqueue(ctx, text, &azqueue.EnqueueMessageOptions{VisibilityTimeout: &vis, TimeToLive: &ttl})
}

// PublishDelayed enqueues body as the message text, hidden for delay
// (triggers.DelayPublisher; see SendDelayed). Storage Queues have no
// properties, so props are ignored.
func (d *Driver) PublishDelayed(ctx context.Context, body []byte, _ map[string]string, delay time.Duration) (string, error) {
	return d.SendDelayed(ctx, string(body), delay)
}
