package functions

import (
	"errors"
	"fmt"
	"time"
)

// Permanent marks err as not retryable: the host moves the message to
// poison at once instead of retrying it.
//
//	if !valid(req) { return functions.Permanent(fmt.Errorf("bad request %s", req.ID)) }
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &PermanentError{Err: err}
}

// PermanentError is the error Permanent returns.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// RetryAfter asks for the message to be retried after d instead of the
// configured delay. The attempt still counts towards maxDequeueCount (or
// the retry policy's maxRetryCount).
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		err = fmt.Errorf("retry requested after %s", d)
	}
	return &RetryAfterError{Err: err, Delay: max(d, 0)}
}

// RetryAfterError is the error RetryAfter returns.
type RetryAfterError struct {
	Err   error
	Delay time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryPolicy is the Azure Functions retry policy: the delay before each
// retry and how many retries a message gets. The broker carries the delay
// (a visibility timeout, a delayed redelivery), so the schedule survives a
// restart and is shared by every worker.
type RetryPolicy struct {
	// Strategy is "fixedDelay" or "exponentialBackoff".
	Strategy string
	// MaxRetryCount is the number of retries after the first attempt; -1
	// leaves the limit to maxDequeueCount.
	MaxRetryCount int
	// DelayInterval is the fixed delay.
	DelayInterval time.Duration
	// MinimumInterval and MaximumInterval bound the exponential delay.
	MinimumInterval, MaximumInterval time.Duration
}

// FixedDelay retries maxRetryCount times, waiting delay before each.
func FixedDelay(maxRetryCount int, delay time.Duration) RetryPolicy {
	return RetryPolicy{Strategy: "fixedDelay", MaxRetryCount: maxRetryCount, DelayInterval: delay}
}

// ExponentialBackoff retries maxRetryCount times, waiting min, 2×min,
// 4×min ... up to max.
func ExponentialBackoff(maxRetryCount int, min, max time.Duration) RetryPolicy {
	return RetryPolicy{Strategy: "exponentialBackoff", MaxRetryCount: maxRetryCount, MinimumInterval: min, MaximumInterval: max}
}

// Delay returns the wait before the retry that follows attempt (1 for the
// first attempt).
func (p RetryPolicy) Delay(attempt int64) time.Duration {
	if p.Strategy != "exponentialBackoff" {
		return p.DelayInterval
	}
	d := p.MinimumInterval
	for i := int64(1); i < attempt && d < p.MaximumInterval; i++ {
		d *= 2
	}
	return min(d, p.MaximumInterval)
}

// Attempts returns how many attempts the policy allows, or 0 when it
// leaves the limit to maxDequeueCount.
func (p RetryPolicy) Attempts() int {
	if p.MaxRetryCount < 0 {
		return 0
	}
	return p.MaxRetryCount + 1
}

// Validate reports what is wrong with p, naming the field.
func (p RetryPolicy) Validate() error {
	switch p.Strategy {
	case "fixedDelay":
		if p.DelayInterval < 0 {
			return errors.New("delayInterval must not be negative")
		}
	case "exponentialBackoff":
		if p.MinimumInterval <= 0 || p.MaximumInterval < p.MinimumInterval {
			return errors.New("exponentialBackoff needs 0 < minimumInterval <= maximumInterval")
		}
	default:
		return fmt.Errorf(`strategy must be "fixedDelay" or "exponentialBackoff", got %q`, p.Strategy)
	}
	if p.MaxRetryCount < -1 {
		return fmt.Errorf("maxRetryCount must be -1 or more, got %d", p.MaxRetryCount)
	}
	return nil
}
