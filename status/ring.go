package status

import "sync"

// DefaultRingSize is how many invocations a host keeps by default.
const DefaultRingSize = 10000

// Ring keeps the last invocations of a host, a fixed number of them. It is
// safe for concurrent use; Add takes a lock and copies one struct, and
// allocates nothing.
type Ring struct {
	mu   sync.Mutex
	buf  []Invocation
	next int  // where the next Add writes
	full bool // buf has wrapped
}

// NewRing returns a ring that keeps the last n invocations (n < 1 means
// DefaultRingSize).
func NewRing(n int) *Ring {
	if n < 1 {
		n = DefaultRingSize
	}
	return &Ring{buf: make([]Invocation, n)}
}

// Add records inv, dropping the oldest when the ring is full.
func (r *Ring) Add(inv Invocation) {
	r.mu.Lock()
	r.buf[r.next] = inv
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Len returns how many invocations the ring holds.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// List returns the invocations f selects, newest first.
func (r *Ring) List(f Filter) []Invocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	var out []Invocation
	for i := 1; i <= n; i++ {
		inv := &r.buf[(r.next-i+len(r.buf))%len(r.buf)]
		if f.matches(inv) {
			out = append(out, *inv)
			if f.Limit > 0 && len(out) == f.Limit {
				break
			}
		}
	}
	return out
}

func (f *Filter) matches(inv *Invocation) bool {
	return (f.Function == "" || f.Function == inv.Function) &&
		(f.Outcome == "" || f.Outcome == inv.Outcome) &&
		(f.MessageID == "" || f.MessageID == inv.MessageID || f.MessageID == inv.ID)
}
