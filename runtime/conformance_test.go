package runtime

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
	"github.com/jobhost/jobhost/triggers/memqueue/memqueuetest"
	"github.com/jobhost/jobhost/triggers/postgres/pgtest"
	"github.com/jobhost/jobhost/triggers/pubsub/gcppubsub/gcppubsubtest"
	"github.com/jobhost/jobhost/triggers/pubsub/kafka/kafkatest"
	"github.com/jobhost/jobhost/triggers/pubsub/pubsubtest"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
	"github.com/jobhost/jobhost/triggers/redis/redistest"
	"github.com/jobhost/jobhost/triggers/servicebus/sbfake"
)

// backends are the drivers the host suite runs over.
func backends() map[string]func(t *testing.T) drivertest.Harness {
	return map[string]func(t *testing.T) drivertest.Harness{
		"azurite":        func(t *testing.T) drivertest.Harness { return azuritetest.Shared(t).Harness() },
		"jetstream":      func(t *testing.T) drivertest.Harness { return jstest.NewHarness(t) },
		"mem":            func(t *testing.T) drivertest.Harness { return pubsubtest.MemHarness() },
		"memqueue":       func(t *testing.T) drivertest.Harness { return memqueuetest.Harness() },
		"postgres":       func(t *testing.T) drivertest.Harness { return pgtest.Harness(t) },
		"rabbit-quorum":  func(t *testing.T) drivertest.Harness { return rabbittest.Harness(t, true) },
		"rabbit-classic": func(t *testing.T) drivertest.Harness { return rabbittest.Harness(t, false) },
		"redis":          func(t *testing.T) drivertest.Harness { return redistest.Harness(t) },
		// Service Bus has no emulator: a fake at the azservicebus boundary.
		"servicebus-fake": func(t *testing.T) drivertest.Harness { return sbfake.Harness{} },
		// Real protocol peers in the test process: Google's pstest Pub/Sub
		// server (gRPC) and franz-go's kfake Kafka cluster (sarama client).
		"gcppubsub-pstest": gcppubsubtest.NewHarness(gcppubsubtest.Options{}),
		"kafka-kfake":      kafkatest.NewHarness,
	}
}

// TestHostConformance runs the host over every backend: the same function,
// the same guarantees.
func TestHostConformance(t *testing.T) { runHostCases(t, hostCases) }

// hostCase is one case of a host suite, run over one backend's queue.
type hostCase struct {
	name string
	run  func(t *testing.T, ctx context.Context, q drivertest.Queue)
}

// runHostCases runs cases over every backend, each case on a fresh queue.
func runHostCases(t *testing.T, cases []hostCase) {
	b := backends()
	for _, name := range slices.Sorted(maps.Keys(b)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					q, err := b[name](t).MakeDriver(ctx, t)
					if err != nil {
						t.Fatal(err)
					}
					c.run(t, ctx, q)
				})
			}
		})
	}
}

// keepOpen stops the host from closing a driver the test still needs.
type keepOpen struct{ triggers.Driver }

func (keepOpen) Close() error { return nil }

func (k keepOpen) ReceiveWaits() bool {
	w, ok := k.Driver.(triggers.Waiter)
	return ok && w.ReceiveWaits()
}

