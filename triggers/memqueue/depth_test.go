package memqueue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

// Depth counts what the dashboard should show as waiting work: visible,
// leased and delayed messages; settled and dead-lettered ones leave it.
func TestDepth(t *testing.T) {
	ctx := context.Background()
	b := memqueue.NewBroker()
	q := b.Queue("depth")
	d := memqueue.New(q, b.Queue("depth-poison"))
	defer d.Close()

	depth := func(want int64) {
		t.Helper()
		n, err := d.Depth(ctx)
		if err != nil || n != want {
			t.Fatalf("Depth = %d, %v; want %d", n, err, want)
		}
	}
	depth(0)
	for range 4 {
		q.Send([]byte("m"), nil)
	}
	q.SendDelayed([]byte("later"), nil, time.Hour)
	depth(5) // 4 visible, 1 delayed

	ms := receive(t, d, 3)
	depth(5) // leased messages still count
	if err := d.Complete(ctx, ms[0]); err != nil {
		t.Fatal(err)
	}
	depth(4)
	if err := d.Retry(ctx, ms[1], time.Hour); err != nil {
		t.Fatal(err)
	}
	depth(4) // retried with a delay: still on the queue
	if _, err := d.DeadLetter(ctx, ms[2], "bad"); err != nil {
		t.Fatal(err)
	}
	depth(3) // moved to the poison queue

	d.Close()
	if _, err := d.Depth(ctx); !errors.Is(err, triggers.ErrClosed) {
		t.Fatalf("Depth after Close: %v; want an error wrapping ErrClosed", err)
	}
}
