package sbfake

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"
)

// PeekMessages returns up to maxMessageCount messages of the entity, in
// sequence order, from options.FromSequenceNumber on or, without it, after
// the last message this receiver peeked. Nothing is locked or counted; the
// messages carry no lock token.
func (r *Receiver) PeekMessages(_ context.Context, maxMessageCount int, options *azservicebus.PeekMessagesOptions) ([]*azservicebus.ReceivedMessage, error) {
	r.mu.Lock()
	closed, from := r.closed, r.lastPeeked+1
	r.mu.Unlock()
	if closed {
		return nil, errClosed("receiver")
	}
	explicit := options != nil && options.FromSequenceNumber != nil
	if explicit {
		from = *options.FromSequenceNumber
	}
	if maxMessageCount <= 0 {
		return nil, fmt.Errorf("maxMessageCount %d out of range", maxMessageCount)
	}
	b := r.b
	b.mu.Lock()
	if err := b.callLocked(OpPeek); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	e := b.lookupLocked(r.path, time.Now())
	if e == nil {
		b.mu.Unlock()
		return nil, errNotFound(r.path)
	}
	var ms []*message
	for _, m := range e.msgs {
		if m.seq >= from {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b *message) int { return cmp.Compare(a.seq, b.seq) })
	if len(ms) > maxMessageCount {
		ms = ms[:maxMessageCount]
	}
	out := make([]*azservicebus.ReceivedMessage, 0, len(ms))
	for _, m := range ms {
		rm := m.received()
		rm.LockToken = [16]byte{}
		rm.LockedUntil = nil
		out = append(out, rm)
	}
	b.mu.Unlock()
	if len(ms) > 0 && !explicit {
		r.mu.Lock()
		r.lastPeeked = ms[len(ms)-1].seq
		r.mu.Unlock()
	}
	return out, nil
}

// GetQueueRuntimeProperties returns a queue's message counts, as
// *admin.Client does (nil and no error when the queue does not exist).
func (b *Broker) GetQueueRuntimeProperties(_ context.Context, queueName string, _ *admin.GetQueueRuntimePropertiesOptions) (*admin.GetQueueRuntimePropertiesResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.callLocked(OpRuntimeProperties); err != nil {
		return nil, err
	}
	if strings.Contains(queueName, "$") {
		return nil, nil
	}
	e := b.lookupLocked(queueName, time.Now())
	if e == nil || e.topic != "" {
		return nil, nil
	}
	active, scheduled, dead := e.countsLocked(time.Now())
	return &admin.GetQueueRuntimePropertiesResponse{QueueName: queueName, QueueRuntimeProperties: admin.QueueRuntimeProperties{
		TotalMessageCount: int64(active + scheduled + dead), ActiveMessageCount: active, ScheduledMessageCount: scheduled, DeadLetterMessageCount: dead,
	}}, nil
}

// GetSubscriptionRuntimeProperties returns a subscription's message
// counts, as *admin.Client does (nil and no error when it does not exist).
func (b *Broker) GetSubscriptionRuntimeProperties(_ context.Context, topicName, subscriptionName string, _ *admin.GetSubscriptionRuntimePropertiesOptions) (*admin.GetSubscriptionRuntimePropertiesResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.callLocked(OpRuntimeProperties); err != nil {
		return nil, err
	}
	if strings.Contains(topicName+subscriptionName, "$") {
		return nil, nil
	}
	e := b.lookupLocked(topicName+"/Subscriptions/"+subscriptionName, time.Now())
	if e == nil || e.topic == "" {
		return nil, nil
	}
	active, _, dead := e.countsLocked(time.Now())
	return &admin.GetSubscriptionRuntimePropertiesResponse{TopicName: topicName, SubscriptionName: subscriptionName, SubscriptionRuntimeProperties: admin.SubscriptionRuntimeProperties{
		TotalMessageCount: int64(active + dead), ActiveMessageCount: active, DeadLetterMessageCount: dead,
	}}, nil
}

// countsLocked returns e's active (available or locked), scheduled and
// dead-lettered message counts.
func (e *entity) countsLocked(now time.Time) (active, scheduled, dead int32) {
	for _, m := range e.msgs {
		if !m.scheduledAt.IsZero() && now.Before(m.scheduledAt) {
			scheduled++
		} else {
			active++
		}
	}
	return active, scheduled, int32(len(e.dlq.msgs))
}
