// Package longoperation is the bot pattern: a chat bot or API cannot keep a
// request open while a long operation runs, so it queues the operation with
// a callback URL and answers at once; RunLongOperation does the work and the
// host POSTs the completion (status, output, timings) to the callback when
// the message is finally settled — succeeded, or poisoned.
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

// Request is a queued long operation.
type Request struct {
	OperationID string `json:"operationId"`
	// Steps is how many steps of StepMs the operation takes.
	Steps  int `json:"steps"`
	StepMs int `json:"stepMs"`
	// CallbackURL receives the completion notice (the host must allow it
	// in jobhost.callbacks.allowedHosts).
	CallbackURL string `json:"callbackUrl"`
}

// Result is the operation's output, carried in the callback.
type Result struct {
	OperationID string `json:"operationId"`
	Steps       int    `json:"steps"`
}

func init() { Register(functions.Default) }

// Register adds RunLongOperation to r: its return value goes into the
// completion callback posted to the request's callbackUrl.
func Register(r *functions.Registry) {
	r.SettingDefault(QueueSetting, DefaultQueue)
	functions.AddResult(r, "RunLongOperation", functions.QueueTrigger("%"+QueueSetting+"%"), "", RunLongOperation,
		functions.CallbackFromField("callbackUrl"))
}

// RunLongOperation works through the steps, honouring cancellation. An
// operation without an id can never succeed and is poisoned at once (the
// callback still reports it).
func RunLongOperation(ctx context.Context, req Request, msg *triggers.Message) (Result, error) {
	if req.OperationID == "" {
		return Result{}, functions.Permanent(errors.New("operationId is required"))
	}
	if req.Steps < 0 || req.StepMs < 0 {
		return Result{}, functions.Permanent(fmt.Errorf("operation %s: steps and stepMs must not be negative", req.OperationID))
	}
	log := functions.Logger(ctx)
	for i := 1; i <= req.Steps; i++ {
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-time.After(time.Duration(req.StepMs) * time.Millisecond):
		}
		log.Info("step done", zap.String("operation", req.OperationID), zap.Int("step", i), zap.Int("of", req.Steps))
	}
	return Result{OperationID: req.OperationID, Steps: req.Steps}, nil
}
