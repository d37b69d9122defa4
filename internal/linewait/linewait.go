// Package linewait collects a process's output for tests that wait for
// lines in it: an io.Writer that counts the lines holding a string and
// wakes the waiters on every write.
package linewait

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// Lines is an io.Writer keeping what is written. It is safe for
// concurrent use.
type Lines struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

// New returns an empty Lines.
func New() *Lines { return &Lines{changed: make(chan struct{})} }

// Write keeps p and wakes the waiters.
func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// String returns everything written.
func (l *Lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Count is how many lines hold s.
func (l *Lines) Count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return count(l.buf.String(), s)
}

func count(text, s string) int {
	n := 0
	for line := range strings.SplitSeq(text, "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// Await waits until n lines hold s, failing the test after within with
// the output so far.
func (l *Lines) Await(t testing.TB, s string, n int, within time.Duration) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		got, changed := count(l.buf.String(), s), l.changed
		l.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%d of %d lines with %q within %s; output:\n%s", got, n, s, within, l)
		}
	}
}
