package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

// benchOrder is bench/'s workload: a ~200-byte JSON object.
type benchOrder struct {
	ID       int64   `json:"id"`
	SentAt   int64   `json:"sentAt"`
	Customer string  `json:"customer"`
	Region   string  `json:"region"`
	SKU      string  `json:"sku"`
	Quantity int     `json:"quantity"`
	Total    float64 `json:"total"`
	Currency string  `json:"currency"`
	Note     string  `json:"note"`
}

func benchOrderBody(i int) []byte {
	b, _ := json.Marshal(benchOrder{ID: int64(i), Customer: fmt.Sprintf("Contoso Pharmaceuticals %06d", i%1000000),
		Region: "westeurope", SKU: fmt.Sprintf("SKU-%08d", (i*7919)%100000000), Quantity: i%17 + 1,
		Total: float64(i%100000)/100 + 12.5, Currency: "EUR", Note: "deliver to loading bay 4, ring twice"})
	return b
}

// levelSink drops info lines as bench/'s log sink does, so the completion
// line costs what the host spends encoding it.
type levelSink struct{ warnings atomic.Int64 }

func (s *levelSink) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, []byte(`{"level":"info"`)) && !bytes.HasPrefix(p, []byte(`{"level":"debug"`)) {
		s.warnings.Add(1)
	}
	return len(p), nil
}
func (s *levelSink) Sync() error { return nil }

// BenchmarkHostMemqueue is bench/ scenario b in process: a whole host over
// memqueue, 16 in flight (batchSize 8, newBatchThreshold 8), JSON bound to
// a struct, JSON logs with (or without) the completion line. Run it with
// -cpu 2 to compare with BenchmarkDecodeFloor, the bare decode loop.
func BenchmarkHostMemqueue(b *testing.B) {
	for _, bc := range []struct{ name, level string }{{"json-logs", ""}, {"no-completion-line", "Warning"}} {
		b.Run(bc.name, func(b *testing.B) {
			bodies := make([][]byte, 4096)
			for i := range bodies {
				bodies[i] = benchOrderBody(i)
			}
			name := "bench-host-" + strconv.Itoa(b.N) + bc.name
			q := memqueue.Default.Queue(name)
			for i := range b.N {
				q.Send(bodies[i%len(bodies)], nil)
			}
			var n atomic.Int64
			done := make(chan struct{})
			var once sync.Once
			reg := &functions.Registry{}
			functions.Add(reg, "Bench", functions.SubscriptionTrigger("memqueue://"+name),
				func(ctx context.Context, o benchOrder, m *triggers.Message) error {
					if n.Add(1) == int64(b.N) {
						once.Do(func() { close(done) })
					}
					return nil
				})
			cfg := DefaultConfig()
			cfg.PubSub.BatchSize, cfg.PubSub.NewBatchThreshold = 8, 8
			cfg.PubSub.MessageEncoding = bindings.None
			if bc.level != "" {
				cfg.LogLevels = map[string]string{"Function": bc.level}
			}
			sink := &levelSink{}
			logs, err := NewLogs(LogOptions{Format: cfg.LogFormat, Levels: cfg.LogLevels, Output: sink})
			if err != nil {
				b.Fatal(err)
			}
			h, err := New(Options{Registry: reg, Config: cfg, Logs: logs})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			b.ReportAllocs()
			b.ResetTimer()
			go func() { ran <- h.Run(ctx) }()
			select {
			case <-done:
			case err := <-ran:
				b.Fatalf("host stopped: %v", err)
			}
			b.StopTimer()
			cancel()
			<-ran
			if w := sink.warnings.Load(); w > 0 {
				b.Fatalf("%d warnings logged", w)
			}
		})
	}
}

// BenchmarkDecodeFloor is bench/'s bare decode loop: GOMAXPROCS goroutines
// decode pre-built bodies, no messaging.
func BenchmarkDecodeFloor(b *testing.B) {
	bodies := make([][]byte, 4096)
	for i := range bodies {
		bodies[i] = benchOrderBody(i)
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var o benchOrder
			if err := json.Unmarshal(bodies[n.Add(1)%int64(len(bodies))], &o); err != nil {
				panic(err)
			}
		}
	})
}
