package postgres

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/jobhost/jobhost/triggers"
)

const (
	// Scheme is the URL scheme this package registers: postgres://<queue>.
	Scheme = "postgres"
	// EnvURL is the app setting (or environment variable) holding the
	// PostgreSQL connection string when no connection is named; the one
	// operations/pgstore reads too.
	EnvURL = "JOBHOST_POSTGRES_URL"
	// PoisonSuffix names a queue's default poison destination.
	PoisonSuffix = "-poison"
	// DefaultReceiveWait is how long an empty Receive waits for a message.
	DefaultReceiveWait = 2 * time.Second
	// MaxQueueName bounds a queue name, in bytes.
	MaxQueueName = 512
)

const (
	// maxBatch bounds one claim.
	maxBatch = 1000
	// claimTimeout bounds one claim statement.
	claimTimeout = 30 * time.Second
	// claimGrace is how long a claim under way may still finish after the
	// Receive's context ended: its messages are then returned (and the
	// caller gives them back) rather than left hidden for a lease.
	claimGrace = time.Second
	// giveBackTimeout bounds returning what an interrupted claim took.
	giveBackTimeout = 5 * time.Second
	// deafPoll is how often a waiting Receive looks again while the
	// listener is not listening (it is connecting, or its connection
	// failed).
	deafPoll = 500 * time.Millisecond
)

// Options configure a Driver.
type Options struct {
	// Schema holds the tables: a plain identifier (folded to lower case).
	// Empty means the connection's search_path (usually public).
	Schema string
	// PoisonQueue names the poison destination in the poison table; empty
	// means "<queue>-poison".
	PoisonQueue string
	// CreateIfMissing applies the migrations (creating the tables) on first
	// use when they are missing or outdated. Without it missing tables are
	// an error wrapping ErrNotMigrated and triggers.ErrNotFound.
	CreateIfMissing bool
	// ReceiveWait is how long a Receive that finds nothing waits for a
	// notification (or for a message to fall due) before it returns empty.
	// Zero means DefaultReceiveWait; negative means it returns at once (and
	// the Driver is no triggers.Waiter).
	ReceiveWait time.Duration
}

// Driver is the triggers.Driver of one queue in the messages table. It is
// safe for concurrent use.
type Driver struct {
	queue, poison string
	channel       string
	opts          Options
	t             tables
	q             queries
	sc            *shared
	completer     *completer

	closed    atomic.Bool
	closing   chan struct{}
	closeOnce sync.Once

	waitHook func(listening bool) // tests: called as an empty Receive starts waiting
}

var (
	_ triggers.Driver         = (*Driver)(nil)
	_ triggers.Releaser       = (*Driver)(nil)
	_ triggers.Waiter         = (*Driver)(nil)
	_ triggers.Publisher      = (*Driver)(nil)
	_ triggers.DelayPublisher = (*Driver)(nil)
)

// Open returns the driver of queue in the database at dsn (a pgx
// connection string: a URL or key=value pairs, pool settings such as
// pool_max_conns among them). It does not connect: the first call does,
// on the pool that every driver, publisher and poison administration of
// the process shares for dsn. Errors never hold the DSN.
func Open(ctx context.Context, dsn, queue string, o Options) (*Driver, error) {
	if err := checkQueue(queue); err != nil {
		return nil, err
	}
	t, err := newTables(o.Schema)
	if err != nil {
		return nil, err
	}
	if o.ReceiveWait == 0 {
		o.ReceiveWait = DefaultReceiveWait
	}
	poison := o.PoisonQueue
	if poison == "" {
		poison = queue + PoisonSuffix
	}
	if err := checkQueue(poison); err != nil {
		return nil, fmt.Errorf("%w (the poison queue)", err)
	}
	sc, err := acquire(dsn)
	if err != nil {
		return nil, err
	}
	d := &Driver{queue: queue, poison: poison, channel: Channel(queue), opts: o, t: t, q: newQueries(t), sc: sc, closing: make(chan struct{})}
	d.completer = newCompleter(d)
	if o.ReceiveWait > 0 {
		sc.lst.subscribe(d.channel)
	}
	return d, nil
}

