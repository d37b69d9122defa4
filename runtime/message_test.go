package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	goruntime "runtime"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

// renewSignal wraps a driver and signals every lease renewal.
type renewSignal struct {
	triggers.Driver
	renewed chan struct{}
}

func (d *renewSignal) ExtendLease(ctx context.Context, m *triggers.Message, lease time.Duration) error {
	err := d.Driver.ExtendLease(ctx, m, lease)
	select {
	case d.renewed <- struct{}{}:
	default:
	}
	return err
}

// runMemHost runs reg on memqueue with the given middleware until the
// returned stop is called; open wraps each function's driver.
func runMemHost(t *testing.T, reg *functions.Registry, wrap func(triggers.Driver) triggers.Driver, mws ...Middleware) (stop func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Queues.MessageEncoding = bindings.None
	cfg.PubSub.MessageEncoding = bindings.None
	cfg.ShutdownTimeout = 5 * time.Second
	logs, err := NewLogs(LogOptions{Output: zapcore.AddSync(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	settings := NewAppSettings(nil)
	h, err := New(Options{Registry: reg, Config: cfg, Settings: settings, Logs: logs, Middleware: mws,
		Open: func(ctx context.Context, fc *FunctionConfig) (triggers.Driver, error) {
			d, err := openURL(ctx, fc, settings)
			if err != nil || wrap == nil {
				return d, err
			}
			return wrap(d), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func memDriver(t *testing.T, rawURL string) triggers.Driver {
	t.Helper()
	u, _ := url.Parse(rawURL)
	d, err := memqueue.OpenURL(context.Background(), u, triggers.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestFunctionMessageIsItsOwn: a function reads every field of its message
// while the host renews the lease (run with -race: the renewal writes the
// driver's message, never the function's), then scribbles over its body
// and payload and fails; the poison copy has the body as it was sent. It
// runs with the body copied for the function and, as memqueue is
// triggers.PrivateBodies, with the delivery's own body handed over.
func TestFunctionMessageIsItsOwn(t *testing.T) {
	for _, private := range []bool{false, true} {
		t.Run(fmt.Sprintf("private=%v", private), func(t *testing.T) { testFunctionMessageIsItsOwn(t, private) })
	}
}

// privateRenewSignal is a renewSignal that keeps the driver's
// triggers.PrivateBodies.
type privateRenewSignal struct{ *renewSignal }

func (d privateRenewSignal) BodiesPrivate() bool {
	return d.Driver.(triggers.PrivateBodies).BodiesPrivate()
}

func testFunctionMessageIsItsOwn(t *testing.T, private bool) {
	q := fmt.Sprintf("memqueue://own-message-%v", private)
	sent := []byte(`{"n":1}`)
	renewed := make(chan struct{}, 1)
	reads := 0
	reg := &functions.Registry{}
	functions.Add(reg, "F", functions.SubscriptionTrigger(q), func(ctx context.Context, payload []byte, m *triggers.Message) error {
		for renewals := 0; renewals < 2; {
			// Every field, as a function that logs its message would.
			_ = m.ID + m.PopReceipt + m.Source + m.Text()
			_ = m.NextVisibleTime.String() + m.InsertionTime.String() + m.ExpirationTime.String()
			_, _ = m.DequeueCount, m.DriverData
			for k, v := range m.Properties {
				_ = k + v
			}
			reads++
			select {
			case <-renewed:
				renewals++
			case <-ctx.Done():
				return ctx.Err()
			default:
				goruntime.Gosched()
			}
		}
		payload[0], m.Body[1] = 'X', 'Y'
		return errors.New("fails on purpose")
	}, functions.LeaseDuration(time.Second), functions.MaxDequeueCount(1))

	src := memDriver(t, q)
	poison := memDriver(t, q+"-poison")
	stop := runMemHost(t, reg, func(d triggers.Driver) triggers.Driver {
		rs := &renewSignal{Driver: d, renewed: renewed}
		if private {
			return privateRenewSignal{rs}
		}
		return rs
	})
	defer stop()
	if _, err := src.(triggers.Publisher).Publish(context.Background(), bytes.Clone(sent), map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	var got []*triggers.Message
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(got) == 0 && ctx.Err() == nil {
		var err error
		if got, err = poison.Receive(ctx, 1, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 {
		t.Fatal("the message was not poisoned")
	}
	if !bytes.Equal(got[0].Body, sent) {
		t.Errorf("poison copy = %q, want %q as sent: the function's writes reached it", got[0].Body, sent)
	}
	if reads == 0 {
		t.Error("the function never read its message")
	}
}

// TestMiddlewareWrapsInvocations: middleware runs around every invocation,
// the first outermost, sees the invocation, and what it returns settles the
// message.
func TestMiddlewareWrapsInvocations(t *testing.T) {
	const q = "memqueue://middleware-test"
	calls := make(chan string, 8)
	reg := &functions.Registry{}
	functions.Add(reg, "F", functions.SubscriptionTrigger(q), func(ctx context.Context, payload []byte, m *triggers.Message) error {
		calls <- "function " + string(payload)
		return nil
	}, functions.MaxDequeueCount(1))
	trace := func(name string) Middleware {
		return func(next Handler) Handler {
			return func(ctx context.Context, inv *Invocation) error {
				calls <- name + " before " + inv.Function.Name() + " " + string(inv.Message.Body)
				err := next(ctx, inv)
				calls <- name + " after"
				return err
			}
		}
	}
	refuse := func(next Handler) Handler {
		return func(ctx context.Context, inv *Invocation) error {
			if string(inv.Payload) == "refused" {
				return functions.Permanent(errors.New("refused by middleware"))
			}
			return next(ctx, inv)
		}
	}
	src := memDriver(t, q)
	poison := memDriver(t, q+"-poison")
	stop := runMemHost(t, reg, nil, trace("outer"), trace("inner"), refuse)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := src.(triggers.Publisher).Publish(ctx, []byte("hello"), nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"outer before F hello", "inner before F hello", "function hello", "inner after", "outer after"}
	for _, w := range want {
		select {
		case got := <-calls:
			if got != w {
				t.Fatalf("call %q, want %q", got, w)
			}
		case <-ctx.Done():
			t.Fatalf("waiting for %q", w)
		}
	}
	if _, err := src.(triggers.Publisher).Publish(ctx, []byte("refused"), nil); err != nil {
		t.Fatal(err)
	}
	var got []*triggers.Message
	for len(got) == 0 && ctx.Err() == nil {
		var err error
		if got, err = poison.Receive(ctx, 1, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || string(got[0].Body) != "refused" {
		t.Fatalf("poison got %v, want the refused message", got)
	}
	for len(calls) > 0 {
		if c := <-calls; c == "function refused" {
			t.Error("the function ran although the middleware refused the message")
		}
	}
}
