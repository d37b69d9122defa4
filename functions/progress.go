package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jobhost/jobhost/internal/invocation"
)

// ErrNoOperation: Progress was called in an invocation whose message
// carries no background operation (it was sent, not submitted).
var ErrNoOperation = errors.New("this invocation runs no background operation")

// OperationID returns the id of the background operation the invocation
// runs, or "" when its message was sent rather than submitted.
func OperationID(ctx context.Context) string {
	if op := invocation.OperationFrom(ctx); op != nil {
		return op.ID
	}
	return ""
}

// Progress records v (encoded as JSON, at most 16 KiB) as the progress of
// the running background operation, for callers polling its status (as
// Durable Functions' custom status). The record is updated in the
// background: Progress returns once the value is accepted, not when it is
// stored, and a store that is down delays it without failing the function.
// It returns ErrNoOperation outside an operation, and an error when v
// cannot be encoded or is too large.
func Progress(ctx context.Context, v any) error {
	op := invocation.OperationFrom(ctx)
	if op == nil || op.Progress == nil {
		return ErrNoOperation
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("progress: cannot encode %T as JSON: %w", v, err)
	}
	return op.Progress(ctx, b)
}
