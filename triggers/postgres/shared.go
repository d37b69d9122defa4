package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// shared is the connection pool of one DSN, shared by every driver,
// publisher and poison administration of the process that uses the DSN,
// with the one LISTEN connection the drivers' Receives wait on. The pool
// connects on first use; the last release closes it.
type shared struct {
	key      string // the DSN: secret
	display  string // the server, without the password
	password string
	refs     int // guarded by pools.mu

	pool *pgxpool.Pool
	lst  *listener

	mu    sync.Mutex
	ready map[string]bool // schemas checked (or migrated) on this pool
}

// pools holds the shared pools by DSN.
var pools = struct {
	mu sync.Mutex
	m  map[string]*shared
}{m: map[string]*shared{}}

// defaultConnectTimeout bounds dialling when the DSN sets no
// connect_timeout.
const defaultConnectTimeout = 10 * time.Second

// errBadDSN is the error for a DSN pgx cannot parse: its parse errors
// quote the DSN, password redaction being best effort, so nothing of it is
// repeated.
var errBadDSN = errors.New("postgres: the PostgreSQL connection string cannot be parsed (it is not repeated here: it may hold a password)")

// acquire returns the shared pool of dsn, counting one more user. It does
// not connect.
func acquire(dsn string) (*shared, error) {
	pools.mu.Lock()
	defer pools.mu.Unlock()
	if sc := pools.m[dsn]; sc != nil {
		sc.refs++
		return sc, nil
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errBadDSN
	}
	c := cfg.ConnConfig
	if c.RuntimeParams == nil {
		c.RuntimeParams = map[string]string{}
	}
	if _, ok := c.RuntimeParams["application_name"]; !ok {
		c.RuntimeParams["application_name"] = "jobhost"
	}
	if c.ConnectTimeout == 0 { // connect_timeout not in the DSN
		c.ConnectTimeout = defaultConnectTimeout
	}
	sc := &shared{
		key:      dsn,
		display:  fmt.Sprintf("PostgreSQL at %s:%d (database %q, user %q)", c.Host, c.Port, c.Database, c.User),
		password: c.Password,
		refs:     1,
		ready:    map[string]bool{},
	}
	lcfg := c.Copy() // the listener's own connection, outside the pool
	lcfg.RuntimeParams["application_name"] = c.RuntimeParams["application_name"] + " listener"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", sc.scrub(err))
	}
	sc.pool = pool
	sc.lst = newListener(lcfg)
	pools.m[dsn] = sc
	return sc, nil
}

// release counts one user fewer; the last closes the pool and the
// listener.
func (sc *shared) release() {
	pools.mu.Lock()
	sc.refs--
	last := sc.refs == 0
	if last {
		delete(pools.m, sc.key)
	}
	pools.mu.Unlock()
	if last {
		sc.lst.close()
		sc.pool.Close()
	}
}

// scrub masks the password in err's text, should a driver message quote
// it.
func (sc *shared) scrub(err error) error {
	if err == nil || sc.password == "" || !strings.Contains(err.Error(), sc.password) {
		return err
	}
	return &scrubbed{err: err, password: sc.password}
}

// scrubbed is an error whose text has the password masked.
type scrubbed struct {
	err      error
	password string
}

func (e *scrubbed) Error() string { return strings.ReplaceAll(e.err.Error(), e.password, "xxxxx") }
func (e *scrubbed) Unwrap() error { return e.err }

// isReady reports whether schema was found migrated on this pool.
func (sc *shared) isReady(schema string) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.ready[schema]
}

func (sc *shared) setReady(schema string, ok bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if ok {
		sc.ready[schema] = true
	} else {
		delete(sc.ready, schema)
	}
}

// listener holds one connection that LISTENs on the channels of the
// queues whose drivers are open, and wakes the Receives waiting on a
// channel when a notification arrives. It connects when the first channel
// is subscribed and again, with a backoff, after the connection fails;
// while it is not listening on a channel, Receives on it poll instead.
type listener struct {
	cfg *pgx.ConnConfig

	mu      sync.Mutex
	chans   map[string]*channel
	changed context.CancelFunc // interrupts the wait for a notification
	started bool
	stop    context.CancelFunc
	stopCtx context.Context
	done    chan struct{}
}

// channel is one notification channel's state.
type channel struct {
	refs   int
	active bool          // LISTEN is in effect on the current connection
	wake   chan struct{} // closed (and replaced) on a notification or a change of active
}

