package sbfake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"
)

// Receiver is a PeekLock receiver on one entity path, with the methods of
// *azservicebus.Receiver that package servicebus uses.
type Receiver struct {
	b    *Broker
	path string

	mu         sync.Mutex
	receiving  bool
	closed     bool
	lastPeeked int64
}

// NewReceiver returns a receiver for an entity path: a queue,
// "<topic>/Subscriptions/<subscription>", or either with
// "/$deadletterqueue". Like the real one it is lazy: a missing entity
// makes ReceiveMessages fail.
func (b *Broker) NewReceiver(path string) *Receiver { return &Receiver{b: b, path: path} }

func (r *Receiver) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// ReceiveMessages locks and returns up to maxMessages available messages,
// waiting until at least one is available or ctx ends (then it returns
// ctx's error and no messages).
func (r *Receiver) ReceiveMessages(ctx context.Context, maxMessages int, _ *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errClosed("receiver")
	}
	if r.receiving {
		r.mu.Unlock()
		return nil, errors.New("receiver is already receiving messages. ReceiveMessages() cannot be called concurrently")
	}
	r.receiving = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.receiving = false
		r.mu.Unlock()
	}()
	if maxMessages <= 0 || maxMessages > 5000 {
		return nil, fmt.Errorf("maxMessages %d out of range", maxMessages)
	}
	b := r.b
	first := true
	for {
		b.mu.Lock()
		if first {
			first = false
			if err := b.callLocked(OpReceive); err != nil {
				b.mu.Unlock()
				return nil, err
			}
		}
		now := time.Now()
		e := b.lookupLocked(r.path, now)
		if e == nil {
			b.mu.Unlock()
			return nil, errNotFound(r.path)
		}
		var out []*azservicebus.ReceivedMessage
		for _, m := range e.msgs {
			if len(out) == maxMessages {
				break
			}
			if !m.available(now) {
				continue
			}
			m.locked = true
			m.lockToken = newToken()
			m.lockedUntil = now.Add(e.opts.LockDuration)
			m.deliveryCount++
			out = append(out, m.received())
		}
		if len(out) > 0 {
			b.mu.Unlock()
			return out, nil
		}
		next := e.nextEventLocked(now)
		if p := b.parentLocked(e); p != nil {
			if pn := p.nextEventLocked(now); !pn.IsZero() && (next.IsZero() || pn.Before(next)) {
				next = pn
			}
		}
		ch := b.changed
		b.mu.Unlock()

		var (
			timer <-chan time.Time
			t     *time.Timer
		)
		if !next.IsZero() {
			t = time.NewTimer(time.Until(next))
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-ch:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if r.isClosed() {
			return nil, errClosed("receiver")
		}
	}
}

// settle finds the message rm holds the current lock of and calls f.
func (r *Receiver) settle(op Op, rm *azservicebus.ReceivedMessage, f func(e *entity, m *message, now time.Time) error) error {
	if r.isClosed() {
		return errClosed("receiver")
	}
	if rm == nil {
		return errors.New("nil message")
	}
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.callLocked(op); err != nil {
		return err
	}
	now := time.Now()
	e := b.lookupLocked(r.path, now)
	if e == nil {
		return errNotFound(r.path)
	}
	for _, m := range e.msgs {
		if m.locked && m.lockToken == rm.LockToken {
			err := f(e, m, now)
			b.notifyLocked()
			return err
		}
	}
	return errLockLost()
}

// CompleteMessage removes the message.
func (r *Receiver) CompleteMessage(_ context.Context, rm *azservicebus.ReceivedMessage, _ *azservicebus.CompleteMessageOptions) error {
	return r.settle(OpComplete, rm, func(e *entity, m *message, _ time.Time) error {
		e.remove(m)
		return nil
	})
}

// AbandonMessage unlocks the message (or dead-letters it at
// MaxDeliveryCount), applying PropertiesToModify.
func (r *Receiver) AbandonMessage(_ context.Context, rm *azservicebus.ReceivedMessage, o *azservicebus.AbandonMessageOptions) error {
	return r.settle(OpAbandon, rm, func(e *entity, m *message, _ time.Time) error {
		m.locked = false
		m.lockToken = [16]byte{}
		if o != nil {
			m.props = merge(m.props, o.PropertiesToModify)
		}
		if r.b.failedDeliveryLocked(e, m) {
			e.remove(m)
		}
		return nil
	})
}

// DeadLetterMessage moves the message to the dead-letter queue.
func (r *Receiver) DeadLetterMessage(_ context.Context, rm *azservicebus.ReceivedMessage, o *azservicebus.DeadLetterOptions) error {
	return r.settle(OpDeadLetter, rm, func(e *entity, m *message, _ time.Time) error {
		if e.dlq == nil {
			return &amqp.Error{Condition: amqp.ErrCondNotAllowed, Description: "cannot dead-letter a message in a dead-letter queue"}
		}
		var reason, desc string
		if o != nil {
			reason, desc = deref(o.Reason), deref(o.ErrorDescription)
			m.props = merge(m.props, o.PropertiesToModify)
		}
		e.remove(m)
		r.b.deadLetterLocked(e, m, reason, desc)
		if o == nil || o.Reason == nil {
			m.dlReason = nil
		}
		if o == nil || o.ErrorDescription == nil {
			m.dlDesc = nil
		}
		return nil
	})
}

// RenewMessageLock extends the lock by LockDuration from now and updates
// rm.LockedUntil.
func (r *Receiver) RenewMessageLock(_ context.Context, rm *azservicebus.ReceivedMessage, _ *azservicebus.RenewMessageLockOptions) error {
	return r.settle(OpRenew, rm, func(e *entity, m *message, now time.Time) error {
		m.lockedUntil = now.Add(e.opts.LockDuration)
		rm.LockedUntil = ptr(m.lockedUntil)
		return nil
	})
}

// Close closes the receiver. Locked messages stay locked until their locks
// run out.
func (r *Receiver) Close(context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.b.mu.Lock()
	r.b.notifyLocked() // wake a waiting ReceiveMessages
	r.b.mu.Unlock()
	return nil
}
