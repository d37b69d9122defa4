// Package longoperation is the bot pattern: a chat bot or API cannot keep a
// request open while a long operation runs, so it submits the operation to
// the host's operations API (POST /api/operations/RunLongOperation) with a
// callback URL and answers its user at once with the operation's id. The
// host queues it; RunLongOperation does the work, reporting its progress at
// each step; the bot polls the record (GET), waits for it (Prefer: wait=N)
// or cancels it (DELETE), and the host POSTs a signed completion notice to
// the callback URL when it succeeded, failed or was cancelled.
package longoperation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// QueueSetting names the app setting of the request queue.
const QueueSetting = "LongOperationQueue"

// DefaultQueue is the request queue when QueueSetting is not set.
const DefaultQueue = "long-operations"

// Request is a long operation's input.
type Request struct {
	// Steps is how many steps of StepMs the operation takes.
	Steps  int `json:"steps"`
	StepMs int `json:"stepMs"`
}

// Progress is what RunLongOperation reports after each step, for callers
// polling the operation's record.
type Progress struct {
	Step int `json:"step"`
	Of   int `json:"of"`
}

// Result is the operation's output, kept in its record.
type Result struct {
	OperationID string `json:"operationId"`
	Steps       int    `json:"steps"`
}

// RunLongOperationRef names RunLongOperation, registered in
// functions.Default, for the client's typed calls (client.Start).
var RunLongOperationRef = Register(functions.Default)

// Register adds RunLongOperation to r and returns its Ref: its return value
// goes into the operation's record.
func Register(r *functions.Registry) functions.Ref[Request] {
	r.SettingDefault(QueueSetting, DefaultQueue)
	return functions.AddResult(r, "RunLongOperation", functions.QueueTrigger("%"+QueueSetting+"%"), "", RunLongOperation)
}

// RunLongOperation works through the steps, reporting progress after each
// (functions.Progress), and stops as soon as its context is cancelled: a
// DELETE on the operation, a timeout or the host's shutdown. Negative
// steps can never succeed: the operation fails at once
// (functions.Permanent), without retries.
func RunLongOperation(ctx context.Context, req Request, msg *triggers.Message) (Result, error) {
	if req.Steps < 0 || req.StepMs < 0 {
		return Result{}, functions.Permanent(errors.New("steps and stepMs must not be negative"))
	}
	log := functions.Logger(ctx)
	id := functions.OperationID(ctx)
	report := func(step int) {
		// A message sent to the queue rather than submitted runs no
		// operation: nobody polls its progress.
		if err := functions.Progress(ctx, Progress{Step: step, Of: req.Steps}); err != nil && !errors.Is(err, functions.ErrNoOperation) {
			log.Warn("progress not recorded", zap.Error(err))
		}
	}
	report(0)
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 1; i <= req.Steps; i++ {
		t.Reset(time.Duration(req.StepMs) * time.Millisecond)
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("operation %q stopped after step %d of %d: %w", id, i-1, req.Steps, ctx.Err())
		case <-t.C:
		}
		report(i)
		log.Info("step done", zap.String("operation", id), zap.Int("step", i), zap.Int("of", req.Steps))
	}
	return Result{OperationID: id, Steps: req.Steps}, nil
}
