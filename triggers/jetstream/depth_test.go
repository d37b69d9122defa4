package jetstream_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/jetstream"
	"github.com/jobhost/jobhost/triggers/jetstream/jstest"
)

// Depth counts what the consumer has yet to see settled: before the
// consumer exists (the stream's messages on its subject), while messages
// are held or pulled ahead, and while one waits out a retry delay;
// completed and dead-lettered messages leave the count.
func TestDepth(t *testing.T) {
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	o := f.Options()
	o.AckSync = true // the count is read right after each settlement
	d := f.Open(ctx, t, o)

	depth := func(want int64) {
		t.Helper()
		n, err := d.Depth(ctx)
		if err != nil || n != want {
			t.Fatalf("Depth = %d, %v; want %d", n, err, want)
		}
	}
	depth(0)
	for range 5 {
		send(t, f, `{}`, nil)
	}
	depth(5) // no consumer yet: counted from the stream

	ms := receiveN(t, d, 3, time.Minute, 10*time.Second) // the rest may be pulled ahead
	depth(5)                                             // held and waiting messages count
	if err := d.Complete(ctx, ms[0]); err != nil {
		t.Fatal(err)
	}
	depth(4)
	if err := d.Retry(ctx, ms[1], time.Hour); err != nil {
		t.Fatal(err)
	}
	depth(4) // waiting out its delay: still to be processed
	if _, err := d.DeadLetter(ctx, ms[2], "bad"); err != nil {
		t.Fatal(err)
	}
	depth(3) // moved to the poison subject's stream

	_ = d.Close()
	if _, err := d.Depth(ctx); !errors.Is(err, triggers.ErrClosed) {
		t.Fatalf("Depth after Close: %v; want an error wrapping ErrClosed", err)
	}
}

// A stream that does not exist is reported as such, not as empty.
func TestDepthMissingStream(t *testing.T) {
	ctx := ctxFor(t)
	f := jstest.NewFixture(ctx, t)
	d := f.Open(ctx, t, jetstream.Options{Stream: f.Stream + "_MISSING", Subject: f.Subject + ".missing"})
	if n, err := d.Depth(ctx); !errors.Is(err, triggers.ErrNotFound) {
		t.Fatalf("Depth of a missing stream = %d, %v; want an error wrapping ErrNotFound", n, err)
	}
}
