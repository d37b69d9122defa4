package servicebus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/servicebus"
	"github.com/jobhost/jobhost/triggers/servicebus/sbfake"
)

// hookedReceiver is a fake receiver that runs after (once the fake
// returned, with what it returned) or entered (when ReceiveMessages starts)
// around each ReceiveMessages.
type hookedReceiver struct {
	*sbfake.Receiver
	entered func()
	after   func([]*azservicebus.ReceivedMessage)
}

func (r *hookedReceiver) ReceiveMessages(ctx context.Context, n int, o *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error) {
	if r.entered != nil {
		r.entered()
	}
	ms, err := r.Receiver.ReceiveMessages(ctx, n, o)
	if r.after != nil {
		r.after(ms)
	}
	return ms, err
}

// A Receive whose context ends while the broker delivers gives the
// messages back at once instead of leaving them locked.
func TestReceiveCancelledGivesBack(t *testing.T) {
	t.Parallel()
	b, e, err := sbfake.Harness{Entity: sbfake.EntityOptions{LockDuration: time.Minute}}.NewEntity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &hookedReceiver{Receiver: b.NewReceiver(e.Path()), after: func(ms []*azservicebus.ReceivedMessage) {
		if len(ms) > 0 {
			cancel() // the caller gives up just as the messages arrive
		}
	}}
	d, err := servicebus.Open(r, nil, e, &servicebus.Options{ReceiveWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for range 2 {
		if err := b.NewSender(e.Queue).SendMessage(context.Background(), sbfake.NewMessage([]byte("x"), nil), nil); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := d.Receive(ctx, 2, time.Minute)
	if !errors.Is(err, context.Canceled) || len(ms) != 0 {
		t.Fatalf("Receive cancelled during delivery = %d messages, %v; want none and context.Canceled", len(ms), err)
	}
	for _, s := range b.Messages(e.Queue) {
		if s.Locked || s.DeliveryCount != 1 {
			t.Errorf("message %s: locked %v, DeliveryCount %d; want given back", s.MessageID, s.Locked, s.DeliveryCount)
		}
	}
	r.after = nil
	ms, err = d.Receive(context.Background(), 2, time.Minute)
	if err != nil || len(ms) != 2 || ms[0].DequeueCount != 2 {
		t.Fatalf("Receive after the give-back = %d messages, %v", len(ms), err)
	}
}

// Close ends a Receive waiting on an empty queue at once, and that
// Receive returns an error wrapping ErrClosed.
func TestCloseEndsWaitingReceive(t *testing.T) {
	t.Parallel()
	b, e, err := sbfake.Harness{}.NewEntity()
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	r := &hookedReceiver{Receiver: b.NewReceiver(e.Path()), entered: func() { close(waiting) }}
	d, err := servicebus.Open(r, nil, e, &servicebus.Options{ReceiveWait: servicebus.MaxReceiveWait})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := d.Receive(context.Background(), 1, time.Minute)
		done <- err
	}()
	<-waiting
	start := time.Now()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Receive ended by Close = %v, want ErrClosed", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Close took %v with a Receive waiting", el)
	}
}

// After Close every method fails with ErrClosed, whatever it is given.
func TestAfterCloseAnyMessage(t *testing.T) {
	v := setup(t, sbfake.EntityOptions{}, fastOpts(servicebus.Options{}))
	if err := v.d.Close(); err != nil {
		t.Fatal(err)
	}
	foreign := &triggers.Message{ID: "x"}
	for name, err := range map[string]error{
		"Complete(nil)":     v.d.Complete(v.ctx, nil),
		"Complete(foreign)": v.d.Complete(v.ctx, foreign),
		"Retry":             v.d.Retry(v.ctx, foreign, time.Second),
		"ExtendLease":       v.d.ExtendLease(v.ctx, foreign, time.Second),
		"Publish":           func() error { _, err := v.d.Publish(v.ctx, []byte("x"), nil); return err }(),
	} {
		if !errors.Is(err, triggers.ErrClosed) || !errors.Is(err, servicebus.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if err := v.d.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}
