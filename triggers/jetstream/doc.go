// Package jetstream is the jobhost trigger driver for one NATS JetStream
// durable pull consumer, URL scheme nats:// (see OptionsFromURL and OpenURL).
// Importing it registers the scheme (triggers.Register) with its trigger
// driver (OpenURL), publisher (OpenPublisherURL) and poison administration
// (OpenPoisonURL).
//
// Engine choice: gocloud's natspubsub v0.46 is core NATS only. The JetStream
// driver github.com/pitabwire/natspubsub v0.7.12 sits behind gocloud's
// Subscription, which prefetches and buffers (and it keeps a half-read Fetch
// batch across calls), so buffered messages outlive their ack wait; its Ack
// is fire-and-forget with errors dropped, Nack is a plain Nak, InProgress,
// Term and NumDelivered are reachable only through As, headers are
// URL-unescaped on receive, and dial errors quote the URL with credentials.
// This package uses nats.go directly: pull requests it controls, nothing
// buffered beyond Prefetch and nothing left to expire in a buffer,
// broker-native NumDelivered, NakWithDelay, InProgress and Term, and
// settlements whose errors are reported.
//
// # Semantics
//
//   - Receive, with nothing waiting in the driver and no backlog (see
//     pulling ahead), sends one pull request {batch, expires, no_wait} and
//     reads it to its end: the server answers at once with what is
//     available, or waits up to ReceiveWait (2 s) for the first message. At most min(max, Prefetch)
//     messages are returned. Prefetch bounds each driver: its pull requests
//     never ask for more than Prefetch less what it holds (handed out or
//     waiting) and what its open requests may still deliver. The consumer's
//     MaxAckPending is consumer-wide (all workers together, and messages
//     retried with a delay, which stay "pending" on the server until
//     redelivered): DefaultMaxAckPending (10000) unless max_ack_pending=
//     says otherwise (see Options.MaxAckPending), so N workers hold up to
//     N × Prefetch.
//     When ctx ends (or Close is called) while Receive waits, it returns at
//     once; its request, which cannot be withdrawn, is read to its end in
//     the background, and what it delivers waits in the driver, as messages
//     pulled ahead do (below), for the next Receive.
//   - Pulling ahead: while the consumer has a backlog (the last delivery
//     said more were waiting), the driver keeps pull requests (each
//     waiting up to 500 ms) open for its remaining room: from Receive when
//     nothing waits, and as settlements free a quarter of Prefetch. A
//     message counts as freed once its settlement is sent. The unconfirmed
//     ack that frees a quarter carries the request itself ("+NXT
//     {batch, expires}" on the ack subject: the server acks, then serves
//     the pull request); an awaited ack or a Nak sends the request just
//     before it, so the two round trips overlap (a settlement that fails
//     leaves the driver one over until that message's lease ends). The
//     next Receive returns what arrived without a round trip. Such a
//     message waits in the driver with InProgress sent every AckWait/2 (so
//     it is not redelivered and its NumDelivered does not grow), and its
//     lease starts when Receive hands it out. Close
//     waits for the requests to end, then Naks what is still waiting, so
//     another worker gets it at once (with NumDelivered one more). A
//     backlog therefore flows without a gap between batches.
//   - ID is the Nats-Msg-Id header when the message has one, else the stream
//     sequence in decimal. DequeueCount is the server's NumDelivered, which
//     survives restarts and is shared by all workers. InsertionTime is the
//     stream timestamp; ExpirationTime is InsertionTime + the stream's MaxAge
//     (zero without one). Properties are the headers (first value of each).
//     Source is "<stream>/<consumer>".
//   - Leases. A consumer the driver creates gets AckWait = the lease of the
//     first Receive (at least 1 s); the runtime always passes the same lease,
//     so the server redelivers an abandoned message (crashed worker) when its
//     lease ends, as WebJobs does. An existing consumer keeps its AckWait
//     (so workers with other leases do not change it under each other),
//     unless Options.AckWait is set; to apply a new lease to a durable,
//     set AckWait or delete the consumer. A lease shorter than AckWait is
//     enforced by the driver: when it ends, the driver Naks the message. A
//     lease longer than AckWait (Receive or ExtendLease) is kept by the
//     driver sending InProgress every AckWait/2; if the worker dies, the
//     server redelivers within AckWait. (InProgress alone only restarts the
//     AckWait clock; it cannot set another length.) A Nak delay is counted
//     by the server from AckWait, so changing AckWait shifts pending delays.
//   - JetStream accepts an ack for a message from any earlier delivery of it
//     (it acks by stream sequence), so settling a message after its lease
//     could remove a message another worker now holds. The driver refuses:
//     once a lease (or the server's ack wait) has run out, or the same driver
//     has received the message again, Complete, Retry, ExtendLease and
//     DeadLetter return an error wrapping triggers.ErrLeaseLost without
//     contacting the server, as do repeated settlements. A settlement the
//     server has no consumer for (no responders) also maps to ErrLeaseLost.
//   - Complete acks without waiting for the server's reply (unconfirmed
//     acks): the +ACK (or +NXT, above) is handed to the connection,
//     whose flusher writes it at once, in one write with whatever else is buffered (other acks,
//     pull requests), and Close flushes what is still buffered and waits
//     for the server's PONG, so an ack sent before Close is not lost with
//     the connection. The reply carried nothing more: nats-server answers an
//     ack even when the message was not pending. An ack lost on the way
//     (the connection drops before it is written) means the server
//     redelivers the message when its ack wait ends, with NumDelivered one
//     more: at least once, never a loss. While the connection is down,
//     Complete fails at once (nothing is buffered) and the message stays
//     held. The lease checks above still make Complete return
//     triggers.ErrLeaseLost without contacting the server; what is no
//     longer seen is a consumer deleted under the driver (no responders),
//     which then means a redelivery from the new consumer. Options.AckSync
//     (URL ack=sync) makes Complete wait for the reply, as before, one
//     round trip per message. Retry(delay) is a Nak (NakWithDelay when
//     delay > 0) and waits for the reply; the next delivery's NumDelivered
//     is one more. ExtendLease sends InProgress and waits for the reply.
//   - DeadLetter publishes body and headers unchanged to the poison subject
//     (minus publish-control headers Nats-Expected-*, Nats-Rollup, Nats-TTL,
//     Nats-Batch-*, Nats-Schedule*, Nats-Incr, Nats-Required-Api-Level), adds
//     Jobhost-Reason, Jobhost-Source and Jobhost-Source-Sequence, and a
//     Nats-Msg-Id of "<stream>:<seq>" when the message has none (so a repeated
//     DeadLetter is de-duplicated by the poison stream); it waits for the
//     publish ack, then Terms the original so JetStream stops redelivering it.
//     The poison subject (default "<subject>-poison") is captured by whichever
//     stream already captures it, or by a stream "<STREAM>_POISON" (file
//     storage, limits retention, no limits) that the driver creates, or adds
//     the subject to, on first use. A poison subject that the trigger's own
//     consumer would receive is refused.
//   - A missing stream makes Receive fail with an error wrapping
//     triggers.ErrNotFound, unless CreateIfMissing, which creates a
//     file-storage stream with work-queue retention (Complete deletes the
//     message, like a queue; the server then allows one consumer per
//     subject) capturing the filter subject, or the stream name when there
//     is no filter subject. The durable consumer is created
//     (explicit ack, MaxDeliver unlimited: the runtime decides when to poison)
//     or updated (AckWait; MaxAckPending when max_ack_pending= is given, or
//     raised to the default when lower, as older drivers set it to one
//     worker's Prefetch) on the first Receive, and again after the server
//     reports it missing. An existing consumer must be a
//     pull consumer with explicit ack, the same filter subject and no BackOff.
//   - Delayed publishing: neither the Driver nor the Publisher is a
//     triggers.DelayPublisher, so a caller asking for a delay reports that
//     the broker cannot delay a message. JetStream can delay a message only
//     by message scheduling (the Nats-Schedule header, "@at <time>", on a
//     stream with allow_msg_schedules), which nats-server added in 2.12;
//     earlier servers, such as the 2.9.10 this package is tested against,
//     store the header as any other and deliver the message at once. A Nak
//     with delay delays only a redelivery.
//   - Drivers, publishers and poison administrations opened on the same
//     server URL share one connection, counted: the last Close closes it.
//     It reconnects for ever; while it is down, Receive and settlements
//     fail (nothing is buffered for later), then work again. Server URLs
//     are never shown with their credentials.
//   - Close is idempotent; after it every method fails promptly with an
//     error wrapping triggers.ErrClosed.
//
// Server quirks (nats-server 2.9.10): a Nak with delay keeps the message
// pending (it counts against MaxAckPending until redelivered); an ack is
// answered even when the message was not pending, so a late ack cannot be
// detected from the reply; a redelivery that finds only an expired, not yet
// removed pull request makes the server deliver the consumer's last new
// message again with NumDelivered 1 (fixed in later 2.10 releases): Receive
// keeps its requests from expiring near the redeliveries it can foresee;
// creating a stream while the account's last stream is being deleted fails
// with "error creating store for stream" (10049), which the driver retries.
package jetstream
