package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobhost/jobhost/timer"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/triggers"
)

// Outcomes logged on the completion line of every invocation.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	OutcomePoisoned  = "poisoned"
	// OutcomeCancelled: the host stopped before the function finished; the
	// message is left in the queue and reappears when its lease ends.
	OutcomeCancelled = "cancelled"
)

// settleTimeout bounds one complete/retry/poison/renew call.
const settleTimeout = 30 * time.Second

// listener polls one function's queue and runs its invocations.
type listener struct {
	fc      *FunctionConfig
	drv     triggers.Driver
	log     *zap.Logger // listener category
	results *zap.Logger // Function.<Name>, with function and queue bound, no caller
	line    *resultLine // writes the completion lines; nil: results does
	user    *zap.Logger // Function.<Name>.User
	hard    context.Context

	mu          sync.Mutex
	inflight    int
	workers     int                    // worker goroutines started (never more than inflight has been)
	work        chan *triggers.Message // messages for the workers; closed when polling stops
	freed       chan struct{}          // signalled when in-flight work falls to the threshold
	invocations sync.WaitGroup         // the workers

	call       Handler // the function, wrapped in the host's middleware; nil without any
	outputs    *outputs
	callbacks  *callbacks
	records    *records      // nil: the host keeps no operation records
	noRecords  atomic.Bool   // the missing store was logged
	wakeup     chan struct{} // fast wake: a function of this host wrote to the queue
	wakePoison func()        // wakes this host's listener of the poison queue, if any
	poisoned   poisonedSet   // copied to poison, original not deleted
	pollCtx    *boundCtx     // the poll loop's Receive context; cancelled at the shutdown deadline
	receiving  atomic.Bool   // a Receive is under way
	private    bool          // the driver's deliveries have bodies of their own (triggers.PrivateBodies)

	broker  string          // the driver's name, for metrics and the dashboard
	stats   listenerStats   // counters for the observers
	metrics listenerMetrics // histogram series; zero without metrics
	ring    *status.Ring    // the host's recent invocations; nil: none kept
	timer   *timer.Runner   // a timer function's runner; nil for queue functions
}

func newListener(fc *FunctionConfig, drv triggers.Driver, logs *Logs, hard context.Context, mws []Middleware) *listener {
	cat := CategoryFunction + "." + fc.Name()
	var call Handler
	if len(mws) > 0 {
		call = chain(func(ctx context.Context, inv *Invocation) error {
			if inv.Messages != nil {
				return inv.Function.Definition.InvokeBatch(ctx, inv.Payloads, inv.Messages)
			}
			return inv.Function.Definition.Invoke(ctx, inv.Payload, inv.Message)
		}, mws)
	}
	pb, ok := drv.(triggers.PrivateBodies)
	return &listener{
		private: ok && pb.BodiesPrivate(),
		call:    call, pollCtx: newBoundCtx(), broker: brokerName(fc),
		fc: fc, drv: drv, hard: hard,
		log: logs.Category(CategoryListener).With(zap.String("function", fc.Name()), zap.String("queue", fc.Queue)),
		results: logs.Category(cat).With(zap.String("function", fc.Name()), zap.String("queue", fc.Queue)).
			WithOptions(zap.WithCaller(false)),
		line:   logs.resultLine(cat, fc.Name(), fc.Queue),
		user:   logs.Category(cat + ".User").With(zap.String("function", fc.Name())),
		freed:  make(chan struct{}, 1),
		wakeup: make(chan struct{}, 1),
		// A poll happens at or below the threshold and returns at most a
		// batch, so this many messages can be in flight at once.
		work: make(chan *triggers.Message, fc.Queues.BatchSize+fc.Queues.NewBatchThreshold),
	}
}

