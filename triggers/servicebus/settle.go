package servicebus

import (
	"context"
	"fmt"
	"maps"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/uuid"

	"github.com/jobhost/jobhost/triggers"
)

// Complete completes the message, removing it from the entity.
func (d *Driver) Complete(ctx context.Context, m *triggers.Message) error {
	s, err := d.lockUsable(m, "complete")
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if err := d.recv.CompleteMessage(ctx, s.rm, nil); err != nil {
		return s.failedLocked("complete", err)
	}
	s.settleLocked()
	return nil
}

// lockUsable returns the driver's state of m with s.mu held, for op, once
// it is usable (see usableLocked); the caller unlocks s.mu.
func (d *Driver) lockUsable(m *triggers.Message, op string) (*msgState, error) {
	s, err := d.state(m, op)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if err := s.usableLocked(op); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	return s, nil
}

// Retry gives the message up: with delay 0 it is abandoned (available at
// once, DeliveryCount + 1); with a delay it is held and abandoned later, or
// replaced by a scheduled copy (see the package doc). m.NextVisibleTime is
// set to when it should be received again.
func (d *Driver) Retry(ctx context.Context, m *triggers.Message, delay time.Duration) error {
	s, err := d.lockUsable(m, "retry")
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	now := time.Now()
	switch {
	case delay <= 0:
		if err := d.recv.AbandonMessage(ctx, s.rm, nil); err != nil {
			return s.failedLocked("abandon", err)
		}
		s.settleLocked()
	case d.send != nil && (d.opts.MaxHeldRetryDelay < 0 || delay > d.opts.MaxHeldRetryDelay):
		if err := d.scheduleCopyLocked(ctx, s, m, now.Add(delay)); err != nil {
			return err
		}
		s.settleLocked()
	default:
		// Hold: renew now (which also proves the lock is still ours), then
		// let the renewer abandon the message when the delay has passed.
		if err := s.renewLocked(ctx); err != nil {
			return s.failedLocked(fmt.Sprintf("retry after %v: renew lock", delay), err)
		}
		s.settled = true
		s.holding = true
		s.holdUntil = now.Add(delay)
		s.startLocked()
	}
	m.NextVisibleTime = now.Add(max(delay, 0))
	return nil
}

// scheduleCopyLocked schedules a copy of s's message at when and completes
// the original; if that fails the copy is cancelled.
func (d *Driver) scheduleCopyLocked(ctx context.Context, s *msgState, m *triggers.Message, when time.Time) error {
	rm := s.rm
	props := maps.Clone(rm.ApplicationProperties)
	if props == nil {
		props = map[string]any{}
	}
	props[DeliveryCountProperty] = m.DequeueCount
	props[OriginalIDProperty] = m.ID
	if !m.InsertionTime.IsZero() {
		props[OriginalEnqueuedTimeProperty] = m.InsertionTime.UTC().Format(time.RFC3339Nano)
	}
	cp := copyOf(rm, props)
	id := *cp.MessageID
	if rm.TimeToLive != nil && rm.ExpiresAt != nil {
		// The copy's time to live counts from its (scheduled) enqueue
		// time: keep the original's expiry.
		ttl := max(rm.ExpiresAt.Sub(when), time.Second)
		cp.TimeToLive = &ttl
	}
	seqs, err := d.send.ScheduleMessages(ctx, []*azservicebus.Message{cp}, when, nil)
	if err != nil {
		return s.failedLocked(fmt.Sprintf("retry message %s at %s: schedule a copy", m.ID, when.UTC().Format(time.RFC3339)), err)
	}
	if err := d.recv.CompleteMessage(ctx, rm, nil); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer cancel()
		if cerr := d.send.CancelScheduledMessages(cctx, seqs, nil); cerr != nil {
			return &opError{
				op:    fmt.Sprintf("retry message %s: complete the original after scheduling copy %s (sequence %v), and cancelling the copy failed too (%s); the message may be delivered twice", m.ID, id, seqs, Redact(cerr.Error())),
				kinds: wrapErr("", err, true).(*opError).kinds,
				err:   err,
			}
		}
		return s.failedLocked(fmt.Sprintf("retry message %s: complete the original after scheduling a copy (copy cancelled)", m.ID), err)
	}
	return nil
}

// copyOf returns a copy of rm to send: its body, props as application
// properties, a new MessageID, and the system properties a sender sets
// except TimeToLive (ContentType, CorrelationID, PartitionKey, ReplyTo,
// ReplyToSessionID, SessionID, Subject, To).
func copyOf(rm *azservicebus.ReceivedMessage, props map[string]any) *azservicebus.Message {
	id := uuid.NewString()
	return &azservicebus.Message{
		ApplicationProperties: props,
		Body:                  rm.Body,
		ContentType:           rm.ContentType,
		CorrelationID:         rm.CorrelationID,
		MessageID:             &id,
		PartitionKey:          rm.PartitionKey,
		ReplyTo:               rm.ReplyTo,
		ReplyToSessionID:      rm.ReplyToSessionID,
		SessionID:             rm.SessionID,
		Subject:               rm.Subject,
		To:                    rm.To,
	}
}

// ExtendLease keeps the message locked until lease from now: it renews the
// lock at once and the driver keeps renewing it in the background. The
// lock's length is the entity's LockDuration whatever lease is. Once the
// message has been held for longer than Options.MaxAutoLockRenewalDuration
// it renews nothing and returns an error wrapping ErrLockRenewalLimit.
func (d *Driver) ExtendLease(ctx context.Context, m *triggers.Message, lease time.Duration) error {
	s, err := d.lockUsable(m, "extend lease of")
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if lim := d.opts.MaxAutoLockRenewalDuration; lim > 0 {
		if held := time.Since(s.receivedAt); held >= lim {
			s.leaseUntil = time.Time{}
			return &opError{op: fmt.Sprintf("extend lease of message %s in %s after %v", s.rm.MessageID, d.path, held.Round(time.Second)), kinds: []error{ErrLockRenewalLimit}}
		}
	}
	s.leaseUntil = time.Now().Add(max(lease, 0))
	if err := s.renewLocked(ctx); err != nil {
		return s.failedLocked("extend lease of", err)
	}
	m.NextVisibleTime = s.visibleAtLocked()
	s.startLocked()
	return nil
}

// DeadLetter moves the message to the entity's dead-letter queue with
// DeadLetterReason and reason (truncated to MaxErrorDescription bytes) as
// the error description. It returns m.ID: the dead-lettered message keeps
// its id.
func (d *Driver) DeadLetter(ctx context.Context, m *triggers.Message, reason string) (string, error) {
	s, err := d.state(m, "dead-letter")
	if err != nil {
		return "", err
	}
	if d.entity.DeadLetterQueue {
		return "", &opError{op: fmt.Sprintf("dead-letter message %s in %s", m.ID, d.path), kinds: []error{ErrNoDeadLetterQueue}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked("dead-letter"); err != nil {
		return "", err
	}
	r := DeadLetterReason
	opts := &azservicebus.DeadLetterOptions{Reason: &r}
	if reason != "" {
		desc := truncate(reason, MaxErrorDescription)
		opts.ErrorDescription = &desc
	}
	if err := d.recv.DeadLetterMessage(ctx, s.rm, opts); err != nil {
		return "", s.failedLocked("dead-letter", err)
	}
	s.settleLocked()
	return m.ID, nil
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
