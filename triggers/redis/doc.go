// Package redis is the jobhost trigger driver for one Redis stream read
// through a consumer group (Redis Streams), built on
// github.com/redis/go-redis/v9. Importing it registers the scheme redis
// (triggers.Register) with its trigger driver (OpenURL), publisher
// (OpenPublisherURL) and poison administration (OpenPoisonURL), so the
// host, output bindings and the CLI's send and poison commands open
// redis:// URLs. It needs Redis 7.0 or later (tested against 7.0.15), a
// single server (not Redis Cluster).
//
// # URL and server
//
//	redis://<stream>[?group=G][&poison=P][&field=F]
//	redis:///<stream>[?...]     the stream as the path: any key name, such as app:orders or {orders}
//
// The parts:
//
//   - The stream is the URL's host and path, unescaped (redis://a/b is the
//     key "a/b"). A host with a port (redis://localhost:6379/x) is refused:
//     the URL names a stream, never a server.
//   - group= is the consumer group, default "jobhost". Every worker of a
//     function uses the same group; each driver is a consumer of its own.
//   - poison= is the poison stream, default "<stream>-poison"; a function's
//     poison setting (OpenOptions.PoisonName) overrides it.
//   - field= is the entry field holding the body, default "body".
//
// The server URL (redis://[user:password@]host:port[/db], rediss:// for
// TLS, unix:///path; go-redis's query options such as dial_timeout= are
// accepted) is the app setting the trigger's connection names, which must
// then be set, else REDIS_SERVER_URL, else redis://127.0.0.1:6379. Errors
// show it without the password. Drivers, publishers and poison
// administrations of one server URL share one go-redis client (a pool of
// at least 64 connections), counted: the last Close closes it. The client
// honours context deadlines (ContextTimeoutEnabled) and does not resend a
// command whose reply was lost (max_retries=-1 unless the URL sets it): a
// resent script could deliver or copy a message twice; the runtime retries
// what failed. go-redis reports dial failures on its own global logger
// (goredis.SetLogger), stderr by default.
//
// # Keys
//
//	<stream>           the stream; one entry per message: the body field, then one field per property
//	<stream>:delayed   sorted set of messages waiting out a retry or publish delay, scored by due time (ms)
//	<stream>-poison    the poison stream (or poison=)
//
// Complete deletes entries (XDEL), so a stream is a queue: give each
// function a stream of its own, not a group of its own on a shared stream
// (one group's Complete would delete the entry for the others). Field names
// starting with "jobhost-" are the driver's: jobhost-attempt and jobhost-id
// on entries that Retry and Release added again, jobhost-reason,
// jobhost-source, jobhost-source-id and jobhost-dequeue-count on poison
// entries. A message is never lost between the keys: every move between
// them is one Lua script, which Redis runs atomically.
//
// # Receive, leases and delivery counts
//
// Receive(max, lease) runs one script that takes over, first, entries
// whose lease ran out (XAUTOCLAIM into this driver's consumer, with a
// cursor kept across calls), moves due entries of the delayed set into the
// stream (at most 100 per call), and reads new entries (XREADGROUP
// GROUP <group> <consumer> COUNT <max - taken over> >), at most
// min(max, Prefetch) in all; nothing is read ahead or buffered. When that
// finds nothing, it waits up to ReceiveWait (1 s; less when a delayed
// message falls due sooner) in XREAD BLOCK on the stream, which takes
// nothing, and runs the script once more. The driver is a triggers.Waiter.
// When ctx ends during the wait Receive returns at once with ctx's error
// and has taken nothing; the script itself is not cut short by ctx (its
// reply would be lost and its messages hidden for a lease) but is bounded
// by a 10 s timeout of its own. The XREADGROUP runs inside the script, not
// as a blocking XREADGROUP, so that taking an entry and setting its lease
// are one step: a worker dying in between cannot leave an entry hidden for
// the lease horizon (below).
//
// A missing stream or group is an error wrapping triggers.ErrNotFound;
// with createQueues (OpenOptions.CreateIfMissing) the driver creates both
// (XGROUP CREATE <stream> <group> 0 MKSTREAM: the group reads from the
// start, so what was published before is delivered). Publishers opened with
// CreateIfMissing (output bindings, the CLI's send) do the same on their
// first publish; XADD alone creates only the stream.
//
// The lease is the entry's idle time in the group's pending list. Redis
// has one idle clock per entry but leases differ per message, so the
// driver measures them against a horizon, MaxLease (7 days, the runtime's
// longest leaseDuration): a delivered entry gets the idle time MaxLease -
// lease (XCLAIM ... IDLE ... JUSTID, which does not count a delivery), and
// XAUTOCLAIM takes over entries idle for at least MaxLease, that is
// exactly those whose lease has run out, whatever lease each had.
// ExtendLease sets the idle time again in the same way (the same consumer
// keeps the entry). XPENDING therefore shows idle times near 7 days for
// entries being worked on; an entry read into the group by another client
// (XREADGROUP by hand) is taken over after 7 days. An entry is "hidden"
// only in the sense that no other consumer of the group takes it while its
// lease runs: a lapsed lease is taken over by the next Receive of any
// worker, within about ReceiveWait of its end. A lease longer than
// MaxLease is an error.
//
// DequeueCount = the entry's times-delivered in the pending list
// (XPENDING: 1 on the first delivery; XAUTOCLAIM adds one) + jobhost-attempt
// (the attempts before this entry, which Retry and Release carry into the
// copy they add, since a new entry starts at 1). It survives restarts of
// the workers and is shared by all of them.
//
// A settlement is accepted only from the delivery it concerns: the entry
// must be pending for this consumer with the times-delivered it had when
// received. Complete, Retry, Release, ExtendLease and DeadLetter otherwise
// return an error wrapping triggers.ErrLeaseLost: after another settlement,
// and after the lease ran out and the entry was taken over, by another
// worker or by this same driver (every takeover counts a delivery). A
// settlement of a lapsed lease not yet taken over succeeds. An entry
// deleted from the stream under its holder (XDEL, trimming) is reported
// lost too, and acknowledged.
//
// # Settling
//
//   - Complete: XACK and XDEL, in one script.
//   - Retry(delay): in one script, the entry's fields, with jobhost-id (the
//     message id) and jobhost-attempt = DequeueCount, are added to the
//     stream again (delay 0) or to <stream>:delayed scored by the server
//     time they are due (delay rounded up to the millisecond), and the
//     original is acknowledged and deleted. The next Receive of any worker
//     after the due time moves it back into the stream, in the same script
//     that reads it. A retried message goes to the end of the stream.
//   - Release (triggers.Releaser, used by the host at shutdown): Retry(0)
//     with jobhost-attempt = DequeueCount - 1, so the next delivery has the
//     same DequeueCount and a rolling deploy costs no attempt. It is not
//     done in the pending list (XCLAIM RETRYCOUNT n-1 with an expired idle
//     time), though Redis would allow it: the delivery would then reach n
//     again on its takeover, and a settlement by the released delivery
//     would be taken for one by the new delivery (the settlement token is
//     consumer + times-delivered). A new entry has a new id, so the old
//     delivery's settlements fail with ErrLeaseLost.
//   - DeadLetter: in one script, the entry's fields (body and properties
//     unchanged, jobhost-attempt and jobhost-id dropped) are added to the
//     poison stream with jobhost-reason (at most 8 KiB), jobhost-source
//     (the stream), jobhost-source-id (the message id) and
//     jobhost-dequeue-count, and the original is acknowledged and deleted.
//     It returns the poison entry's id and never triggers.ErrNotRemoved.
//   - Close deletes the driver's consumer from the group when it holds no
//     pending entry (a consumer with pending entries is kept: deleting it
//     would drop them from the pending list for good). Each driver also
//     deletes, on its first Receive, consumers that hold nothing and have
//     been idle for 24 hours (workers that ended without Close).
//
// # Messages
//
// ID is the stream entry id (<ms>-<seq>) of the message's first entry: kept
// as jobhost-id through retries and releases. Body is the body field
// (empty when an entry has none: entries of other producers are delivered
// as they are). Properties are the other fields, less jobhost-attempt and
// jobhost-id. InsertionTime is the time in the message id (when the server
// first added it; for a delayed publish, when it fell due); ExpirationTime is zero; NextVisibleTime is the local
// time the lease ends. Source is the stream.
//
// # Publishing
//
// Publish (the Publisher and the Driver) adds an entry with XADD: the body
// field, then the properties as fields in name order; a property may not be
// the body field, jobhost-attempt or jobhost-id. It returns the entry id.
// PublishDelayed (triggers.DelayPublisher) adds the message to
// <stream>:delayed, due delay from the server's now (rounded up to the
// millisecond), and returns "": the message's id is that of the entry it
// gets when a Receive moves it into the stream, as a first delivery. There
// is no longest delay (beyond time.Duration's); the delay is kept by Redis,
// but moved only by a Receive, so delayed messages wait while no worker
// runs.
//
// # Poison administration
//
// Count is the poison stream's XLEN (exists: the key exists), List its
// oldest entries (Body the body field; Properties every other field, the
// jobhost-* ones included; Reason, DequeueCount and InsertionTime from
// them and from the poison entry id). Requeue moves an entry in one script:
// XADD of its fields to the stream without the jobhost-* fields (so its
// attempts start afresh), then XDEL from the poison stream; an entry is
// never lost and never in both. Purge deletes the oldest entries (XDEL).
//
// # Persistence
//
// Redis keeps messages only as durably as it is configured to. A server
// without persistence (such as the test machine's, run with --save ""
// --appendonly no) loses every stream, delayed message and poison entry on
// a restart, as asynq and every Redis-based queue do; with RDB snapshots it
// loses what came after the last snapshot; with appendonly yes and
// appendfsync everysec, up to about a second. A failover to a replica can
// lose the last acknowledged writes (replication is asynchronous). Choose
// the broker accordingly; delivery is otherwise at least once, as for every
// jobhost driver.
package redis
