package runtime

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The shutdown has one deadline, shutdownTimeout after the stop signal:
// polls in flight and running functions have until then. At the deadline a
// Receive still under way is cancelled and running functions' contexts are
// cancelled; they get cancelGrace to return. Closing the drivers and the
// outputs and the completion callbacks still under way then share
// closeMargin. So Run returns within shutdownTimeout + ShutdownMargin
// whatever the broker or the functions do, and the log says what it waits
// for at each step.
const (
	// cancelGrace is how long cancelled functions and receives get to
	// return after the deadline.
	cancelGrace = 3 * time.Second
	// closeMargin bounds closing drivers and outputs and draining
	// completion callbacks at the end.
	closeMargin = 2 * time.Second
	// ShutdownMargin is how long past jobhost.shutdownTimeout Run may take
	// to return after its context ends.
	ShutdownMargin = cancelGrace + closeMargin
	// callbackDrain is the most that completion callbacks under way get
	// when everything else stopped early.
	callbackDrain = 10 * time.Second
)

// shutdown stops the listeners after Run's context ended: it waits for the
// polls and the running functions until the deadline, then cancels what is
// left. It returns when the cleanup must be done by.
func (h *Host) shutdown(listeners []*listener, polling *sync.WaitGroup, cancelHard context.CancelFunc) time.Time {
	stopped := time.Now()
	deadline := stopped.Add(h.cfg.ShutdownTimeout)
	h.log.Info("host stopping: polling stops; waiting for "+h.pending(listeners),
		zap.Duration("shutdownTimeout", h.cfg.ShutdownTimeout), zap.Time("deadline", deadline))
	done := make(chan struct{})
	go func() {
		polling.Wait() // each poll closes its workers' channel when it returns
		for _, l := range listeners {
			l.invocations.Wait()
		}
		close(done)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
		h.log.Info("host stopped", zap.Duration("took", time.Since(stopped)))
		// Early: callbacks under way may use the rest of the budget.
		if by := time.Now().Add(closeMargin); by.After(deadline) {
			return by
		}
		return deadline
	case <-timer.C:
	}
	h.log.Warn("shutdown timeout passed: cancelling "+h.pending(listeners)+"; their messages are given back or reappear when their leases end",
		zap.Duration("grace", cancelGrace))
	for _, l := range listeners {
		l.pollCtx.cancel()
	}
	cancelHard()
	grace := time.NewTimer(cancelGrace)
	defer grace.Stop()
	select {
	case <-done:
		h.log.Info("host stopped", zap.Duration("took", time.Since(stopped)))
	case <-grace.C:
		h.log.Error("exiting without "+h.pending(listeners)+": they ignored cancellation (their messages reappear when their leases end)",
			zap.Duration("took", time.Since(stopped)))
	}
	return time.Now().Add(closeMargin)
}

// pending says what the listeners still wait for: running functions and
// receives under way, by function.
func (h *Host) pending(listeners []*listener) string {
	var parts []string
	running, receiving := 0, 0
	for _, l := range listeners {
		n := l.running()
		running += n
		if l.receiving.Load() {
			receiving++
			parts = append(parts, "a receive from "+l.fc.Queue)
		}
	}
	what := []string{plural(running, "running function")}
	if receiving > 0 {
		what = append(what, strings.Join(parts, ", "))
	}
	return strings.Join(what, " and ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// cleanup closes the drivers and outputs and drains the completion
// callbacks, all by the given time (zero: closeMargin from now); what does
// not finish by then is logged and left.
func (h *Host) cleanup(listeners []*listener, by time.Time) {
	if by.IsZero() {
		by = time.Now().Add(closeMargin)
	}
	var wg sync.WaitGroup
	for _, l := range listeners {
		wg.Go(func() {
			if err := l.drv.Close(); err != nil {
				h.log.Warn("closing trigger", zap.String("function", l.fc.Name()), zap.Error(err))
			}
		})
	}
	wg.Go(func() {
		if err := h.outputs.close(); err != nil {
			h.log.Warn("closing outputs", zap.Error(err))
		}
	})
	wg.Go(func() {
		drainBy := time.Now().Add(callbackDrain)
		if by.Before(drainBy) {
			drainBy = by
		}
		ctx, cancel := context.WithDeadline(context.Background(), drainBy)
		defer cancel()
		if h.records != nil {
			// Final record writes post callbacks: they go first.
			if err := h.records.close(ctx); err != nil {
				h.log.Warn("closing the operations store", zap.Error(err))
			}
		}
		h.callbacks.Close(ctx)
	})
	closed := make(chan struct{})
	go func() {
		wg.Wait()
		close(closed)
	}()
	t := time.NewTimer(time.Until(by))
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
		h.log.Warn("exiting before the triggers, outputs or callbacks finished closing")
	}
}
