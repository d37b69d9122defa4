package sbfake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"
	"github.com/google/uuid"
)

// Sender sends to a queue or topic, with the methods of
// *azservicebus.Sender that package servicebus and its tests use.
type Sender struct {
	b    *Broker
	path string

	mu     sync.Mutex
	closed bool
}

// NewSender returns a sender for a queue or topic. It is lazy: a missing
// entity makes sends fail.
func (b *Broker) NewSender(queueOrTopic string) *Sender { return &Sender{b: b, path: queueOrTopic} }

func (s *Sender) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// SendMessage enqueues msg (scheduled if msg.ScheduledEnqueueTime is set).
func (s *Sender) SendMessage(_ context.Context, msg *azservicebus.Message, _ *azservicebus.SendMessageOptions) error {
	var at time.Time
	if msg != nil && msg.ScheduledEnqueueTime != nil {
		at = *msg.ScheduledEnqueueTime
	}
	_, err := s.enqueue(OpSend, []*azservicebus.Message{msg}, at)
	return err
}

// ScheduleMessages enqueues messages to become available at t and returns
// their sequence numbers.
func (s *Sender) ScheduleMessages(_ context.Context, msgs []*azservicebus.Message, t time.Time, _ *azservicebus.ScheduleMessagesOptions) ([]int64, error) {
	return s.enqueue(OpSchedule, msgs, t)
}

// CancelScheduledMessages removes scheduled messages that are not yet
// available. An unknown or already enqueued sequence number is an error
// and cancels nothing.
func (s *Sender) CancelScheduledMessages(_ context.Context, seqs []int64, _ *azservicebus.CancelScheduledMessagesOptions) error {
	if s.isClosed() {
		return errClosed("sender")
	}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.callLocked(OpCancel); err != nil {
		return err
	}
	now := time.Now()
	var targets []struct {
		e *entity
		m *message
	}
	for _, seq := range seqs {
		var copies []*message
		var ents []*entity
		if t := b.topics[key(s.path)]; t != nil {
			copies = t.scheduled[seq]
			ents = t.subs
		} else if e := b.queues[key(s.path)]; e != nil {
			if m := e.scheduled[seq]; m != nil {
				copies, ents = []*message{m}, []*entity{e}
			}
		} else {
			return errNotFound(s.path)
		}
		if len(copies) == 0 || !now.Before(copies[0].scheduledAt) {
			return fmt.Errorf("scheduled message %d not found: %w", seq, &azservicebus.Error{Code: azservicebus.CodeNotFound})
		}
		for _, m := range copies {
			for _, e := range ents {
				if slices.Contains(e.msgs, m) {
					targets = append(targets, struct {
						e *entity
						m *message
					}{e, m})
				}
			}
		}
	}
	for _, t := range targets {
		t.e.remove(t.m)
	}
	b.notifyLocked()
	return nil
}

func (s *Sender) enqueue(op Op, msgs []*azservicebus.Message, at time.Time) ([]int64, error) {
	if s.isClosed() {
		return nil, errClosed("sender")
	}
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.callLocked(op); err != nil {
		return nil, err
	}
	if strings.Contains(key(s.path), "$") {
		return nil, &amqp.Error{Condition: amqp.ErrCondNotAllowed, Description: "cannot send to a sub-queue"}
	}
	t := b.topics[key(s.path)]
	q := b.queues[key(s.path)]
	if t == nil && q == nil {
		return nil, errNotFound(s.path)
	}
	now := time.Now()
	var seqs []int64
	for _, msg := range msgs {
		if msg == nil {
			return nil, errors.New("nil message")
		}
		if len(msg.Body) > MaxMessageSize {
			return nil, fmt.Errorf("message of %d bytes exceeds the %d byte limit", len(msg.Body), MaxMessageSize)
		}
		id := deref(msg.MessageID)
		if id == "" {
			id = strings.ReplaceAll(uuid.NewString(), "-", "")
		}
		b.nextSeq++
		seq := b.nextSeq
		targets := []*entity{q}
		seen, window := map[string]time.Time(nil), time.Duration(0)
		if t != nil {
			targets, seen, window = t.subs, t.seen, t.dup
		} else {
			seen, window = q.seen, q.opts.DuplicateDetectionWindow
		}
		seqs = append(seqs, seq)
		if window > 0 {
			if last, ok := seen[id]; ok && now.Sub(last) < window {
				continue // a duplicate: accepted and dropped
			}
			seen[id] = now
		}
		var copies []*message
		for _, e := range targets {
			m := &message{
				seq: seq, id: id, body: slices.Clone(msg.Body), props: maps.Clone(msg.ApplicationProperties),
				sys: azservicebus.Message{
					ContentType: msg.ContentType, CorrelationID: msg.CorrelationID, PartitionKey: msg.PartitionKey,
					ReplyTo: msg.ReplyTo, ReplyToSessionID: msg.ReplyToSessionID, SessionID: msg.SessionID,
					Subject: msg.Subject, To: msg.To,
				},
				enqueued: now,
			}
			if !at.IsZero() && at.After(now) {
				m.scheduledAt = at
				m.enqueued = at
			}
			ttl := msg.TimeToLive
			if ttl == nil && e.opts.DefaultTimeToLive > 0 {
				ttl = ptr(e.opts.DefaultTimeToLive)
			}
			if ttl != nil {
				m.ttl = ptr(*ttl)
				m.expiresAt = m.enqueued.Add(*ttl)
			}
			e.msgs = append(e.msgs, m)
			if !m.scheduledAt.IsZero() {
				e.scheduled[seq] = m
			}
			copies = append(copies, m)
		}
		if t != nil && !at.IsZero() {
			t.scheduled[seq] = copies
		}
	}
	b.notifyLocked()
	return seqs, nil
}

// Close closes the sender.
func (s *Sender) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
