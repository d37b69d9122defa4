package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobhost/jobhost/triggers"
)

const (
	// Scheme is the URL scheme of OpenURL: redis://<stream>.
	Scheme = "redis"
	// EnvServerURL is the app setting (environment variable) holding the
	// server URL when OpenOptions.Connection is empty.
	EnvServerURL = "REDIS_SERVER_URL"
	// DefaultServerURL is used when EnvServerURL is not set.
	DefaultServerURL = "redis://127.0.0.1:6379"
	// DefaultGroup is the consumer group when none is given.
	DefaultGroup = "jobhost"
	// DefaultBodyField is the entry field holding the message body.
	DefaultBodyField = "body"
	// DefaultReceiveWait is how long Receive waits for a first message.
	DefaultReceiveWait = time.Second
	// MaxLease is the longest lease Receive and ExtendLease take (the
	// runtime's leaseDuration is at most 7 days too). It is the lease
	// horizon: see the package documentation.
	MaxLease = 7 * 24 * time.Hour

	// PoisonSuffix names the default poison stream, "<stream>-poison".
	PoisonSuffix = "-poison"
	// DelayedSuffix names the sorted set of delayed messages,
	// "<stream>:delayed".
	DelayedSuffix = ":delayed"

	// FieldAttempt holds the attempts a message had before its current
	// entry (set on entries Retry and Release add); FieldID holds the
	// message id (the id of its first entry) on such entries.
	FieldAttempt = "jobhost-attempt"
	FieldID      = "jobhost-id"
	// FieldReason, FieldSource, FieldSourceID and FieldDequeueCount are
	// added to poison entries: why, the source stream, the message id and
	// how many times it had been delivered.
	FieldReason       = "jobhost-reason"
	FieldSource       = "jobhost-source"
	FieldSourceID     = "jobhost-source-id"
	FieldDequeueCount = "jobhost-dequeue-count"

	// promoteLimit bounds how many due delayed messages one Receive moves
	// into the stream.
	promoteLimit = 100
	// sweepIdle is how long a consumer must have been idle, with nothing
	// pending, for a driver to delete it (drivers that ended without
	// Close leave theirs).
	sweepIdle = 24 * time.Hour
	// opTimeout bounds the one call of Receive that ctx does not cut
	// short, and Close's cleanup.
	opTimeout = 10 * time.Second
	// closeTimeout bounds Close's deletion of its consumer.
	closeTimeout = 2 * time.Second
)

// Options configures a Driver.
type Options struct {
	// Group is the consumer group; empty means DefaultGroup. Every worker
	// of one function uses the same group.
	Group string
	// BodyField is the entry field holding the body; empty means
	// DefaultBodyField.
	BodyField string
	// PoisonStream is where DeadLetter adds messages; empty means
	// "<stream>-poison".
	PoisonStream string
	// Prefetch bounds each Receive (at most min(max, Prefetch) messages);
	// zero means no bound beyond max. Nothing is ever read ahead.
	Prefetch int
	// CreateIfMissing creates a missing stream and group (XGROUP CREATE
	// <stream> <group> 0 MKSTREAM) on the first Receive. Without it,
	// Receive on a missing stream or group returns an error wrapping
	// triggers.ErrNotFound.
	CreateIfMissing bool
	// ReceiveWait is how long Receive waits for a first message; zero
	// means DefaultReceiveWait.
	ReceiveWait time.Duration
}

