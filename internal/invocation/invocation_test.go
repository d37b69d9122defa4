package invocation

import (
	"context"
	"runtime"
	"testing"
)

type otherKey struct{}

// TestWithIsAValueContext: the invocation's context forwards values,
// deadlines and cancellation to its parent, and contexts derived from it
// are cancelled with the parent without a goroutine each (as through
// context.WithValue).
func TestWithIsAValueContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "v"))
	ctx := With(parent, nil, "inv-1")
	if got := ID(ctx); got != "inv-1" {
		t.Fatalf("ID = %q", got)
	}
	if ctx.Value(otherKey{}) != "v" {
		t.Fatal("a parent's value is not found")
	}
	before := runtime.NumGoroutine()
	var derived []context.Context
	for range 100 {
		d, c := context.WithCancel(ctx)
		defer c()
		derived = append(derived, d)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after deriving 100 contexts, %d before", n, before)
	}
	cancel()
	for _, d := range derived {
		<-d.Done()
	}
	if ctx.Err() != context.Canceled {
		t.Errorf("Err = %v", ctx.Err())
	}
}