// checkQueue validates a queue name: what a text column holds.
func checkQueue(q string) error {
	switch {
	case q == "":
		return errors.New("postgres: empty queue name")
	case len(q) > MaxQueueName:
		return fmt.Errorf("postgres: queue name of %d bytes: at most %d", len(q), MaxQueueName)
	case !utf8.ValidString(q) || strings.ContainsRune(q, 0):
		return fmt.Errorf("postgres: queue name %q: want valid UTF-8 without NUL", q)
	}
	return nil
}

// Channel returns the notification channel of queue: "jobhost_queue_"
// and the first 16 hex digits of the SHA-256 of the name, whatever the
// schema. A producer inserting rows with SQL of its own wakes waiting
// receivers with
//
//	SELECT pg_notify('jobhost_queue_' || left(encode(sha256(convert_to('orders', 'UTF8')), 'hex'), 16), '')
//
// (without it they find the rows within ReceiveWait).
func Channel(queue string) string {
	h := sha256.Sum256([]byte(queue))
	return "jobhost_queue_" + hex.EncodeToString(h[:8])
}

// Queue returns the queue's name.
func (d *Driver) Queue() string { return d.queue }

// PoisonDestination names the poison destination, for logs.
func (d *Driver) PoisonDestination() string {
	return fmt.Sprintf("queue %s (table %s)", d.poison, poisonDisplay(d.t))
}

func poisonDisplay(t tables) string {
	if t.schema == "" {
		return PoisonTable
	}
	return t.schema + "." + PoisonTable
}

// ReceiveWaits reports whether Receive waits for messages (Options.ReceiveWait > 0).
func (d *Driver) ReceiveWaits() bool { return d.opts.ReceiveWait > 0 }

// Close releases the driver's share of the pool; it settles nothing. It
// is idempotent.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		close(d.closing)
		d.completer.wait() // the batch under way finishes on the pool
		if d.opts.ReceiveWait > 0 {
			d.sc.lst.unsubscribe(d.channel)
		}
		d.sc.release()
	})
	return nil
}

// where names the queue in errors.
func (d *Driver) where() string { return fmt.Sprintf("queue %q", d.queue) }

// fail wraps a database error of op: missing tables become ErrNotMigrated
// and triggers.ErrNotFound with the Hint.
func (d *Driver) fail(op string, err error) error {
	if d.sc.missing(d.t, err) {
		return fmt.Errorf("postgres: %s %s: %w", op, d.where(), notMigrated("table "+d.t.display+" does not exist"))
	}
	return fmt.Errorf("postgres: %s %s on %s: %w", op, d.where(), d.sc.display, d.sc.scrub(err))
}

func (d *Driver) errClosed(op string) error {
	return fmt.Errorf("postgres: %s %s: driver %w", op, d.where(), triggers.ErrClosed)
}

// ready checks (or, with CreateIfMissing, creates) the tables.
func (d *Driver) ready(ctx context.Context) error {
	if err := d.sc.ensure(ctx, d.t, d.opts.CreateIfMissing); err != nil {
		return fmt.Errorf("postgres: %s: %w", d.where(), err)
	}
	return nil
}

// held is a message's DriverData: the token of the receive that leased it.
type held struct{ token uuid.UUID }

// lease returns m's lease token, or an error when m is not this driver's.
func (d *Driver) lease(m *triggers.Message, op string) (int64, pgtype.UUID, error) {
	if d.closed.Load() {
		return 0, pgtype.UUID{}, d.errClosed(op)
	}
	h, ok := m.DriverData.(held)
	id, err := strconv.ParseInt(m.ID, 10, 64)
	if !ok || err != nil {
		return 0, pgtype.UUID{}, fmt.Errorf("postgres: %s %s: message %s was not received by this driver", op, d.where(), m.ID)
	}
	return id, pgtype.UUID{Bytes: h.token, Valid: true}, nil
}

func (d *Driver) lost(op string, m *triggers.Message) error {
	return fmt.Errorf("postgres: %s message %s of %s: %w (settled, or its lease ended and another receiver took it)", op, m.ID, d.where(), triggers.ErrLeaseLost)
}

// micros returns d in whole microseconds, rounded up (a lease or delay may
// grow, never shrink).
func micros(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Microsecond - 1) / time.Microsecond)
}

