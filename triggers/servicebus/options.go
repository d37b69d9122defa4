package servicebus

import (
	"fmt"
	"time"
)

// Options configures a Driver. The zero value gives Functions' defaults.
type Options struct {
	// MaxAutoLockRenewalDuration bounds how long after it was received a
	// message's lock is still renewed (by the driver in the background and
	// by ExtendLease). Zero means DefaultMaxAutoLockRenewalDuration (5 min);
	// negative means no limit.
	MaxAutoLockRenewalDuration time.Duration

	// ReceiveWait is how long Receive waits for a first message. Zero means
	// DefaultReceiveWait (2 s); at most MaxReceiveWait.
	ReceiveWait time.Duration

	// MaxBatch caps how many messages one Receive asks for (gocloud's
	// max_recv_batch_size). Zero means no cap beyond Receive's max.
	MaxBatch int

	// MaxHeldRetryDelay is the longest Retry delay served by holding the
	// lock when the driver could schedule a copy instead (queues opened with
	// a sender); longer delays schedule a copy. Zero means
	// DefaultMaxHeldRetryDelay (1 min); negative means always schedule a
	// copy when possible. Without a sender (topic subscriptions) every
	// delay is held.
	MaxHeldRetryDelay time.Duration
}

func (o *Options) normalize() error {
	if o.MaxAutoLockRenewalDuration == 0 {
		o.MaxAutoLockRenewalDuration = DefaultMaxAutoLockRenewalDuration
	}
	switch {
	case o.ReceiveWait == 0:
		o.ReceiveWait = DefaultReceiveWait
	case o.ReceiveWait < 0 || o.ReceiveWait > MaxReceiveWait:
		return fmt.Errorf("servicebus: ReceiveWait %v is out of range (0 < wait <= %v)", o.ReceiveWait, MaxReceiveWait)
	}
	if o.MaxBatch < 0 {
		return fmt.Errorf("servicebus: MaxBatch %d is negative", o.MaxBatch)
	}
	if o.MaxHeldRetryDelay == 0 {
		o.MaxHeldRetryDelay = DefaultMaxHeldRetryDelay
	}
	return nil
}
