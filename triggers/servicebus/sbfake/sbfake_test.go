package sbfake_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"

	"github.com/jobhost/jobhost/triggers/servicebus/sbfake"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func receive(t *testing.T, r *sbfake.Receiver, within time.Duration) []*azservicebus.ReceivedMessage {
	t.Helper()
	c, cancel := context.WithTimeout(ctx(t), within)
	defer cancel()
	ms, err := r.ReceiveMessages(c, 10, nil)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	return ms
}

func TestLockAndDeliveryCount(t *testing.T) {
	t.Parallel()
	b := sbfake.NewBroker()
	if err := b.CreateQueue("q", sbfake.EntityOptions{LockDuration: 100 * time.Millisecond, MaxDeliveryCount: 3}); err != nil {
		t.Fatal(err)
	}
	if err := b.NewSender("q").SendMessage(ctx(t), sbfake.NewMessage([]byte("x"), nil), nil); err != nil {
		t.Fatal(err)
	}
	r := b.NewReceiver("q")
	first := receive(t, r, time.Second)[0]
	if first.DeliveryCount != 1 || first.LockedUntil == nil || first.SequenceNumber == nil {
		t.Fatalf("first delivery %+v", first)
	}
	if ms := receive(t, r, 50*time.Millisecond); len(ms) != 0 {
		t.Fatal("a locked message was delivered")
	}
	second := receive(t, r, time.Second)[0] // the lock ran out
	if second.DeliveryCount != 2 || second.LockToken == first.LockToken {
		t.Fatalf("second delivery %+v", second)
	}
	var sbErr *azservicebus.Error
	if err := r.CompleteMessage(ctx(t), first, nil); !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeLockLost {
		t.Fatalf("complete with a stale token = %v", err)
	}
	if err := r.AbandonMessage(ctx(t), second, nil); err != nil {
		t.Fatal(err)
	}
	third := receive(t, r, time.Second)[0]
	if third.DeliveryCount != 3 {
		t.Fatalf("third delivery count %d", third.DeliveryCount)
	}
	if err := r.AbandonMessage(ctx(t), third, nil); err != nil {
		t.Fatal(err)
	}
	if dl := b.Messages("Q/$DeadLetterQueue"); len(dl) != 1 || dl[0].DeadLetterReason != "MaxDeliveryCountExceeded" || dl[0].DeadLetterSource != "q" {
		t.Fatalf("dead-letter queue %+v", dl)
	}
}

func TestConcurrentReceiveRefused(t *testing.T) {
	t.Parallel()
	b := sbfake.NewBroker()
	_ = b.CreateQueue("q", sbfake.EntityOptions{})
	r := b.NewReceiver("q")
	done := make(chan struct{})
	go func() {
		defer close(done)
		receive(t, r, 300*time.Millisecond)
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := r.ReceiveMessages(ctx(t), 1, nil); err == nil {
		t.Error("a concurrent ReceiveMessages succeeded")
	}
	<-done
	_ = r.Close(ctx(t))
	if _, err := r.ReceiveMessages(ctx(t), 1, nil); err == nil {
		t.Error("ReceiveMessages after Close succeeded")
	}
}

func TestMissingEntity(t *testing.T) {
	t.Parallel()
	b := sbfake.NewBroker()
	_, err := b.NewReceiver("nope").ReceiveMessages(ctx(t), 1, nil)
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Condition != amqp.ErrCondNotFound {
		t.Fatalf("receive from a missing entity = %v", err)
	}
}

func TestScheduleAndCancel(t *testing.T) {
	t.Parallel()
	b := sbfake.NewBroker()
	_ = b.CreateQueue("q", sbfake.EntityOptions{})
	s, r := b.NewSender("q"), b.NewReceiver("q")
	at := time.Now().Add(300 * time.Millisecond)
	seqs, err := s.ScheduleMessages(ctx(t), []*azservicebus.Message{sbfake.NewMessage([]byte("a"), nil), sbfake.NewMessage([]byte("b"), nil)}, at, nil)
	if err != nil || len(seqs) != 2 {
		t.Fatalf("schedule = %v, %v", seqs, err)
	}
	if err := s.CancelScheduledMessages(ctx(t), seqs[1:], nil); err != nil {
		t.Fatal(err)
	}
	if ms := receive(t, r, 100*time.Millisecond); len(ms) != 0 {
		t.Fatal("a scheduled message was delivered early")
	}
	ms := receive(t, r, time.Second)
	if len(ms) != 1 || string(ms[0].Body) != "a" || ms[0].EnqueuedTime.Before(at) || ms[0].ScheduledEnqueueTime == nil {
		t.Fatalf("after the scheduled time: %+v", ms)
	}
	if err := s.CancelScheduledMessages(ctx(t), seqs[:1], nil); err == nil {
		t.Error("cancelling an enqueued message succeeded")
	}
}

func TestTopicFanOutAndDuplicates(t *testing.T) {
	t.Parallel()
	b := sbfake.NewBroker()
	_ = b.CreateTopic("t", sbfake.EntityOptions{DuplicateDetectionWindow: time.Minute}, "a", "b")
	s := b.NewSender("t")
	m := sbfake.NewMessage([]byte("x"), map[string]string{"k": "v"})
	for range 2 {
		if err := s.SendMessage(ctx(t), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"t/Subscriptions/a", "t/Subscriptions/b"} {
		if got := b.Messages(sub); len(got) != 1 || got[0].ApplicationProperties["k"] != "v" {
			t.Errorf("%s: %+v, want one copy (the duplicate dropped)", sub, got)
		}
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	b := sbfake.NewBroker()
	_ = b.CreateQueue("drop", sbfake.EntityOptions{DefaultTimeToLive: 50 * time.Millisecond})
	_ = b.CreateQueue("dl", sbfake.EntityOptions{DefaultTimeToLive: 50 * time.Millisecond, DeadLetteringOnMessageExpiration: true})
	for _, q := range []string{"drop", "dl"} {
		if err := b.NewSender(q).SendMessage(ctx(t), sbfake.NewMessage([]byte("x"), nil), nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(b.Messages("drop")) + len(b.Messages("drop/$deadletterqueue")); n != 0 {
		t.Errorf("expired message kept: %d", n)
	}
	if dl := b.Messages("dl/$deadletterqueue"); len(dl) != 1 || dl[0].DeadLetterReason != "TTLExpiredException" {
		t.Errorf("dead-lettered on expiry: %+v", dl)
	}
}
