package chaos

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/internal/tcpproxy"

	"github.com/jackc/pgx/v5"

	"github.com/jobhost/jobhost/triggers/postgres"
	"github.com/jobhost/jobhost/triggers/postgres/pgtest"
	"github.com/jobhost/jobhost/triggers/redis"
	"github.com/jobhost/jobhost/triggers/redis/redistest"
)

// brokerQueue is one queue of a broker whose bodies travel as raw bytes
// (Redis, PostgreSQL), set up for a chaos case. The worker reaches the
// broker through a proxy when one is given, the test straight.
type brokerQueue struct {
	env    map[string]string       // app settings pointing the worker at the queue (ChaosQueue included)
	send   func([]string) []string // enqueue bodies as they are; returns the message ids, in order
	count  func() int              // messages not yet settled (for Redis: the stream and its delayed set)
	poison func() []string         // the bodies in the poison queue, as they are
}

// redisQueue makes a stream (and its consumer group) on the machine's Redis
// (redistest.Require: skipped loudly when unreachable, failed with
// JOBHOST_REQUIRE_BROKERS=1). With via, the worker connects through a
// proxy in front of the server; the test always connects straight. The
// server itself is never restarted: it keeps nothing across a restart.
func redisQueue(t *testing.T, via bool) (brokerQueue, *tcpproxy.Proxy) {
	t.Helper()
	server := redistest.Require(t)
	c := redistest.Client(t)
	stream := redistest.UniqueStream(t)
	redistest.CreateGroup(t, c, stream, redis.DefaultGroup)
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		t.Skipf("REDIS_SERVER_URL %q is not host:port: the chaos proxy cannot stand in front of it", server)
	}
	var p *tcpproxy.Proxy
	if via {
		p = tcpproxy.New(t, u.Host)
		u.Host = p.Addr()
	}
	return brokerQueue{
		env: map[string]string{redis.EnvServerURL: u.String(), "ChaosQueue": redistest.StreamURL(stream).String()},
		send: func(bodies []string) []string {
			return parallelSend(t, bodies, func(ctx context.Context, b string) (string, error) {
				return redistest.Send(ctx, c, stream, []byte(b), nil)
			})
		},
		count: func() int {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n, err := c.XLen(ctx, stream).Result()
			if err != nil {
				t.Fatalf("XLEN %s: %v", stream, err)
			}
			d, err := c.ZCard(ctx, stream+":delayed").Result()
			if err != nil {
				t.Fatalf("ZCARD %s:delayed: %v", stream, err)
			}
			return int(n + d)
		},
		poison: func() []string {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			xs, err := c.XRange(ctx, stream+redis.PoisonSuffix, "-", "+").Result()
			if err != nil {
				t.Fatalf("XRANGE %s%s: %v", stream, redis.PoisonSuffix, err)
			}
			out := make([]string, 0, len(xs))
			for _, x := range xs {
				out = append(out, string(redistest.PoisonMessage(x).Body))
			}
			return out
		},
	}, p
}

// postgresQueue makes a queue in a schema of its own (migrated, dropped at
// the end) on the machine's PostgreSQL (pgtest.Require: skipped loudly
// when unreachable, failed with JOBHOST_REQUIRE_BROKERS=1). With via, the
// worker connects through a proxy in front of the server.
func postgresQueue(t *testing.T, via bool) (brokerQueue, *tcpproxy.Proxy) {
	t.Helper()
	dsn := pgtest.Require(t)
	schema := pgtest.NewSchema(t)
	queue := pgtest.QueueName()
	pool := pgtest.Admin(t)
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("the PostgreSQL connection string is not a postgres:// URL with a host: the chaos proxy cannot stand in front of it")
	}
	var p *tcpproxy.Proxy
	if via {
		p = tcpproxy.New(t, u.Host)
		u.Host = p.Addr()
	}
	table := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	return brokerQueue{
		env: map[string]string{postgres.EnvURL: u.String(), "ChaosQueue": pgtest.URL(queue, schema).String()},
		send: func(bodies []string) []string {
			return parallelSend(t, bodies, func(ctx context.Context, b string) (string, error) {
				tx, err := pool.Begin(ctx)
				if err != nil {
					return "", err
				}
				defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
				id, err := postgres.Schema(schema).EnqueueTx(ctx, tx, queue, []byte(b), nil, 0)
				if err != nil {
					return "", err
				}
				return id, tx.Commit(ctx)
			})
		},
		count: func() int {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var n int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table(postgres.MessagesTable)+" WHERE queue = $1", queue).Scan(&n); err != nil {
				t.Fatalf("count %s: %v", queue, err)
			}
			return n
		},
		poison: func() []string {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ms, _, err := pgtest.PoisonRows(ctx, t, schema, queue+postgres.PoisonSuffix, 0)
			if err != nil {
				t.Fatalf("poison rows of %s: %v", queue, err)
			}
			out := make([]string, 0, len(ms))
			for _, m := range ms {
				out = append(out, string(m.Body))
			}
			return out
		},
	}, p
}

// parallelSend sends bodies with a few concurrent senders and returns the
// ids, in order.
func parallelSend(t *testing.T, bodies []string, send func(context.Context, string) (string, error)) []string {
	t.Helper()
	ids := make([]string, len(bodies))
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(bodies); i += 4 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				id, err := send(ctx, bodies[i])
				cancel()
				if err != nil {
					errs <- fmt.Errorf("send message %d: %w", i, err)
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}
