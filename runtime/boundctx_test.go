package runtime

import (
	"context"
	"errors"
	goruntime "runtime"
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

// TestBoundCtxDerived: contexts derived from a boundCtx (as drivers make)
// end with it, and are registered with it rather than watched by a
// goroutine each.
func TestBoundCtxDerived(t *testing.T) {
	c := newBoundCtx()
	before := goruntime.NumGoroutine()
	var cancels []context.CancelFunc
	parent := c.start(time.Hour)
	for range 100 {
		_, cancel := context.WithCancel(parent)
		cancels = append(cancels, cancel)
	}
	if n := goruntime.NumGoroutine(); n > before+5 {
		t.Errorf("%d goroutines for 100 derived contexts; want none", n-before)
	}
	for _, cancel := range cancels {
		cancel()
	}
	c.stop()

	child, cancel := context.WithCancel(c.start(20 * time.Millisecond))
	defer cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a derived context did not end at the deadline")
	}
	if !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Errorf("derived Err %v", child.Err())
	}
	c.stop()
}
