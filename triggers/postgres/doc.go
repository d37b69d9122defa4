// Package postgres is the jobhost trigger driver for queues kept in
// PostgreSQL tables, built on pgx v5: postgres://<queue> URLs, with the
// connection string in the app setting JOBHOST_POSTGRES_URL (or the
// connection named). Importing it registers the scheme postgres (trigger,
// publisher for outputs and the CLI's send, poison administration for the
// CLI's poison commands).
//
// The reason to keep a queue in PostgreSQL is EnqueueTx: a message
// enqueued in the application's own transaction exists exactly when the
// transaction's other writes do.
//
//	p, err := c.Prepare(target, payload) // client.Client: the body as the function binds it
//	...
//	tx, err := pool.Begin(ctx)
//	... // the application's writes
//	if _, err := postgres.EnqueueTx(ctx, tx, "orders", p.Body(), nil, 0); err != nil { ... }
//	err = tx.Commit(ctx) // the message, and its notification, exist from here on; a rollback leaves neither
//
// # Engine: jobhost's own table, not River's
//
// River (github.com/riverqueue/river, v0.51.2) is what people choose for
// this, and its tables were the alternative engine. The decision was
// measured on this repository's machine: 10,000 rows claimed and completed
// at 16 in flight, the way the host runs them (one poller keeping up to 16
// claimed, each completed by its own goroutine), a 200-byte JSON body,
// PostgreSQL 15 on the same 2-core host (shared with other builds, so two
// rounds of 5 interleaved runs each are given, as medians), pgx's default
// pool of 4 connections. A throwaway program (not in this repository: it
// would add River to go.mod) ran the same loop over each engine's SQL:
//
//	                                                   round A   round B  msg/s
//	own table, claim + one DELETE per message            3,002     1,551
//	own table, claim + coalesced DELETEs (this driver)   4,574     3,121
//	River's schema (rivermigrate), River's claim query
//	  (JobGetAvailable) + one UPDATE state='completed'
//	  per message                                        1,633     1,188
//	River's own client, 16 workers, FetchCooldown 1 ms   3,690     2,627
//	River's own client, default FetchCooldown (100 ms)     159  (16 jobs per fetch, a fetch per 100 ms)
//
// The Driver itself, in BenchmarkClaimComplete (this package; go test
// -run '^$' -bench ClaimComplete -benchtime 5x ./triggers/postgres),
// did 5,145 msg/s on a quiet machine and 2,985 under round B's load.
// Per message, River's rows are 1.3 to 1.8 times slower to move because
// its state lives in its indexes: a claim sets state = 'running' and a
// completion state = 'completed', non-HOT updates that touch the fetch
// index (state, queue, priority, scheduled_at, id), the finalized_at index
// and the GIN indexes on args and metadata, and the completed row stays
// until a cleaner deletes it. River's client is faster than per-message
// SQL because it batches completions; the driver batches the same way on
// its own table and stays ahead (1.2 times). And River's schema lacks what
// the driver contract needs: no renewable lease and no fencing token (a
// running job is rescued by a leader-elected maintenance process after
// RescueStuckJobsAfter, an hour by default, and a stale worker can still
// complete it), and args are JSON (bodies would travel as base64 inside
// jsonb). So the engine is a table of jobhost's own, with a lease column.
//
// # Schema
//
// Two tables in Options.Schema (URL schema=; default: the connection's
// search_path), created by embedded SQL migrations (migrations/NNNN_*.sql):
//
//	jobhost_queue_messages(id bigserial, queue text, body bytea, props jsonb,
//	    enqueued_at, run_at timestamptz, attempts int,
//	    leased_until timestamptz NULL, lease_token uuid NULL)
//	    index (queue, run_at, id); fillfactor 50, so that claims, renewals and
//	    releases (no indexed column changes) are HOT updates (94% of claims in
//	    16-row batches, against 60% at fillfactor 80; throughput the same
//	    within the noise: the figures above were taken at 80)
//	jobhost_queue_poison(id bigserial, queue text, source text, message_id bigint,
//	    body bytea, props jsonb, enqueued_at, poisoned_at timestamptz,
//	    attempts int, reason text)
//	    index (queue, id)
//
// Migrations are applied only when asked: by Migrate, or by a driver or
// publisher opened with CreateIfMissing (extensions.pubsub.createQueues;
// the client's send sets it), each in its own transaction under an
// advisory lock, recorded in the schema's jobhost_migrations table (the
// one operations/pgstore uses). Without them every call fails with an
// error wrapping ErrNotMigrated and triggers.ErrNotFound that names the
// table and says "apply triggers/postgres migrations with postgres.Migrate
// or extensions.pubsub.createQueues"; a host logs it and waits for the
// tables as for a missing queue.
//
// Retention: a completed message is deleted; a poison message is kept
// until it is requeued or purged (PoisonAdmin.Purge, `jobhost poison
// purge`).
//
// # Receive and settlement
//
// A message is visible when run_at has passed and it holds no live lease.
// Receive claims with one statement:
//
//	WITH c AS (SELECT id FROM jobhost_queue_messages
//	           WHERE queue = $1 AND run_at <= now() AND (leased_until IS NULL OR leased_until < now())
//	           ORDER BY run_at, id LIMIT $n FOR UPDATE SKIP LOCKED)
//	UPDATE jobhost_queue_messages m SET leased_until = now() + lease, lease_token = $token,
//	       attempts = attempts + 1 FROM c WHERE m.id = c.id RETURNING ...
//
// The lease is a column, not a held transaction or row lock: nothing is
// held between calls, and competing consumers (any number of drivers and
// processes) each get a message once per lease. An expired lease is simply
// claimable again: that is the rescuer, and no cleanup process is needed.
// DequeueCount is attempts. Each Receive makes a new token (a UUID, made by
// the driver, so that a claim whose reply was lost — its context ended
// more than a second before the claim returned, or the connection failed —
// is undone by its token at once instead of hiding its messages for a
// lease); every settlement matches id and token, so a stale holder's call
// matches no row and returns an error wrapping triggers.ErrLeaseLost.
//
//   - Complete: DELETE WHERE id AND lease_token. Completes that arrive
//     while one DELETE runs go together in the next (one statement with
//     unnest of ids and tokens; no timer, so no added latency): each
//     Complete returns only once its row is deleted.
//   - ExtendLease: leased_until = now() + lease, WHERE id AND lease_token.
//   - Retry(delay): clears the lease, run_at = now() + delay; attempts
//     stays, so the next delivery counts one more.
//   - Release (triggers.Releaser): clears the lease, attempts - 1: the next
//     delivery has the same DequeueCount.
//   - DeadLetter: DELETE ... RETURNING feeding INSERT INTO the poison table,
//     one statement, with the reason: copied and removed together or
//     neither (ErrNotRemoved cannot happen). It returns the poison row's id.
//
// Times are the server's (now()); leases and delays are whole
// microseconds, rounded up.
//
// # Waiting: LISTEN/NOTIFY
//
// Every insert by this package (Publish, PublishDelayed, EnqueueTx,
// Requeue) and every Retry and Release sends pg_notify on the queue's
// channel in the same statement, so PostgreSQL delivers it when the
// transaction commits (a rolled-back EnqueueTx wakes nobody). The channel
// is Channel(queue): "jobhost_queue_" and 16 hex digits of the SHA-256 of
// the queue name. Each pool has one connection of its own (outside the
// pool) that LISTENs on the channels of the open drivers. A Receive that
// finds nothing waits up to Options.ReceiveWait (2 s) for a notification,
// or until the next message falls due (a later run_at, or the end of a
// lease, by the server's clock), then claims again; the Driver is a
// triggers.Waiter, so the host asks again at once. A waiting Receive
// returns within about 2 ms of a publish (TestNotifyWakesReceive: median
// 2.2 ms, worst 5.6 ms over 20 rounds, under the race detector). While the
// listening connection is down (it reconnects with a backoff) a waiting
// Receive polls every 500 ms. Rows inserted by other SQL wake nobody; they
// are found within ReceiveWait, or the producer notifies the channel
// itself (see Channel). Behind a transaction-pooling PgBouncer
// notifications do not arrive: messages then wait up to ReceiveWait.
//
// # Connections
//
// Drivers, publishers and poison administrations of one DSN in a process
// share one pgxpool (its size from the DSN's pool_max_conns, else pgx's
// default, max(4, CPUs)) and one listening connection; the last Close
// closes them. Nothing connects before the first call. A DSN without
// connect_timeout gets 10 s. Errors name the server as host, port,
// database and user, never the DSN or its password.
//
// # Publishing and poison administration
//
// Publisher (OpenPublisher, OpenPublisherURL) and the Driver are
// triggers.Publisher and triggers.DelayPublisher: an INSERT with run_at =
// now() + delay and the notification, one statement; the id returned is
// the message's. There is no longest delay but time.Duration's.
// Properties are a jsonb object of strings (a property cannot hold NUL;
// rows written by other SQL may hold other JSON values, received as their
// JSON text).
//
// PoisonAdmin (OpenPoison, OpenPoisonURL) lists a queue's poison rows
// (poison destination "<queue>-poison", or URL poison= / the function's
// poison setting), oldest first, with their reason; Requeue moves each in
// one statement (DELETE from the poison table feeding INSERT into the
// messages table, attempts 0, body and properties unchanged, and the
// notification): both or neither, never lost, never duplicated; Purge
// deletes. Poison rows are not a queue: a function cannot trigger on
// them; requeue them instead.
package postgres
