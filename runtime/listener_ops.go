package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/triggers"
)

// OutcomeOperationCanceled: the message's background operation was
// cancelled, before it ran or while it ran; the message is completed and
// never retried.
const OutcomeOperationCanceled = "operation-canceled"

// operationOf returns the id of the background operation m carries (from
// its properties, or the "$jobhost" member a Storage Queue message's JSON
// starts with) and the payload the function binds, without that member.
// A message without one costs a map lookup and a prefix compare.
func (l *listener) operationOf(m *triggers.Message, payload []byte) (string, []byte) {
	id := ""
	if len(m.Properties) > 0 {
		id = bindings.MetaFromProps(m.Properties).OperationID
	}
	meta, rest, ok, err := bindings.SplitMeta(payload)
	switch {
	case err != nil:
		// Not ours after all: the function gets the payload as it came.
		l.log.Debug("message starts like a jobhost envelope but is not one", zap.String("messageId", m.ID), zap.Error(err))
	case ok:
		payload = rest
		if id == "" {
			id = meta.OperationID
		}
	}
	return id, payload
}

// operationContext returns ctx for running operation opID: cancellable by
// a cancel request, and carrying the operation for functions.Progress.
func (l *listener) operationContext(ctx context.Context, opID string) (context.Context, func() bool) {
	op := &invocation.Operation{ID: opID}
	if l.records == nil {
		return invocation.WithOperation(ctx, op), func() bool { return false }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	untrack := l.records.track(opID, cancel)
	op.Progress = func(_ context.Context, v []byte) error {
		if len(v) > operations.MaxProgress {
			return &progressTooLarge{n: len(v)}
		}
		l.records.record(opID, operations.SetProgress(json.RawMessage(v)), false, "progress")
		return nil
	}
	return invocation.WithOperation(ctx, op), func() bool {
		c := untrack()
		cancel(nil)
		return c
	}
}

type progressTooLarge struct{ n int }

func (e *progressTooLarge) Error() string {
	return fmt.Sprintf("progress is %d bytes encoded; at most %d are kept", e.n, operations.MaxProgress)
}

// completeCanceled completes the message of a cancelled operation (it is
// never retried) and ends its record Canceled. rec is the record of one
// cancelled before it ran (nil when the function ran).
func (l *listener) completeCanceled(bc *boundCtx, m *triggers.Message, id, opID string, rec *operations.Record) string {
	ctx := bc.start(settleTimeout)
	defer bc.stop()
	if err := l.drv.Complete(ctx, m); err != nil {
		l.log.Warn("could not delete the message of a canceled operation; when it is delivered again it is not run",
			zap.String("invocationId", id), zap.String("messageId", m.ID), zap.String("operationId", opID), zap.Error(err))
	}
	switch {
	case rec == nil:
		l.records.record(opID, operations.EndCanceled(l.records.now().UTC()), true, "canceled")
	case l.records.completed != nil:
		// Cancelled before it ran (by an API that only wrote the record):
		// its callback goes now, when its message is dropped.
		l.records.completed(rec)
	}
	return OutcomeOperationCanceled
}

// recordOutcome records how an attempt of operation opID ended.
func (l *listener) recordOutcome(opID string, m *triggers.Message, outcome string, runErr error, pending *invocation.Pending) {
	if l.records == nil {
		return
	}
	now := l.records.now().UTC()
	switch outcome {
	case OutcomeSucceeded:
		l.records.record(opID, operations.Succeed(returnValue(pending), now), true, "succeeded")
	case OutcomePoisoned:
		l.records.record(opID, operations.Fail(errorCode(runErr), runErr.Error(), now), true, "failed")
	case OutcomeFailed:
		if runErr != nil {
			l.records.record(opID, operations.AttemptFailed(int(m.DequeueCount), runErr.Error()), false, "attempt failed")
		}
	}
}

// recordUnrun records the outcome of an operation message poisoned before
// its function ran (undecodable, or over its attempts): its id can come
// only from properties, or from the payload when it decoded.
func (l *listener) recordUnrun(m *triggers.Message, payload []byte, outcome string, runErr error) {
	if l.records == nil {
		return
	}
	id := ""
	if payload != nil {
		id, _ = l.operationOf(m, payload)
	} else if len(m.Properties) > 0 {
		id = bindings.MetaFromProps(m.Properties).OperationID
	}
	if id != "" {
		l.recordOutcome(id, m, outcome, runErr, nil)
	}
}

// returnValue is the function's return value as JSON, for the record.
func returnValue(p *invocation.Pending) json.RawMessage {
	if p == nil {
		return nil
	}
	for _, it := range p.Items() {
		if it.Output != functions.ReturnOutput || it.Err != nil {
			continue
		}
		if raw, ok := it.Value.(json.RawMessage); ok && json.Valid(raw) {
			return raw
		}
		if b, err := json.Marshal(it.Value); err == nil {
			return b
		}
	}
	return nil
}

// errorCode names why an operation failed, for its record.
func errorCode(err error) string {
	var bindErr *bindings.Error
	var permanent *functions.PermanentError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &bindErr):
		return "InvalidInput"
	case errors.As(err, &permanent):
		return "PermanentFailure"
	}
	return "FunctionFailed"
}
