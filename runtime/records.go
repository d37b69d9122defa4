package runtime

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/operations"
)

// records keeps the background operation records of the host's messages
// true: InProgress at each attempt, then Succeeded, Failed or Canceled. The
// store never decides a message's fate but for one thing, a cancel: when
// it cannot be reached, the function runs as if it had no record and the
// writes wait, in order per operation, until it answers again. Writes are
// retried with backoff and logged once per outage.
type records struct {
	open func(ctx context.Context) (operations.Store, error)
	log  *zap.Logger
	now  func() time.Time
	// completed is called once a write made a record final, with the
	// record as stored (the host posts its callback).
	completed func(rec *operations.Record)

	storeMu sync.Mutex
	store   operations.Store
	openErr time.Time // when opening last failed (retried after a while)

	shards  [writeShards]*writeShard
	pending atomic.Int64 // writes queued across shards
	dropped atomic.Int64 // writes dropped over maxPendingWrites
	down    atomic.Bool  // an outage is under way (logged once)
	closing chan struct{}
	drained chan struct{} // signalled when pending falls to 0
	workers sync.WaitGroup

	mu      sync.Mutex
	running map[string]*runningOp // operations this host's functions are running

	counts atomic.Pointer[map[string]int] // records by state, counted in the background
}

// stateCounts returns the records by state as last counted (nil before the
// first count, or when the store cannot count).
func (r *records) stateCounts() map[string]int {
	if p := r.counts.Load(); p != nil {
		return *p
	}
	return nil
}

const (
	writeShards      = 8
	maxPendingWrites = 100_000
	// startTimeout bounds the synchronous InProgress write made before a
	// function runs: past it the function runs and the write waits.
	startTimeout = 2 * time.Second
	// writeTimeout bounds one background write.
	writeTimeout = 10 * time.Second
	// cancelPollInterval is how often the store is asked whether a running
	// operation was cancelled from elsewhere (an API in another process).
	cancelPollInterval = time.Second
	maxWriteBackoff    = 30 * time.Second
	// cancelPollParallel bounds the store reads of one cancel poll.
	cancelPollParallel = 8
)

// errOperationCanceled is the cause of a cancelled operation's context.
var errOperationCanceled = errors.New("the operation was canceled")

// runningOp is an operation one of this host's functions is running.
type runningOp struct {
	cancel   context.CancelCauseFunc
	canceled atomic.Bool
}

type write struct {
	id     string
	change operations.Change
	final  bool // it makes the record final: post the callback
	what   string
}

type writeShard struct {
	mu    sync.Mutex
	queue []write
	wake  chan struct{}
}

func newRecords(open func(ctx context.Context) (operations.Store, error), log *zap.Logger) *records {
	r := &records{open: open, log: log, now: time.Now, closing: make(chan struct{}), drained: make(chan struct{}, 1), running: map[string]*runningOp{}}
	for i := range r.shards {
		r.shards[i] = &writeShard{wake: make(chan struct{}, 1)}
	}
	return r
}

// start runs the background writers and the cancel watcher until close.
func (r *records) start() {
	for _, s := range r.shards {
		r.workers.Go(func() { r.writer(s) })
	}
	r.workers.Go(r.watchCancels)
}

// getStore returns the store, opening it on first use; a failed open is
// tried again after a second.
func (r *records) getStore(ctx context.Context) (operations.Store, error) {
	r.storeMu.Lock()
	defer r.storeMu.Unlock()
	if r.store != nil {
		return r.store, nil
	}
	if !r.openErr.IsZero() && time.Since(r.openErr) < time.Second {
		return nil, errors.New("the operations store could not be opened")
	}
	s, err := r.open(ctx)
	if err != nil {
		r.openErr = time.Now()
		return nil, err
	}
	r.store = s
	return s, nil
}

// begin records that attempt of operation id starts. It returns the
// record when the operation was cancelled before it ran: the message is
// then completed without running the function. When the store does not answer within
// startTimeout the function runs and the write is queued.
func (r *records) begin(id string, attempt int) (canceled *operations.Record) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	change := operations.Started(attempt, r.now().UTC())
	// During an outage messages do not wait startTimeout each for a store
	// known to be down; the background writers find when it is back.
	if !r.down.Load() {
		if s, err := r.getStore(ctx); err == nil {
			rec, err := s.Update(ctx, id, change)
			switch {
			case err == nil:
				r.recovered()
				if rec.Status == operations.Canceled {
					return rec
				}
				return nil
			case errors.Is(err, operations.ErrNotFound):
				r.log.Warn("the operation's record is gone (expired or never written); running it without one",
					zap.String("operationId", id))
				return nil
			default:
				r.outage(err)
			}
		} else {
			r.outage(err)
		}
	}
	r.enqueue(write{id: id, change: change, what: "started"})
	return nil
}

// track registers a running operation's cancel function; untrack ends it
// and reports whether it was cancelled.
func (r *records) track(id string, cancel context.CancelCauseFunc) (untrack func() (canceled bool)) {
	op := &runningOp{cancel: cancel}
	r.mu.Lock()
	r.running[id] = op
	r.mu.Unlock()
	return func() bool {
		r.mu.Lock()
		if r.running[id] == op {
			delete(r.running, id)
		}
		r.mu.Unlock()
		return op.canceled.Load()
	}
}

