package servicebus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/jobhost/jobhost/triggers"
)

// msgState is the driver's private state of one received message
// (Message.DriverData). Its mutex serialises every broker call for the
// message, the runtime's and the background renewer's, and guards the
// fields below; rm.LockedUntil is written by RenewMessageLock under it.
type msgState struct {
	d  *Driver
	rm *azservicebus.ReceivedMessage

	receivedAt time.Time // when Receive got it (the renewal limit counts from here)

	mu         sync.Mutex
	acquiredAt time.Time // local time just before the last receive or renewal
	leaseUntil time.Time // keep the lock until then (the runtime's lease)
	settled    bool      // settled, or handed to a retry hold: the runtime's calls now fail
	lost       bool      // the broker said the lock is lost
	holding    bool      // held for a delayed retry: abandon at holdUntil
	holdUntil  time.Time
	running    bool          // a renewer goroutine is running
	wake       chan struct{} // pokes the renewer to recompute its schedule
}

// lockedUntilLocked returns the broker's lock end, or the zero time.
func (s *msgState) lockedUntilLocked() time.Time {
	if s.rm.LockedUntil == nil {
		return time.Time{}
	}
	return *s.rm.LockedUntil
}

// renewDeadline returns when renewals stop (MaxAutoLockRenewalDuration
// after the receive), or the zero time for no limit.
func (s *msgState) renewDeadline() time.Time {
	if lim := s.d.opts.MaxAutoLockRenewalDuration; lim > 0 {
		return s.receivedAt.Add(lim)
	}
	return time.Time{}
}

// goalLocked returns until when the lock must be kept.
func (s *msgState) goalLocked() time.Time {
	if s.holding {
		return s.holdUntil.Add(holdMargin)
	}
	if s.settled || s.lost {
		return time.Time{}
	}
	g := s.leaseUntil
	if dl := s.renewDeadline(); !dl.IsZero() && dl.Before(g) {
		g = dl
	}
	return g
}

// visibleAtLocked estimates when the message becomes visible to other
// receivers if nothing else happens.
func (s *msgState) visibleAtLocked() time.Time {
	lu := s.lockedUntilLocked()
	if g := s.goalLocked(); g.After(lu) {
		return g
	}
	return lu
}

// usableLocked rejects calls for a message the runtime has already given
// up or whose lock is lost.
func (s *msgState) usableLocked(op string) error {
	if s.settled || s.lost {
		why := "already settled"
		if s.lost && !s.settled {
			why = "lock lost earlier"
		}
		return &opError{op: fmt.Sprintf("%s message %s in %s (%s)", op, s.rm.MessageID, s.d.path, why), kinds: []error{triggers.ErrLeaseLost}}
	}
	return nil
}

// failedLocked records a failed operation on the message and wraps err. A
// lost lock stops renewal; any other failure stops stretching the lease, so
// that the message comes back when its current lock runs out, as the
// runtime expects after a failed settlement.
func (s *msgState) failedLocked(op string, err error) error {
	werr := wrapErr(fmt.Sprintf("%s message %s in %s", op, s.rm.MessageID, s.d.path), err, true)
	if isLockLost(err) || isNotFound(err) {
		s.lost = true
	}
	s.leaseUntil = time.Time{}
	s.pokeLocked()
	return werr
}

// settleLocked marks the message settled and stops its renewer.
func (s *msgState) settleLocked() {
	s.settled = true
	s.holding = false
	s.pokeLocked()
}

// renewLocked renews the broker lock.
func (s *msgState) renewLocked(ctx context.Context) error {
	at := time.Now()
	if err := s.d.recv.RenewMessageLock(ctx, s.rm, nil); err != nil {
		return err
	}
	s.acquiredAt = at
	return nil
}

// nextRenewalLocked returns when the lock should next be renewed: halfway
// between the last acquisition and the lock's end.
func (s *msgState) nextRenewalLocked() time.Time {
	lu := s.lockedUntilLocked()
	half := lu.Sub(s.acquiredAt) / 2
	return s.acquiredAt.Add(max(half, minRenewInterval))
}

func (s *msgState) pokeLocked() {
	if s.wake != nil {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// startLocked starts the renewer if the lock must be kept past its current
// end (or a held retry is due), or pokes a running one.
func (s *msgState) startLocked() {
	if s.running {
		s.pokeLocked()
		return
	}
	if !s.holding && !s.goalLocked().After(s.lockedUntilLocked()) {
		return
	}
	d := s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if s.wake == nil {
		s.wake = make(chan struct{}, 1)
	}
	s.running = true
	d.wg.Add(1)
	go s.run()
}

// run renews the lock until it covers the goal, and abandons a held
// message when it is due or the driver closes.
func (s *msgState) run() {
	defer s.d.wg.Done()
	var retryAt time.Time // after a failed renewal
	for {
		s.mu.Lock()
		now := time.Now()
		closing := s.d.closingNow()
		if s.holding && (closing || !now.Before(s.holdUntil)) {
			s.abandonHeldLocked()
			s.running = false
			s.mu.Unlock()
			return
		}
		goal := s.goalLocked()
		if closing || s.lost || (!s.holding && !goal.After(s.lockedUntilLocked())) {
			s.running = false
			s.mu.Unlock()
			return
		}
		var at time.Time
		if goal.After(s.lockedUntilLocked()) {
			at = s.nextRenewalLocked()
			if retryAt.After(at) {
				at = retryAt
			}
		} else {
			at = s.holdUntil
		}
		if s.holding && s.holdUntil.Before(at) {
			at = s.holdUntil
		}
		if !now.Before(at) {
			// Due: renew (a held message past its due time was handled
			// above). Close cancels a renewal in flight.
			ctx, cancel := context.WithTimeout(s.d.closeCtx, opTimeout)
			err := s.renewLocked(ctx)
			cancel()
			switch {
			case err == nil:
				retryAt = time.Time{}
			case isLockLost(err) || isNotFound(err):
				// Gone: the message is redelivered (or was settled
				// elsewhere). A held message comes back with
				// DeliveryCount + 1, just as if abandoned.
				s.lost = true
			default:
				// Transient: try again soon, while the lock lasts.
				left := time.Until(s.lockedUntilLocked())
				retryAt = time.Now().Add(max(min(left/4, time.Second), minRenewInterval))
			}
			s.mu.Unlock()
			continue
		}
		wake := s.wake
		s.mu.Unlock()

		t := time.NewTimer(time.Until(at))
		select {
		case <-t.C:
		case <-wake:
		case <-s.d.closing:
		}
		t.Stop()
	}
}

// abandonHeldLocked ends a retry hold: the message becomes available with
// DeliveryCount + 1. If this fails the lock runs out soon with the same
// effect.
func (s *msgState) abandonHeldLocked() {
	s.holding = false
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := s.d.recv.AbandonMessage(ctx, s.rm, nil); err != nil {
		s.lost = true
	}
}

// closingNow reports whether Close has begun.
func (d *Driver) closingNow() bool {
	select {
	case <-d.closing:
		return true
	default:
		return false
	}
}
