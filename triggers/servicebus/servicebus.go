package servicebus

import (
	"context"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/jobhost/jobhost/triggers"
)

const (
	// Scheme is the URL scheme, the same as gocloud's azuresb.
	Scheme = "azuresb"

	// DefaultMaxAutoLockRenewalDuration is Functions' default
	// maxAutoLockRenewalDuration.
	DefaultMaxAutoLockRenewalDuration = 5 * time.Minute
	// DefaultReceiveWait is how long Receive waits for a first message.
	DefaultReceiveWait = 2 * time.Second
	// MaxReceiveWait bounds Options.ReceiveWait: Receive must not long-poll.
	MaxReceiveWait = 30 * time.Second
	// DefaultMaxHeldRetryDelay is the longest Retry delay served by holding
	// the lock when a scheduled copy is possible.
	DefaultMaxHeldRetryDelay = time.Minute
	// MaxBatch is the most messages one Receive asks for (azservicebus's
	// credit limit).
	MaxBatch = 5000

	// DeliveryCountProperty carries, on a scheduled retry copy, how many
	// times the message had been delivered before the copy was made.
	DeliveryCountProperty = "jobhost-delivery-count"
	// OriginalIDProperty carries, on a scheduled retry copy, the MessageID of
	// the first message of the chain; Receive reports it as Message.ID.
	OriginalIDProperty = "jobhost-original-message-id"
	// OriginalEnqueuedTimeProperty carries, on a scheduled retry copy, the
	// original enqueue time; Receive reports it as Message.InsertionTime.
	OriginalEnqueuedTimeProperty = "jobhost-original-enqueued-time"

	// DeadLetterReason is the DeadLetterReason DeadLetter sets; the error
	// text goes into DeadLetterErrorDescription.
	DeadLetterReason = "jobhost: poison message"
	// MaxErrorDescription is the most bytes of error text DeadLetter stores.
	MaxErrorDescription = 4096

	// DeadLetterSuffix is appended to an entity path to name its
	// dead-letter queue.
	DeadLetterSuffix = "/$deadletterqueue"

	// Property names for system properties in Message.Properties.
	PropContentType   = "ContentType"
	PropCorrelationID = "CorrelationID"
	PropSubject       = "Subject"

	// opTimeout bounds the driver's own broker calls (background renewals,
	// abandons of held messages, cancelling a copy).
	opTimeout = 30 * time.Second
	// closeTimeout bounds Close.
	closeTimeout = 10 * time.Second
	// giveBackTimeout bounds abandoning messages a cancelled Receive took.
	giveBackTimeout = 3 * time.Second
	// minRenewInterval stops renewals from spinning when the clocks
	// disagree.
	minRenewInterval = 100 * time.Millisecond
	// holdMargin keeps a held message's lock a little past its due time,
	// so that the abandon, not the lock's end, releases it.
	holdMargin = time.Second
)

// receiver is the part of *azservicebus.Receiver the driver uses: the fake
// boundary.
type receiver interface {
	ReceiveMessages(ctx context.Context, maxMessages int, options *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
	CompleteMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.CompleteMessageOptions) error
	AbandonMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.AbandonMessageOptions) error
	DeadLetterMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.DeadLetterOptions) error
	RenewMessageLock(ctx context.Context, msg *azservicebus.ReceivedMessage, options *azservicebus.RenewMessageLockOptions) error
	Close(ctx context.Context) error
}

// sender is the part of *azservicebus.Sender the driver uses for scheduled
// retry copies and Publish.
type sender interface {
	SendMessage(ctx context.Context, message *azservicebus.Message, options *azservicebus.SendMessageOptions) error
	ScheduleMessages(ctx context.Context, messages []*azservicebus.Message, scheduledEnqueueTime time.Time, options *azservicebus.ScheduleMessagesOptions) ([]int64, error)
	CancelScheduledMessages(ctx context.Context, sequenceNumbers []int64, options *azservicebus.CancelScheduledMessagesOptions) error
	Close(ctx context.Context) error
}

var (
	_ receiver           = (*azservicebus.Receiver)(nil)
	_ sender             = (*azservicebus.Sender)(nil)
	_ triggers.Driver    = (*Driver)(nil)
	_ triggers.Waiter    = (*Driver)(nil)
	_ triggers.Publisher = (*Driver)(nil)
)
