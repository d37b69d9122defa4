// Package jstest runs the jetstream driver's tests against a real NATS
// server with JetStream: a drivertest.Harness and per-test fixtures, each
// on its own uniquely named stream, subjects and consumer, deleted when the
// test ends.
//
// The server URL is NATS_SERVER_URL, or nats://127.0.0.1:4222. When the
// server cannot be reached, tests are skipped, or fail when
// JOBHOST_REQUIRE_BROKERS=1.
package jstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/jobhost/jobhost/internal/servertest"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/drivertest"
	"github.com/jobhost/jobhost/triggers/jetstream"
)

// DefaultURL is the server used when NATS_SERVER_URL is not set.
const DefaultURL = "nats://127.0.0.1:4222"

// URL returns the server URL the tests use.
func URL() string {
	if u := os.Getenv(jetstream.ServerURLSetting); u != "" {
		return u
	}
	return DefaultURL
}

// probe checks once that the server answers, with JetStream.
var probe = &servertest.Probe{Name: "NATS", Check: func() error {
	nc, err := nats.Connect(URL(), nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
	}
	if err != nil {
		return fmt.Errorf("JetStream not available: %w", err)
	}
	return nil
}}

// Require skips the test (or fails it, when JOBHOST_REQUIRE_BROKERS=1)
// unless a NATS server with JetStream answers at URL.
func Require(t testing.TB) {
	t.Helper()
	probe.Require(t, redacted(URL()), "Start nats-server with -js, or set "+jetstream.ServerURLSetting)
}

func redacted(u string) string {
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		return "nats://REDACTED" + u[i:]
	}
	return u
}

// Fixture is a fresh stream for one test, with helpers.
type Fixture struct {
	NC *nats.Conn
	JS natsjs.JetStream
	// Stream captures Subject; the driver's default consumer and poison
	// subject follow from them.
	Stream, Subject string
	// PoisonStream is where the driver puts PoisonSubject by default.
	PoisonStream, PoisonSubject string

	mu         sync.Mutex
	poisonNext uint64
}

