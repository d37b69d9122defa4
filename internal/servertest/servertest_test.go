package servertest

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// fakeT records how a test ended: Fatal and Skip end its goroutine, as
// testing's do.
type fakeT struct {
	testing.TB
	fatal, skip string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatal(args ...any) { f.fatal = fmt.Sprint(args...); runtime.Goexit() }

func (f *fakeT) Skip(args ...any) { f.skip = fmt.Sprint(args...); runtime.Goexit() }

// run calls fn with a fakeT in a goroutine of its own and returns the fakeT.
func run(fn func(t testing.TB)) *fakeT {
	f := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// captureStderr points stderr at a buffer for the test.
func captureStderr(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	old := stderr
	stderr = &buf
	t.Cleanup(func() { stderr = old })
	return &buf
}

func TestUnavailableSkipsLoudlyOnce(t *testing.T) {
	buf := captureStderr(t)
	t.Setenv("SERVERTEST_REQUIRE", "")
	for range 2 {
		f := run(func(t testing.TB) { Unavailable(t, "ONCE", "SERVERTEST_REQUIRE", "ONCE NOT AVAILABLE") })
		if f.skip != "ONCE NOT AVAILABLE" || f.fatal != "" {
			t.Errorf("skip %q, fatal %q; want a skip", f.skip, f.fatal)
		}
	}
	run(func(t testing.TB) { Unavailable(t, "OTHER", "SERVERTEST_REQUIRE", "OTHER NOT AVAILABLE") })
	if got, want := buf.String(), "!!! ONCE NOT AVAILABLE\n!!! OTHER NOT AVAILABLE\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

func TestUnavailableFailsWhenRequired(t *testing.T) {
	buf := captureStderr(t)
	t.Setenv("SERVERTEST_REQUIRE", "1")
	f := run(func(t testing.TB) { Unavailable(t, "REQUIRED", "SERVERTEST_REQUIRE", "REQUIRED NOT AVAILABLE") })
	if f.fatal != "REQUIRED NOT AVAILABLE" || f.skip != "" {
		t.Errorf("fatal %q, skip %q; want a failure", f.fatal, f.skip)
	}
	if buf.Len() != 0 {
		t.Errorf("stderr = %q, want nothing", buf)
	}
}

func TestProbe(t *testing.T) {
	captureStderr(t)
	t.Setenv(EnvRequire, "")
	calls := 0
	down := &Probe{Name: "THING", Check: func() error { calls++; return errors.New("connection refused") }}
	for range 2 {
		f := run(func(t testing.TB) { down.Require(t, "thing://127.0.0.1:1", "Start it or set THING_URL") })
		want := "THING NOT AVAILABLE at thing://127.0.0.1:1: connection refused. Start it or set THING_URL; set JOBHOST_REQUIRE_BROKERS=1 to fail instead of skipping."
		if f.skip != want {
			t.Errorf("skip = %q, want %q", f.skip, want)
		}
	}
	if calls != 1 {
		t.Errorf("Check ran %d times, want once", calls)
	}

	up := &Probe{Name: "UP", Check: func() error { return nil }}
	if f := run(func(t testing.TB) { up.Require(t, "x", "y") }); f.skip != "" || f.fatal != "" {
		t.Errorf("a server that answers: skip %q, fatal %q", f.skip, f.fatal)
	}

	t.Setenv(EnvRequire, "1")
	required := &Probe{Name: "REQ", Check: func() error { return errors.New("no") }}
	if f := run(func(t testing.TB) { required.Require(t, "x", "y") }); f.fatal == "" {
		t.Error("with JOBHOST_REQUIRE_BROKERS=1 an unreachable server does not fail the test")
	}
}

func TestUniqueName(t *testing.T) {
	t.Run("Send/Sub Test_1", func(t *testing.T) {
		a, b := UniqueName(t, "-"), UniqueName(t, ":")
		if !regexp.MustCompile(`^jobhost-test-testuniquename-send-sub-test-1-[0-9a-f]{12}$`).MatchString(a) {
			t.Errorf("UniqueName = %q", a)
		}
		if !regexp.MustCompile(`^jobhost-test:testuniquename-send-sub-test-1:[0-9a-f]{12}$`).MatchString(b) {
			t.Errorf("UniqueName with ':' = %q", b)
		}
		if UniqueName(t, "-") == a {
			t.Error("UniqueName returned the same name twice")
		}
	})
	t.Run(strings.Repeat("x", 70)+"END", func(t *testing.T) {
		name := UniqueName(t, "-")
		mid := strings.TrimSuffix(strings.TrimPrefix(name, "jobhost-test-"), name[len(name)-13:])
		if len(mid) != 60 || !strings.HasSuffix(mid, "xxend") {
			t.Errorf("UniqueName = %q: the test's name part %q should be its last 60 characters", name, mid)
		}
	})
}
