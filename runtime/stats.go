package runtime

import (
	"sync/atomic"
	"time"

	"github.com/jobhost/jobhost/status"
)

// listenerStats is what a listener counts for its observers (metrics,
// health, the dashboard). The hot path only adds to atomics; the
// observers read them when asked.
type listenerStats struct {
	received, succeeded, failed, poisoned, cancelled, opCanceled atomic.Uint64
	receiveErrors, settleErrors, poisonMoves                     atomic.Uint64
	renewals, renewalErrors, leasesLost                          atomic.Uint64

	state        atomic.Int32 // a stateCode
	lastPoll     atomic.Int64 // unix nanoseconds of the last poll that reached the broker
	receiveStart atomic.Int64 // unix nanoseconds a Receive under way started; 0 when none
	depth        atomic.Int64 // -1: cannot count
	depthAt      atomic.Int64
	lastErr      atomic.Pointer[errorAt]
}

type errorAt struct {
	msg string
	at  time.Time
}

// stateCode is a status.State as an int, for an atomic.
type stateCode int32

const (
	stateStarting stateCode = iota
	stateListening
	stateFailing
	stateStopping
	stateStopped
	stateStandby
)

var stateNames = [...]status.State{status.Starting, status.Listening, status.Failing, status.Stopping, status.Stopped, status.Standby}

func (s *listenerStats) setState(c stateCode) { s.state.Store(int32(c)) }

func (s *listenerStats) stateName() status.State { return stateNames[s.state.Load()] }

// count adds one invocation's outcome.
func (s *listenerStats) count(outcome string) {
	switch outcome {
	case OutcomeSucceeded:
		s.succeeded.Add(1)
	case OutcomeFailed:
		s.failed.Add(1)
	case OutcomePoisoned:
		s.poisoned.Add(1)
	case OutcomeCancelled:
		s.cancelled.Add(1)
	case OutcomeOperationCanceled:
		s.opCanceled.Add(1)
	}
}

// setError records the last error. It allocates, so only failures call it.
func (s *listenerStats) setError(err error) {
	if err != nil {
		s.lastErr.Store(&errorAt{msg: Redact(err.Error()), at: time.Now()})
	}
}

// receivingFor returns how long the Receive under way has taken (0 when
// none is).
func (s *listenerStats) receivingFor(now time.Time) time.Duration {
	if t := s.receiveStart.Load(); t != 0 {
		return now.Sub(time.Unix(0, t))
	}
	return 0
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
