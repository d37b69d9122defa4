package runtime

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/triggers"
)

// nopDriver settles instantly: what is left is the host's own cost.
type nopDriver struct{}

func (nopDriver) Receive(context.Context, int, time.Duration) ([]*triggers.Message, error) {
	return nil, nil
}
func (nopDriver) Complete(context.Context, *triggers.Message) error { return nil }
func (nopDriver) Retry(context.Context, *triggers.Message, time.Duration) error {
	return nil
}
func (nopDriver) ExtendLease(context.Context, *triggers.Message, time.Duration) error { return nil }
func (nopDriver) DeadLetter(context.Context, *triggers.Message, string) (string, error) {
	return "", nil
}
func (nopDriver) PoisonDestination() string { return "" }
func (nopDriver) Close() error              { return nil }

func benchListener(b *testing.B, levels map[string]string, opts ...functions.Option) *listener {
	b.Helper()
	reg := &functions.Registry{}
	functions.Add(reg, "F", functions.QueueTrigger("bench-queue"),
		func(ctx context.Context, p []byte, m *triggers.Message) error { return nil }, opts...)
	cfg := DefaultConfig()
	cfg.Queues.MessageEncoding = bindings.None
	funcs, _, err := ResolveFunctions(cfg, reg, NewAppSettings(nil))
	if err != nil {
		b.Fatal(err)
	}
	logs, err := NewLogs(LogOptions{Levels: levels, Output: zapcore.AddSync(io.Discard)})
	if err != nil {
		b.Fatal(err)
	}
	l := newListener(funcs[0], nopDriver{}, logs, context.Background(), nil)
	// As Run sets a listener up: metrics and the ring of recent invocations.
	newHostMetrics(nil, prometheus.NewRegistry()).attach(l)
	l.ring = status.NewRing(0)
	return l
}

// BenchmarkDispatch is the host's cost per message, JSON decoding excluded
// (the function takes []byte): decode the encoding, renew-lease bookkeeping,
// invoke, settle and log the completion line.
func BenchmarkDispatch(b *testing.B) {
	body := []byte(`{"id": 42, "customer": "Contoso", "total": 12.5}`)
	for _, bc := range []struct {
		name   string
		levels map[string]string
	}{
		{"logs-off", map[string]string{"default": "None"}},
		{"json-logs", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := benchListener(b, bc.levels)
			m := &triggers.Message{ID: "m", Body: body, DequeueCount: 1}
			w := l.newWorker()
			b.ReportAllocs()
			for b.Loop() {
				l.mu.Lock()
				l.inflight++
				l.mu.Unlock()
				l.process(m, w)
			}
		})
	}
}

// feedDriver hands out n messages in batches and counts completions.
type feedDriver struct {
	nopDriver
	body      []byte
	left      atomic.Int64
	completed atomic.Int64
	done      chan struct{}
	once      sync.Once
	n         int64
}

func (d *feedDriver) Receive(_ context.Context, max int, _ time.Duration) ([]*triggers.Message, error) {
	k := min(int64(max), d.left.Load())
	if k <= 0 {
		<-d.done // nothing left: wait for the benchmark to end
		return nil, nil
	}
	d.left.Add(-k)
	msgs := make([]*triggers.Message, k)
	for i := range msgs {
		msgs[i] = &triggers.Message{ID: "m", Body: d.body, DequeueCount: 1}
	}
	return msgs, nil
}

func (d *feedDriver) Complete(context.Context, *triggers.Message) error {
	if d.completed.Add(1) == d.n {
		d.once.Do(func() { close(d.done) })
	}
	return nil
}

// BenchmarkPoll is the host's cost per message through the whole listener
// (poll, hand-off to a worker, invoke, settle), 16 in flight, logs off and
// JSON decoding excluded.
func BenchmarkPoll(b *testing.B) {
	l := benchListener(b, map[string]string{"default": "None"}, functions.BatchSize(16), functions.NewBatchThreshold(8))
	d := &feedDriver{body: []byte(`{"id": 42}`), done: make(chan struct{}), n: int64(b.N)}
	d.left.Store(int64(b.N))
	l.drv = d
	ctx, cancel := context.WithCancel(context.Background())
	b.ReportAllocs()
	b.ResetTimer()
	go func() { <-d.done; cancel() }()
	l.poll(ctx)
	l.invocations.Wait()
}

// BenchmarkBindJSON is the JSON binding alone, for comparison.
func BenchmarkBindJSON(b *testing.B) {
	type order struct {
		ID       int     `json:"id"`
		Customer string  `json:"customer"`
		Total    float64 `json:"total"`
	}
	bind := bindings.NewBinder[order]()
	body := []byte(`{"id": 42, "customer": "Contoso", "total": 12.5}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bind(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkObservation is what the observers cost per message on the
// success path: the outcome counter, the three histograms and the ring of
// recent invocations (the part of BenchmarkDispatch that metrics and the
// dashboard added; the target is under 150 ns and no allocation).
func BenchmarkObservation(b *testing.B) {
	l := benchListener(b, map[string]string{"default": "None"})
	m := &triggers.Message{ID: "m", DequeueCount: 1, InsertionTime: time.Now()}
	start := time.Now()
	obs := l.metrics.newObserver()
	b.ReportAllocs()
	for b.Loop() {
		l.stats.count(OutcomeSucceeded)
		obs.observe(start, m.InsertionTime, m.DequeueCount, time.Millisecond)
		l.ring.Add(status.Invocation{ID: "i", Function: "F", MessageID: m.ID, Outcome: OutcomeSucceeded,
			DequeueCount: m.DequeueCount, Start: start, Duration: time.Millisecond})
	}
}