// NewFixture creates a work-queue stream with a unique name and subject,
// deleted (with its poison stream) when the test ends.
func NewFixture(ctx context.Context, t testing.TB) *Fixture {
	t.Helper()
	Require(t)
	nc, err := nats.Connect(URL(), nats.Name("jobhost jstest"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	id := unique()
	f := &Fixture{
		NC: nc, JS: js,
		Stream:  "JOBHOST_TEST_" + id,
		Subject: "jobhost-test." + id,
	}
	f.PoisonSubject = jetstream.DefaultPoisonSubject(f.Stream, f.Subject)
	f.PoisonStream = f.Stream + jetstream.PoisonStreamSuffix
	if err := CreateStream(ctx, js, natsjs.StreamConfig{
		Name:      f.Stream,
		Subjects:  []string{f.Subject},
		Retention: natsjs.WorkQueuePolicy,
		Storage:   natsjs.FileStorage,
	}); err != nil {
		t.Fatalf("create stream %s: %v", f.Stream, err)
	}
	t.Cleanup(func() {
		f.DeleteStreams(t, f.Stream, f.PoisonStream)
	})
	return f
}

// CreateStream creates a stream, retrying on nats-server 2.9's transient
// "error creating store for stream" (10049), which happens when another
// test has just deleted the account's last stream.
func CreateStream(ctx context.Context, js natsjs.JetStream, cfg natsjs.StreamConfig) error {
	for i := 0; ; i++ {
		_, err := js.CreateStream(ctx, cfg)
		var apiErr *natsjs.APIError
		if err == nil || i == 9 || !errors.As(err, &apiErr) || apiErr.ErrorCode != 10049 {
			return err
		}
		time.Sleep(time.Duration(i+1) * 20 * time.Millisecond)
	}
}

// DeleteStreams deletes the named streams, ignoring missing ones.
func (f *Fixture) DeleteStreams(t testing.TB, names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range names {
		if err := f.JS.DeleteStream(ctx, n); err != nil && !errors.Is(err, natsjs.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", n, err)
		}
	}
}

func unique() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Options returns driver options for the fixture's stream and subject.
func (f *Fixture) Options() jetstream.Options {
	return jetstream.Options{Stream: f.Stream, Subject: f.Subject}
}

// Open opens a driver with its own connection, closed when the test ends.
func (f *Fixture) Open(ctx context.Context, t testing.TB, o jetstream.Options) *jetstream.Driver {
	t.Helper()
	d, err := jetstream.Open(ctx, URL(), o)
	if err != nil {
		t.Fatalf("jetstream.Open: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// Send publishes a message to the fixture's subject, with props as headers.
func (f *Fixture) Send(ctx context.Context, body []byte, props map[string]string) error {
	m := &nats.Msg{Subject: f.Subject, Data: body}
	if len(props) > 0 {
		m.Header = nats.Header{}
		for k, v := range props {
			m.Header[k] = []string{v} // as given: NATS headers are case-sensitive
		}
	}
	_, err := f.JS.PublishMsg(ctx, m)
	return err
}

// PoisonMessages returns the messages in the poison stream after those
// returned by earlier calls.
func (f *Fixture) PoisonMessages(ctx context.Context) ([]*natsjs.RawStreamMsg, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.JS.Stream(ctx, f.PoisonStream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if f.poisonNext == 0 {
		f.poisonNext = 1
	}
	var out []*natsjs.RawStreamMsg
	for {
		m, err := s.GetMsg(ctx, f.poisonNext)
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
		f.poisonNext++
	}
}

// ReceivePoison is PoisonMessages as triggers.Messages (ID as the driver
// makes it: Nats-Msg-Id, else the sequence).
func (f *Fixture) ReceivePoison(ctx context.Context) ([]*triggers.Message, error) {
	raw, err := f.PoisonMessages(ctx)
	out := make([]*triggers.Message, 0, len(raw))
	for _, r := range raw {
		id := r.Header.Get(jetstream.HeaderMsgID)
		if id == "" {
			id = strconv.FormatUint(r.Sequence, 10)
		}
		props := map[string]string{}
		for k, vs := range r.Header {
			if len(vs) > 0 {
				props[k] = vs[0]
			}
		}
		out = append(out, &triggers.Message{
			ID: id, Body: r.Data, DequeueCount: 1, InsertionTime: r.Time,
			Properties: props, Source: f.PoisonStream,
		})
	}
	return out, err
}

// ConsumerInfo returns the named consumer's state on the fixture's stream.
func (f *Fixture) ConsumerInfo(ctx context.Context, consumer string) (*natsjs.ConsumerInfo, error) {
	c, err := f.JS.Consumer(ctx, f.Stream, consumer)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// Harness is the drivertest.Harness for the jetstream driver.
type Harness struct{}

// NewHarness returns a Harness after Require.
func NewHarness(t *testing.T) drivertest.Harness {
	Require(t)
	return Harness{}
}

// MakeDriver makes a fixture and a driver on it.
func (Harness) MakeDriver(ctx context.Context, t *testing.T) (drivertest.Queue, error) {
	f := NewFixture(ctx, t)
	d, err := jetstream.Open(ctx, URL(), f.Options())
	if err != nil {
		return drivertest.Queue{}, err
	}
	return drivertest.Queue{
		Driver:        d,
		Send:          f.Send,
		ReceivePoison: f.ReceivePoison,
		MissingQueue: func(ctx context.Context) (triggers.Driver, error) {
			return jetstream.Open(ctx, URL(), jetstream.Options{Stream: f.Stream + "_MISSING", Subject: f.Subject + "-missing"})
		},
		OpenPublisher: func(ctx context.Context) (triggers.Publisher, error) {
			return jetstream.OpenPublisherURL(ctx, f.URL(), f.OpenOptions())
		},
		OpenPoison: func(ctx context.Context) (triggers.PoisonAdmin, error) {
			return jetstream.OpenPoisonURL(ctx, f.URL(), f.OpenOptions())
		},
		Capabilities: drivertest.Capabilities{Leases: true, Properties: true},
	}, nil
}

// URL returns the trigger URL of the fixture's stream and subject
// (nats://<subject>?stream=<stream>).
func (f *Fixture) URL() *url.URL {
	return &url.URL{Scheme: "nats", Host: f.Subject, RawQuery: url.Values{"stream": {f.Stream}}.Encode()}
}

// OpenOptions returns options whose Lookup gives the server URL (URL) as
// jetstream.ServerURLSetting.
func (f *Fixture) OpenOptions() triggers.OpenOptions {
	return triggers.OpenOptions{Lookup: func(name string) (string, bool) {
		if name == jetstream.ServerURLSetting {
			return URL(), true
		}
		return "", false
	}}
}
