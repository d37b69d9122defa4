package memqueue

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestHiddenHeap: random pushes, removals and changed times keep every
// entry's index right and pop entries in the order of their times.
func TestHiddenHeap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h hiddenHeap
	var live []*entry
	base := time.Now()
	check := func() {
		t.Helper()
		for i, s := range h {
			if s.e.index != i || s.at != slotTime(s.e.until) {
				t.Fatalf("slot %d holds entry with index %d, time %d (entry's %d)", i, s.e.index, s.at, slotTime(s.e.until))
			}
			if i > 0 && h[(i-1)/2].at > s.at {
				t.Fatalf("slot %d is earlier than its parent", i)
			}
		}
	}
	for range 5000 {
		switch op := r.IntN(4); {
		case op <= 1 || len(live) == 0:
			e := &entry{until: base.Add(time.Duration(r.IntN(1000)) * time.Millisecond)}
			h.push(e)
			live = append(live, e)
		case op == 2:
			k := r.IntN(len(live))
			if got := h.remove(live[k].index); got != live[k] || got.index != -1 {
				t.Fatalf("remove returned %p (index %d), want %p", got, got.index, live[k])
			}
			live = append(live[:k], live[k+1:]...)
		default:
			e := live[r.IntN(len(live))]
			e.until = base.Add(time.Duration(r.IntN(1000)) * time.Millisecond)
			h.fix(e.index)
		}
		check()
	}
	var last time.Time
	for len(h) > 0 {
		e := h.pop()
		if e.until.Before(last) {
			t.Fatalf("popped %v after %v", e.until, last)
		}
		last = e.until
	}
	if len(live) == 0 {
		t.Fatal("nothing was left to pop")
	}
}
