package pgstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/jobhost/jobhost/operations"
)

// columns are read in this order by scan.
const columns = `id, name, status, input, output, progress, start_time, end_time, attempt,
	error_code, error_message, run_as, callback_url, idempotency_key,
	created_on, last_updated, expires_on, version`

// scan reads one row of columns.
func scan(row pgx.Row) (*operations.Record, error) {
	var (
		r          operations.Record
		status     int16
		start, end pgtype.Timestamptz
		created    time.Time
		updated    time.Time
		expires    time.Time
		attempt    int32
		version    int64
		in, out    []byte
		progress   []byte
	)
	err := row.Scan(&r.ID, &r.Name, &status, &in, &out, &progress, &start, &end, &attempt,
		&r.ErrorCode, &r.ErrorMessage, &r.RunAs, &r.CallbackURL, &r.IdempotencyKey,
		&created, &updated, &expires, &version)
	if err != nil {
		return nil, err
	}
	r.Status, r.Attempt = operations.Status(status), int(attempt)
	r.Input, r.Output, r.Progress = in, out, progress
	if start.Valid {
		r.StartTime = start.Time.UTC()
	}
	if end.Valid {
		r.EndTime = end.Time.UTC()
	}
	r.CreatedOn, r.LastUpdated, r.ExpiresOn = created.UTC(), updated.UTC(), expires.UTC()
	r.Version = strconv.FormatInt(version, 10)
	return &r, nil
}

// nullTime is t, or NULL when it is zero.
func nullTime(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

// text returns s as a PostgreSQL text value can hold it: valid UTF-8
// without NUL (each invalid sequence and NUL becomes U+FFFD).
func text(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// bytesOf is b as a parameter: NULL when nil, the exact bytes otherwise.
func bytesOf(b []byte) any {
	if b == nil {
		return nil
	}
	return []byte(b)
}

// normalise puts r's times and texts in the form the table keeps them.
func normalise(r *operations.Record) {
	for _, b := range []*json.RawMessage{&r.Input, &r.Output, &r.Progress} {
		if len(*b) == 0 {
			*b = nil // no JSON, however given
		}
	}
	for _, p := range []*string{&r.Name, &r.ErrorCode, &r.ErrorMessage, &r.RunAs, &r.CallbackURL, &r.IdempotencyKey} {
		*p = text(*p)
	}
	r.StartTime, r.EndTime = norm(r.StartTime), norm(r.EndTime)
	r.CreatedOn, r.LastUpdated, r.ExpiresOn = norm(r.CreatedOn), norm(r.LastUpdated), norm(r.ExpiresOn)
}

// Create stores a new record (see operations.Store). CreatedOn and
// LastUpdated are set to now, ExpiresOn to CreatedOn plus the time to live
// when r has none. An id taken by an unexpired record returns that record
// and an error wrapping operations.ErrExists; an expired one not purged
// yet is replaced (it no longer exists for Get).
func (s *Store) Create(ctx context.Context, r *operations.Record) (*operations.Record, error) {
	if r == nil || r.ID == "" {
		return nil, errors.New("pgstore: create: the record has no id")
	}
	if text(r.ID) != r.ID {
		return nil, fmt.Errorf("pgstore: create: the id %q is not text PostgreSQL keeps (invalid UTF-8 or NUL)", r.ID)
	}
	c := r.Clone()
	now := s.clock()
	c.CreatedOn, c.LastUpdated = now, now
	if c.ExpiresOn.IsZero() {
		c.ExpiresOn = now.Add(s.ttl)
	}
	normalise(c)
	for range MaxAttempts {
		var version int64
		err := s.pool.QueryRow(ctx, `INSERT INTO `+s.qtable+` AS t (`+columns+`)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 1)
ON CONFLICT (id) DO UPDATE SET
	name = EXCLUDED.name, status = EXCLUDED.status, input = EXCLUDED.input, output = EXCLUDED.output,
	progress = EXCLUDED.progress, start_time = EXCLUDED.start_time, end_time = EXCLUDED.end_time,
	attempt = EXCLUDED.attempt, error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message,
	run_as = EXCLUDED.run_as, callback_url = EXCLUDED.callback_url, idempotency_key = EXCLUDED.idempotency_key,
	created_on = EXCLUDED.created_on, last_updated = EXCLUDED.last_updated, expires_on = EXCLUDED.expires_on,
	version = t.version + 1
WHERE t.expires_on < $15
RETURNING version`,
			c.ID, c.Name, int16(c.Status), bytesOf(c.Input), bytesOf(c.Output), bytesOf(c.Progress),
			nullTime(c.StartTime), nullTime(c.EndTime), int32(c.Attempt),
			c.ErrorCode, c.ErrorMessage, c.RunAs, c.CallbackURL, c.IdempotencyKey,
			c.CreatedOn, c.LastUpdated, c.ExpiresOn).Scan(&version)
		if err == nil {
			c.Version = strconv.FormatInt(version, 10)
			return c, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, s.fail("create "+c.ID, err)
		}
		// Taken by an unexpired record: return it.
		existing, err := s.get(ctx, c.ID, now)
		if errors.Is(err, operations.ErrNotFound) {
			continue // it expired or was purged in between: try again
		}
		if err != nil {
			return nil, err
		}
		return existing, fmt.Errorf("%w: %s", operations.ErrExists, c.ID)
	}
	return nil, fmt.Errorf("pgstore: create %s: %w", c.ID, ErrConflict)
}

// Get returns the record, or an error wrapping operations.ErrNotFound when
// there is none or it expired.
func (s *Store) Get(ctx context.Context, id string) (*operations.Record, error) {
	return s.get(ctx, id, s.clock())
}

func (s *Store) get(ctx context.Context, id string, now time.Time) (*operations.Record, error) {
	return s.read(ctx, s.pool, id, now)
}

// querier is a pool or one of its connections.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) read(ctx context.Context, q querier, id string, now time.Time) (*operations.Record, error) {
	if text(id) != id {
		return nil, fmt.Errorf("%w: %q", operations.ErrNotFound, id) // no such id can be stored
	}
	r, err := scan(q.QueryRow(ctx, `SELECT `+columns+` FROM `+s.qtable+` WHERE id = $1 AND expires_on >= $2`, id, now))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", operations.ErrNotFound, id)
	}
	if err != nil {
		return nil, s.fail("get "+id, err)
	}
	return r, nil
}