// dispatch hands msgs to workers, starting one for each message that
// finds every worker busy, with one lock for the whole poll.
// Workers live until polling stops: a reused goroutine keeps its grown
// stack, where a goroutine per message grew a new one for every message
// (JSON decoding is deep), about a tenth of a busy host's CPU.
func (l *listener) dispatch(msgs []*triggers.Message) {
	l.mu.Lock()
	l.inflight += len(msgs)
	start := max(0, l.inflight-l.workers)
	l.workers += start
	l.mu.Unlock()
	for range start {
		l.invocations.Go(l.worker)
	}
	for _, m := range msgs {
		l.work <- m // never blocks: there is room for every message in flight
	}
}

func (l *listener) worker() {
	w := l.newWorker()
	for m := range l.work {
		l.process(m, w)
	}
}

// workerState is what a worker reuses from one message to the next.
type workerState struct {
	renewal *renewal
	settle  *boundCtx
	views   viewSlab
	obs     histObserver // the worker's own histogram shards
}

func (l *listener) newWorker() *workerState {
	return &workerState{renewal: l.newRenewal(), settle: newBoundCtx(), obs: l.metrics.newObserver()}
}

func (l *listener) running() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight
}

// poll is the polling loop; it returns when ctx ends.
func (l *listener) poll(ctx context.Context) {
	q := l.fc.Queues
	bo := newBackoff(MinPollingInterval, q.MaxPollingInterval)
	failing := 0
	w, waits := l.drv.(triggers.Waiter)
	waits = waits && w.ReceiveWaits()
	defer close(l.work) // the workers finish what they hold, then end
	rc := l.pollCtx     // each poll's context, reused
	defer l.stats.setState(stateStopping)
	for {
		// Poll again only when in-flight work is at or below the threshold.
		for l.running() > q.NewBatchThreshold {
			select {
			case <-ctx.Done():
				return
			case <-l.freed:
			}
		}
		if ctx.Err() != nil {
			return
		}
		msgs, err := l.receive(rc)
		if err != nil {
			if !l.pollFailed(ctx, err, &failing, bo) {
				return
			}
			continue
		}
		l.pollReached(&failing)
		if ctx.Err() != nil {
			// Stopped while receiving: give the messages back at once.
			l.release(msgs)
			return
		}
		if len(msgs) == 0 {
			// A driver that waited inside Receive is asked again at once.
			if !waits && !l.idle(ctx, bo.next()) {
				return
			}
			continue
		}
		bo.reset()
		l.stats.received.Add(uint64(len(msgs)))
		l.dispatch(msgs)
	}
}

// receive polls once. The poll itself is not cut short by ctx, so that a
// stop signal never loses the reply to a dequeue (which would hide its
// messages for a whole lease).
func (l *listener) receive(bc *boundCtx) ([]*triggers.Message, error) {
	rctx := bc.start(receiveBound)
	l.receiving.Store(true)
	l.stats.receiveStart.Store(time.Now().UnixNano())
	defer func() {
		l.stats.receiveStart.Store(0)
		l.receiving.Store(false)
		bc.stop()
	}()
	return l.drv.Receive(rctx, l.fc.Queues.BatchSize, l.fc.Queues.LeaseDuration)
}

// pollFailed accounts for a poll that failed and waits out the backoff;
// it reports false when ctx ended meanwhile.
func (l *listener) pollFailed(ctx context.Context, err error, failing *int, bo *backoff) bool {
	l.stats.receiveErrors.Add(1)
	l.stats.setState(stateFailing)
	l.stats.setError(err)
	*failing++
	wait := bo.next()
	l.logPollError(err, *failing, wait, bo.atMax())
	return sleep(ctx, wait)
}

// pollReached accounts for a poll that reached the broker.
func (l *listener) pollReached(failing *int) {
	if *failing > 0 {
		l.log.Info("queue reachable again", zap.Int("failedPolls", *failing))
		*failing = 0
	}
	l.stats.lastPoll.Store(time.Now().UnixNano())
	l.stats.setState(stateListening)
}

