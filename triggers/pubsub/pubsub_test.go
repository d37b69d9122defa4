package pubsub_test

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gcpubsub "gocloud.dev/pubsub"
	"gocloud.dev/pubsub/mempubsub"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

func TestAttempts(t *testing.T) {
	for _, tc := range []struct {
		md     map[string]string
		native int64
		want   int64
	}{
		{nil, 0, 1}, {nil, 3, 3}, {map[string]string{pubsub.AttemptKey: "4"}, 0, 4},
		{map[string]string{pubsub.AttemptKey: "4"}, 2, 5}, {map[string]string{pubsub.AttemptKey: "junk"}, 1, 1},
	} {
		if got := pubsub.Attempts(tc.md, tc.native); got != tc.want {
			t.Errorf("Attempts(%v, %d) = %d, want %d", tc.md, tc.native, got, tc.want)
		}
	}
}

// echo is a Kind whose Endpoints reports what the core gave it.
func echo() *pubsub.Kind {
	return &pubsub.Kind{Scheme: "echo", Endpoints: func(u *url.URL, q url.Values, poison string) (pubsub.Endpoints, error) {
		if q.Has("fail") {
			return pubsub.Endpoints{}, errors.New("asked to fail")
		}
		q.Del("drop")
		return pubsub.Endpoints{Name: u.Host, PoisonName: poison}, nil
	}}
}

func TestParseURLCore(t *testing.T) {
	k := echo()
	for _, tc := range []struct{ in, override, sub, poison string }{
		{"echo://a?x=1", "", "echo://a?x=1", ""},
		{"echo://a?poison=p&drop=1&x=1", "", "echo://a?x=1", "p"},
		{"echo://a?poison=p", "o", "echo://a", "o"},
	} {
		u, _ := url.Parse(tc.in)
		e, err := k.ParseURL(u, tc.override)
		if err != nil || e.Subscription != tc.sub || e.PoisonName != tc.poison || e.Name != "a" {
			t.Errorf("ParseURL(%s, %q) = %+v, %v; want subscription %s, poison %q", tc.in, tc.override, e, err, tc.sub, tc.poison)
		}
	}
	for _, bad := range []string{"other://a", "echo://user:s3cret@a?fail=1&key=s3cret"} {
		u, _ := url.Parse(bad)
		if _, err := k.ParseURL(u, ""); err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseURL(%s) error = %v, want one without credentials", bad, err)
		}
	}
}

// newMem returns a driver over a fresh gocloud in-memory topic, and a
// function sending to it.
func newMem(t *testing.T) (*pubsub.Driver, func(body string)) {
	t.Helper()
	topic := mempubsub.NewTopic()
	sub := mempubsub.NewSubscription(topic, time.Minute)
	d := pubsub.New(pubsub.Options{
		Subscription: sub, Topic: topic, Name: "t", AckDeadline: time.Minute,
		Owned: []interface{ Shutdown(context.Context) error }{sub, topic},
	})
	t.Cleanup(func() { d.Close() })
	return d, func(body string) {
		t.Helper()
		if err := topic.Send(context.Background(), &gcpubsub.Message{Body: []byte(body)}); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
}

func receive(t *testing.T, d *pubsub.Driver) *triggers.Message {
	t.Helper()
	for range 20 {
		ms, err := d.Receive(context.Background(), 1, time.Minute)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(ms) == 1 {
			return ms[0]
		}
	}
	t.Fatal("no message arrived")
	return nil
}

// TestCloseEndsReceive closes the driver while a Receive may be waiting:
// the Receive fails with ErrClosed whether it began before Close or after.
func TestCloseEndsReceive(t *testing.T) {
	d, _ := newMem(t)
	done := make(chan error, 1)
	go func() {
		_, err := d.Receive(context.Background(), 1, time.Minute)
		done <- err
	}()
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Receive during Close: %v, want ErrClosed", err)
	}
	if _, err := d.Publish(context.Background(), []byte("x"), nil); !errors.Is(err, triggers.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}

// TestCloseDuringSettles settles messages concurrently with Close (for the
// race detector): each settle succeeds or fails with ErrClosed, and a
// delayed retry, held (20 s, within half the ack deadline) or published at
// once with not-before (1 h), does not hold Close up.
func TestCloseDuringSettles(t *testing.T) {
	d, send := newMem(t)
	const n = 8
	var ms []*triggers.Message
	for range n {
		send("m")
		ms = append(ms, receive(t, d))
	}
	for i, delay := range []time.Duration{20 * time.Second, time.Hour} {
		if err := d.Retry(context.Background(), ms[i], delay); err != nil {
			t.Fatalf("Retry(%v): %v", delay, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, m := range ms[2:] {
		wg.Go(func() { errs <- d.Retry(context.Background(), m, 0) })
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, triggers.ErrClosed) {
			t.Errorf("Retry during Close: %v, want nil or ErrClosed", err)
		}
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRetryUnknownDeadline retries with a delay on a driver that does not
// know its ack deadline: the copy is published at once with its attempt and
// not-before, and Receive returns it only once it is due.
func TestRetryUnknownDeadline(t *testing.T) {
	const delay = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := mempubsub.NewTopic()
	sub := mempubsub.NewSubscription(topic, time.Minute)
	side := mempubsub.NewSubscription(topic, time.Minute) // sees every copy
	defer side.Shutdown(ctx)
	d := pubsub.New(pubsub.Options{
		Subscription: sub, Topic: topic, Name: "t",
		Owned: []interface{ Shutdown(context.Context) error }{sub, topic},
	})
	defer d.Close()
	if err := topic.Send(ctx, &gcpubsub.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	m := receive(t, d)
	start := time.Now()
	if err := d.Retry(ctx, m, delay); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	var copied map[string]string
	for copied == nil {
		gm, err := side.Receive(ctx)
		if err != nil {
			t.Fatalf("no copy published: %v", err)
		}
		gm.Ack()
		if gm.Metadata[pubsub.AttemptKey] != "" {
			copied = gm.Metadata
		}
	}
	nb, err := strconv.ParseInt(copied[pubsub.NotBeforeKey], 10, 64)
	if err != nil || copied[pubsub.AttemptKey] != "2" || time.UnixMilli(nb).Before(start.Add(delay-time.Millisecond)) {
		t.Errorf("copy metadata %v, want attempt 2 and not-before %v", copied, start.Add(delay))
	}
	again := receive(t, d)
	if el := time.Since(start); el < delay-50*time.Millisecond || again.DequeueCount != 2 || again.ID != m.ID {
		t.Errorf("redelivered %s after %v with DequeueCount %d, want %s after %v with 2", again.ID, el, again.DequeueCount, m.ID, delay)
	}
}

// The driver does not claim to delay a publish (see the package doc): a
// not-before copy sent to a topic is sound only as the trigger's own
// retry.
func TestNotDelayPublisher(t *testing.T) {
	d, _ := newMem(t)
	if _, ok := triggers.Driver(d).(triggers.DelayPublisher); ok {
		t.Error("*pubsub.Driver is a triggers.DelayPublisher")
	}
}
