// Package rabbitmq is the jobhost trigger driver for one RabbitMQ queue,
// built on github.com/rabbitmq/amqp091-go.
//
// # Why not gocloud's rabbitpubsub
//
// The URL form rabbit://<queue> and the variable RABBIT_SERVER_URL follow
// gocloud.dev/pubsub/rabbitpubsub, but that package is not the engine: its
// Nack requeues the message at once (no retry delay, so a failing message
// spins in a hot loop) and never rejects without requeue, so a queue's
// dead-letter exchange is never used; and it sets no prefetch bound by
// default (without one the broker pushes the whole queue into one process,
// where messages wait unprocessed while no other worker can have them). This
// driver does only broker operations; the runtime decides when to retry and
// when to poison.
//
// # Connection and prefetch
//
// A Driver owns one AMQP connection with a consumer channel (basic.qos
// prefetch = Options.Prefetch, per consumer, default 16: the broker never
// lets this driver hold more unacknowledged deliveries) and a publishing
// channel in confirm mode for the copies Retry, Release and DeadLetter
// make. It connects on the first Receive. When the connection or the
// consumer channel dies, the deliveries it held are requeued by the broker:
// settling them returns an error wrapping triggers.ErrLeaseLost, the next
// Receive returns an error that says what happened, and the Receive after
// that connects again. Close is idempotent; after it every method returns an
// error wrapping triggers.ErrClosed.
//
// # Publishers and poison administration
//
// The package registers the scheme rabbit (triggers.Register) with OpenURL,
// OpenPublisherURL and OpenPoisonURL. The publishers (and Driver.Publish)
// and the poison administrations of one server URL share one AMQP
// connection, with no consumer, dialled on first use and again after it
// died, and closed by the last Close; each has a confirm-mode channel of
// its own. The poison administration lists with basic.get and releases;
// its Requeue publishes a copy to the queue (with a confirm) before it
// acknowledges the poison message, dropping the bookkeeping headers
// (x-jobhost-*, jobhost-*, x-delivery-count, x-death, x-first-death-*,
// x-last-death-*) and keeping every other property.
//
// Publishers and the Driver are triggers.DelayPublisher. PublishDelayed
// uses the mechanism of Retry with a delay (see Retry below): it checks
// that the queue exists (declaring it with CreateIfMissing; a missing one
// is triggers.ErrNotFound), declares the delay queue "<queue>-retry-q" if
// missing, and publishes the message there, with a publisher confirm and
// per-message expiration = the delay (milliseconds, rounded up), so the
// broker dead-letters it into the queue when the delay has passed. The
// delay lives on the broker. The longest delay is [MaxDelay], 2^32-1 ms
// (about 49.7 days); a longer one is an error wrapping
// triggers.ErrDelayTooLong. The delay queue expires messages only at its
// head, in the order they were queued, delayed publishes and retries
// alike: a long delay holds back every shorter one queued after it (late,
// never early), so give a queue's delayed publishes delays no longer than
// its retries', or expect the retries behind them to wait.
//
// Receive waits up to Options.ReceiveWait (default 2 s) for a first
// delivery, then takes only what is already buffered, up to max. The Driver
// implements triggers.Waiter, so the runtime polls again at once after an
// empty Receive.
//
// RabbitMQ has no visibility leases: a delivery stays with this consumer
// until it is settled or the channel closes. ExtendLease therefore does
// nothing (drivertest.Capabilities.Leases is false), and a function that
// runs longer than the broker's consumer_timeout (30 minutes by default in
// 3.10) loses its channel and all the deliveries on it.
//
// # Acknowledgements
//
// Complete never waits for the broker: AMQP 0-9-1 does not answer a
// basic.ack, so an ack is unconfirmed whatever the client does. The
// driver coalesces them: a Complete whose delivery is older than every
// delivery still held sends one basic.ack with multiple=true for it and for
// the completed deliveries before it; a Complete whose delivery has an
// older one still held (running, or settled by Retry or DeadLetter not yet
// done) leaves its ack pending until that one is settled, but at most
// Options.AckDelay (default 2 ms, URL ack_delay=; ack_delay=0 acks every
// Complete at once) after that older delivery was received, and not at all
// when it was received longer ago (a slow function never holds back the
// acks of the deliveries after it for more than AckDelay). Retry,
// DeadLetter and Release send their own frame (basic.nack, or basic.ack
// after the confirmed copy) before a coalesced ack can cover their tag, so
// a coalesced ack never acknowledges a delivery that was to be requeued or
// dead-lettered. Close sends the pending acks before closing the consumer
// channel (whose close the broker confirms after reading them). An ack that
// never reaches the broker (the connection drops first) means the delivery
// is requeued and delivered again, with its count raised: at least once,
// never a loss. Complete still returns an error wrapping
// triggers.ErrLeaseLost when the channel is known to be gone, and when the
// frame it sends fails.
//
// # DequeueCount
//
// The count is always read from the message, never kept in process, so it
// is right across worker restarts and across several workers:
//
//	DequeueCount = base + redeliveries
//	base         = header x-jobhost-attempt (set on the copies this driver
//	               republishes: Retry's, Release's), else 1
//	redeliveries = 0 if the delivery is not flagged redelivered; else the
//	               broker's header x-delivery-count (quorum queues count every
//	               return: nack, reject, channel or connection loss); else 1
//	               (classic queues only flag a redelivery, they do not count)
//
// A copy drops x-delivery-count and is a first delivery, so its count is
// exactly its x-jobhost-attempt, on either queue type; the broker counts
// only the returns after it. For classic queues the count is thus exact for
// Retry and Release and a lower bound after crashes: a classic queue cannot
// say how many times a redelivered message was returned, only that it was.
//
// # Retry
//
// Which mechanism a retry uses is decided per delivery, from what the broker
// has shown about the queue on this connection: a redelivery that carries
// x-delivery-count shows a quorum queue; a redelivery without it shows a
// classic queue (a queue the driver created itself is quorum).
//
//   - Retry(m, 0) on a quorum queue, or on a queue not yet known whose
//     delivery is a first delivery: basic.nack with requeue. The broker counts
//     it (quorum: x-delivery-count; classic: the redelivered flag, which is
//     one more than a first delivery either way). Such retries count toward a
//     quorum queue's x-delivery-limit, if one is set: set it above
//     maxDequeueCount, or not at all.
//   - Retry(m, 0) on a classic queue otherwise: a copy (body, properties and
//     headers unchanged, x-jobhost-attempt = DequeueCount+1) is published to
//     the queue itself with a publisher confirm, and only then is the
//     original acknowledged.
//   - Retry(m, d > 0), any queue: the copy is published the same way to the
//     delay queue "<queue>-retry-q" with per-message expiration d; when it
//     expires the broker dead-letters it back into the queue. The delay
//     lives on the broker, so it survives worker and broker restarts, and
//     the message is never redelivered before d. Per-message TTL expires
//     messages only at the head of a queue: a retry with a short delay
//     queued behind one with a long delay waits for the long one (delays
//     grow late, never early). Use one delay for the queue
//     (visibilityTimeout) to avoid that.
//
// The delay queue is a durable quorum queue, declared by the driver when
// missing, with no consumers and the arguments x-dead-letter-exchange "",
// x-dead-letter-routing-key <queue>, x-dead-letter-strategy at-least-once
// and x-overflow reject-publish (at-least-once needs it; with no length
// limit nothing is rejected): RabbitMQ 3.10 or later. The broker keeps an
// expired message in the delay queue until the queue has confirmed its
// copy, so none is lost on the way back, across a broker restart too; one
// the queue cannot take (deleted meanwhile, or full) is tried again every
// dead_letter_worker_publisher_confirm_timeout (3 minutes by default).
// Dead-lettering out of a classic queue is at most once: messages falling
// due while the broker restarts are dropped.
//
// Versions before this one used a classic "<queue>-retry" delay queue; it
// cannot be redeclared as a quorum queue (PRECONDITION_FAILED), so the
// driver uses the new name and leaves the old queue alone: what waits in it
// still expires back into the queue by its own arguments, with its count,
// and workers of the old version (in a rolling deploy) go on using it.
// Delete "<queue>-retry" once it is empty and no old worker runs. A queue
// already named "<queue>-retry-q" is used as it is.
//
// An interruption between the confirmed copy and the acknowledgement of the
// original (connection loss) leaves both: a message may be duplicated, never
// lost. The copy keeps the original's message id and timestamp; it drops the
// broker's x-delivery-count header (it would be wrong on a new message), the
// expiration, and a user-id that is not this connection's user (the broker
// rejects a publish whose user-id is not the publisher).
//
// # Release
//
// Release (triggers.Releaser, called by the host at shutdown for messages
// it took but did not start and for those whose functions the shutdown
// cancelled) gives a delivery back at once without counting it as an
// attempt: a copy with x-jobhost-attempt = DequeueCount is published to
// the queue with a publisher confirm and then the original is
// acknowledged, on classic and quorum queues alike (a requeue would count:
// the redelivered flag on classic queues, x-delivery-count on quorum
// ones). The copy goes to the back of the queue. A quorum queue's own
// x-delivery-limit counts only the returns since the last copy. If the
// copy cannot be made the delivery is requeued with basic.nack instead, so
// it is visible at once all the same, and Release returns an error saying
// that this delivery will count.
//
// # DeadLetter
//
// By default DeadLetter publishes the body, properties and headers unchanged
// to the poison queue ("<queue>-poison", or Options.PoisonQueue; a durable
// classic queue declared if missing), adding headers x-jobhost-reason and
// x-jobhost-source (the queue), with a publisher confirm, and then
// acknowledges the original. It returns the copy's message id (the
// original's). A copy's x-jobhost-attempt header is kept; remove it when
// moving poison messages back to the queue, or they start over at the old
// count. With Options.NativeDeadLetter (URL deadletter=native) it rejects the
// delivery without requeue instead, so the queue's own dead-letter exchange
// takes it: the queue must have one (x-dead-letter-exchange), otherwise the
// broker drops the message.
//
// # Message mapping
//
// ID is the AMQP message-id. A message published without one gets an id
// derived from its content: "sha256:" and the first 32 hex digits of a
// SHA-256 over the body, the timestamp, the type, correlation-id and app-id
// properties and the headers other than x-delivery-count, x-death,
// x-first-death-*, x-last-death-* and x-jobhost-*. It is stable across
// redeliveries and retries (copies carry it as their message-id), but two
// identical messages without message-id share it. Body is the delivery body
// unchanged. Properties holds every header whose value is a string, number,
// boolean, timestamp or UTF-8 byte string (tables and arrays such as x-death
// are left out), and "content-type" when set. InsertionTime is the AMQP
// timestamp property (zero when the producer set none). Source is the queue.
//
// Errors never contain the password of the server URL.
package rabbitmq
