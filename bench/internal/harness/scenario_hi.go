package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/jobhost/jobhost/bench/internal/proto"
)

// ---- h) Redis ----

func (b *bench) scenarioRedis() []*Scenario {
	n := b.n.redis
	fail := func(err error) []*Scenario {
		return []*Scenario{{ID: "h", Title: "Redis: jobhost redis:// against asynq", Error: "Redis: " + err.Error()}}
	}
	r, err := dialRedis(b.redisURL)
	if err != nil {
		return fail(err)
	}
	defer r.close()
	if err := r.checkDB(); err != nil {
		return fail(err)
	}
	addr, err := hostPort(b.redisURL, "6379")
	if err != nil {
		return fail(err)
	}
	ac, err := newAsynqClient(b.redisURL)
	if err != nil {
		return fail(err)
	}
	defer ac.close()
	srv := dbServer{
		id: "h", name: "Redis", conn: b.redisURL, addr: addr,
		meter: func() *meter {
			if pid := findProc("redis-server"); pid != 0 {
				return newMeter("Redis", true, func() float64 { return procCPU(pid) })
			}
			return nil
		},
		calls:     r.commandCalls,
		callsName: "serverCommands",
		counters:  r.counters,
		parse:     parseRESP,
		unit:      "commands",
		queue:     func() string { return "bench-h-" + randSuffix() },
	}
	systems := []dbSystem{}
	if jh := b.jobhostRedis(r); jh != nil {
		systems = append(systems, *jh)
	}
	systems = append(systems, dbSystem{
		key:   proto.Asynq,
		label: "asynq server (Concurrency 16, defaults: TaskCheckInterval 1 s)",
		spec: func(queue, conn string) proto.Spec {
			return proto.Spec{System: proto.Asynq, Concurrency: conc, RedisURL: conn, Queue: queue}
		},
		prefill: func(ctx context.Context, queue string, n int64) error { return ac.prefill(ctx, queue, n) },
		send: func(ctx context.Context, queue string, id int64) error {
			return ac.send(ctx, queue, id, time.Now())
		},
		left: func(ctx context.Context, queue string) (int64, error) {
			return r.rdb.LLen(ctx, "asynq:{"+queue+"}:pending").Result()
		},
		cleanup: r.cleanAsynq,
	})
	tuned := systems[len(systems)-1]
	tuned.key, tuned.parts, tuned.quickParts = proto.Asynq+"-100ms", "2", ptr("")
	tuned.label = "asynq server (Concurrency 16, TaskCheckInterval 100 ms)"
	tuned.spec = func(queue, conn string) proto.Spec {
		return proto.Spec{System: proto.Asynq, Concurrency: conc, RedisURL: conn, Queue: queue, TaskCheck: 100 * time.Millisecond}
	}
	systems = append(systems, tuned)
	out := b.dbScenario(srv, systems, proto.JobhostRedis, proto.Asynq, "asynq", n)
	if len(out) > 0 {
		out[0].Notes = append(out[0].Notes, fmt.Sprintf("Redis %s on %s (database %s; %s): the machine's server, shared with anyone else on the machine; the bench's keys are deleted after each run.", r.version(), addr, dbOf(b.redisURL), r.persistence()))
	}
	return out
}

// ---- i) PostgreSQL ----

func (b *bench) scenarioPostgres() []*Scenario {
	n := b.n.postgres
	fail := func(err error) []*Scenario {
		return []*Scenario{{ID: "i", Title: "PostgreSQL: jobhost postgres:// against River", Error: "PostgreSQL: " + err.Error()}}
	}
	p, err := dialPG(b.postgresURL)
	if err != nil {
		return fail(err)
	}
	defer p.close()
	migrated, err := p.setupRiver(bg)
	if err != nil {
		return fail(err)
	}
	defer p.dropRiver()
	addr, err := hostPort(b.postgresURL, "5432")
	if err != nil {
		return fail(err)
	}
	pm := p.postmaster(bg) // 0: the server's CPU is not measured
	srv := dbServer{
		id: "i", name: "PostgreSQL", conn: b.postgresURL, addr: addr,
		meter: func() *meter {
			if pm == 0 {
				return nil
			}
			return newMeter("PostgreSQL", false, func() float64 { return pgCPU(pm) })
		},
		calls:     p.xacts,
		callsName: "databaseXacts",
		counters:  p.counters,
		parse:     parsePG,
		unit:      "statements",
		queue:     func() string { return "bench_i_" + randSuffix() },
	}
	if err := b.migrateJobhost(bg, p); err != nil {
		return fail(fmt.Errorf("jobhost's migrations: %w", err))
	}
	defer func() { _, _ = p.pool.Exec(bg, "drop schema if exists "+p.jobhostSchema+" cascade") }()
	systems := []dbSystem{}
	if jh := b.jobhostPostgres(p); jh != nil {
		systems = append(systems, *jh)
	}
	river := func(key, label string, cooldown time.Duration, parts string, quickParts *string, refN int64) dbSystem {
		return dbSystem{
			key: key, label: label, parts: parts, quickParts: quickParts, refN: refN,
			spec: func(queue, conn string) proto.Spec {
				return proto.Spec{System: proto.River, Concurrency: conc, PostgresURL: conn, Queue: queue, Schema: p.riverSchema, FetchCooldown: cooldown}
			},
			setup:   func(ctx context.Context, _ string) error { return p.truncateRiver(ctx) },
			prefill: p.riverPrefill,
			send: func(ctx context.Context, queue string, id int64) error {
				return p.riverSend(ctx, queue, id, cooldown > 0)
			},
			left:    p.riverLeft,
			cleanup: func(string) { _ = p.truncateRiver(bg) },
		}
	}
	// River's producer fetches at most once per FetchCooldown (100 ms by
	// default), at most MaxWorkers jobs a fetch: 16 in flight caps it at
	// ~160 msg/s. The rounds (and the target) use the minimum cooldown;
	// the default runs once over fewer messages, and in the open loop and
	// idle parts, as a user would run it. The open loop of each inserts
	// with a client of the same FetchCooldown (River notifies a queue of
	// inserts at most once per the inserting client's cooldown).
	systems = append(systems,
		river(proto.River, "River (MaxWorkers 16, FetchCooldown 1 ms, the minimum, for workers and inserts; FetchPollInterval 1 s)", time.Millisecond, "12", nil, 0),
		river(proto.River+"-default", "River (MaxWorkers 16, defaults: FetchCooldown 100 ms, FetchPollInterval 1 s)", 0, "", ptr("3"), max(n/10, 500)))
	out := b.dbScenario(srv, systems, proto.JobhostPostgres, proto.River, "River", n)
	if len(out) > 0 {
		out[0].Notes = append(out[0].Notes, fmt.Sprintf("PostgreSQL %s on %s, the machine's server, shared (%s); jobhost's tables in schema %s (postgres.Migrate), River's in schema %s (rivermigrate: %s); the tables of both emptied (TRUNCATE) before and after each run, both schemas dropped at the end.", p.version(), addr, p.settings(), p.jobhostSchema, p.riverSchema, migrated))
	}
	return out
}

func dbOf(u string) string {
	for i := len(u) - 1; i >= 0; i-- {
		if u[i] == '/' {
			if u[i+1:] == "" {
				return "0"
			}
			return u[i+1:]
		}
	}
	return "0"
}

func ptr[T any](v T) *T { return &v }
