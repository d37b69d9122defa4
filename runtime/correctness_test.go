package runtime

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
)

// TestTimeoutReturningNilFails: a function that ignores its context past
// functionTimeout and then returns nil has failed: the message is retried,
// not deleted.
func TestTimeoutReturningNilFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := &functions.Registry{}
		functions.Add(reg, "F", functions.QueueTrigger("fake-q"), func(ctx context.Context, _ []byte, _ *triggers.Message) error {
			<-ctx.Done()
			return nil // as if it had not noticed
		}, functions.Timeout(time.Second), functions.MaxDequeueCount(3))
		d := newFakeDriver()
		d.send("x")
		h := runFakeHost(t, reg, d, nil)
		h.logs.await(t, "a failed invocation", 1, time.Minute, outcome(OutcomeFailed))
		h.stop()
		if n := d.count("complete"); n != 0 {
			t.Errorf("the timed-out message was completed %d times; calls %v", n, d.callLog())
		}
		if e := h.logs.matching(outcome(OutcomeFailed))[0]; !strings.Contains(e["error"].(string), "timed out after 1s") {
			t.Errorf("completion line error = %q", e["error"])
		}
	})
}

// TestRenewalStopsWhenFunctionIgnoresCancellation: a function that ignores
// its cancelled context is renewed for its timeout plus renewGrace, then no
// more.
func TestRenewalStopsWhenFunctionIgnoresCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		unblock := make(chan struct{})
		reg := &functions.Registry{}
		functions.Add(reg, "F", functions.QueueTrigger("fake-q"), func(ctx context.Context, _ []byte, _ *triggers.Message) error {
			<-unblock // ignores ctx
			return nil
		}, functions.Timeout(2*time.Second), functions.LeaseDuration(2*time.Second))
		d := newFakeDriver()
		d.send("x")
		h := runFakeHost(t, reg, d, nil)
		start := time.Now()
		h.logs.await(t, "renewal stopped", 1, time.Minute, msgContains("lease renewal stopped"))
		if took := time.Since(start); took < 2*time.Second+renewGrace || took > 2*time.Second+renewGrace+2*time.Second {
			t.Errorf("renewal stopped %v after the start; want the timeout (2s) plus the grace (%v), within a renewal period", took, renewGrace)
		}
		n := d.count("extend")
		time.Sleep(time.Minute) // fake time: a minute more of the function ignoring cancellation
		if m := d.count("extend"); m != n {
			t.Errorf("renewed %d more times after renewal stopped", m-n)
		}
		close(unblock)
		h.stop()
	})
}

// TestRenewalCoversOutputs: the lease is renewed while outputs are sent,
// after the function returned (a slow output no longer runs unrenewed).
func TestRenewalCoversOutputs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sending := make(chan struct{})
		unblock := make(chan struct{})
		restore := triggers.Replace(triggers.Scheme{Name: "slowout",
			Subscription: func(context.Context, *url.URL, triggers.OpenOptions) (triggers.Driver, error) {
				return nil, errors.New("unused")
			},
			Publisher: func(context.Context, *url.URL, triggers.OpenOptions) (triggers.Publisher, error) {
				return &blockingPublisher{sending: sending, unblock: unblock}, nil
			}})
		defer restore()
		reg := &functions.Registry{}
		functions.AddResult(reg, "F", functions.QueueTrigger("fake-q"), "slowout://results",
			func(context.Context, []byte, *triggers.Message) (string, error) { return "result", nil },
			functions.LeaseDuration(2*time.Second))
		d := newFakeDriver()
		d.send("x")
		h := runFakeHost(t, reg, d, nil)
		<-sending
		before := d.count("extend")
		time.Sleep(10 * time.Second) // fake time: the output takes 10 s
		if got := d.count("extend") - before; got < 5 {
			t.Errorf("renewed %d times during a 10 s output send with a 2 s lease; want about 10", got)
		}
		close(unblock)
		h.logs.await(t, "success", 1, time.Minute, outcome(OutcomeSucceeded))
		h.stop()
		if d.count("complete") != 1 {
			t.Errorf("calls %v", d.callLog())
		}
	})
}

type blockingPublisher struct {
	sending, unblock chan struct{}
}

func (p *blockingPublisher) Publish(ctx context.Context, _ []byte, _ map[string]string) (string, error) {
	close(p.sending)
	<-p.unblock
	return "", nil
}
func (p *blockingPublisher) Close() error { return nil }