// Receive claims up to max visible messages for lease: one UPDATE ...
// FOR UPDATE SKIP LOCKED setting leased_until, lease_token and attempts.
// When it finds none it waits, up to Options.ReceiveWait, for a
// notification on the queue's channel or for the next message to fall
// due, and claims again.
func (d *Driver) Receive(ctx context.Context, n int, lease time.Duration) ([]*triggers.Message, error) {
	if d.closed.Load() {
		return nil, d.errClosed("receive from")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := d.ready(ctx); err != nil {
		return nil, err
	}
	n = min(max(n, 1), maxBatch)
	lease = max(lease, time.Millisecond)
	var deadline time.Time
	for {
		if d.closed.Load() {
			return nil, d.errClosed("receive from")
		}
		wake, listening := d.sc.lst.watch(d.channel)
		msgs, err := d.claim(ctx, n, lease)
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
		if d.opts.ReceiveWait <= 0 || ctx.Err() != nil {
			return nil, nil
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(d.opts.ReceiveWait)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, nil
		}
		if !listening {
			wait = min(wait, deafPoll)
		}
		due, err := d.nextDue(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			return nil, err
		}
		if due >= 0 {
			wait = min(wait, due)
		}
		if d.waitHook != nil {
			d.waitHook(listening)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		case <-d.closing:
			t.Stop()
			return nil, d.errClosed("receive from")
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// claim runs the claim statement. It is not cut short the moment ctx
// ends: a claim that finishes within claimGrace returns its messages
// (which the caller then holds); one interrupted later, or lost to a
// connection failure, is undone by its token.
func (d *Driver) claim(ctx context.Context, n int, lease time.Duration) ([]*triggers.Message, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	var mu sync.Mutex
	var grace *time.Timer
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		grace = time.AfterFunc(claimGrace, cancel)
		mu.Unlock()
	})
	defer func() {
		stop()
		mu.Lock()
		if grace != nil {
			grace.Stop()
		}
		mu.Unlock()
	}()
	token := uuid.New()
	ptoken := pgtype.UUID{Bytes: token, Valid: true}
	rows, err := d.sc.pool.Query(cctx, d.q.claim, d.queue, n, micros(lease), ptoken)
	type claimed struct {
		id    int64
		runAt time.Time
		m     *triggers.Message
	}
	var got []claimed
	if err == nil {
		for rows.Next() {
			var (
				c               claimed
				body, props     []byte
				enqueued, until time.Time
				attempts        int64
			)
			if err = rows.Scan(&c.id, &body, &props, &enqueued, &c.runAt, &attempts, &until); err != nil {
				break
			}
			c.m = &triggers.Message{
				ID:              strconv.FormatInt(c.id, 10),
				Body:            body,
				DequeueCount:    attempts,
				InsertionTime:   enqueued,
				NextVisibleTime: until,
				Properties:      decodeProps(props),
				Source:          d.queue,
				DriverData:      held{token: token},
			}
			got = append(got, c)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		var pg *pgconn.PgError
		if !errors.As(err, &pg) {
			// The claim may have been applied with its reply lost: give
			// back what it took, by its token.
			d.giveBack(ptoken)
		}
		switch {
		case d.closed.Load():
			return nil, d.errClosed("receive from")
		case ctx.Err() != nil:
			return nil, fmt.Errorf("postgres: receive from %s: %w", d.where(), ctx.Err())
		}
		return nil, d.fail("receive from", err)
	}
	// In the claim's order (RETURNING has none).
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Or(a.runAt.Compare(b.runAt), cmp.Compare(a.id, b.id)) })
	msgs := make([]*triggers.Message, len(got))
	for i, c := range got {
		msgs[i] = c.m
	}
	return msgs, nil
}

// giveBack releases whatever a claim with token took.
func (d *Driver) giveBack(token pgtype.UUID) {
	ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer cancel()
	d.sc.pool.Exec(ctx, d.q.giveBack, d.queue, token, d.channel) //nolint:errcheck // best effort: else the lease ends
}

// nextDue returns how long until the next message of the queue falls due
// (its run_at or the end of its lease), by the server's clock, or -1 when
// none will.
func (d *Driver) nextDue(ctx context.Context) (time.Duration, error) {
	var secs *float64
	if err := d.sc.pool.QueryRow(ctx, d.q.nextDue, d.queue).Scan(&secs); err != nil {
		return 0, d.fail("receive from", err)
	}
	if secs == nil {
		return -1, nil
	}
	// A millisecond past it, so that the lease has ended by then.
	return max(time.Duration(*secs*float64(time.Second)), 0) + time.Millisecond, nil
}

// decodeProps reads the props column: a JSON object whose string values
// are kept as they are and other values as their JSON text (rows written
// by SQL of the application's own may hold numbers).
func decodeProps(b []byte) map[string]string {
	if len(b) == 0 {
		return nil
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(b, &raw) != nil || len(raw) == 0 {
		return nil
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) == nil {
			out[k] = s
		} else {
			out[k] = string(v)
		}
	}
	return out
}

// encodeProps is the props column of a new message: an object, never
// null.
func encodeProps(p map[string]string) ([]byte, error) {
	for k, v := range p {
		if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("property %q: jsonb cannot hold NUL characters", k)
		}
	}
	if len(p) == 0 {
		return []byte("{}"), nil
	}
	return json.Marshal(p)
}

