package runtime

import (
	"testing"
	"time"
)

func TestBackoffSequence(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		b := newBackoff(100*time.Millisecond, time.Minute)
		b.rand = func() float64 { return r }
		factor := 0.8 + 0.4*r
		if got := b.next(); got != 100*time.Millisecond {
			t.Fatalf("first wait = %v, want 100ms", got)
		}
		for k := 1; ; k++ {
			want := 100*time.Millisecond + time.Duration(factor*float64(100*time.Millisecond)*float64(uint(1)<<(k-1)))
			if want >= time.Minute {
				want = time.Minute
			}
			got := b.next()
			if got != want {
				t.Fatalf("r=%v step %d: wait = %v, want %v", r, k, got, want)
			}
			if got == time.Minute {
				break
			}
		}
		if got := b.next(); got != time.Minute {
			t.Fatalf("wait must stick at max, got %v", got)
		}
		b.reset()
		if got := b.next(); got != 100*time.Millisecond {
			t.Fatalf("after reset wait = %v, want 100ms", got)
		}
	}
}

// With r=0.5 the waits are the reference's 0.1, 0.2, 0.3, 0.5, 0.9, 1.7 s ...
func TestBackoffMatchesWebJobs(t *testing.T) {
	b := newBackoff(100*time.Millisecond, time.Minute)
	b.rand = func() float64 { return 0.5 }
	want := []time.Duration{100, 200, 300, 500, 900, 1700, 3300, 6500, 12900, 25700, 51300, 60000}
	for i, w := range want {
		if got := b.next(); got != w*time.Millisecond {
			t.Fatalf("step %d: %v, want %v", i, got, w*time.Millisecond)
		}
	}
}
