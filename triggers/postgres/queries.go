package postgres

import "github.com/jackc/pgx/v5"

var errNoRows = pgx.ErrNoRows

// queries are the statements of one schema's tables.
type queries struct {
	claim, nextDue, giveBack                     string
	complete, extend, retry, release, deadLetter string
	publish                                      string
	poisonCount, poisonList, requeue, purge      string
}

// interval is "$n microseconds" as an interval.
func interval(param string) string { return "(" + param + "::bigint * interval '1 microsecond')" }

// notifyOnce is a CTE clause sending one notification on channel param
// when the CTE u has rows; the statement must reference n.
func notifyOnce(param string) string {
	return "n AS (SELECT pg_notify(" + param + "::text, '') FROM u LIMIT 1)"
}

func newQueries(t tables) queries {
	m, p := t.messages, t.poison
	return queries{
		// $1 queue, $2 max, $3 lease (µs), $4 token.
		claim: `WITH c AS (
	SELECT id FROM ` + m + `
	WHERE queue = $1 AND run_at <= now() AND (leased_until IS NULL OR leased_until < now())
	ORDER BY run_at, id
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
UPDATE ` + m + ` AS m
SET leased_until = now() + ` + interval("$3") + `, lease_token = $4::uuid, attempts = m.attempts + 1
FROM c WHERE m.id = c.id
RETURNING m.id, m.body, m.props, m.enqueued_at, m.run_at, m.attempts, m.leased_until`,

		// $1 queue: seconds until the next message falls due (a later
		// run_at, or the end of a lease), NULL when none will.
		nextDue: `SELECT extract(epoch FROM least(
	(SELECT run_at FROM ` + m + ` WHERE queue = $1 AND run_at > now() ORDER BY run_at, id LIMIT 1),
	(SELECT min(leased_until) FROM ` + m + ` WHERE queue = $1 AND run_at <= now() AND leased_until >= now())
) - now())::float8`,

		// $1 queue, $2 token, $3 channel: undo a claim whose reply was lost.
		giveBack: `WITH u AS (
	UPDATE ` + m + ` SET leased_until = NULL, lease_token = NULL, attempts = greatest(attempts - 1, 0)
	WHERE queue = $1 AND lease_token = $2::uuid
	RETURNING id
), ` + notifyOnce("$3") + `
SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)`,

		// $1 ids, $2 their tokens: the ids deleted.
		complete: `DELETE FROM ` + m + ` AS m
USING unnest($1::bigint[], $2::uuid[]) AS c(id, token)
WHERE m.id = c.id AND m.lease_token = c.token
RETURNING m.id`,

		// $1 id, $2 token, $3 lease (µs).
		extend: `UPDATE ` + m + ` SET leased_until = now() + ` + interval("$3") + `
WHERE id = $1 AND lease_token = $2::uuid
RETURNING leased_until`,

		// $1 id, $2 token, $3 delay (µs), $4 channel.
		retry: `WITH u AS (
	UPDATE ` + m + ` SET leased_until = NULL, lease_token = NULL, run_at = now() + ` + interval("$3") + `
	WHERE id = $1 AND lease_token = $2::uuid
	RETURNING id
), ` + notifyOnce("$4") + `
SELECT (SELECT count(*) FROM u) + 0 * (SELECT count(*) FROM n)`,

		// $1 id, $2 token, $3 channel.
		release: `WITH u AS (
	UPDATE ` + m + ` SET leased_until = NULL, lease_token = NULL, attempts = greatest(attempts - 1, 0)
	WHERE id = $1 AND lease_token = $2::uuid
	RETURNING id
), ` + notifyOnce("$3") + `
SELECT (SELECT count(*) FROM u) + 0 * (SELECT count(*) FROM n)`,

		// $1 id, $2 token, $3 poison queue, $4 source queue, $5 reason.
		deadLetter: `WITH d AS (
	DELETE FROM ` + m + ` WHERE id = $1 AND lease_token = $2::uuid
	RETURNING id, body, props, enqueued_at, attempts
)
INSERT INTO ` + p + ` (queue, source, message_id, body, props, enqueued_at, attempts, reason)
SELECT $3, $4, id, body, props, enqueued_at, attempts, $5 FROM d
RETURNING id`,

		// $1 queue, $2 body, $3 props, $4 delay (µs), $5 channel.
		publish: `WITH u AS (
	INSERT INTO ` + m + ` (queue, body, props, run_at)
	VALUES ($1, $2, $3::jsonb, now() + ` + interval("$4") + `)
	RETURNING id
)
SELECT u.id FROM u, pg_notify($5::text, '') AS n`,

		// $1 poison queue.
		poisonCount: `SELECT count(*) FROM ` + p + ` WHERE queue = $1`,

		// $1 poison queue, $2 limit.
		poisonList: `SELECT id, attempts, poisoned_at, body, props, reason FROM ` + p + `
WHERE queue = $1 ORDER BY id LIMIT $2`,

		// $1 poison queue, $2 id (NULL: the oldest), $3 source queue, $4
		// channel. The copy is inserted and the poison row deleted in one
		// statement: both or neither.
		requeue: `WITH p AS (
	DELETE FROM ` + p + ` WHERE id = (
		SELECT id FROM ` + p + ` WHERE queue = $1 AND ($2::bigint IS NULL OR id = $2::bigint)
		ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
	RETURNING id, attempts, poisoned_at, body, props, reason
), u AS (
	INSERT INTO ` + m + ` (queue, body, props) SELECT $3, body, props FROM p
	RETURNING id
), ` + notifyOnce("$4") + `
SELECT p.id, p.attempts, p.poisoned_at, p.body, p.props, p.reason, u.id, (SELECT count(*) FROM n)
FROM p, u`,

		// $1 poison queue, $2 limit.
		purge: `DELETE FROM ` + p + ` WHERE id IN (SELECT id FROM ` + p + ` WHERE queue = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	}
}
