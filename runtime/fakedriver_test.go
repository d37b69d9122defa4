package runtime

import (
	"context"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// fakeDriver is a scripted in-memory driver for the host's tests, meant to
// run inside a testing/synctest bubble: it records every call, and hooks
// make its operations fail or hang.
type fakeDriver struct {
	mu       sync.Mutex
	queue    []*triggers.Message // visible
	next     int
	calls    []string // "complete 1", "retry 1 0s", "release 1", "deadletter 1", "extend 1"
	extends  int
	poison   string
	released chan struct{} // closed by the test to end hangs
	closed   bool

	// Hooks, nil for the plain behaviour.
	completeErr   func(m *triggers.Message, n int) error // n: how many completes so far for m
	deadLetter    func(m *triggers.Message) (string, error)
	hangReceive   bool // Receive after the first message ignores its context until released
	hangClose     bool
	notFound      bool // Receive reports a missing queue
	receiveCalled chan struct{}
}

func newFakeDriver() *fakeDriver {
	return &fakeDriver{poison: "fake-poison", released: make(chan struct{}), receiveCalled: make(chan struct{}, 100)}
}

func (d *fakeDriver) send(body string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	d.queue = append(d.queue, &triggers.Message{ID: strconv.Itoa(d.next), Body: []byte(body), InsertionTime: time.Now()})
}

func (d *fakeDriver) record(s string) {
	d.calls = append(d.calls, s)
}

func (d *fakeDriver) callLog() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

func (d *fakeDriver) count(prefix string) int {
	n := 0
	for _, c := range d.callLog() {
		if len(c) >= len(prefix) && c[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}

func (d *fakeDriver) Receive(ctx context.Context, max int, lease time.Duration) ([]*triggers.Message, error) {
	select {
	case d.receiveCalled <- struct{}{}:
	default:
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, triggers.ErrClosed
	}
	if d.notFound {
		d.mu.Unlock()
		return nil, triggers.ErrNotFound
	}
	if len(d.queue) == 0 && d.hangReceive && d.next > 0 {
		d.mu.Unlock()
		<-d.released // ignores ctx, as a hung broker connection would
		return nil, nil
	}
	n := min(max, len(d.queue))
	out := d.queue[:n:n]
	d.queue = d.queue[n:]
	for _, m := range out {
		m.DequeueCount++
		m.NextVisibleTime = time.Now().Add(lease)
	}
	d.mu.Unlock()
	return out, nil
}

func (d *fakeDriver) Complete(_ context.Context, m *triggers.Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.calls {
		if c == "complete "+m.ID {
			n++
		}
	}
	d.record("complete " + m.ID)
	if d.completeErr != nil {
		if err := d.completeErr(m, n); err != nil {
			// Not deleted: it comes back, as after a lost lease.
			d.queue = append(d.queue, m)
			return err
		}
	}
	return nil
}

func (d *fakeDriver) Retry(_ context.Context, m *triggers.Message, delay time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record("retry " + m.ID + " " + delay.String())
	d.queue = append(d.queue, m)
	return nil
}

func (d *fakeDriver) ExtendLease(_ context.Context, m *triggers.Message, lease time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.extends++
	d.record("extend " + m.ID)
	m.NextVisibleTime = time.Now().Add(lease)
	return nil
}

func (d *fakeDriver) DeadLetter(_ context.Context, m *triggers.Message, _ string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record("deadletter " + m.ID)
	if d.deadLetter != nil {
		return d.deadLetter(m)
	}
	return "p-" + m.ID, nil
}

func (d *fakeDriver) PoisonDestination() string { return d.poison }

func (d *fakeDriver) Close() error {
	d.mu.Lock()
	d.closed = true
	hang := d.hangClose
	d.mu.Unlock()
	if hang {
		<-d.released
	}
	return nil
}

// releaser is a fakeDriver that can give messages back without an attempt.
type releaser struct{ *fakeDriver }

func (d releaser) Release(_ context.Context, m *triggers.Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record("release " + m.ID)
	m.DequeueCount-- // no attempt counted
	d.queue = append(d.queue, m)
	return nil
}

// fakeHost runs reg over drv until stop; it must be called inside a
// synctest bubble. cfg adjusts the defaults.
type fakeHost struct {
	logs *logSink
	stop func() time.Duration // cancels Run and returns how long Run took to return
}

func runFakeHost(t *testing.T, reg *functions.Registry, drv triggers.Driver, cfg func(*Config)) *fakeHost {
	t.Helper()
	c := DefaultConfig()
	c.Queues.MessageEncoding = bindings.None
	c.PubSub.MessageEncoding = bindings.None
	c.Queues.MaxPollingInterval = time.Second
	c.PubSub.MaxPollingInterval = time.Second
	c.ShutdownTimeout = 5 * time.Second
	if cfg != nil {
		cfg(c)
	}
	sink := newLogSink()
	logs, err := NewLogs(LogOptions{Output: zapcore.AddSync(sink)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Registry: reg, Config: c, Settings: NewAppSettings(nil), Logs: logs,
		Open: func(context.Context, *FunctionConfig) (triggers.Driver, error) { return drv, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	return &fakeHost{logs: sink, stop: func() time.Duration {
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Minute): // fake time
			t.Errorf("Run did not return within 10 minutes of the stop")
		}
		return time.Since(start)
	}}
}

func discardLogs(t *testing.T) *Logs {
	t.Helper()
	logs, err := NewLogs(LogOptions{Output: zapcore.AddSync(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	return logs
}
