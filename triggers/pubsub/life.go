package pubsub

import (
	"context"
	"sync"
)

// life tracks the calls in flight on a driver or publisher, so that Close
// can refuse new calls, end the ones waiting and release what they use
// only after they have returned.
type life struct {
	ctx    context.Context // done once Close begins
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	calls  sync.WaitGroup
}

func newLife() *life {
	ctx, cancel := context.WithCancel(context.Background())
	return &life{ctx: ctx, cancel: cancel}
}

// enter begins a call that does not wait; ok is false after Close.
func (l *life) enter() (exit func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, false
	}
	l.calls.Add(1)
	return l.calls.Done, true
}

// enterCtx begins a call that may wait: the returned context also ends
// when Close begins. ok is false after Close.
func (l *life) enterCtx(ctx context.Context) (_ context.Context, exit func(), ok bool) {
	done, ok := l.enter()
	if !ok {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		done()
	}, true
}

// closing reports whether Close has begun.
func (l *life) closing() bool { return l.ctx.Err() != nil }

// close refuses new calls, ends the waiting ones and waits for all in
// flight to return. It reports whether this was the first close.
func (l *life) close() bool {
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	l.mu.Unlock()
	if !first {
		return false
	}
	l.cancel()
	l.calls.Wait()
	return true
}
