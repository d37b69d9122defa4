package sbfake_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
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

// deadLetterAll receives n messages from q and dead-letters them in the
// reverse order, so that the dead-letter queue is not in sequence order.
func deadLetterAll(t *testing.T, b *sbfake.Broker, q string, n int) []*azservicebus.ReceivedMessage {
	t.Helper()
	s, r := b.NewSender(q), b.NewReceiver(q)
	for i := range n {
		if err := s.SendMessage(ctx(t), sbfake.NewMessage([]byte{byte('a' + i)}, map[string]string{"i": string(rune('0' + i))}), nil); err != nil {
			t.Fatal(err)
		}
	}
	var got []*azservicebus.ReceivedMessage
	for len(got) < n {
		got = append(got, receive(t, r, time.Second)...)
	}
	reason := "why"
	for i := len(got) - 1; i >= 0; i-- {
		if err := r.DeadLetterMessage(ctx(t), got[i], &azservicebus.DeadLetterOptions{Reason: &reason}); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func TestPeek(t *testing.T) {
	t.Parallel()
	b := sbfake.NewBroker()
	_ = b.CreateQueue("q", sbfake.EntityOptions{LockDuration: time.Minute})
	sent := deadLetterAll(t, b, "q", 3)
	dlq := b.NewReceiver("q/$deadletterqueue")
	if got := b.Messages("q/$deadletterqueue"); len(got) != 3 || got[0].SequenceNumber != *sent[2].SequenceNumber {
		t.Fatalf("dead-letter queue in dead-lettering order: %+v", got)
	}
	// Peek is in sequence order, from a sequence number, and locks nothing.
	all, err := dlq.PeekMessages(ctx(t), 10, &azservicebus.PeekMessagesOptions{FromSequenceNumber: new(int64)})
	if err != nil || len(all) != 3 {
		t.Fatalf("peek = %d, %v", len(all), err)
	}
	for i, m := range all {
		if *m.SequenceNumber != *sent[i].SequenceNumber || string(m.Body) != string(sent[i].Body) || m.DeliveryCount != 1 || m.LockedUntil != nil || deref(m.DeadLetterReason) != "why" {
			t.Errorf("peeked %d: seq %d body %q count %d reason %q", i, *m.SequenceNumber, m.Body, m.DeliveryCount, deref(m.DeadLetterReason))
		}
	}
	from := *sent[1].SequenceNumber
	if got, _ := dlq.PeekMessages(ctx(t), 10, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from}); len(got) != 2 || *got[0].SequenceNumber != from {
		t.Errorf("peek from %d = %d messages", from, len(got))
	}
	// Without FromSequenceNumber it continues after the last peek.
	for i := range 3 {
		got, err := dlq.PeekMessages(ctx(t), 1, nil)
		if err != nil || len(got) != 1 || *got[0].SequenceNumber != *sent[i].SequenceNumber {
			t.Fatalf("implicit peek %d = %v, %v", i, got, err)
		}
	}
	if got, _ := dlq.PeekMessages(ctx(t), 1, nil); len(got) != 0 {
		t.Errorf("peek past the end = %d messages", len(got))
	}
	// Locked messages are peeked too.
	if ms := receive(t, dlq, time.Second); len(ms) != 3 {
		t.Fatalf("receive from the dead-letter queue = %d", len(ms))
	}
	if got, _ := dlq.PeekMessages(ctx(t), 10, &azservicebus.PeekMessagesOptions{FromSequenceNumber: new(int64)}); len(got) != 3 {
		t.Errorf("peek of locked messages = %d", len(got))
	}
	if _, err := b.NewReceiver("nope/$deadletterqueue").PeekMessages(ctx(t), 1, nil); err == nil {
		t.Error("peek of a missing entity succeeded")
	}
	b.FailNext(sbfake.OpPeek, errors.New("injected"))
	if _, err := dlq.PeekMessages(ctx(t), 1, nil); err == nil || b.Calls(sbfake.OpPeek) == 0 {
		t.Error("FailNext(OpPeek) had no effect")
	}
}

func TestDeadLetterQueueSettle(t *testing.T) {
	t.Parallel()
	b := sbfake.NewBroker()
	_ = b.CreateQueue("q", sbfake.EntityOptions{LockDuration: time.Minute, MaxDeliveryCount: 1})
	deadLetterAll(t, b, "q", 2)
	dlq := b.NewReceiver("q/$deadletterqueue")
	ms := receive(t, dlq, time.Second)
	if len(ms) != 2 || ms[0].DeliveryCount != 2 {
		t.Fatalf("dead-letter receive = %+v", ms)
	}
	if err := dlq.CompleteMessage(ctx(t), ms[0], nil); err != nil {
		t.Fatal(err)
	}
	// An abandon in a dead-letter queue never dead-letters, even past
	// MaxDeliveryCount.
	if err := dlq.AbandonMessage(ctx(t), ms[1], nil); err != nil {
		t.Fatal(err)
	}
	got := b.Messages("q/$deadletterqueue")
	if len(got) != 1 || got[0].Locked || got[0].DeliveryCount != 2 {
		t.Fatalf("after complete and abandon: %+v", got)
	}
	again := receive(t, dlq, time.Second)
	if len(again) != 1 || again[0].DeliveryCount != 3 {
		t.Fatalf("redelivered from the dead-letter queue: %+v", again)
	}
	if err := dlq.CompleteMessage(ctx(t), ms[1], nil); err == nil {
		t.Error("complete with the stale lock token succeeded")
	}
	if err := b.NewSender("q/$deadletterqueue").SendMessage(ctx(t), sbfake.NewMessage([]byte("x"), nil), nil); err == nil {
		t.Error("send to a dead-letter queue succeeded")
	}
}

func TestRuntimeProperties(t *testing.T) {
	t.Parallel()
	b := sbfake.NewBroker()
	_ = b.CreateQueue("q", sbfake.EntityOptions{LockDuration: time.Minute})
	_ = b.CreateTopic("t", sbfake.EntityOptions{}, "s")
	deadLetterAll(t, b, "q", 2)
	s := b.NewSender("q")
	_ = s.SendMessage(ctx(t), sbfake.NewMessage([]byte("active"), nil), nil)
	if _, err := s.ScheduleMessages(ctx(t), []*azservicebus.Message{sbfake.NewMessage([]byte("later"), nil)}, time.Now().Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	q, err := b.GetQueueRuntimeProperties(ctx(t), "q", nil)
	if err != nil || q == nil || q.DeadLetterMessageCount != 2 || q.ActiveMessageCount != 1 || q.ScheduledMessageCount != 1 || q.TotalMessageCount != 4 {
		t.Fatalf("queue runtime properties = %+v, %v", q, err)
	}
	sub, err := b.GetSubscriptionRuntimeProperties(ctx(t), "t", "s", nil)
	if err != nil || sub == nil || sub.DeadLetterMessageCount != 0 {
		t.Fatalf("subscription runtime properties = %+v, %v", sub, err)
	}
	for name, got := range map[string]bool{
		"missing queue":              must(b.GetQueueRuntimeProperties(ctx(t), "nope", nil)) == nil,
		"subscription as a queue":    must(b.GetQueueRuntimeProperties(ctx(t), "t/Subscriptions/s", nil)) == nil,
		"dead-letter queue as queue": must(b.GetQueueRuntimeProperties(ctx(t), "q/$deadletterqueue", nil)) == nil,
		"missing subscription":       must(b.GetSubscriptionRuntimeProperties(ctx(t), "t", "nope", nil)) == nil,
		"queue as a subscription":    must(b.GetSubscriptionRuntimeProperties(ctx(t), "q", "s", nil)) == nil,
	} {
		if !got {
			t.Errorf("%s: want a nil response", name)
		}
	}
	b.FailNext(sbfake.OpRuntimeProperties, &azcore.ResponseError{StatusCode: 401})
	var re *azcore.ResponseError
	if _, err := b.GetQueueRuntimeProperties(ctx(t), "q", nil); !errors.As(err, &re) || re.StatusCode != 401 {
		t.Errorf("injected 401 = %v", err)
	}
}

func must[T any](v *T, err error) *T {
	if err != nil {
		panic(err)
	}
	return v
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
