package runtime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// attempts is how many attempts a message of l's function gets.
func (l *listener) attempts() int { return l.fc.Queues.Attempts() }

// retryDelay is the wait before m's next attempt after runErr.
func (l *listener) retryDelay(m *triggers.Message, runErr error) time.Duration {
	var after *functions.RetryAfterError
	switch q := l.fc.Queues; {
	case errors.As(runErr, &after):
		return after.Delay
	case q.Retry != nil:
		return q.Retry.Delay(m.DequeueCount)
	default:
		return q.VisibilityTimeout
	}
}

// settle completes, retries or poisons m after an invocation.
func (l *listener) settle(bc *boundCtx, m *triggers.Message, id string, runErr error) string {
	ctx := bc.start(settleTimeout)
	defer bc.stop()
	var bindErr *bindings.Error
	var permanent *functions.PermanentError
	switch {
	case runErr == nil:
		if err := l.drv.Complete(ctx, m); err != nil {
			l.settleFailed(err)
			msg := "function succeeded but the message could not be deleted; it will be delivered again"
			if errors.Is(err, triggers.ErrLeaseLost) {
				msg = "function succeeded but its message was already settled or its lease was lost; it may be delivered again"
			}
			l.log.Warn(msg, zap.String("invocationId", id), zap.String("messageId", m.ID), zap.Error(err))
		}
		return OutcomeSucceeded
	case errors.As(runErr, &bindErr), errors.As(runErr, &permanent):
		return l.poison(m, id, runErr)
	case l.hard.Err() != nil:
		// Cancelled by shutdown: give the message back at once, without
		// counting an attempt where the broker allows.
		l.releaseOne(ctx, m, "a function cancelled by the shutdown")
		return OutcomeCancelled
	case int(m.DequeueCount) >= l.attempts():
		return l.poison(m, id, runErr)
	}
	if err := l.drv.Retry(ctx, m, l.retryDelay(m, runErr)); err != nil {
		l.settleFailed(err)
		l.log.Warn("could not make the failed message visible again; it reappears when its lease ends",
			zap.String("invocationId", id), zap.String("messageId", m.ID), zap.Error(err))
	}
	return OutcomeFailed
}

// poison moves m to the poison destination and logs why. When the poison
// copy was made but the original could not be removed, the message is
// poisoned all the same: the original is deleted once more, or dropped by
// this host when it is delivered again; it is never copied twice.
func (l *listener) poison(m *triggers.Message, id string, reason error) string {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	poisonID, err := l.drv.DeadLetter(ctx, m, reason.Error())
	moved := func(extra ...zap.Field) []zap.Field {
		return append([]zap.Field{zap.String("invocationId", id), zap.String("messageId", m.ID), zap.String("poisonQueue", l.drv.PoisonDestination()),
			zap.String("poisonMessageId", poisonID), zap.Int64("dequeueCount", m.DequeueCount), zap.String("error", reason.Error())}, extra...)
	}
	if err != nil && (poisonID != "" || errors.Is(err, triggers.ErrNotRemoved)) {
		l.stats.poisonMoves.Add(1)
		if cerr := l.drv.Complete(ctx, m); cerr != nil {
			l.settleFailed(cerr)
			l.poisoned.add(m.ID)
			l.log.Error("message copied to poison queue, but the original could not be deleted: it will be delivered again, and this host then deletes it without running it",
				moved(zap.NamedError("deleteError", err), zap.NamedError("secondDeleteError", cerr))...)
		} else {
			l.log.Warn("message moved to poison queue (the original was deleted on the second try)", moved(zap.NamedError("firstDeleteError", err))...)
		}
		l.wakePoisonQueue()
		return OutcomePoisoned
	}
	if err != nil {
		l.settleFailed(err)
		l.log.Error("could not move the message to poison; it stays in the queue",
			zap.String("invocationId", id), zap.String("messageId", m.ID), zap.Error(err))
		if rerr := l.drv.Retry(ctx, m, max(l.fc.Queues.VisibilityTimeout, l.fc.Queues.MaxPollingInterval)); rerr != nil {
			l.log.Warn("could not make the message visible again", zap.String("messageId", m.ID), zap.Error(rerr))
		}
		return OutcomeFailed
	}
	l.stats.poisonMoves.Add(1)
	l.wakePoisonQueue()
	l.log.Warn("message moved to poison queue", moved()...)
	return OutcomePoisoned
}

func (l *listener) wakePoisonQueue() {
	if l.wakePoison != nil {
		l.wakePoison()
	}
}

// dropPoisoned deletes a message this host already copied to poison (its
// first delete failed) without running it.
func (l *listener) dropPoisoned(bc *boundCtx, m *triggers.Message, id string) string {
	ctx := bc.start(settleTimeout)
	defer bc.stop()
	if err := l.drv.Complete(ctx, m); err != nil {
		l.settleFailed(err)
		l.log.Error("could not delete a message already copied to poison; it will be delivered again",
			zap.String("invocationId", id), zap.String("messageId", m.ID), zap.Error(err))
		return OutcomeFailed
	}
	l.poisoned.remove(m.ID)
	l.log.Warn("deleted a message already copied to poison queue (its first delete had failed)",
		zap.String("invocationId", id), zap.String("messageId", m.ID), zap.String("poisonQueue", l.drv.PoisonDestination()))
	return OutcomePoisoned
}

// releaseOne gives m back at once: through the driver's Release where it
// has one (no attempt counted), else Retry(0). why says whose message it
// is, for the log.
func (l *listener) releaseOne(ctx context.Context, m *triggers.Message, why string) {
	var err error
	if r, ok := l.drv.(triggers.Releaser); ok {
		err = r.Release(ctx, m)
	} else {
		err = l.drv.Retry(ctx, m, 0)
	}
	if err != nil {
		l.settleFailed(err)
		l.log.Warn("could not give back "+why+"; it reappears when its lease ends",
			zap.String("messageId", m.ID), zap.Error(err))
	}
}

// settleFailed counts a settlement that failed, and a lost lease.
func (l *listener) settleFailed(err error) {
	l.stats.settleErrors.Add(1)
	if errors.Is(err, triggers.ErrLeaseLost) {
		l.stats.leasesLost.Add(1)
	}
}

// poisonedSet remembers the ids of messages copied to poison whose original
// could not be deleted, so that a redelivery is deleted, not copied again.
// It keeps the last poisonedMax ids.
type poisonedSet struct {
	n     atomic.Int32 // len(ids): most hosts never have one, and look without the lock
	mu    sync.Mutex
	ids   map[string]struct{}
	order []string
}

const poisonedMax = 1024

func (p *poisonedSet) add(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = map[string]struct{}{}
	}
	if _, ok := p.ids[id]; ok {
		return
	}
	if len(p.order) >= poisonedMax {
		delete(p.ids, p.order[0])
		p.order = p.order[1:]
	}
	p.ids[id] = struct{}{}
	p.order = append(p.order, id)
	p.n.Store(int32(len(p.ids)))
}

func (p *poisonedSet) has(id string) bool {
	if p.n.Load() == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.ids[id]
	return ok
}

func (p *poisonedSet) remove(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.ids[id]; !ok {
		return
	}
	delete(p.ids, id)
	for i, o := range p.order {
		if o == id {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
	p.n.Store(int32(len(p.ids)))
}
