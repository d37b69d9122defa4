package runtime

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/triggers"
)

// batchSettlers bounds the settlements of one batch made at once.
const batchSettlers = 8

// pollBatches is the polling loop of a batch function: it fills a batch
// over as many receives as it takes — up to Batch.Max, or Batch.Min
// within Batch.MaxWait of the batch's first message, or whatever the
// broker had when a receive comes back short — and hands each batch to
// an invocation of its own. It polls while the messages in flight are at
// or below newBatchThreshold, as poll does. It returns when ctx ends.
func (l *listener) pollBatches(ctx context.Context) {
	q, b := l.fc.Queues, l.fc.Batch
	bo := newBackoff(MinPollingInterval, q.MaxPollingInterval)
	failing := 0
	w, waits := l.drv.(triggers.Waiter)
	waits = waits && w.ReceiveWaits()
	defer l.stats.setState(stateStopping)
	rc := l.pollCtx
	var acc []*triggers.Message
	var first time.Time // when acc's first message arrived
	flush := func() {
		if len(acc) > 0 {
			l.dispatchBatch(acc)
			acc, first = nil, time.Time{}
		}
	}
	for {
		for len(acc) == 0 && l.running() > q.NewBatchThreshold {
			select {
			case <-ctx.Done():
				return
			case <-l.freed:
			}
		}
		if ctx.Err() != nil {
			l.release(acc)
			return
		}
		want := min(b.Max-len(acc), q.BatchSize)
		bound := receiveBound
		if waits && len(acc) > 0 {
			// A driver that waits inside Receive must not hold a batch
			// being filled past its MaxWait (one that does not wait
			// returns at once, and is never cut short: a cut dequeue
			// could hide its messages for a lease).
			bound = max(time.Until(first.Add(b.MaxWait)), 50*time.Millisecond)
		}
		msgs, err := l.receiveN(rc, want, bound)
		if err != nil {
			flush() // what it holds goes now rather than wait out the outage
			if !l.pollFailed(ctx, err, &failing, bo) {
				return
			}
			continue
		}
		l.pollReached(&failing)
		if ctx.Err() != nil {
			l.release(append(acc, msgs...))
			return
		}
		if len(msgs) > 0 {
			bo.reset()
			l.stats.received.Add(uint64(len(msgs)))
			if len(acc) == 0 {
				first = time.Now()
			}
			acc = append(acc, msgs...)
		}
		switch {
		case len(acc) >= b.Max:
			flush()
			continue
		case len(msgs) == want && len(msgs) > 0:
			continue // a full page: the broker may have more at once
		case len(acc) >= b.Min:
			flush()
		case len(acc) > 0 && time.Since(first) >= b.MaxWait:
			flush()
			continue
		}
		if len(acc) > 0 {
			// Waiting for Min: ask again soon, at the latest at MaxWait.
			if !waits && !l.idle(ctx, min(bo.next(), time.Until(first.Add(b.MaxWait)))) {
				l.release(acc)
				return
			}
			continue
		}
		if len(msgs) == 0 && !waits && !l.idle(ctx, bo.next()) {
			return
		}
	}
}

// receiveN polls once for at most n messages, within bound (receive's
// rules otherwise).
func (l *listener) receiveN(bc *boundCtx, n int, bound time.Duration) ([]*triggers.Message, error) {
	rctx := bc.start(bound)
	l.receiving.Store(true)
	l.stats.receiveStart.Store(time.Now().UnixNano())
	defer func() {
		l.stats.receiveStart.Store(0)
		l.receiving.Store(false)
		bc.stop()
	}()
	return l.drv.Receive(rctx, n, l.fc.Queues.LeaseDuration)
}

// dispatchBatch runs one batch in a goroutine of its own: batches are few,
// so a pool would save nothing.
func (l *listener) dispatchBatch(msgs []*triggers.Message) {
	l.mu.Lock()
	l.inflight += len(msgs)
	l.mu.Unlock()
	l.invocations.Go(func() { l.processBatch(msgs) })
}

// batchItem is one message of a batch on its way to settlement.
type batchItem struct {
	m       *triggers.Message
	view    *triggers.Message
	payload []byte
	opID    string
	outcome string // set once settled (or never run)
	err     error
	renewal *renewal
}

