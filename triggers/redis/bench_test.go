package redis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/redis"
	"github.com/jobhost/jobhost/triggers/redis/redistest"
)

// BenchmarkReceiveComplete drains a preloaded stream as the host does:
// Receive(16), then the batch completed concurrently.
func BenchmarkReceiveComplete(b *testing.B) {
	ctx := context.Background()
	c := redistest.Client(b)
	stream := redistest.UniqueStream(b)
	redistest.CreateGroup(b, c, stream, redis.DefaultGroup)
	for i := 0; i < b.N; i += 1000 {
		pipe := c.Pipeline()
		for j := i; j < min(b.N, i+1000); j++ {
			pipe.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: []interface{}{"body", fmt.Sprintf(`{"id":%d}`, j)}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	d, err := redis.OpenURL(ctx, redistest.StreamURL(stream), triggers.OpenOptions{Lookup: redistest.Lookup(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	b.ResetTimer()
	start := time.Now()
	for got := 0; got < b.N; {
		ms, err := d.Receive(ctx, 16, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Go(func() {
				if err := d.Complete(ctx, m); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		got += len(ms)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}

// BenchmarkPublish publishes one message at a time.
func BenchmarkPublish(b *testing.B) {
	ctx := context.Background()
	stream := redistest.UniqueStream(b)
	p, err := redis.OpenPublisherURL(ctx, redistest.StreamURL(stream), triggers.OpenOptions{Lookup: redistest.Lookup(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	body := []byte(`{"id":1,"label":"x"}`)
	props := map[string]string{"tenant": "contoso"}
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Publish(ctx, body, props); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlainLoop is the baseline of BenchmarkReceiveComplete: a plain
// go-redis loop, XREADGROUP COUNT 16, then each entry XACK+XDEL in a
// MULTI, concurrently (no leases, counts or lost-lease checks).
func BenchmarkPlainLoop(b *testing.B) {
	ctx := context.Background()
	c := redistest.Client(b)
	stream := redistest.UniqueStream(b)
	redistest.CreateGroup(b, c, stream, redis.DefaultGroup)
	for i := 0; i < b.N; i += 1000 {
		pipe := c.Pipeline()
		for j := i; j < min(b.N, i+1000); j++ {
			pipe.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: []interface{}{"body", fmt.Sprintf(`{"id":%d}`, j)}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for got := 0; got < b.N; {
		res, err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: redis.DefaultGroup, Consumer: "plain", Streams: []string{stream, ">"}, Count: 16, Block: -1}).Result()
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, m := range res[0].Messages {
			wg.Go(func() {
				if _, err := c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
					p.XAck(ctx, stream, redis.DefaultGroup, m.ID)
					p.XDel(ctx, stream, m.ID)
					return nil
				}); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		got += len(res[0].Messages)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}