// TestShutdownWithinDeadline: with a function that ignores cancellation, a
// Receive that ignores its context and a driver whose Close hangs, Run
// still returns within shutdownTimeout plus ShutdownMargin of the stop, and
// says what it waited for.
func TestShutdownWithinDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		unblock := make(chan struct{})
		started := make(chan struct{}, 1)
		reg := &functions.Registry{}
		functions.Add(reg, "F", functions.QueueTrigger("fake-q"), func(ctx context.Context, _ []byte, _ *triggers.Message) error {
			started <- struct{}{}
			<-unblock
			return nil
		})
		d := newFakeDriver()
		d.hangReceive, d.hangClose = true, true
		d.send("x")
		h := runFakeHost(t, reg, d, nil)
		<-started
		took := h.stop()
		if took > 5*time.Second+ShutdownMargin {
			t.Errorf("Run returned %v after the stop; want at most shutdownTimeout 5s + %v", took, ShutdownMargin)
		}
		if took < 5*time.Second {
			t.Errorf("Run returned %v after the stop, before shutdownTimeout, with a function running", took)
		}
		for _, want := range []string{"1 running function and a receive from fake-q", "exiting without"} {
			if len(h.logs.matching(msgContains(want))) == 0 {
				t.Errorf("no log line says %q; log:\n%s", want, h.logs.text())
			}
		}
		close(unblock)
		close(d.released)
	})
}

// TestShutdownGivesCancelledMessagesBack: a function cancelled by the
// shutdown has its message given back at once, through Release where the
// driver has it (no attempt counted), else Retry with no delay.
func TestShutdownGivesCancelledMessagesBack(t *testing.T) {
	for _, withRelease := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			started := make(chan struct{}, 1)
			reg := &functions.Registry{}
			functions.Add(reg, "F", functions.QueueTrigger("fake-q"), func(ctx context.Context, _ []byte, _ *triggers.Message) error {
				started <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			})
			fd := newFakeDriver()
			var d triggers.Driver = fd
			if withRelease {
				d = releaser{fd}
			}
			fd.send("x")
			h := runFakeHost(t, reg, d, nil)
			<-started
			h.stop()
			want := "retry 1 0s"
			if withRelease {
				want = "release 1"
			}
			if got := fd.callLog(); len(got) == 0 || got[len(got)-1] != want {
				t.Errorf("Release %v: calls %v, want the last to be %q", withRelease, got, want)
			}
			if len(h.logs.matching(outcome(OutcomeCancelled))) != 1 {
				t.Errorf("no cancelled completion line; log:\n%s", h.logs.text())
			}
		})
	}
}

// TestPoisonCopiedButNotDeleted: when the poison copy was made but the
// original could not be deleted, the message counts as poisoned: it is
// deleted when it comes back, never copied twice, and the log says so.
func TestPoisonCopiedButNotDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := &functions.Registry{}
		functions.Add(reg, "F", functions.QueueTrigger("fake-q"), func(context.Context, []byte, *triggers.Message) error {
			return functions.Permanent(errors.New("bad request"))
		})
		d := newFakeDriver()
		d.deadLetter = func(m *triggers.Message) (string, error) {
			return "p-" + m.ID, triggers.ErrNotRemoved
		}
		d.completeErr = func(_ *triggers.Message, n int) error {
			if n == 0 {
				return triggers.ErrLeaseLost // the second delete fails too
			}
			return nil
		}
		d.send("x")
		h := runFakeHost(t, reg, d, nil)
		h.logs.await(t, "the redelivery dropped", 1, time.Minute, msgContains("deleted a message already copied to poison"))
		h.stop()
		if n := d.count("deadletter"); n != 1 {
			t.Errorf("copied to poison %d times; calls %v", n, d.callLog())
		}
		if n := d.count("retry"); n != 0 {
			t.Errorf("retried %d times; calls %v", n, d.callLog())
		}
		if len(h.logs.matching(msgContains("stays in the queue"))) != 0 {
			t.Errorf("the log says the message stays in the queue:\n%s", h.logs.text())
		}
		if len(h.logs.matching(outcome(OutcomePoisoned))) != 2 {
			t.Errorf("want two poisoned completion lines (the copy, then the drop):\n%s", h.logs.text())
		}
	})
}
