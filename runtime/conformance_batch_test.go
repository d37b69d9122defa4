package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
)

// TestHostBatchConformance runs the batch trigger over every backend.
func TestHostBatchConformance(t *testing.T) { runHostCases(t, batchCases) }

// batchLog records the batches a batch function was called with.
type batchLog struct {
	mu      sync.Mutex
	batches [][]int
	counts  map[int][]int64 // id → the dequeue counts it ran with
}

func (b *batchLog) add(in []order, msgs []*triggers.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.counts == nil {
		b.counts = map[int][]int64{}
	}
	var ids []int
	for i, o := range in {
		ids = append(ids, o.ID)
		b.counts[o.ID] = append(b.counts[o.ID], msgs[i].DequeueCount)
	}
	b.batches = append(b.batches, ids)
}

func sendOrders(t *testing.T, ctx context.Context, q drivertest.Queue, ids ...int) {
	t.Helper()
	for _, i := range ids {
		if err := q.Send(ctx, fmt.Appendf(nil, `{"id": %d, "label": "o%d"}`, i, i), nil); err != nil {
			t.Fatal(err)
		}
	}
}

var batchCases = []hostCase{
	{"CompletesEveryMessageOnce", func(t *testing.T, ctx context.Context, q drivertest.Queue) {
		reg := &functions.Registry{}
		var log batchLog
		functions.AddBatch(reg, "F", functions.QueueTrigger("conformance"), func(ctx context.Context, in []order, msgs []*triggers.Message) error {
			log.add(in, msgs)
			return nil
		}, functions.MaxBatchSize(8))
		logs, stop := suiteHost(t, q, reg, nil)
		sendOrders(t, ctx, q, slices.Collect(func(yield func(int) bool) {
			for i := range 20 {
				if !yield(i) {
					return
				}
			}
		})...)
		logs.await(t, "20 successes", 20, 45*time.Second, outcome(OutcomeSucceeded))
		stop()
		log.mu.Lock()
		defer log.mu.Unlock()
		for i := range 20 {
			if len(log.counts[i]) != 1 {
				t.Errorf("order %d ran %d times", i, len(log.counts[i]))
			}
		}
		for _, b := range log.batches {
			if len(b) > 8 {
				t.Errorf("a batch of %d, over maxBatchSize 8", len(b))
			}
		}
		if rest := leftovers(t, ctx, q, 1, 1500*time.Millisecond); len(rest) != 0 {
			t.Errorf("completed messages came back: %q", rest)
		}
	}},
	{"EachMessageItsOwnOutcome", func(t *testing.T, ctx context.Context, q drivertest.Queue) {
		reg := &functions.Registry{}
		var log batchLog
		functions.AddBatch(reg, "F", functions.QueueTrigger("conformance"), func(ctx context.Context, in []order, msgs []*triggers.Message) error {
			log.add(in, msgs)
			errs := make([]error, len(in))
			for i, o := range in {
				switch {
				case o.ID == 1:
					errs[i] = functions.Permanent(errors.New("order 1 is refused"))
				case o.ID == 2 && msgs[i].DequeueCount == 1:
					errs[i] = errors.New("order 2 is not ready yet")
				}
			}
			return functions.BatchErrors(errs)
		}, functions.MinBatchSize(5, 2*time.Second))
		logs, stop := suiteHost(t, q, reg, nil)
		sendOrders(t, ctx, q, 0, 1, 2, 3)
		if err := q.Send(ctx, []byte(`{"id": "not a number"`), nil); err != nil {
			t.Fatal(err)
		}
		logs.await(t, "three successes", 3, 45*time.Second, outcome(OutcomeSucceeded)) // 0, 3, then 2
		logs.await(t, "two poisoned", 2, 45*time.Second, outcome(OutcomePoisoned))     // 1, and the undecodable one
		stop()
		log.mu.Lock()
		defer log.mu.Unlock()
		want := map[int]string{0: "[1]", 1: "[1]", 2: "[1 2]", 3: "[1]"}
		for id, w := range want {
			if got := fmt.Sprint(log.counts[id]); got != w {
				t.Errorf("order %d ran with dequeue counts %s, want %s", id, got, w)
			}
		}
		if len(log.counts) != 4 {
			t.Errorf("the function saw %d orders, want 4 (the undecodable message is poisoned alone)", len(log.counts))
		}
		if rest := leftovers(t, ctx, q, 1, 1500*time.Millisecond); len(rest) != 0 {
			t.Errorf("settled messages came back: %q", rest)
		}
	}},
	{"ErrorRetriesTheWholeBatch", func(t *testing.T, ctx context.Context, q drivertest.Queue) {
		reg := &functions.Registry{}
		var log batchLog
		var mu sync.Mutex
		failed := false
		functions.AddBatch(reg, "F", functions.QueueTrigger("conformance"), func(ctx context.Context, in []order, msgs []*triggers.Message) error {
			log.add(in, msgs)
			mu.Lock()
			defer mu.Unlock()
			if !failed {
				failed = true
				return errors.New("the bulk insert failed")
			}
			return nil
		}, functions.MinBatchSize(3, 2*time.Second))
		logs, stop := suiteHost(t, q, reg, nil)
		sendOrders(t, ctx, q, 0, 1, 2)
		logs.await(t, "three successes", 3, 45*time.Second, outcome(OutcomeSucceeded))
		stop()
		log.mu.Lock()
		defer log.mu.Unlock()
		if len(log.batches) == 0 || len(log.batches[0]) != 3 {
			t.Fatalf("batches %v; want the first to hold all three (minBatchSize 3)", log.batches)
		}
		for id := range 3 {
			if got := fmt.Sprint(log.counts[id]); got != "[1 2]" {
				t.Errorf("order %d ran with dequeue counts %s, want [1 2] (retried with its batch)", id, got)
			}
		}
	}},
}