// Update applies change to a copy of the record and writes it if no other
// write came in between, else reads again and reapplies change (see
// operations.Store), at most MaxAttempts times before ErrConflict. An error
// from change is returned as it is.
func (s *Store) Update(ctx context.Context, id string, change operations.Change) (*operations.Record, error) {
	for attempt := range MaxAttempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return nil, fmt.Errorf("pgstore: update %s: %w", id, err)
			}
		}
		r, done, err := s.tryUpdate(ctx, id, change)
		if done || err != nil {
			return r, err
		}
		// Another write came in between (or the record was purged): the
		// next read tells.
	}
	return nil, fmt.Errorf("pgstore: update %s: %w (%d attempts)", id, ErrConflict, MaxAttempts)
}

// tryUpdate reads, changes and conditionally writes the record once, on
// one connection (so that no wait for a connection widens the window
// between the read and the write); done is false when it lost a race.
func (s *Store) tryUpdate(ctx context.Context, id string, change operations.Change) (r *operations.Record, done bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, s.fail("update "+id, err)
	}
	defer conn.Release()
	now := s.clock()
	stored, err := s.read(ctx, conn, id, now)
	if err != nil {
		return nil, false, err
	}
	c := stored.Clone()
	changed, err := change(c)
	if err != nil {
		return nil, false, err
	}
	if !changed {
		return stored, true, nil
	}
	c.ID, c.Version, c.LastUpdated = stored.ID, stored.Version, now
	normalise(c)
	version, _ := strconv.ParseInt(stored.Version, 10, 64)
	tag, err := conn.Exec(ctx, `UPDATE `+s.qtable+` SET
	name = $3, status = $4, input = $5, output = $6, progress = $7, start_time = $8, end_time = $9,
	attempt = $10, error_code = $11, error_message = $12, run_as = $13, callback_url = $14,
	idempotency_key = $15, created_on = $16, last_updated = $17, expires_on = $18,
	version = version + 1
WHERE id = $1 AND version = $2`,
		id, version, c.Name, int16(c.Status), bytesOf(c.Input), bytesOf(c.Output), bytesOf(c.Progress),
		nullTime(c.StartTime), nullTime(c.EndTime), int32(c.Attempt),
		c.ErrorCode, c.ErrorMessage, c.RunAs, c.CallbackURL, c.IdempotencyKey,
		c.CreatedOn, c.LastUpdated, c.ExpiresOn)
	if err != nil {
		return nil, false, s.fail("update "+id, err)
	}
	if tag.RowsAffected() != 1 {
		return nil, false, nil
	}
	c.Version = strconv.FormatInt(version+1, 10)
	return c, true, nil
}

