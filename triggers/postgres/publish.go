package postgres

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobhost/jobhost/triggers"
)

// rower is what inserts run on: the pool, or a caller's transaction.
type rower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// insert adds one message with one statement that also notifies the
// queue's channel (delivered when the transaction commits, so a rolled
// back insert wakes nobody).
func insert(ctx context.Context, r rower, q *queries, queue string, body []byte, props map[string]string, delay time.Duration) (string, error) {
	if err := checkQueue(queue); err != nil {
		return "", err
	}
	p, err := encodeProps(props)
	if err != nil {
		return "", fmt.Errorf("postgres: publish to queue %q: %w", queue, err)
	}
	if body == nil {
		body = []byte{} // NULL otherwise
	}
	var id int64
	if err := r.QueryRow(ctx, q.publish, queue, body, p, micros(delay), Channel(queue)).Scan(&id); err != nil {
		return "", err
	}
	return strconv.FormatInt(id, 10), nil
}

// Schema names the schema holding the tables, for EnqueueTx; "" is the
// connection's search_path.
type Schema string

// schemaQueries caches each schema's statements for EnqueueTx.
var schemaQueries sync.Map // normalised schema → *queries

func (s Schema) queries() (tables, *queries, error) {
	t, err := newTables(string(s))
	if err != nil {
		return tables{}, nil, err
	}
	if q, ok := schemaQueries.Load(t.schema); ok {
		return t, q.(*queries), nil
	}
	q := newQueries(t)
	v, _ := schemaQueries.LoadOrStore(t.schema, &q)
	return t, v.(*queries), nil
}

// EnqueueTx adds a message to queue inside the caller's transaction tx,
// with the tables in the search_path: it becomes visible to receivers
// when tx commits, after delay (0: at once), and is never delivered if tx
// rolls back. It is Schema("").EnqueueTx.
func EnqueueTx(ctx context.Context, tx pgx.Tx, queue string, body []byte, props map[string]string, delay time.Duration) (id string, err error) {
	return Schema("").EnqueueTx(ctx, tx, queue, body, props, delay)
}

// EnqueueTx adds a message to queue in schema s inside the caller's
// transaction tx: one INSERT (the message id is returned) with a
// pg_notify that PostgreSQL delivers only at commit. The row and the
// notification exist only if tx commits; a rollback leaves nothing. body
// is stored as given: for a function bound through jobhost's client,
// pass the encoded body of client.Prepare (p.Body()). Missing tables are
// an error wrapping ErrNotMigrated (and, like any failed statement, they
// abort tx).
func (s Schema) EnqueueTx(ctx context.Context, tx pgx.Tx, queue string, body []byte, props map[string]string, delay time.Duration) (id string, err error) {
	t, q, err := s.queries()
	if err != nil {
		return "", err
	}
	id, err = insert(ctx, tx, q, queue, body, props, delay)
	if err != nil {
		return "", insertFail(t, queue, err)
	}
	return id, nil
}

func insertFail(t tables, queue string, err error) error {
	if isMissing(err) {
		return fmt.Errorf("postgres: publish to queue %q: %w", queue, notMigrated("table "+t.display+" does not exist"))
	}
	return fmt.Errorf("postgres: publish to queue %q: %w", queue, err)
}

// Publish adds a message to the driver's queue (triggers.Publisher).
func (d *Driver) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	return d.PublishDelayed(ctx, body, props, 0)
}

// PublishDelayed adds a message that becomes visible after delay
// (triggers.DelayPublisher): its run_at is now()+delay by the server's
// clock, in whole microseconds rounded up. There is no longest delay but
// time.Duration's.
func (d *Driver) PublishDelayed(ctx context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	if d.closed.Load() {
		return "", d.errClosed("publish to")
	}
	return publish(ctx, d.sc, d.t, &d.q, d.opts.CreateIfMissing, d.queue, body, props, delay)
}

func publish(ctx context.Context, sc *shared, t tables, q *queries, create bool, queue string, body []byte, props map[string]string, delay time.Duration) (string, error) {
	if err := sc.ensure(ctx, t, create); err != nil {
		return "", fmt.Errorf("postgres: publish to queue %q: %w", queue, err)
	}
	id, err := insert(ctx, sc.pool, q, queue, body, props, delay)
	if err != nil {
		if sc.missing(t, err) {
			return "", insertFail(t, queue, err)
		}
		return "", fmt.Errorf("postgres: publish to queue %q on %s: %w", queue, sc.display, sc.scrub(err))
	}
	return id, nil
}

// Publisher puts messages on one queue (triggers.Publisher and
// triggers.DelayPublisher), on the pool shared for its DSN.
type Publisher struct {
	queue  string
	t      tables
	q      queries
	create bool
	sc     *shared
	closed atomic.Bool
	once   sync.Once
}

var (
	_ triggers.Publisher      = (*Publisher)(nil)
	_ triggers.DelayPublisher = (*Publisher)(nil)
)

// OpenPublisher returns a publisher to queue in the database at dsn, with
// o's Schema and CreateIfMissing. It does not connect until it publishes.
func OpenPublisher(ctx context.Context, dsn, queue string, o Options) (*Publisher, error) {
	if err := checkQueue(queue); err != nil {
		return nil, err
	}
	t, err := newTables(o.Schema)
	if err != nil {
		return nil, err
	}
	sc, err := acquire(dsn)
	if err != nil {
		return nil, err
	}
	return &Publisher{queue: queue, t: t, q: newQueries(t), create: o.CreateIfMissing, sc: sc}, nil
}

// Publish adds a message and returns its id.
func (p *Publisher) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	return p.PublishDelayed(ctx, body, props, 0)
}

// PublishDelayed adds a message visible after delay (see
// Driver.PublishDelayed).
func (p *Publisher) PublishDelayed(ctx context.Context, body []byte, props map[string]string, delay time.Duration) (string, error) {
	if p.closed.Load() {
		return "", fmt.Errorf("postgres: publish to queue %q: publisher %w", p.queue, triggers.ErrClosed)
	}
	return publish(ctx, p.sc, p.t, &p.q, p.create, p.queue, body, props, delay)
}

// Close releases the publisher's share of the pool; it is idempotent.
func (p *Publisher) Close() error {
	p.once.Do(func() {
		p.closed.Store(true)
		p.sc.release()
	})
	return nil
}