// processBatch runs a batch to the settlement of each of its messages:
// those that cannot run (undecodable, over their attempts, cancelled
// operations) are settled alone first; the function gets the rest.
func (l *listener) processBatch(msgs []*triggers.Message) {
	defer func() {
		l.mu.Lock()
		l.inflight -= len(msgs)
		wake := l.inflight <= l.fc.Queues.NewBatchThreshold
		l.mu.Unlock()
		if wake {
			select {
			case l.freed <- struct{}{}:
			default:
			}
		}
	}()
	start := time.Now()
	id := newInvocationID()
	q := l.fc.Queues
	bc := newBoundCtx()
	var slab viewSlab
	var run []*batchItem
	for _, m := range msgs {
		it := &batchItem{m: m}
		switch payload, decodeErr := q.MessageEncoding.Decode(m.Body); {
		case l.poisoned.has(m.ID):
			it.outcome = l.dropPoisoned(bc, m, id)
		case int(m.DequeueCount) > l.attempts():
			it.err = fmt.Errorf("dequeue count %d is over the %d attempts allowed by maxDequeueCount or retry.maxRetryCount (an earlier attempt did not finish)", m.DequeueCount, l.attempts())
			it.outcome = l.poison(m, id, it.err)
			l.recordUnrun(m, payload, it.outcome, it.err)
		case decodeErr != nil:
			it.err = decodeErr
			it.outcome = l.poison(m, id, it.err)
			l.recordUnrun(m, nil, it.outcome, it.err)
		default:
			it.opID, it.payload = l.operationOf(m, payload)
			if it.opID != "" && l.records != nil {
				if rec := l.records.begin(it.opID, int(m.DequeueCount)); rec != nil {
					it.outcome = l.completeCanceled(bc, m, id, it.opID, rec) // cancelled before it ran
					break
				}
			}
			it.view = slab.clone(m, l.private)
			run = append(run, it)
		}
		if it.outcome != "" {
			l.finish(&l.metrics.shared, id, m, it.outcome, it.err, start)
		}
	}
	if len(run) == 0 {
		return
	}
	var pending *invocation.Pending
	if len(l.fc.Outputs) > 0 {
		pending = invocation.NewPending(l.fc.outputNames)
	}
	for _, it := range run {
		it.renewal = l.newRenewal()
		it.renewal.begin(it.m, start)
	}
	err := l.invokeBatch(run, id, pending, start)
	var be *functions.BatchError
	for i, it := range run {
		it.err = err
		if errors.As(err, &be) && len(be.Errs) == len(run) {
			it.err = be.Errs[i]
		}
	}
	if pending != nil {
		// Outputs go once, after the function returned, before any message
		// it succeeded on is completed; if they cannot be sent, none is.
		if items := pending.Items(); len(items) > 0 && anySucceeded(run) {
			targets, terr := l.outputs.resolve(l.fc, run[0].m, run[0].payload)
			if terr == nil {
				ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
				terr = l.outputs.send(outputContext(ctx, items), l.fc, items, targets)
				cancel()
			}
			if terr != nil {
				for _, it := range run {
					if it.err == nil {
						it.err = terr
					}
				}
			}
		}
	}
	l.settleBatch(run, id)
	for _, it := range run {
		if it.opID != "" {
			l.recordOutcome(it.opID, it.m, it.outcome, it.err, pending)
		}
		l.finish(&l.metrics.shared, id, it.m, it.outcome, it.err, start)
		if it.outcome == OutcomeSucceeded || it.outcome == OutcomePoisoned {
			l.notify(it.m, id, it.outcome, it.err, pending, it.payload, start)
		}
	}
}

func anySucceeded(run []*batchItem) bool {
	for _, it := range run {
		if it.err == nil {
			return true
		}
	}
	return false
}

// settleBatch settles each message by its outcome, batchSettlers at a time.
func (l *listener) settleBatch(run []*batchItem, id string) {
	sem := make(chan struct{}, batchSettlers)
	var wg sync.WaitGroup
	for _, it := range run {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			it.renewal.end()
			it.outcome = l.settle(newBoundCtx(), it.m, id, it.err)
		})
	}
	wg.Wait()
}

// invokeBatch calls the batch function with the leases of every message
// renewed, its timeout applied and panics recovered.
func (l *listener) invokeBatch(run []*batchItem, id string, pending *invocation.Pending, start time.Time) (err error) {
	var span *invocationSpan
	defer func() { span.end(err, false) }()
	ctx := l.hard
	if t := l.fc.FunctionTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	// One span for the batch, in the trace of its first message.
	ctx, span = l.startInvocation(ctx, run[0].view, id, pending, start)
	if pending != nil {
		ctx = invocation.WithPending(ctx, pending)
	}
	payloads := make([][]byte, len(run))
	views := make([]*triggers.Message, len(run))
	for i, it := range run {
		payloads[i], views[i] = it.payload, it.view
		it.renewal.watch(ctx)
	}
	defer func() {
		for _, it := range run {
			it.renewal.returned()
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			l.results.Error("function panicked", zap.String("invocationId", id), zap.Int("batch", len(run)),
				zap.Any("panic", r), zap.String("stack", string(debug.Stack())))
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	if l.call != nil {
		err = l.call(ctx, &Invocation{ID: id, Function: l.fc, Messages: views, Payloads: payloads, Start: start})
	} else {
		err = l.fc.Definition.InvokeBatch(ctx, payloads, views)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && l.hard.Err() == nil {
		if err == nil {
			return fmt.Errorf("function timed out after %s (it returned nil after its context ended)", l.fc.FunctionTimeout)
		}
		return fmt.Errorf("function timed out after %s: %w", l.fc.FunctionTimeout, err)
	}
	return err
}