// Driver is a triggers.Driver for one Redis stream read through a consumer
// group, under a consumer name of its own. It is safe for concurrent use.
type Driver struct {
	l        *link
	server   string // redacted server URL
	stream   string
	delayed  string
	poison   string
	group    string
	consumer string
	opts     Options
	pub      *target // Publish's

	mu     sync.Mutex // guards the fields below
	cursor string     // XAUTOCLAIM's
	ready  bool       // the group is known to exist (or was created)
	swept  bool
	used   bool // the consumer may exist on the server

	closed    atomic.Bool
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

var (
	_ triggers.Driver         = (*Driver)(nil)
	_ triggers.Waiter         = (*Driver)(nil)
	_ triggers.Releaser       = (*Driver)(nil)
	_ triggers.Publisher      = (*Driver)(nil)
	_ triggers.DelayPublisher = (*Driver)(nil)
)

// errClosed is what every method returns, wrapped, after Close.
var errClosed = fmt.Errorf("driver %w", triggers.ErrClosed)

// Open returns a driver for stream on the server at serverURL
// (redis://[user:password@]host:port[/db], rediss://... for TLS,
// unix:///path). It does not connect (ctx is unused): the first call does,
// and reports a wrong address or password; the runtime keeps polling.
// Drivers, publishers and poison administrations of one server URL share a
// client.
func Open(ctx context.Context, serverURL, stream string, opts Options) (*Driver, error) {
	opts, err := opts.normalize(stream)
	if err != nil {
		return nil, err
	}
	delayed := stream + DelayedSuffix
	l, err := dial(serverURL)
	if err != nil {
		return nil, err
	}
	d := &Driver{
		l:        l,
		server:   l.s.display,
		stream:   stream,
		delayed:  delayed,
		poison:   opts.PoisonStream,
		group:    opts.Group,
		consumer: consumerName(),
		opts:     opts,
		cursor:   "0-0",
		done:     make(chan struct{}),
	}
	d.pub = &target{l: l, server: d.server, stream: stream, delayed: delayed, group: opts.Group, field: opts.BodyField, create: opts.CreateIfMissing, closed: &d.closed}
	return d, nil
}

// normalize fills in o's defaults for stream and checks the names.
func (o Options) normalize(stream string) (Options, error) {
	if err := checkKey("stream", stream); err != nil {
		return o, err
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.BodyField == "" {
		o.BodyField = DefaultBodyField
	}
	if o.PoisonStream == "" {
		o.PoisonStream = stream + PoisonSuffix
	}
	if o.Prefetch < 0 || o.ReceiveWait < 0 {
		return o, errors.New("redis: negative Prefetch or ReceiveWait")
	}
	if o.ReceiveWait == 0 {
		o.ReceiveWait = DefaultReceiveWait
	}
	if err := checkKey("poison stream", o.PoisonStream); err != nil {
		return o, err
	}
	if err := checkField(o.BodyField); err != nil {
		return o, err
	}
	if o.PoisonStream == stream || o.PoisonStream == stream+DelayedSuffix {
		return o, fmt.Errorf("redis: poison stream %q for stream %q must be another key", o.PoisonStream, stream)
	}
	return o, nil
}

// checkKey refuses names Redis would take but that cannot be meant.
func checkKey(what, name string) error {
	if name == "" {
		return fmt.Errorf("redis: empty %s name", what)
	}
	if strings.ContainsAny(name, "\r\n") {
		return fmt.Errorf("redis: %s name %q contains a line break", what, name)
	}
	return nil
}

func checkField(f string) error {
	if f == "" || strings.HasPrefix(f, "jobhost-") {
		return fmt.Errorf("redis: body field %q: it must be non-empty and not start with jobhost-", f)
	}
	return nil
}

// consumerName is unique per driver: the host name, the process id and
// random digits, so that drivers in two processes (or two in one) compete
// for the group's entries, each holding its own.
func consumerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "jobhost"
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Stream, Group and Consumer name the driver's stream, consumer group and
// consumer.
func (d *Driver) Stream() string   { return d.stream }
func (d *Driver) Group() string    { return d.group }
func (d *Driver) Consumer() string { return d.consumer }

// PoisonDestination names the poison stream.
func (d *Driver) PoisonDestination() string { return d.poison }

// ReceiveWaits reports that Receive waits for messages (triggers.Waiter).
func (d *Driver) ReceiveWaits() bool { return true }

// Close releases the driver's share of the client (the last user closes
// it) after deleting the driver's consumer from the group if it holds no
// pending entry. It does not settle messages: those it holds are
// delivered again when their leases run out. It is idempotent; after it
// every method returns an error wrapping triggers.ErrClosed.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		close(d.done)
		d.mu.Lock()
		used := d.used
		d.mu.Unlock()
		if used {
			ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			_ = sweepScript.Run(ctx, d.l.c, []string{d.stream}, d.group, d.consumer, 0).Err()
			cancel()
		}
		d.l.release()
	})
	return nil
}

// fail wraps err, scrubbed, as the failure of op; after Close it wraps
// triggers.ErrClosed.
func (d *Driver) fail(op string, err error) error {
	if d.closed.Load() || errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redis: %s stream %q: %w", op, d.stream, errClosed)
	}
	return d.l.scrub(fmt.Errorf("redis: %s stream %q on %s: %w", op, d.stream, d.server, err))
}

// leaseMillis is lease in whole milliseconds, rounded up.
func leaseMillis(lease time.Duration) (int64, error) {
	if lease > MaxLease {
		return 0, fmt.Errorf("redis: lease %v is longer than %v", lease, MaxLease)
	}
	return int64(max(0, (lease+time.Millisecond-1)/time.Millisecond)), nil
}

// idleFor is the idle time that gives an entry lease ms left before
// XAUTOCLAIM (min-idle = MaxLease) may take it over.
func idleFor(leaseMS int64) int64 { return MaxLease.Milliseconds() - leaseMS }