// suiteHost runs reg's one function over q's driver.
func suiteHost(t *testing.T, q drivertest.Queue, reg *functions.Registry, tune func(*Config)) (*logSink, func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Queues.MaxDequeueCount = 3
	cfg.Queues.MaxPollingInterval = 300 * time.Millisecond
	cfg.Queues.MessageEncoding = bindings.None
	cfg.Queues.VisibilityTimeout = max(q.Capabilities.MinLease, 300*time.Millisecond)
	cfg.ShutdownTimeout = 5 * time.Second
	if tune != nil {
		tune(cfg)
	}
	sink := newLogSink()
	logs, err := NewLogs(LogOptions{Levels: map[string]string{"default": "Debug"}, Output: sink})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Registry: reg, Config: cfg, Settings: NewAppSettings(nil), Logs: logs,
		Open: func(context.Context, *FunctionConfig) (triggers.Driver, error) { return keepOpen{q.Driver}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("host did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return sink, stop
}

type order struct {
	ID    int    `json:"id"`
	Label string `json:"label"`
}

// leftovers returns the bodies still on q after the host stopped, waiting
// up to within for unsettled ones to come back.
func leftovers(t *testing.T, ctx context.Context, q drivertest.Queue, want int, within time.Duration) []string {
	t.Helper()
	d := q.Driver
	if q.Reopen != nil {
		d.Close()
		var err error
		if d, err = q.Reopen(ctx); err != nil {
			t.Fatal(err)
		}
		defer d.Close()
	}
	var out []string
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && len(out) < want {
		ms, err := d.Receive(ctx, 32, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			out = append(out, string(m.Body))
			d.Complete(ctx, m)
		}
		if len(ms) == 0 {
			time.Sleep(100 * time.Millisecond) // polling the broker
		}
	}
	return out
}

var hostCases = []hostCase{
	{"DeliversOnceAndCompletes", func(t *testing.T, ctx context.Context, q drivertest.Queue) {
		reg := &functions.Registry{}
		var mu sync.Mutex
		seen := map[int]int{}
		functions.Add(reg, "F", functions.QueueTrigger("conformance"), func(ctx context.Context, o order, m *triggers.Message) error {
			mu.Lock()
			seen[o.ID]++
			mu.Unlock()
			return nil
		})
		logs, stop := suiteHost(t, q, reg, nil)
		for i := range 10 {
			if err := q.Send(ctx, fmt.Appendf(nil, `{"id": %d, "label": "ü-%d"}`, i, i), map[string]string{"k": "v"}); err != nil {
				t.Fatal(err)
			}
		}
		logs.await(t, "10 successes", 10, 30*time.Second, outcome(OutcomeSucceeded))
		stop()
		mu.Lock()
		defer mu.Unlock()
		for i := range 10 {
			if seen[i] != 1 {
				t.Errorf("message %d ran %d times", i, seen[i])
			}
		}
		if rest := leftovers(t, ctx, q, 1, 1500*time.Millisecond); len(rest) != 0 {
			t.Errorf("completed messages came back: %q", rest)
		}
	}},
	{"RetriesWithDelayThenPoisons", func(t *testing.T, ctx context.Context, q drivertest.Queue) {
		reg := &functions.Registry{}
		var mu sync.Mutex
		var counts []int64
		var times []time.Time
		functions.Add(reg, "F", functions.QueueTrigger("conformance"), func(ctx context.Context, o order, m *triggers.Message) error {
			mu.Lock()
			counts = append(counts, m.DequeueCount)
			times = append(times, time.Now())
			mu.Unlock()
			return fmt.Errorf("order %d cannot be shipped", o.ID)
		})
		logs, stop := suiteHost(t, q, reg, nil)
		body := `{"id": 7, "label": "bytes \u00e9 kept"}`
		if err := q.Send(ctx, []byte(body), map[string]string{"tenant": "contoso"}); err != nil {
			t.Fatal(err)
		}
		logs.await(t, "poisoned", 1, 45*time.Second, outcome(OutcomePoisoned))
		stop()
		mu.Lock()
		if fmt.Sprint(counts) != "[1 2 3]" {
			t.Errorf("attempts saw DequeueCount %v, want [1 2 3]", counts)
		}
		// A retry waits its delay: no hot redelivery loop.
		delay := max(q.Capabilities.MinLease, 300*time.Millisecond)
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap < delay-100*time.Millisecond {
				t.Errorf("attempt %d came %v after the previous, want at least the %v retry delay", i+1, gap, delay)
			}
		}
		mu.Unlock()
		if q.ReceivePoison == nil {
			return
		}
		var poisoned []*triggers.Message
		deadline := time.Now().Add(10 * time.Second)
		for len(poisoned) == 0 && time.Now().Before(deadline) {
			ms, err := q.ReceivePoison(ctx)
			if err != nil {
				t.Fatal(err)
			}
			poisoned = append(poisoned, ms...)
		}
		if len(poisoned) != 1 || string(poisoned[0].Body) != body {
			t.Fatalf("poison destination holds %d messages; want the body unchanged", len(poisoned))
		}
		if q.Capabilities.Properties && poisoned[0].Properties["tenant"] != "contoso" {
			t.Errorf("properties not preserved: %v", poisoned[0].Properties)
		}
	}},
	{"UndecodablePoisonedOnFirstDelivery", func(t *testing.T, ctx context.Context, q drivertest.Queue) {
		reg := &functions.Registry{}
		var calls atomic.Int32
		functions.Add(reg, "F", functions.QueueTrigger("conformance"), func(ctx context.Context, o order, m *triggers.Message) error {
			calls.Add(1)
			return nil
		})
		logs, stop := suiteHost(t, q, reg, nil)
		if err := q.Send(ctx, []byte(`{"id": "not a number"`), nil); err != nil {
			t.Fatal(err)
		}
		l := logs.await(t, "poisoned", 1, 30*time.Second, outcome(OutcomePoisoned))[0]
		stop()
		if calls.Load() != 0 || l["dequeueCount"] != 1.0 || !strings.Contains(fmt.Sprint(l["error"]), "cannot be bound") {
			t.Errorf("calls=%d line=%v", calls.Load(), l)
		}
	}},
	{"LongFunctionRunsOnce", func(t *testing.T, ctx context.Context, q drivertest.Queue) {
		if !q.Capabilities.Leases {
			t.Skip("the broker has no renewable lease (gocloud mem:// has a fixed ack deadline)")
		}
		lease := max(2*q.Capabilities.MinLease, 2*time.Second)
		reg := &functions.Registry{}
		var calls atomic.Int32
		functions.Add(reg, "F", functions.QueueTrigger("conformance"), func(ctx context.Context, s string, m *triggers.Message) error {
			calls.Add(1)
			select {
			case <-time.After(lease * 5 / 2):
			case <-ctx.Done():
			}
			return nil
		})
		logs, stop := suiteHost(t, q, reg, func(c *Config) { c.Queues.LeaseDuration = lease })
		if err := q.Send(ctx, []byte("slow"), nil); err != nil {
			t.Fatal(err)
		}
		logs.await(t, "success", 1, 30*time.Second, outcome(OutcomeSucceeded))
		stop()
		if calls.Load() != 1 {
			t.Errorf("ran %d times, want 1", calls.Load())
		}
	}},
	{"ShutdownLosesNothing", func(t *testing.T, ctx context.Context, q drivertest.Queue) {
		reg := &functions.Registry{}
		started := make(chan struct{}, 4)
		functions.Add(reg, "F", functions.QueueTrigger("conformance"), func(ctx context.Context, s string, m *triggers.Message) error {
			started <- struct{}{}
			d := 200 * time.Millisecond
			if strings.HasPrefix(s, "long") {
				d = time.Hour
			}
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		lease := max(2*q.Capabilities.MinLease, 2*time.Second)
		logs, stop := suiteHost(t, q, reg, func(c *Config) {
			c.ShutdownTimeout = time.Second
			c.Queues.LeaseDuration = lease
		})
		for _, b := range []string{"short-1", "short-2", "long-1", "long-2"} {
			if err := q.Send(ctx, []byte(b), nil); err != nil {
				t.Fatal(err)
			}
		}
		for range 4 {
			<-started
		}
		stop()
		if n := len(logs.matching(outcome(OutcomeSucceeded))); n != 2 {
			t.Errorf("%d finished during shutdown, want 2", n)
		}
		rest := leftovers(t, ctx, q, 2, lease+20*time.Second)
		slices.Sort(rest)
		if fmt.Sprint(rest) != "[long-1 long-2]" {
			t.Errorf("after shutdown the queue gave back %q, want the two unfinished messages", rest)
		}
	}},
	{"ConcurrencyLimitHeld", func(t *testing.T, ctx context.Context, q drivertest.Queue) {
		reg := &functions.Registry{}
		var cur, peak atomic.Int32
		functions.Add(reg, "F", functions.QueueTrigger("conformance"), func(ctx context.Context, s string, m *triggers.Message) error {
			n := cur.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(150 * time.Millisecond) // the work being limited
			cur.Add(-1)
			return nil
		}, functions.BatchSize(2), functions.NewBatchThreshold(1))
		logs, stop := suiteHost(t, q, reg, nil)
		for i := range 8 {
			if err := q.Send(ctx, fmt.Appendf(nil, "m%d", i), nil); err != nil {
				t.Fatal(err)
			}
		}
		logs.await(t, "8 successes", 8, 30*time.Second, outcome(OutcomeSucceeded))
		stop()
		if p := peak.Load(); p > 3 || p < 1 {
			t.Errorf("peak concurrency %d, want at most batchSize+newBatchThreshold = 3", p)
		}
	}},
}