// Complete deletes the message: DELETE WHERE id AND lease_token, the
// Completes that arrive while one DELETE runs going together in the next.
func (d *Driver) Complete(ctx context.Context, m *triggers.Message) error {
	id, token, err := d.lease(m, "complete")
	if err != nil {
		return err
	}
	deleted, err := d.completer.complete(ctx, id, token)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("postgres: complete message %s of %s: %w", m.ID, d.where(), err)
		}
		return d.fail("complete a message of", err)
	}
	if !deleted {
		return d.lost("complete", m)
	}
	return nil
}

// ExtendLease sets the lease to end lease from now.
func (d *Driver) ExtendLease(ctx context.Context, m *triggers.Message, lease time.Duration) error {
	id, token, err := d.lease(m, "extend the lease of")
	if err != nil {
		return err
	}
	var until time.Time
	err = d.sc.pool.QueryRow(ctx, d.q.extend, id, token, micros(max(lease, time.Millisecond))).Scan(&until)
	if errors.Is(err, errNoRows) {
		return d.lost("extend the lease of", m)
	}
	if err != nil {
		return d.fail("extend a lease in", err)
	}
	m.NextVisibleTime = until
	return nil
}

// Retry clears the lease and makes the message visible after delay; its
// attempts count stays, so the next delivery's DequeueCount is one more.
func (d *Driver) Retry(ctx context.Context, m *triggers.Message, delay time.Duration) error {
	return d.unlease(ctx, m, "retry", d.q.retry, micros(delay))
}

// Release clears the lease at once and takes back this delivery's
// attempt (triggers.Releaser): the next DequeueCount is the same as this.
func (d *Driver) Release(ctx context.Context, m *triggers.Message) error {
	return d.unlease(ctx, m, "release", d.q.release)
}

// unlease runs sql with the message's id and token, then extra, then the
// queue's channel.
func (d *Driver) unlease(ctx context.Context, m *triggers.Message, op, sql string, extra ...any) error {
	id, token, err := d.lease(m, op)
	if err != nil {
		return err
	}
	args := append(append([]any{id, token}, extra...), d.channel)
	var n int64
	if err := d.sc.pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return d.fail(op+" a message of", err)
	}
	if n == 0 {
		return d.lost(op, m)
	}
	return nil
}

// DeadLetter moves the message to the poison table with its body,
// properties, attempts and reason, in one statement (DELETE ... RETURNING
// feeding the INSERT): it is copied and removed together, or neither.
func (d *Driver) DeadLetter(ctx context.Context, m *triggers.Message, reason string) (string, error) {
	id, token, err := d.lease(m, "dead-letter")
	if err != nil {
		return "", err
	}
	var pid int64
	err = d.sc.pool.QueryRow(ctx, d.q.deadLetter, id, token, d.poison, d.queue, cleanText(reason)).Scan(&pid)
	if errors.Is(err, errNoRows) {
		return "", d.lost("dead-letter", m)
	}
	if err != nil {
		return "", d.fail("dead-letter a message of", err)
	}
	return strconv.FormatInt(pid, 10), nil
}

// cleanText makes s storable in a text column: valid UTF-8 without NUL.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
