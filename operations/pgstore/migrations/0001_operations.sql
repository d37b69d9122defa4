-- 0001_operations: the operations table and the indexes List and Purge use.
--
-- Placeholders, replaced by pgstore before the file runs:
--   {{table}}  the table, quoted and optionally schema-qualified
--              ("jobhost_operations", "ops"."jobhost_operations");
--   {{index}}  the unqualified table name, prefixing index names
--              (indexes live in the table's schema).
--
-- input, output and progress are JSON kept as bytea, byte for byte as the
-- function wrote them (jsonb would reorder keys and drop whitespace); read
-- them in SQL with convert_from(input, 'UTF8')::jsonb.
CREATE TABLE {{table}} (
    id              text COLLATE "C" PRIMARY KEY,
    name            text NOT NULL,
    status          smallint NOT NULL,
    state           smallint GENERATED ALWAYS AS (
                        CASE WHEN status IN (20, 22) THEN 2
                             WHEN status IN (30, 31, 32) THEN 3
                             ELSE 0 END) STORED,
    input           bytea,
    output          bytea,
    progress        bytea,
    start_time      timestamptz,
    end_time        timestamptz,
    attempt         integer NOT NULL DEFAULT 0,
    error_code      text NOT NULL DEFAULT '',
    error_message   text NOT NULL DEFAULT '',
    run_as          text NOT NULL DEFAULT '',
    callback_url    text NOT NULL DEFAULT '',
    idempotency_key text NOT NULL DEFAULT '',
    created_on      timestamptz NOT NULL,
    last_updated    timestamptz NOT NULL,
    expires_on      timestamptz NOT NULL,
    version         bigint NOT NULL DEFAULT 1
);

CREATE INDEX {{index}}_name_idx ON {{table}} (name, id);
CREATE INDEX {{index}}_status_idx ON {{table}} (status, id);
CREATE INDEX {{index}}_run_as_idx ON {{table}} (run_as, id);
CREATE INDEX {{index}}_created_on_idx ON {{table}} (created_on);
CREATE INDEX {{index}}_expires_on_idx ON {{table}} (expires_on);

COMMENT ON TABLE {{table}} IS 'jobhost operation records (github.com/jobhost/jobhost/operations/pgstore); schema changes only through its migrations';
COMMENT ON COLUMN {{table}}.status IS 'Dataverse status code: 0 WaitingForResources, 20 InProgress, 22 Canceling, 30 Succeeded, 31 Failed, 32 Canceled';
COMMENT ON COLUMN {{table}}.state IS 'Dataverse state code, derived from status: 0 Ready, 2 Locked, 3 Completed';
COMMENT ON COLUMN {{table}}.version IS 'optimistic concurrency token: every write sets version = version + 1 where version is the one it read';
