package runtime

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// attempts is how many attempts a message gets: the retry policy's
// maxRetryCount + 1 when it sets one, else maxDequeueCount.
func (l *listener) attempts() int {
	q := l.fc.Queues
	if q.Retry != nil && q.Retry.Attempts() > 0 {
		return q.Retry.Attempts()
	}
	return q.MaxDequeueCount
}

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
		// Cancelled by shutdown: leave the message for its lease to end.
		return OutcomeCancelled
	case int(m.DequeueCount) >= l.attempts():
		return l.poison(m, id, runErr)
	}
	if err := l.drv.Retry(ctx, m, l.retryDelay(m, runErr)); err != nil {
		l.log.Warn("could not make the failed message visible again; it reappears when its lease ends",
			zap.String("invocationId", id), zap.String("messageId", m.ID), zap.Error(err))
	}
	return OutcomeFailed
}

// poison moves m to the poison destination and logs why.
func (l *listener) poison(m *triggers.Message, id string, reason error) string {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	poisonID, err := l.drv.DeadLetter(ctx, m, reason.Error())
	if err != nil {
		l.log.Error("could not move the message to poison; it stays in the queue",
			zap.String("invocationId", id), zap.String("messageId", m.ID), zap.Error(err))
		if rerr := l.drv.Retry(ctx, m, max(l.fc.Queues.VisibilityTimeout, l.fc.Queues.MaxPollingInterval)); rerr != nil {
			l.log.Warn("could not make the message visible again", zap.String("messageId", m.ID), zap.Error(rerr))
		}
		return OutcomeFailed
	}
	if l.wakePoison != nil {
		l.wakePoison()
	}
	l.log.Warn("message moved to poison queue",
		zap.String("invocationId", id), zap.String("messageId", m.ID), zap.String("poisonQueue", l.drv.PoisonDestination()),
		zap.String("poisonMessageId", poisonID), zap.Int64("dequeueCount", m.DequeueCount), zap.String("error", reason.Error()))
	return OutcomePoisoned
}