// cancelLocal cancels operation id if one of this host's functions runs
// it (the API of this process calls it at once; the watcher when the
// store says Canceling).
func (r *records) cancelLocal(id string) bool {
	r.mu.Lock()
	op := r.running[id]
	r.mu.Unlock()
	if op == nil {
		return false
	}
	if op.canceled.CompareAndSwap(false, true) {
		r.log.Info("canceling a running operation", zap.String("operationId", id))
		op.cancel(errOperationCanceled)
	}
	return true
}

// watchCancels asks the store every cancelPollInterval whether a running
// operation was cancelled by an API in another process.
func (r *records) watchCancels() {
	t := time.NewTicker(cancelPollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.closing:
			return
		case <-t.C:
		}
		r.mu.Lock()
		ids := make([]string, 0, len(r.running))
		for id, op := range r.running {
			if !op.canceled.Load() {
				ids = append(ids, id)
			}
		}
		r.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), cancelPollInterval)
		if s, err := r.getStore(ctx); err == nil {
			// A few reads at a time: many running operations on a slow
			// store are still each looked at about once a second.
			sem := make(chan struct{}, cancelPollParallel)
			var wg sync.WaitGroup
			for _, id := range ids {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					if rec, gerr := s.Get(ctx, id); gerr == nil && (rec.Status == operations.Canceling || rec.Status == operations.Canceled) {
						r.cancelLocal(id)
					}
				})
			}
			wg.Wait()
		}
		cancel()
	}
}

// record queues a change of operation id; final says it completes it.
func (r *records) record(id string, change operations.Change, final bool, what string) {
	r.enqueue(write{id: id, change: change, final: final, what: what})
}

func (r *records) enqueue(w write) {
	if r.pending.Load() >= maxPendingWrites {
		if r.dropped.Add(1) == 1 {
			r.log.Error("too many operation record writes are waiting for the store; dropping new ones (their records will not show the latest state)",
				zap.Int("pending", maxPendingWrites))
		}
		return
	}
	s := r.shards[shardOf(w.id)]
	s.mu.Lock()
	s.queue = append(s.queue, w)
	s.mu.Unlock()
	r.pending.Add(1)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func shardOf(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % writeShards)
}

// writer applies one shard's writes in order, retrying the head through
// an outage.
func (r *records) writer(s *writeShard) {
	backoff := 250 * time.Millisecond
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.mu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-r.closing:
				return
			}
		}
		w := s.queue[0]
		s.mu.Unlock()
		if err := r.apply(w); err != nil {
			r.outage(err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-r.closing:
				t.Stop()
				return
			}
			backoff = min(backoff*2, maxWriteBackoff)
			continue
		}
		backoff = 250 * time.Millisecond
		s.mu.Lock()
		s.queue = s.queue[1:]
		s.mu.Unlock()
		if r.pending.Add(-1) == 0 {
			select {
			case r.drained <- struct{}{}:
			default:
			}
		}
	}
}

// apply makes one write; it returns an error only for a failure worth
// retrying (the store unreachable).
func (r *records) apply(w write) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	s, err := r.getStore(ctx)
	if err != nil {
		return err
	}
	changed := false
	rec, err := s.Update(ctx, w.id, func(rec *operations.Record) (bool, error) {
		c, err := w.change(rec)
		changed = c
		return c, err
	})
	switch {
	case errors.Is(err, operations.ErrNotFound):
		r.log.Debug("operation record gone; write skipped", zap.String("operationId", w.id), zap.String("write", w.what))
		return nil
	case err != nil && ctx.Err() == nil && !isTransient(err):
		r.log.Warn("operation record write refused", zap.String("operationId", w.id), zap.String("write", w.what), zap.Error(err))
		return nil
	case err != nil:
		return err
	}
	r.recovered()
	if changed && rec.Status.Final() && r.completed != nil {
		r.completed(rec)
	}
	return nil
}

// isTransient tells a store failure worth retrying from a refused change:
// the Changes' own errors are the only permanent ones.
func isTransient(err error) bool {
	return !errors.Is(err, operations.ErrCompleted) && !errors.Is(err, operations.ErrExists)
}

func (r *records) outage(err error) {
	if r.down.CompareAndSwap(false, true) {
		r.log.Warn("the operations store cannot be reached; operation status updates are delayed and retried (messages are processed as usual)",
			zap.Error(err))
	}
}

func (r *records) recovered() {
	if r.down.CompareAndSwap(true, false) {
		r.log.Info("the operations store is reachable again", zap.Int64("pendingWrites", r.pending.Load()))
	}
}

// sweep purges expired records, at most maxPurgePerSweep at a time.
func (r *records) sweep(ctx context.Context) (int, error) {
	s, err := r.getStore(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for total < maxPurgePerSweep {
		n, err := s.Purge(ctx, r.now().UTC(), purgeBatch)
		total += n
		if err != nil {
			return total, err
		}
		if n < purgeBatch {
			break
		}
	}
	return total, nil
}

const (
	purgeBatch       = 500
	maxPurgePerSweep = 20_000
)

// close waits for the queued writes until ctx ends, then stops the
// writers and closes the store. Writes still queued are logged and lost.
func (r *records) close(ctx context.Context) error {
	for r.pending.Load() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-r.drained:
		}
	}
	close(r.closing)
	r.workers.Wait()
	if n := r.pending.Load(); n > 0 {
		r.log.Warn("stopping with operation record writes not made; those records do not show the latest state", zap.Int64("writes", n))
	}
	r.storeMu.Lock()
	defer r.storeMu.Unlock()
	if r.store != nil {
		return r.store.Close()
	}
	return nil
}