func newListener(cfg *pgx.ConnConfig) *listener {
	ctx, cancel := context.WithCancel(context.Background())
	return &listener{cfg: cfg, chans: map[string]*channel{}, stop: cancel, stopCtx: ctx, done: make(chan struct{})}
}

// subscribe adds one user of channel name; the listener LISTENs on it.
func (l *listener) subscribe(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.chans[name]
	if c == nil {
		c = &channel{wake: make(chan struct{})}
		l.chans[name] = c
	}
	c.refs++
	if !l.started {
		l.started = true
		go l.run()
	}
	l.poke()
}

// unsubscribe removes one user of name; the last UNLISTENs.
func (l *listener) unsubscribe(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.chans[name]
	if c == nil {
		return
	}
	if c.refs--; c.refs == 0 {
		delete(l.chans, name)
		close(c.wake)
		l.poke()
	}
}

// poke interrupts the wait so the loop applies the subscriptions. l.mu is
// held.
func (l *listener) poke() {
	if l.changed != nil {
		l.changed()
	}
}

// watch returns the channel closed by the next notification on name (or
// a change of whether the listener is listening on it), and whether it is
// listening now: when it is, a notification sent after this call closes
// the returned channel.
func (l *listener) watch(name string) (<-chan struct{}, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.chans[name]
	if c == nil {
		return nil, false
	}
	return c.wake, c.active
}

// wakeLocked closes c's wake channel and makes a new one.
func (c *channel) wakeLocked() {
	close(c.wake)
	c.wake = make(chan struct{})
}

func (l *listener) notify(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.chans[name]; c != nil {
		c.wakeLocked()
	}
}

// close stops the loop and closes its connection.
func (l *listener) close() {
	l.stop()
	l.mu.Lock()
	started := l.started
	l.mu.Unlock()
	if started {
		<-l.done
	}
}

const (
	listenBackoffMin = 250 * time.Millisecond
	listenBackoffMax = 15 * time.Second
)

// run connects, LISTENs and dispatches notifications until close.
func (l *listener) run() {
	defer close(l.done)
	backoff := listenBackoffMin
	for l.stopCtx.Err() == nil {
		err := l.serve()
		l.deactivate()
		if l.stopCtx.Err() != nil {
			return
		}
		if err == nil {
			backoff = listenBackoffMin
			continue
		}
		t := time.NewTimer(backoff)
		select {
		case <-l.stopCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, listenBackoffMax)
	}
}

// deactivate marks every channel not listened on and wakes its waiters,
// which poll until the listener is back.
func (l *listener) deactivate() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.chans {
		if c.active {
			c.active = false
			c.wakeLocked()
		}
	}
}

// serve runs one connection: it returns when the connection fails (or
// close).
func (l *listener) serve() error {
	ctx, cancel := context.WithTimeout(l.stopCtx, 10*time.Second)
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	listening := map[string]bool{}
	for {
		// Apply the subscriptions.
		l.mu.Lock()
		var add, drop []string
		for name := range l.chans {
			if !listening[name] {
				add = append(add, name)
			}
		}
		for name := range listening {
			if l.chans[name] == nil {
				drop = append(drop, name)
			}
		}
		wctx, wcancel := context.WithCancel(l.stopCtx)
		l.changed = wcancel
		l.mu.Unlock()
		for _, name := range drop {
			if _, err := conn.Exec(l.stopCtx, "UNLISTEN "+pgx.Identifier{name}.Sanitize()); err != nil {
				wcancel()
				return err
			}
			delete(listening, name)
		}
		for _, name := range add {
			if _, err := conn.Exec(l.stopCtx, "LISTEN "+pgx.Identifier{name}.Sanitize()); err != nil {
				wcancel()
				return err
			}
			listening[name] = true
		}
		// A channel is active once LISTEN is in effect for it (a channel
		// subscribed again before its UNLISTEN never stopped listening).
		l.mu.Lock()
		for name, c := range l.chans {
			if listening[name] && !c.active {
				c.active = true
				c.wakeLocked()
			}
		}
		l.mu.Unlock()
		// Wait for notifications until the subscriptions change.
		for {
			n, err := conn.WaitForNotification(wctx)
			if err != nil {
				wcancel()
				if wctx.Err() != nil && l.stopCtx.Err() == nil && !conn.IsClosed() {
					break // subscriptions changed
				}
				return err
			}
			l.notify(n.Channel)
		}
	}
}