func (l *listener) logPollError(err error, n int, wait time.Duration, atMax bool) {
	fields := []zap.Field{zap.Error(err), zap.Int("failedPolls", n), zap.Duration("retryIn", wait)}
	// The first failure and then one line per maxPollingInterval: an outage
	// is reported without flooding the log.
	level := l.log.Debug
	if n == 1 || atMax {
		level = l.log.Warn
	}
	if errors.Is(err, triggers.ErrNotFound) {
		hint := "set extensions.queues.createQueues to create it"
		switch {
		case l.fc.URL == nil:
		case l.fc.URL.Scheme == "azuresb":
			hint = "Service Bus entities are never created by jobhost"
		default:
			hint = "set extensions.pubsub.createQueues to create it"
		}
		level("queue does not exist; waiting for it ("+hint+")", fields...)
		return
	}
	level("polling the queue failed", fields...)
}

// release gives back messages received as the host stopped, within
// releaseTimeout for them all (the shutdown has a deadline).
func (l *listener) release(msgs []*triggers.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	for _, m := range msgs {
		l.releaseOne(ctx, m, "a message received at shutdown")
	}
}

// receiveBound bounds one Receive; a Receive under way for longer than
// this plus livenessGrace fails /livez.
const receiveBound = time.Minute

// releaseTimeout bounds giving back what a stopped poll received.
const releaseTimeout = 3 * time.Second

