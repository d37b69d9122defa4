package runtime

import (
	"math/rand/v2"
	"time"
)

// backoff is WebJobs' randomized exponential polling backoff: the first empty
// poll waits min, each further one min + random(0.8..1.2) × 2^(k-1) × min,
// until the wait sticks at max. A non-empty poll resets it.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
	exp      int
	rand     func() float64 // [0,1)
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, rand: rand.Float64}
}

// next returns the wait after one more empty (or failed) poll.
func (b *backoff) next() time.Duration {
	if b.cur == b.max && b.exp > 0 {
		return b.cur
	}
	d := b.min
	if b.exp > 0 {
		factor := 0.8 + 0.4*b.rand()
		d += time.Duration(factor * float64(b.min) * float64(uint64(1)<<min(b.exp-1, 40)))
	}
	if d < b.max {
		b.cur = d
		b.exp++
	} else {
		b.cur = b.max
		b.exp = max(b.exp, 1)
	}
	return b.cur
}

// reset starts the sequence again after a non-empty poll.
func (b *backoff) reset() { b.cur, b.exp = 0, 0 }

// atMax reports whether the wait has reached max.
func (b *backoff) atMax() bool { return b.cur == b.max }
