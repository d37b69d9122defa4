package status

import (
	"fmt"
	"testing"
)

func TestRingKeepsTheNewest(t *testing.T) {
	r := NewRing(3)
	for i := range 5 {
		r.Add(Invocation{ID: fmt.Sprint(i), Function: []string{"a", "b"}[i%2], Outcome: "succeeded"})
	}
	if r.Len() != 3 {
		t.Fatalf("Len = %d, want 3", r.Len())
	}
	got := r.List(Filter{})
	if len(got) != 3 || got[0].ID != "4" || got[2].ID != "2" {
		t.Fatalf("List = %+v, want 4, 3, 2", got)
	}
	if got := r.List(Filter{Function: "a"}); len(got) != 2 || got[0].ID != "4" || got[1].ID != "2" {
		t.Fatalf("function a: %+v", got)
	}
	if got := r.List(Filter{MessageID: "3"}); len(got) != 1 || got[0].ID != "3" {
		t.Fatalf("by id: %+v", got)
	}
	if got := r.List(Filter{Limit: 1}); len(got) != 1 || got[0].ID != "4" {
		t.Fatalf("limit: %+v", got)
	}
}

func TestRingAddAllocatesNothing(t *testing.T) {
	r := NewRing(8)
	inv := Invocation{ID: "x", Function: "f", Outcome: "succeeded"}
	if n := testing.AllocsPerRun(100, func() { r.Add(inv) }); n != 0 {
		t.Fatalf("Add allocates %v times", n)
	}
}
