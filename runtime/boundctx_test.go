package runtime

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBoundCtx(t *testing.T) {
	c := newBoundCtx()
	ctx := c.start(20 * time.Millisecond)
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > 20*time.Millisecond {
		t.Fatalf("Deadline %v %v", dl, ok)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not cancelled at its deadline")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err %v", ctx.Err())
	}
	c.stop()

	// Reused: a fresh call is live again.
	ctx = c.start(time.Hour)
	if ctx.Err() != nil {
		t.Fatalf("reused context starts cancelled: %v", ctx.Err())
	}
	// A timer of an earlier call firing late does not cancel this one.
	c.expire()
	if ctx.Err() != nil {
		t.Fatalf("stale expiry cancelled a live call: %v", ctx.Err())
	}
	c.stop()
	if ctx.Value("k") != nil {
		t.Fatal("Value")
	}
}
