package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// stopSignals stop the host: Ctrl-C, and SIGTERM from docker stop,
// Kubernetes, systemd or the App Service runner.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// signalContext returns a context that ends at the first stop signal, when
// the host starts draining (jobhost.shutdownTimeout). A second stop signal
// ends the process at once: it writes one line to stderr and calls exit
// with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), the
// status a shell or a container engine reports for a process the signal
// killed. The process exits by itself instead of leaving the signal to its
// default action because the kernel drops signals with the default action
// sent to PID 1, which the host is in a container. release stops the
// handling.
func signalContext(parent context.Context, stderr io.Writer, exit func(code int)) (ctx context.Context, release func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, stopSignals...)
	ctx, cancel := context.WithCancelCause(parent)
	done := make(chan struct{})
	go func() {
		first := true
		for {
			select {
			case s := <-ch:
				if first {
					first = false
					cancel(fmt.Errorf("received %v", s))
					continue
				}
				fmt.Fprintf(stderr, "jobhost: second stop signal (%v): exiting at once without waiting for running functions (their messages reappear when their leases end)\n", s)
				exit(signalStatus(s))
				return
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			cancel(nil)
		})
	}
}

// signalStatus is the exit status for a process ended by s: 128 + its
// number.
func signalStatus(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return ExitFailed
}
