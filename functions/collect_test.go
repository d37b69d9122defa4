package functions

import (
	"context"
	"testing"

	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/triggers"
)

type item struct{ N int }

// TestCollectorAddKeepsTheValueAsAdded: a pointer reused in a loop sends
// each value as it was when added, not N copies of the last.
func TestCollectorAddKeepsTheValueAsAdded(t *testing.T) {
	p := invocation.NewPending([]string{"out"})
	ctx := invocation.WithPending(context.Background(), p)
	c := Collect[*item](ctx, "out")
	v := &item{}
	for i := range 3 {
		v.N = i
		if err := c.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	buf := []byte("abc")
	if err := Collect[[]byte](ctx, "out").Add(buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XYZ")
	var got []string
	for _, it := range p.Items() {
		got = append(got, string(it.Body))
	}
	want := []string{`{"N":0}`, `{"N":1}`, `{"N":2}`, "abc"}
	if len(got) != len(want) {
		t.Fatalf("items %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("item %d = %s, want %s", i, got[i], want[i])
		}
	}
}

// TestCollectorAddUnencodable: a value that cannot be encoded fails Add
// and is kept with its error, so the invocation fails even if the function
// ignores what Add returned.
func TestCollectorAddUnencodable(t *testing.T) {
	p := invocation.NewPending([]string{"out"})
	ctx := invocation.WithPending(context.Background(), p)
	if err := Collect[any](ctx, "out").Add(make(chan int)); err == nil {
		t.Fatal("Add of a channel succeeded")
	}
	if items := p.Items(); len(items) != 1 || items[0].Err == nil {
		t.Fatalf("items %+v, want one with its error", items)
	}
}

// TestAddResultLeavesTheCallersOptions: AddResult does not write its
// output option into spare capacity of the caller's slice.
func TestAddResultLeavesTheCallersOptions(t *testing.T) {
	opts := make([]Option, 1, 4)
	opts[0] = MaxDequeueCount(2)
	reg := &Registry{}
	AddResult(reg, "F", QueueTrigger("q"), "out", func(context.Context, string, *triggers.Message) (string, error) { return "", nil }, opts...)
	if spare := opts[:2][1]; spare != nil {
		t.Error("AddResult wrote into the caller's option slice")
	}
	if d := reg.Functions(); len(d) != 1 || len(d[0].Settings.Outputs) != 1 {
		t.Fatalf("registered %+v", d)
	}
}
