package runtime

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// extendDriver records ExtendLease calls.
type extendDriver struct {
	nopDriver
	mu      sync.Mutex
	extends map[string][]time.Time
}

func (d *extendDriver) ExtendLease(_ context.Context, m *triggers.Message, lease time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.extends[m.ID] = append(d.extends[m.ID], time.Now())
	m.NextVisibleTime = time.Now().Add(lease)
	return nil
}

func (d *extendDriver) calls(id string) []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.extends[id]...)
}

// TestRenewalReused: one worker's renewal serves message after message:
// a quick message is never renewed, a long one that follows is renewed
// about every half lease, and renewal stops when it ends.
func TestRenewalReused(t *testing.T) {
	reg := &functions.Registry{}
	functions.Add(reg, "F", functions.QueueTrigger("renewal-test"), func(context.Context, []byte, *triggers.Message) error { return nil })
	cfg := DefaultConfig()
	cfg.Queues.MessageEncoding = bindings.None
	cfg.Queues.VisibilityTimeout = 400 * time.Millisecond
	funcs, _, err := ResolveFunctions(cfg, reg, NewAppSettings(nil))
	if err != nil {
		t.Fatal(err)
	}
	funcs[0].Queues.LeaseDuration = 600 * time.Millisecond
	logs, err := NewLogs(LogOptions{Output: zapcore.AddSync(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	d := &extendDriver{extends: map[string][]time.Time{}}
	l := newListener(funcs[0], d, logs, context.Background(), nil)
	r := l.newRenewal()

	now := time.Now()
	quick := &triggers.Message{ID: "quick", NextVisibleTime: now.Add(600 * time.Millisecond)}
	r.begin(quick, now)
	r.end()

	start := time.Now()
	long := &triggers.Message{ID: "long", NextVisibleTime: start.Add(600 * time.Millisecond)}
	r.begin(long, start)
	time.Sleep(1300 * time.Millisecond) // the function under test runs a little over two leases
	r.end()
	ended := time.Now()
	time.Sleep(700 * time.Millisecond) // more than a lease after it ended

	if c := d.calls("quick"); len(c) != 0 {
		t.Errorf("quick message renewed %d times; want 0", len(c))
	}
	c := d.calls("long")
	if len(c) < 2 || len(c) > 5 {
		t.Fatalf("long message renewed %d times in 1.3 s with a 600 ms lease; want about 4 (every 300 ms)", len(c))
	}
	if first := c[0].Sub(start); first < 250*time.Millisecond || first >= 600*time.Millisecond {
		t.Errorf("first renewal %v after start; want about 300 ms (half the lease), before the lease ends", first)
	}
	if last := c[len(c)-1]; last.After(ended) {
		t.Errorf("renewed %v after the function ended", last.Sub(ended))
	}
}
