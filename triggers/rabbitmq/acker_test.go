package rabbitmq

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// frames records the acks an acker sends.
type frames struct {
	mu   sync.Mutex
	sent []string
	fail error
	ch   chan struct{} // signalled on every frame
}

func newFrames() *frames { return &frames{ch: make(chan struct{}, 64)} }

func (f *frames) Ack(tag uint64, multiple bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	s := fmt.Sprint(tag)
	if multiple {
		s += "+"
	}
	f.sent = append(f.sent, s)
	select {
	case f.ch <- struct{}{}:
	default:
	}
	return nil
}

// take returns the frames sent so far and forgets them.
func (f *frames) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sent
	f.sent = nil
	for len(f.ch) > 0 {
		<-f.ch
	}
	return s
}

func want(t *testing.T, f *frames, what string, w ...string) {
	t.Helper()
	if got := f.take(); !slices.Equal(got, w) {
		t.Fatalf("%s: frames %v, want %v", what, got, w)
	}
}

func TestAckerCoalesces(t *testing.T) {
	f := newFrames()
	a := newAcker(f, time.Hour)
	now := time.Now()
	for tag := uint64(1); tag <= 6; tag++ {
		a.register(tag, now)
	}
	// 2 and 3 wait for 1; 1 acks all three in one frame.
	for _, tag := range []uint64{2, 3} {
		if err := a.complete(tag); err != nil {
			t.Fatal(err)
		}
	}
	want(t, f, "2 and 3 completed, 1 held")
	if err := a.complete(1); err != nil {
		t.Fatal(err)
	}
	want(t, f, "1 completed", "3+")
	// 5 waits for 4; 4 is settled by a frame of its own (a nack): then 5
	// alone is acked, on its own (a multiple ack up to 5 would be fine too,
	// 4 no longer being unacknowledged, but one tag needs no multiple).
	if err := a.complete(5); err != nil {
		t.Fatal(err)
	}
	want(t, f, "5 completed, 4 held")
	a.settled(4)
	want(t, f, "4 settled", "5")
	// 6 is the lowest held: acked at once.
	if err := a.complete(6); err != nil {
		t.Fatal(err)
	}
	want(t, f, "6 completed", "6")
}

// A delivery registered out of order (two Receives at once) is a barrier
// until every tag below it is registered.
func TestAckerUnseenTagIsBarrier(t *testing.T) {
	f := newFrames()
	a := newAcker(f, time.Hour)
	now := time.Now()
	a.register(1, now)
	a.register(3, now) // 2 is being taken by another Receive
	if err := a.complete(1); err != nil {
		t.Fatal(err)
	}
	want(t, f, "1 completed", "1")
	if err := a.complete(3); err != nil {
		t.Fatal(err)
	}
	want(t, f, "3 completed, 2 not yet seen")
	a.register(2, now)
	if err := a.complete(2); err != nil {
		t.Fatal(err)
	}
	want(t, f, "2 completed", "3+")
}

// Acks held back by a delivery received more than delay ago go at once,
// one by one; those held back by a younger one go when its delay is up.
func TestAckerBoundedWait(t *testing.T) {
	f := newFrames()
	a := newAcker(f, 20*time.Millisecond)
	a.register(1, time.Now().Add(-time.Second)) // a slow function's
	a.register(2, time.Now())
	if err := a.complete(2); err != nil {
		t.Fatal(err)
	}
	want(t, f, "2 completed, 1 held for a second", "2")

	a.register(3, time.Now())
	a.register(4, time.Now())
	a.settled(1)
	if err := a.complete(4); err != nil {
		t.Fatal(err)
	}
	want(t, f, "4 completed, 3 just received")
	select {
	case <-f.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the pending ack was never sent")
	}
	want(t, f, "after the delay", "4")
	if err := a.complete(3); err != nil {
		t.Fatal(err)
	}
	want(t, f, "3 completed", "3")
}

// close sends what is pending; after it complete fails and nothing is sent.
func TestAckerClose(t *testing.T) {
	f := newFrames()
	a := newAcker(f, time.Hour)
	now := time.Now()
	for tag := uint64(1); tag <= 3; tag++ {
		a.register(tag, now)
	}
	if err := a.complete(3); err != nil {
		t.Fatal(err)
	}
	if err := a.complete(2); err != nil {
		t.Fatal(err)
	}
	want(t, f, "2 and 3 completed, 1 held")
	if err := a.close(true); err != nil {
		t.Fatal(err)
	}
	got := f.take()
	slices.Sort(got)
	if !slices.Equal(got, []string{"2", "3"}) {
		t.Fatalf("close sent %v, want 2 and 3 one by one", got)
	}
	if err := a.complete(1); !errors.Is(err, errAckerClosed) {
		t.Fatalf("complete after close: %v, want errAckerClosed", err)
	}
	want(t, f, "complete after close")

	// A session that died drops its pending acks: the broker requeues them.
	b := newAcker(f, time.Hour)
	b.register(1, now)
	b.register(2, now)
	if err := b.complete(2); err != nil {
		t.Fatal(err)
	}
	if err := b.close(false); err != nil {
		t.Fatal(err)
	}
	want(t, f, "close of a dead session")
}

// Without coalescing every complete sends its own frame.
func TestAckerNoCoalescing(t *testing.T) {
	f := newFrames()
	a := newAcker(f, -1)
	now := time.Now()
	a.register(1, now)
	a.register(2, now)
	if err := a.complete(2); err != nil {
		t.Fatal(err)
	}
	if err := a.complete(1); err != nil {
		t.Fatal(err)
	}
	want(t, f, "no coalescing", "2", "1")
}

// A frame that fails is reported by the complete that sent it.
func TestAckerError(t *testing.T) {
	f := newFrames()
	f.fail = errors.New("channel closed")
	a := newAcker(f, time.Hour)
	a.register(1, time.Now())
	if err := a.complete(1); err == nil {
		t.Fatal("complete with a failing channel: no error")
	}
}