// idle waits d after an empty poll, or less when a function of this host
// writes to the queue. It reports false when ctx ends.
func (l *listener) idle(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-l.wakeup:
		l.log.Debug("woken: a function of this host wrote to the queue")
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// process runs one message to its settlement with the worker's state w.
func (l *listener) process(m *triggers.Message, w *workerState) {
	defer func() {
		l.mu.Lock()
		l.inflight--
		// The poller waits only for in-flight work to fall to the
		// threshold: waking it for every ended invocation cost a
		// scheduler round trip each.
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

	var (
		outcome string
		runErr  error
		pending *invocation.Pending
		payload []byte
	)
	if l.poisoned.has(m.ID) {
		// Copied to poison before, but its delete failed: drop it now.
		outcome = l.dropPoisoned(w.settle, m, id)
		l.finish(&w.obs, id, m, outcome, nil, start)
		return
	}
	// The function gets a copy of its own: renewal and settlement change
	// the driver's m while it runs, and its body must not alias the
	// broker's bytes or the poison copy's (a private body aliases neither).
	view := w.views.clone(m, l.private)
	payload, decodeErr := q.MessageEncoding.Decode(view.Body)
	switch err := decodeErr; {
	case int(m.DequeueCount) > l.attempts():
		runErr = fmt.Errorf("dequeue count %d is over the %d attempts allowed by maxDequeueCount or retry.maxRetryCount (an earlier attempt did not finish)", m.DequeueCount, l.attempts())
		outcome = l.poison(m, id, runErr)
		l.recordUnrun(m, payload, outcome, runErr)
	case err != nil:
		runErr = err
		outcome = l.poison(m, id, runErr)
		l.recordUnrun(m, nil, outcome, runErr)
	default:
		var opID string
		opID, payload = l.operationOf(m, payload)
		if opID != "" && l.records == nil && l.noRecords.CompareAndSwap(false, true) {
			l.log.Warn("messages carry background operations but this host keeps no operation records: they run, their records stay as submitted (set jobhost.operations.store)",
				zap.String("operationId", opID))
		}
		if opID != "" && l.records != nil {
			if rec := l.records.begin(opID, int(m.DequeueCount)); rec != nil {
				// Cancelled before it ran: it never runs.
				outcome = l.completeCanceled(w.settle, m, id, opID, rec)
				break
			}
		}
		var targets map[string]target
		if len(l.fc.Outputs) > 0 {
			// Where the outputs go is known before the function runs: one
			// that can never be sent poisons the message without running it.
			if targets, runErr = l.outputs.resolve(l.fc, m, payload); runErr != nil {
				runErr = functions.Permanent(fmt.Errorf("function %s: %w", l.fc.Name(), runErr))
			}
			pending = invocation.NewPending(l.fc.outputNames)
		}
		// The lease is renewed from here until the message is settled,
		// outputs included.
		w.renewal.begin(m, start)
		canceled := false
		if runErr == nil {
			runErr, canceled = l.invoke(view, id, opID, payload, pending, w.renewal, start)
		}
		if canceled {
			// A cancelled operation is never retried, whatever the
			// function returned, and sends no outputs.
			w.renewal.end()
			outcome = l.completeCanceled(w.settle, m, id, opID, nil)
			runErr = errOperationCanceled
			break
		}
		if runErr == nil && pending != nil {
			// Outputs go only after success, and before the trigger message
			// is completed: a crash in between duplicates, never loses.
			if items := pending.Items(); len(items) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
				runErr = l.outputs.send(ctx, l.fc, items, targets)
				cancel()
			}
		}
		w.renewal.end() // waits for a renewal under way: settlement uses the latest receipt
		outcome = l.settle(w.settle, m, id, runErr)
		if opID != "" {
			l.recordOutcome(opID, m, outcome, runErr, pending)
		}
	}
	l.finish(&w.obs, id, m, outcome, runErr, start)
	if outcome == OutcomeSucceeded || outcome == OutcomePoisoned {
		l.notify(m, id, outcome, runErr, pending, payload, start)
	}
}

// finish accounts for one invocation: its completion line, the counters,
// the histograms (through obs) and the ring of recent invocations.
func (l *listener) finish(obs *histObserver, id string, m *triggers.Message, outcome string, runErr error, start time.Time) {
	now := time.Now()
	d := now.Sub(start)
	l.stats.count(outcome)
	if outcome == OutcomeFailed || outcome == OutcomePoisoned {
		l.stats.setError(runErr)
	}
	obs.observe(start, m.InsertionTime, m.DequeueCount, d)
	tid := l.traceIDOf(id)
	if l.ring != nil {
		inv := status.Invocation{ID: id, Function: l.fc.Name(), MessageID: m.ID, Outcome: outcome,
			DequeueCount: m.DequeueCount, Start: start, Duration: d, TraceID: tid}
		if runErr != nil {
			inv.Error = Redact(runErr.Error())
		}
		l.ring.Add(inv)
	}
	if l.line != nil {
		l.line.write(now, id, m, outcome, runErr, d, tid)
		return
	}
	l.logResult(id, m, outcome, runErr, d, tid)
}

// logResult writes the completion line of one invocation.
func (l *listener) logResult(id string, m *triggers.Message, outcome string, runErr error, d time.Duration, traceID string) {
	// The completion line's fields are built only when it is logged.
	if ce := l.results.Check(zap.InfoLevel, resultMessage(outcome)); ce != nil {
		fields := []zap.Field{
			zap.String("invocationId", id), zap.String("messageId", m.ID), zap.Int64("dequeueCount", m.DequeueCount), zap.String("outcome", outcome),
			zap.Float64("durationMs", float64(d.Microseconds())/1000),
		}
		if runErr != nil {
			fields = append(fields, zap.String("error", runErr.Error()))
		}
		if traceID != "" {
			fields = append(fields, zap.String("traceId", traceID))
		}
		ce.Write(fields...)
	}
}

// resultMessage is the completion line's message for outcome, without a
// concatenation (an allocation) per line.
func resultMessage(outcome string) string {
	switch outcome {
	case OutcomeSucceeded:
		return "invocation " + OutcomeSucceeded
	case OutcomeFailed:
		return "invocation " + OutcomeFailed
	case OutcomePoisoned:
		return "invocation " + OutcomePoisoned
	case OutcomeCancelled:
		return "invocation " + OutcomeCancelled
	}
	return "invocation " + outcome
}

// notify posts the completion callback of a finally settled message, if
// the function has one.
func (l *listener) notify(m *triggers.Message, id, outcome string, runErr error, pending *invocation.Pending, payload []byte, start time.Time) {
	target := l.fc.CallbackURL
	if f := l.fc.CallbackField; f != "" {
		if payload == nil {
			payload = m.Body
		}
		expr, err := bindings.ParseExpression("{" + f + "}")
		if err == nil {
			target, err = expr.Resolve(&bindings.Data{Payload: payload})
		}
		if err != nil {
			l.log.Warn("no completion callback: the message has no callback URL", zap.String("invocationId", id),
				zap.String("messageId", m.ID), zap.String("field", f), zap.Error(err))
			return
		}
	}
	if target == "" {
		return
	}
	c := Completion{InvocationID: id, Function: l.fc.Name(), MessageID: m.ID, Status: outcome,
		StartTime: start.UTC(), EndTime: time.Now().UTC(), Attempts: m.DequeueCount}
	if runErr != nil {
		c.Error = runErr.Error()
	}
	if pending != nil {
		for _, it := range pending.Items() {
			if it.Output == functions.ReturnOutput {
				c.Output = it.Value
			}
		}
	}
	l.callbacks.Post(target, c)
}

// invoke calls the function with its lease renewed, its timeout applied and
// panics recovered.
// For an operation (opID set) it reports whether the operation was
// cancelled while the function ran.
func (l *listener) invoke(view *triggers.Message, id, opID string, payload []byte, pending *invocation.Pending, r *renewal, start time.Time) (err error, canceled bool) {
	var span *invocationSpan                   // runtime/tracing.go; nil while tracing is off
	defer func() { span.end(err, canceled) }() // last: sees a recovered panic and the cancel
	ctx := l.hard
	if t := l.fc.FunctionTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	if opID != "" {
		var untrack func() bool
		ctx, untrack = l.operationContext(ctx, opID)
		defer func() { canceled = untrack() }()
	}
	ctx, span = l.startInvocation(ctx, view, id, pending, start) // invocation.With, and the span when tracing is on
	if pending != nil {
		ctx = invocation.WithPending(ctx, pending)
	}
	// Renewal stops if the function outlives its cancelled context by more
	// than renewGrace; once it returns, renewal goes on until settlement.
	r.watch(ctx)
	defer r.returned()
	defer func() {
		if r := recover(); r != nil {
			l.results.Error("function panicked", zap.String("invocationId", id),
				zap.String("messageId", view.ID), zap.Any("panic", r), zap.String("stack", string(debug.Stack())))
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return l.call1(ctx, view, id, payload, start), false
}

// call1 calls the function once, through the middleware if any.
func (l *listener) call1(ctx context.Context, view *triggers.Message, id string, payload []byte, start time.Time) (err error) {
	if l.call != nil {
		err = l.call(ctx, &Invocation{ID: id, Function: l.fc, Message: view, Payload: payload, Start: start})
	} else {
		err = l.fc.Definition.Invoke(ctx, payload, view)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && l.hard.Err() == nil {
		// A timeout is a failure, even when the function ignored its
		// context and returned nil.
		if err == nil {
			return fmt.Errorf("function timed out after %s (it returned nil after its context ended)", l.fc.FunctionTimeout)
		}
		err = fmt.Errorf("function timed out after %s: %w", l.fc.FunctionTimeout, err)
	}
	return err
}

// minRenewInterval keeps renewal from spinning on a lease about to end.
const minRenewInterval = 250 * time.Millisecond

// newInvocationID returns a random UUID v4. Invocation ids need to be
// unique, not unpredictable, so math/rand/v2 serves (crypto/rand is a
// system call per id).
func newInvocationID() string {
	var u uuid.UUID
	binary.LittleEndian.PutUint64(u[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u.String()
}