// backoff waits a little, more after each lost race, so that many writers
// of one record do not keep colliding.
func backoff(ctx context.Context, attempt int) error {
	ceiling := min(50*time.Microsecond<<min(attempt, 10), 20*time.Millisecond)
	t := time.NewTimer(rand.N(ceiling) + time.Microsecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// cursorPrefix versions the cursor format.
const cursorPrefix = "pg1:"

func encodeCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + id))
}

func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	id, ok := strings.CutPrefix(string(b), cursorPrefix)
	if err != nil || !ok || id == "" || text(id) != id {
		return "", fmt.Errorf("pgstore: list: %w %q (pass back a Page.Next as it was returned)", operations.ErrInvalidCursor, c)
	}
	return id, nil
}

// List returns a page of the unexpired records q selects, ordered by id;
// Page.Next continues after the page's last record (an opaque cursor; one
// that is not is an error).
func (s *Store) List(ctx context.Context, q operations.Query) (*operations.Page, error) {
	var (
		where = []string{"expires_on >= $1"}
		args  = []any{s.clock()}
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if q.Cursor != "" {
		after, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, err
		}
		add("id > ?", after)
	}
	if q.Name != "" {
		add("name = ?", q.Name)
	}
	if len(q.Status) > 0 {
		codes := make([]int16, len(q.Status))
		for i, st := range q.Status {
			codes[i] = int16(st)
		}
		add("status = ANY(?)", codes)
	}
	if !q.Since.IsZero() {
		add("created_on >= ?", norm(q.Since))
	}
	if q.RunAs != nil {
		add("run_as = ?", *q.RunAs)
	}
	size := q.PageSize()
	args = append(args, size+1)
	sql := `SELECT ` + columns + ` FROM ` + s.qtable + ` WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY id LIMIT $` + strconv.Itoa(len(args))
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.fail("list", err)
	}
	defer rows.Close()
	page := &operations.Page{Records: []*operations.Record{}}
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, s.fail("list", err)
		}
		page.Records = append(page.Records, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list", err)
	}
	if len(page.Records) > size {
		page.Records = page.Records[:size]
		page.Next = encodeCursor(page.Records[size-1].ID)
	}
	return page, nil
}

// Purge deletes at most limit records that expired before now (oldest
// expiry first) and returns how many it deleted. A limit below 1 is an
// error.
func (s *Store) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("pgstore: purge limit %d, want at least 1", limit)
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM `+s.qtable+` WHERE id IN (
	SELECT id FROM `+s.qtable+` WHERE expires_on < $1 ORDER BY expires_on LIMIT $2)`, norm(now), limit)
	if err != nil {
		return 0, s.fail("purge", err)
	}
	return int(tag.RowsAffected()), nil
}
