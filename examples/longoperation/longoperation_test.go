package longoperation

import (
	"context"
	"errors"
	"testing"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

func TestRunLongOperation(t *testing.T) {
	res, err := RunLongOperation(context.Background(), Request{OperationID: "a", Steps: 2, StepMs: 1}, &triggers.Message{})
	if err != nil || res.OperationID != "a" || res.Steps != 2 {
		t.Errorf("%+v %v", res, err)
	}
	var perm *functions.PermanentError
	if _, err := RunLongOperation(context.Background(), Request{}, &triggers.Message{}); !errors.As(err, &perm) {
		t.Errorf("a request without an id must be a permanent failure, got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunLongOperation(ctx, Request{OperationID: "b", Steps: 1, StepMs: 60000}, &triggers.Message{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancellation ignored: %v", err)
	}
}
