-- 0001_timer: timer schedule statuses and singleton leases.
--
-- Placeholders, replaced by timer/timerpg before the file runs:
--   {{status}}  the status table, quoted, schema-qualified when a schema
--               is configured ("jobhost_timer_status");
--   {{locks}}   the lease table, likewise ("jobhost_timer_locks").
--
-- A status row is Functions' timers/{hostId}/{function}/status blob:
-- last and last_updated are NULL before the first run / when unset.
CREATE TABLE {{status}} (
    host_id       text NOT NULL,
    function_name text NOT NULL,
    last          timestamptz,
    next          timestamptz,
    last_updated  timestamptz,
    saved_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host_id, function_name)
);

-- A lease row is Functions' locks/{hostId}/{function}.Listener blob lease:
-- held by owner until expires_at (the database's clock), renewed by its
-- owner, taken over by anyone once expired, deleted on release.
CREATE TABLE {{locks}} (
    host_id     text NOT NULL,
    name        text NOT NULL,
    owner       text NOT NULL,
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host_id, name)
);
