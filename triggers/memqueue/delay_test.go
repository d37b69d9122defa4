package memqueue_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

// A delayed message is counted but hidden until due; a Receive already
// waiting when it is sent returns it when it is due, not at the end of its
// wait; a message sent at once meanwhile goes first.
func TestSendDelayed(t *testing.T) {
	ctx := context.Background()
	b := memqueue.NewBroker()
	q := b.Queue("a")
	d := memqueue.New(q, nil)
	defer d.Close()
	got := make(chan []*triggers.Message, 1)
	go func() {
		ms, _ := d.Receive(ctx, 1, time.Minute) // waits, with nothing hidden yet
		got <- ms
	}()
	// Not synchronisation (the checks hold either way): it makes the
	// Receive likely to be waiting already, the case under test, whose
	// start cannot be observed.
	time.Sleep(50 * time.Millisecond)
	const delay = 300 * time.Millisecond
	start := time.Now()
	id := q.SendDelayed([]byte("later"), map[string]string{"k": "v"}, delay)
	if n := q.Len(); n != 1 {
		t.Errorf("Len = %d with one delayed message, want 1", n)
	}
	ms := <-got
	el := time.Since(start)
	if len(ms) != 1 || ms[0].ID != id || ms[0].Text() != "later" || ms[0].DequeueCount != 1 || ms[0].Properties["k"] != "v" {
		t.Fatalf("Receive = %+v, want the delayed message %s", ms, id)
	}
	if el < delay || el > delay+memqueue.ReceiveWait/2 {
		t.Errorf("waiting Receive returned the delayed message after %v, want about %v", el, delay)
	}

	// Delay 0 is Send; a later undelayed message overtakes a delayed one.
	p, err := b.OpenPublisherURL(ctx, &url.URL{Scheme: memqueue.Scheme, Host: q.Name()}, triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dp := p.(triggers.DelayPublisher)
	if _, err := dp.PublishDelayed(ctx, []byte("second"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PublishDelayed(ctx, []byte("first"), nil, 0); err != nil {
		t.Fatal(err)
	}
	if ms := receive(t, d, 1); ms[0].Text() != "first" {
		t.Errorf("got %q, want the undelayed %q", ms[0].Text(), "first")
	}
	if ms, err := d.Receive(ctx, 1, time.Minute); err != nil || len(ms) != 0 {
		t.Errorf("Receive = %d messages, %v; want none (the other is due in an hour)", len(ms), err)
	}
}
