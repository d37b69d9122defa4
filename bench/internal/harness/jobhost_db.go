package harness

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jobhost/jobhost/triggers"
	pgpostgres "github.com/jobhost/jobhost/triggers/postgres" // postgres://, for the bench's publisher and Migrate
	_ "github.com/jobhost/jobhost/triggers/redis"             // redis://, for the bench's publisher

	"github.com/jobhost/jobhost/bench/internal/proto"
	"github.com/jobhost/jobhost/bench/internal/workload"
)

// driverPublisher sends to a jobhost trigger URL through the driver's own
// publisher (what output bindings, client.Send and the CLI use), with the
// given app settings; one publisher per queue, opened on first use.
type driverPublisher struct {
	settings map[string]string
	mu       sync.Mutex
	pubs     map[string]triggers.Publisher
}

func newDriverPublisher(settings map[string]string) *driverPublisher {
	return &driverPublisher{settings: settings, pubs: map[string]triggers.Publisher{}}
}

func (d *driverPublisher) get(ctx context.Context, target string) (triggers.Publisher, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.pubs[target]; p != nil {
		return p, nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	s, err := triggers.Lookup(u.Scheme)
	if err != nil {
		return nil, err
	}
	lookup := func(k string) (string, bool) { v, ok := d.settings[k]; return v, ok }
	p, err := s.Publisher(ctx, u, triggers.OpenOptions{Lookup: lookup, Prefetch: 1, CreateIfMissing: true})
	if err != nil {
		return nil, err
	}
	d.pubs[target] = p
	return p, nil
}

func (d *driverPublisher) send(ctx context.Context, target string, id int64, sentAt time.Time) error {
	p, err := d.get(ctx, target)
	if err != nil {
		return err
	}
	_, err = p.Publish(ctx, workload.Body(id, sentAt), nil)
	return err
}

// prefill publishes ids [0,n) with 16 senders.
func (d *driverPublisher) prefill(ctx context.Context, target string, n int64) error {
	return parallel(16, n, func(i int64) error { return d.send(ctx, target, i, time.Time{}) })
}

// forget closes and drops target's publisher.
func (d *driverPublisher) forget(target string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.pubs[target]; p != nil {
		p.Close()
		delete(d.pubs, target)
	}
}

func (d *driverPublisher) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, p := range d.pubs {
		p.Close()
		delete(d.pubs, k)
	}
}

// jobhostRedis is jobhost's row of scenario h: redis://<stream> (a Redis
// stream read through the consumer group "jobhost"), REDIS_SERVER_URL in
// the app settings; the bench creates the stream and group before each
// run and publishes through the driver's publisher.
func (b *bench) jobhostRedis(r *redisSrv) *dbSystem {
	pub := newDriverPublisher(map[string]string{"REDIS_SERVER_URL": b.redisURL})
	bt := b.bt["redis"]
	return &dbSystem{
		key:   proto.JobhostRedis,
		label: fmt.Sprintf("jobhost (redis://, batchSize %d, newBatchThreshold %d)", bt[0], bt[1]),
		spec: func(queue, conn string) proto.Spec {
			s := b.jobhostSpec(proto.JobhostRedis, "redis")
			s.RedisURL, s.Queue = conn, queue
			return s
		},
		setup: func(ctx context.Context, queue string) error {
			err := r.rdb.XGroupCreateMkStream(ctx, queue, "jobhost", "0").Err()
			if err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") {
				err = nil
			}
			return err
		},
		prefill: func(ctx context.Context, queue string, n int64) error { return pub.prefill(ctx, "redis://"+queue, n) },
		send: func(ctx context.Context, queue string, id int64) error {
			return pub.send(ctx, "redis://"+queue, id, time.Now())
		},
		left: func(ctx context.Context, queue string) (int64, error) {
			// Entries never delivered plus those delivered and not yet
			// acknowledged (the driver deletes what it settles).
			return r.rdb.XLen(ctx, queue).Result()
		},
		cleanup: func(queue string) {
			pub.forget("redis://" + queue)
			r.deleteMatching(queue + "*")
		},
	}
}

// jobhostPostgres is jobhost's row of scenario i: postgres://<queue> in
// schema p.jobhostSchema (migrated by the scenario with postgres.Migrate),
// JOBHOST_POSTGRES_URL in the app settings; the bench publishes through
// the driver's publisher (one INSERT and its pg_notify per message).
func (b *bench) jobhostPostgres(p *pgSrv) *dbSystem {
	pub := newDriverPublisher(map[string]string{"JOBHOST_POSTGRES_URL": b.postgresURL})
	target := func(queue string) string { return "postgres://" + queue + "?schema=" + p.jobhostSchema }
	bt := b.bt["postgres"]
	table := p.jobhostSchema + "." + pgpostgres.MessagesTable
	truncate := func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, "truncate "+table+", "+p.jobhostSchema+"."+pgpostgres.PoisonTable)
		return err
	}
	return &dbSystem{
		key:   proto.JobhostPostgres,
		label: fmt.Sprintf("jobhost (postgres://, batchSize %d, newBatchThreshold %d)", bt[0], bt[1]),
		spec: func(queue, conn string) proto.Spec {
			s := b.jobhostSpec(proto.JobhostPostgres, "postgres")
			s.PostgresURL, s.Queue, s.Schema = conn, queue, p.jobhostSchema
			return s
		},
		// The schema is the bench's own: its tables are emptied before
		// each run, as River's are.
		setup:   func(ctx context.Context, _ string) error { return truncate(ctx) },
		prefill: func(ctx context.Context, queue string, n int64) error { return pub.prefill(ctx, target(queue), n) },
		send: func(ctx context.Context, queue string, id int64) error {
			return pub.send(ctx, target(queue), id, time.Now())
		},
		left: func(ctx context.Context, queue string) (int64, error) {
			var n int64
			err := p.pool.QueryRow(ctx, "select count(*) from "+table+" where queue = $1", queue).Scan(&n)
			return n, err
		},
		cleanup: func(queue string) {
			pub.forget(target(queue))
			_ = truncate(bg)
		},
	}
}

// migrateJobhost creates jobhost's queue tables in p.jobhostSchema.
func (b *bench) migrateJobhost(ctx context.Context, p *pgSrv) error {
	return pgpostgres.Migrate(ctx, b.postgresURL, p.jobhostSchema)
}
