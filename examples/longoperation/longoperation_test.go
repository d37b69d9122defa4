package longoperation

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/internal/invocation"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/memstore"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/triggers"
)

// progressRecorder is the operation an invocation's context carries, as
// the host sets it: it records each progress value, and may act on it.
type progressRecorder struct {
	mu     sync.Mutex
	values []string
	on     func(v string)
}

func (p *progressRecorder) ctx(ctx context.Context, id string) context.Context {
	return invocation.WithOperation(ctx, &invocation.Operation{ID: id, Progress: func(_ context.Context, v []byte) error {
		p.mu.Lock()
		p.values = append(p.values, string(v))
		p.mu.Unlock()
		if p.on != nil {
			p.on(string(v))
		}
		return nil
	}})
}

func (p *progressRecorder) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.values)
}

// Progress is reported before the first step and after each; the result
// names the operation.
func TestRunLongOperationReportsProgress(t *testing.T) {
	p := &progressRecorder{}
	res, err := RunLongOperation(p.ctx(context.Background(), "op-1"), Request{Steps: 3, StepMs: 1}, &triggers.Message{})
	if err != nil || res != (Result{OperationID: "op-1", Steps: 3}) {
		t.Fatalf("%+v %v", res, err)
	}
	want := []string{`{"step":0,"of":3}`, `{"step":1,"of":3}`, `{"step":2,"of":3}`, `{"step":3,"of":3}`}
	if got := p.got(); !slices.Equal(got, want) {
		t.Errorf("progress %q, want %q", got, want)
	}
	// Outside an operation (a message sent, not submitted) it runs too.
	if res, err := RunLongOperation(context.Background(), Request{Steps: 1}, &triggers.Message{}); err != nil || res.Steps != 1 {
		t.Errorf("without an operation: %+v %v", res, err)
	}
}

// Cancelled while it runs, it stops at once: no further step.
func TestRunLongOperationStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &progressRecorder{}
	p.on = func(v string) {
		if v == `{"step":2,"of":1000}` {
			cancel()
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := RunLongOperation(p.ctx(ctx, "op-2"), Request{Steps: 1000, StepMs: 1}, &triggers.Message{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RunLongOperation ignored its context")
	}
	if got := p.got(); len(got) != 3 || got[2] != `{"step":2,"of":1000}` {
		t.Errorf("progress after the cancel: %q", got)
	}
	// Already cancelled: no step at all, whatever stepMs.
	cancel()
	if _, err := RunLongOperation(ctx, Request{Steps: 1, StepMs: 60000}, &triggers.Message{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancellation ignored: %v", err)
	}
}

func TestNegativeStepsArePermanent(t *testing.T) {
	var perm *functions.PermanentError
	for _, req := range []Request{{Steps: -1}, {Steps: 1, StepMs: -5}} {
		if _, err := RunLongOperation(context.Background(), req, &triggers.Message{}); !errors.As(err, &perm) {
			t.Errorf("%+v: want a permanent failure, got %v", req, err)
		}
	}
}

// Submitted as a background operation to a host (in memory), it ends
// Succeeded with its output and last progress in the record, or Canceled
// when cancelled while it runs.
func TestAsBackgroundOperation(t *testing.T) {
	reg := &functions.Registry{}
	ref := Register(reg)
	if ref.Name() != "RunLongOperation" || RunLongOperationRef != ref {
		t.Fatalf("Ref %q", ref.Name())
	}
	settings := runtime.NewAppSettings(map[string]string{QueueSetting: "memqueue://long-operations-" + t.Name()})
	cfg := runtime.DefaultConfig()
	cfg.PubSub.MaxPollingInterval = 100 * time.Millisecond
	store := memstore.New(memstore.Options{})
	logs, err := runtime.NewLogs(runtime.LogOptions{Levels: map[string]string{"default": "Error"}, Output: discard{}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := runtime.New(runtime.Options{Registry: reg, Config: cfg, Settings: settings, Logs: logs, Operations: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() { cancel(); <-done }()
	c, err := runtime.NewClient(cfg, settings, reg, store)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()

	rec, err := client.Start(wctx, c, ref, Request{Steps: 3, StepMs: 5})
	if err != nil {
		t.Fatal(err)
	}
	rec, err = c.Wait(wctx, rec.ID)
	if err != nil || rec.Status != operations.Succeeded {
		t.Fatalf("%+v %v", rec, err)
	}
	var out Result
	if err := json.Unmarshal(rec.Output, &out); err != nil || out != (Result{OperationID: rec.ID, Steps: 3}) {
		t.Errorf("output %s", rec.Output)
	}
	if string(rec.Progress) != `{"step":3,"of":3}` {
		t.Errorf("progress %s", rec.Progress)
	}

	long, err := client.Start(wctx, c, ref, Request{Steps: 1000, StepMs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// Wait for it to run (its first progress is recorded), then cancel.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := store.Get(wctx, long.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Final() {
			t.Fatalf("the long operation completed: %+v", r)
		}
		if r.Status == operations.InProgress && len(r.Progress) > 0 {
			break
		}
		select {
		case <-wctx.Done():
			t.Fatalf("the long operation never ran: %+v", r)
		case <-tick.C:
		}
	}
	if _, err := c.Cancel(wctx, long.ID); err != nil {
		t.Fatal(err)
	}
	if rec, err := c.Wait(wctx, long.ID); err != nil || rec.Status != operations.Canceled {
		t.Fatalf("%+v %v", rec, err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Sync() error                 { return nil }
