package harness

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/jobhost/jobhost/bench/internal/workload"
)

// redisSrv is the bench's own connection to the machine's Redis, on the
// bench's database (the URL's path: /12 unless -redis says otherwise).
type redisSrv struct {
	url string
	rdb *redis.Client
}

func dialRedis(u string) (*redisSrv, error) {
	opt, err := redis.ParseURL(u)
	if err != nil {
		return nil, err
	}
	opt.DialTimeout = 5 * time.Second
	rdb := redis.NewClient(opt)
	if err := rdb.Ping(bg).Err(); err != nil {
		rdb.Close()
		return nil, err
	}
	return &redisSrv{url: u, rdb: rdb}, nil
}

func (r *redisSrv) close() { r.rdb.Close() }

func (r *redisSrv) version() string {
	s, err := r.rdb.Info(bg, "server").Result()
	if err != nil {
		return "?"
	}
	return infoField(s, "redis_version")
}

// persistence describes the server's persistence settings.
func (r *redisSrv) persistence() string {
	var parts []string
	for _, k := range []string{"save", "appendonly"} {
		v, err := r.rdb.ConfigGet(bg, k).Result()
		if err != nil {
			return "persistence unknown"
		}
		parts = append(parts, fmt.Sprintf("%s %q", k, v[k]))
	}
	return strings.Join(parts, ", ")
}

func infoField(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}

// benchKey reports whether a key is one the bench makes: asynq's (every
// key of asynq starts with "asynq:") or a jobhost stream of scenario h
// (and its companions).
func benchKey(k string) bool {
	return strings.HasPrefix(k, "asynq:") || strings.HasPrefix(k, "bench-h") || strings.HasPrefix(k, "bench_h")
}

// checkDB makes sure the bench's database holds nothing but keys the
// bench makes (an earlier or concurrent bench's): it never touches anyone
// else's keys, and each run deletes only its own.
func (r *redisSrv) checkDB() error {
	var foreign []string
	iter := r.rdb.Scan(bg, 0, "*", 1000).Iterator()
	for iter.Next(bg) {
		if k := iter.Val(); !benchKey(k) && len(foreign) < 5 {
			foreign = append(foreign, k)
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(foreign) > 0 {
		return fmt.Errorf("redis database of %s holds keys the bench did not make (%s…): give the bench a database of its own with -redis redis://host:port/N", redactURL(r.url), strings.Join(foreign, ", "))
	}
	return nil
}

func (r *redisSrv) del(keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := r.rdb.Del(bg, keys[:n]...).Err(); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// deleteMatching deletes the bench's keys matching pattern.
func (r *redisSrv) deleteMatching(pattern string) {
	var keys []string
	iter := r.rdb.Scan(bg, 0, pattern, 1000).Iterator()
	for iter.Next(bg) {
		if benchKey(iter.Val()) {
			keys = append(keys, iter.Val())
		}
	}
	_ = r.del(keys)
}

// cleanAsynq deletes asynq's keys of queue and its registration.
func (r *redisSrv) cleanAsynq(queue string) {
	r.deleteMatching("asynq:{" + queue + "}*")
	r.rdb.SRem(bg, "asynq:queues", queue)
}

// commandCalls sums the calls of every command in INFO commandstats (the
// whole server: every client and database).
func (r *redisSrv) commandCalls(ctx context.Context) (int64, error) {
	s, err := r.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, line := range strings.Split(s, "\n") {
		_, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
	}
	return total, nil
}

// counters reads the server's command calls (INFO commandstats, every
// client).
func (r *redisSrv) counters(ctx context.Context) (map[string]int64, error) {
	n, err := r.commandCalls(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"serverCommands": n}, nil
}

// asynqClient enqueues tasks for the asynq rows.
type asynqClient struct{ c *asynq.Client }

func newAsynqClient(u string) (*asynqClient, error) {
	opt, err := asynq.ParseRedisURI(u)
	if err != nil {
		return nil, err
	}
	return &asynqClient{c: asynq.NewClient(opt)}, nil
}

func (a *asynqClient) close() { a.c.Close() }

func (a *asynqClient) send(ctx context.Context, queue string, id int64, sentAt time.Time) error {
	_, err := a.c.EnqueueContext(ctx, asynq.NewTask(workload.AsynqTaskType, workload.Body(id, sentAt)), asynq.Queue(queue))
	return err
}

// prefill enqueues ids [0,n) with 16 senders (one EVALSHA each).
func (a *asynqClient) prefill(ctx context.Context, queue string, n int64) error {
	return parallel(16, n, func(i int64) error { return a.send(ctx, queue, i, time.Time{}) })
}

// withHostPort returns u with its host:port replaced (for a proxy).
func withHostPort(u string, port int) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	p.Host = fmt.Sprintf("127.0.0.1:%d", port)
	return p.String(), nil
}

// hostPort returns u's host:port.
func hostPort(u, defPort string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	h := p.Host
	if p.Port() == "" {
		h += ":" + defPort
	}
	return h, nil
}

// redactURL drops a URL's password.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(bad URL)"
	}
	return p.Redacted()
}
