// Package redistest runs the redis driver's tests against a real Redis
// server: by default redis://127.0.0.1:6379, or the server named by
// REDIS_SERVER_URL. Without a reachable server, tests are skipped with a
// loud message, or fail when JOBHOST_REQUIRE_BROKERS=1.
//
// Every test gets its own uniquely named stream, "jobhost-test:<test>:<random>",
// and deletes every key starting with that name (the stream, its delayed
// set and its poison stream) when it ends.
package redistest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobhost/jobhost/internal/servertest"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/redis"
)

// EnvRequire set to 1 turns an unreachable server into a test failure.
const EnvRequire = servertest.EnvRequire

// URL returns the server URL the tests use.
func URL() string {
	if s := strings.TrimSpace(os.Getenv(redis.EnvServerURL)); s != "" {
		return s
	}
	return redis.DefaultServerURL
}

// probe checks once that the server answers.
var probe = &servertest.Probe{Name: "REDIS", Check: func() error {
	opts, err := goredis.ParseURL(URL())
	if err != nil {
		return err
	}
	opts.DialTimeout, opts.MaxRetries = 2*time.Second, -1
	c := goredis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}}

// Require skips (or, with JOBHOST_REQUIRE_BROKERS=1, fails) the test when
// the server cannot be reached, and returns the server URL.
func Require(t testing.TB) string {
	t.Helper()
	probe.Require(t, redacted(URL()), "Start it (redis-server --save '' --appendonly no --daemonize yes) or set "+redis.EnvServerURL)
	return URL()
}

func redacted(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// Client returns a client of the test server, closed when the test ends.
func Client(t testing.TB) *goredis.Client {
	t.Helper()
	opts, err := goredis.ParseURL(Require(t))
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	c := goredis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// UniqueStream returns a new stream name that mentions the test. It does
// not create the stream, but deletes every key starting with the name when
// the test ends.
func UniqueStream(t testing.TB) string {
	t.Helper()
	name := servertest.UniqueName(t, ":")
	c := Client(t)
	t.Cleanup(func() { DeleteKeys(c, name) })
	return name
}

// DeleteKeys deletes every key starting with prefix, ignoring errors.
func DeleteKeys(c *goredis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	it := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
	var keys []string
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if len(keys) > 0 {
		c.Del(ctx, keys...)
	}
}

// CreateGroup creates stream (if missing) and its consumer group, reading
// from the start.
func CreateGroup(t testing.TB, c *goredis.Client, stream, group string) {
	t.Helper()
	if err := c.XGroupCreateMkStream(context.Background(), stream, group, "0").Err(); err != nil {
		t.Fatalf("redistest: XGROUP CREATE %s %s: %v", stream, group, err)
	}
}

// Send adds an entry as a producer would: the body in the "body" field,
// each property a field of its own.
func Send(ctx context.Context, c *goredis.Client, stream string, body []byte, props map[string]string) (string, error) {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vals := []interface{}{redis.DefaultBodyField, string(body)}
	for _, k := range keys {
		vals = append(vals, k, props[k])
	}
	return c.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: vals}).Result()
}

// Lookup returns an app-setting lookup with REDIS_SERVER_URL set to the
// test server.
func Lookup(t testing.TB) func(string) (string, bool) {
	serverURL := Require(t)
	return func(k string) (string, bool) {
		if k == redis.EnvServerURL {
			return serverURL, true
		}
		return "", false
	}
}

// StreamURL is redis:///<stream> (the form that takes any key name).
func StreamURL(stream string) *url.URL {
	return &url.URL{Scheme: redis.Scheme, Path: "/" + stream}
}

// harness implements drivertest.Harness.
type harness struct{}

// Harness returns a drivertest.Harness whose drivers each read a fresh
// stream (its group created beforehand, so no driver needs
// CreateIfMissing), opened through redis.OpenURL, with publishers and
// poison administrations from redis.OpenPublisherURL and
// redis.OpenPoisonURL.
func Harness(t *testing.T) drivertest.Harness {
	t.Helper()
	Require(t)
	return harness{}
}

func (harness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	c := Client(t)
	name := UniqueStream(t)
	CreateGroup(t, c, name, redis.DefaultGroup)
	lookup := Lookup(t)
	u := StreamURL(name)
	d, err := redis.OpenURL(ctx, u, triggers.OpenOptions{Lookup: lookup, Prefetch: 16})
	if err != nil {
		return drivertest.Queue{}, err
	}
	poison := name + redis.PoisonSuffix
	var mu sync.Mutex
	next := "-"
	return drivertest.Queue{
		Driver: d,
		Send: func(ctx context.Context, body []byte, props map[string]string) error {
			_, err := Send(ctx, c, name, body, props)
			return err
		},
		ReceivePoison: func(ctx context.Context) ([]*triggers.Message, error) {
			mu.Lock()
			defer mu.Unlock()
			xs, err := c.XRange(ctx, poison, next, "+").Result()
			if err != nil {
				return nil, err
			}
			var out []*triggers.Message
			for _, x := range xs {
				next = "(" + x.ID
				out = append(out, PoisonMessage(x))
			}
			return out, nil
		},
		MissingQueue: func(ctx context.Context) (triggers.Driver, error) {
			return redis.Open(ctx, Require(t), UniqueStream(t), redis.Options{})
		},
		// An open driver takes over its own entries once their leases
		// run out (XAUTOCLAIM), so the suite needs no reopened driver.
		Reopen: nil,
		OpenPublisher: func(ctx context.Context) (triggers.Publisher, error) {
			p, err := redis.OpenPublisherURL(ctx, u, triggers.OpenOptions{Lookup: lookup})
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		OpenPoison: func(ctx context.Context) (triggers.PoisonAdmin, error) {
			p, err := redis.OpenPoisonURL(ctx, u, triggers.OpenOptions{Lookup: lookup})
			if err == nil {
				t.Cleanup(func() { p.Close() })
			}
			return p, err
		},
		Capabilities: drivertest.Capabilities{Leases: true, Properties: true},
	}, nil
}

// PoisonMessage maps a poison entry as the driver lays it out: ID the
// poison entry's id, Body the body field, Properties the other fields.
func PoisonMessage(x goredis.XMessage) *triggers.Message {
	m := &triggers.Message{ID: x.ID, DequeueCount: 1, Properties: map[string]string{}}
	for k, v := range x.Values {
		if k == redis.DefaultBodyField {
			m.Body = []byte(fmt.Sprint(v))
			continue
		}
		m.Properties[k] = fmt.Sprint(v)
	}
	return m
}
