// Package servicebus is the jobhost trigger driver for an Azure Service Bus
// queue or topic subscription, with Azure Functions semantics: PeekLock
// receives, native delivery counts, the native dead-letter queue and a
// bounded automatic lock renewal (maxAutoLockRenewalDuration, default 5 min).
//
// # URLs
//
// The URL form is gocloud's azuresb form, plus queues:
//
//	azuresb://<topic>?subscription=<subscription>   a topic subscription
//	azuresb://<queue>                               a queue
//
// See [ParseURL] for the query parameters and [OpenURL] for how the
// connection is found.
//
// # Why not gocloud's Subscription.Receive
//
// gocloud.dev/pubsub/azuresb provides the identity (the client constructors)
// and the topic-subscription receiver, but its portable
// pubsub.Subscription.Receive is not used as the engine: it prefetches in the
// background, up to thousands of messages, whose locks then run out while
// they sit in its buffer (each comes back with DeliveryCount + 1, eventually
// reaching the dead-letter queue unprocessed); it also cannot renew locks,
// dead-letter with a reason, or see DeliveryCount without As. This driver
// calls the *azservicebus.Receiver directly instead: each Receive asks the
// broker for at most max messages (azservicebus issues exactly that many link
// credits and releases, unlocked and uncounted, anything that arrives after
// ReceiveMessages returns), so no message is held that the runtime has not
// asked for. That is Functions' default prefetchCount 0; azservicebus v1.11
// has no prefetch setting.
//
// # Leases and lock renewal
//
// A Service Bus lock lasts for the entity's LockDuration (default 1 min, at
// most 5 min); a receiver cannot choose it. To keep the driver contract
// (Receive hides a message for lease; ExtendLease keeps it hidden for lease
// from now), the driver renews the lock in the background, at half the lock
// duration, until the lease the runtime asked for ends — but never once the
// message has been held for longer than Options.MaxAutoLockRenewalDuration
// since it was received, as Functions does. Past that limit ExtendLease
// returns an error wrapping [ErrLockRenewalLimit] and renews nothing; the
// message is redelivered when its lock runs out. A lease shorter than the
// lock duration cannot be shortened: the message stays locked for the whole
// lock duration. Renewal compares the broker's LockedUntil with the local
// clock, so the host clock must be roughly right (NTP).
//
// # Retries
//
// Retry(m, 0) abandons the message: it is available again at once and its
// DeliveryCount goes up by one. Service Bus cannot abandon a message with a
// delay, so a Retry with a delay does one of two things:
//
//   - Hold (delays up to Options.MaxHeldRetryDelay, default 1 min, and every
//     delay on a topic subscription): the driver keeps the lock, renewing it,
//     and abandons the message when the delay has passed. The message, its
//     id and its native DeliveryCount are untouched. If the host stops, Close
//     abandons held messages at once; if the process dies, the lock runs out
//     and the message comes back (DeliveryCount + 1) after at most one lock
//     duration — sooner than asked, never lost.
//   - Scheduled copy (longer delays, on a queue): the driver schedules a copy
//     of the message (body, application properties and system properties
//     unchanged; a new MessageID, since the entity may have duplicate
//     detection on) with ScheduledEnqueueTime = now + delay, then completes
//     the original; if the completion fails the copy is cancelled. The copy
//     carries the delivery count so far in the application property
//     "jobhost-delivery-count" ([DeliveryCountProperty]), and the original
//     id and enqueue time in [OriginalIDProperty] and
//     [OriginalEnqueuedTimeProperty]; Receive honours them, so DequeueCount,
//     ID and InsertionTime continue across copies. These properties are not
//     shown in Message.Properties. The copy keeps the original's expiry.
//     Service Bus has no transactions in azservicebus, so a crash between the
//     two steps can deliver the message twice (at-least-once). A topic
//     subscription cannot get a copy: sending to the topic would deliver it to
//     every subscription.
//
// # Dead-lettering
//
// DeadLetter uses the native dead-letter queue, "<entity>/$deadletterqueue"
// ([Driver.PoisonDestination]), with DeadLetterReason [DeadLetterReason] and
// DeadLetterErrorDescription the runtime's error text (at most 4096 bytes).
// Body and properties are kept by the broker. Service Bus also dead-letters
// by itself once DeliveryCount exceeds the entity's MaxDeliveryCount (default
// 10), without running the function: set the host's maxDequeueCount to at
// most the entity's MaxDeliveryCount so that the runtime poisons first, with
// a reason. (A message retried by scheduled copy starts a new native count,
// so the entity limit then counts per copy; DequeueCount still counts all.)
//
// # Publishing, poison administration and connections
//
// The package registers the azuresb scheme with package triggers (import
// it for its side effect): OpenURL opens trigger drivers, OpenPublisherURL
// publishers to a queue or topic ([Publisher]), and OpenPoisonURL the
// administration of an entity's dead-letter queue ([PoisonAdmin]: count,
// list, requeue and purge; its ids are dead-letter sequence numbers).
// Everything opened through a URL on the same connection (the same
// connection string, or the same namespace host, whichever settings hold
// it) shares one *azservicebus.Client, which the last Close closes.
//
// Publishers and queue drivers are triggers.DelayPublisher:
// PublishDelayed sends the message with ScheduledEnqueueTime = now + delay
// (by the local clock, which must be right), so the broker makes it
// available only then; on a topic, to every subscription at that time.
// Service Bus sets no longest delay. The delay survives the publisher and
// broker restarts, and the message's time to live counts from its
// scheduled time.
//
// Service Bus entities are never created: OpenOptions.CreateIfMissing is
// ignored (Functions does not create them either; it needs the Manage right).
package servicebus
