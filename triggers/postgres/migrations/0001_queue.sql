-- 0001_queue: the message and poison tables, and the index the claim uses.
--
-- Placeholders, replaced by triggers/postgres before the file runs:
--   {{messages}}  the message table, quoted, schema-qualified when a
--                 schema is configured ("jobhost_queue_messages",
--                 "jobs"."jobhost_queue_messages");
--   {{poison}}    the poison table, likewise.
-- Indexes are created in their table's schema.
--
-- A message is visible when run_at has passed and it holds no lease (or
-- its lease has ended); a receive claims it by setting leased_until,
-- lease_token and attempts. Completed messages are deleted. fillfactor 50
-- leaves room on each page for the new row versions of a claim (up to a
-- batch of a page's rows at once), a lease renewal and a release, which
-- change no indexed column: they are HOT updates and leave the claim index
-- alone (measured: 94% of claims HOT at 50, 60% at 80). The autovacuum
-- settings keep up with a table whose rows are all short-lived.
CREATE TABLE {{messages}} (
    id           bigserial PRIMARY KEY,
    queue        text NOT NULL,
    body         bytea NOT NULL,
    props        jsonb NOT NULL DEFAULT '{}',
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    run_at       timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    leased_until timestamptz,
    lease_token  uuid
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);

-- The claim: WHERE queue = $1 AND run_at <= now() AND (not leased)
-- ORDER BY run_at, id LIMIT n FOR UPDATE SKIP LOCKED.
CREATE INDEX jobhost_queue_messages_claim_idx ON {{messages}} (queue, run_at, id);

-- Messages dead-lettered from a queue, kept until purged. queue is the
-- poison destination's name ("orders-poison"), source the queue the
-- message was taken from, message_id its id there.
CREATE TABLE {{poison}} (
    id          bigserial PRIMARY KEY,
    queue       text NOT NULL,
    source      text NOT NULL,
    message_id  bigint NOT NULL,
    body        bytea NOT NULL,
    props       jsonb NOT NULL DEFAULT '{}',
    enqueued_at timestamptz NOT NULL,
    poisoned_at timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL,
    reason      text NOT NULL DEFAULT ''
);

CREATE INDEX jobhost_queue_poison_queue_idx ON {{poison}} (queue, id);

COMMENT ON TABLE {{messages}} IS 'jobhost queue messages (github.com/jobhost/jobhost/triggers/postgres); schema changes only through its migrations';
COMMENT ON TABLE {{poison}} IS 'jobhost poison messages (github.com/jobhost/jobhost/triggers/postgres), kept until purged';
COMMENT ON COLUMN {{messages}}.attempts IS 'deliveries so far, the current one included: the DequeueCount';
COMMENT ON COLUMN {{messages}}.lease_token IS 'the token of the receive holding the lease; settling needs it (a stale holder matches no row)';
