package redis

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// Connection sharing. Drivers, publishers and poison administrations
// opened on the same server URL (the setting's value, credentials
// included) share one *goredis.Client, a pool of connections. It is
// counted: each open takes a reference, each Close gives its reference
// back, and the last one closes the client. The client dials lazily, on
// the first command.

// minPoolSize is the least pool size of a shared client: a waiting Receive
// holds a connection for up to its wait, and each function settles up to
// its batch size at once.
const minPoolSize = 64

// shared is one client and its users' count.
type shared struct {
	key     string // the server URL as configured (it holds credentials)
	c       *goredis.Client
	display string   // the server URL without the password, for errors
	secrets []string // credentials to scrub from error text
	refs    int      // guarded by sharedMu
}

var (
	sharedMu sync.Mutex
	clients  = map[string]*shared{} // by server URL
)

// acquire returns a reference to the client for serverURL, making it on
// first use. Each successful call is matched by one release.
func acquire(serverURL string) (*shared, error) {
	opts, display, secrets, err := clientOptions(serverURL)
	if err != nil {
		return nil, err
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s := clients[serverURL]; s != nil {
		s.refs++
		return s, nil
	}
	s := &shared{key: serverURL, c: goredis.NewClient(opts), display: display, secrets: secrets, refs: 1}
	clients[serverURL] = s
	return s, nil
}

// release gives back one reference; the last closes the client.
func (s *shared) release() {
	sharedMu.Lock()
	s.refs--
	last := s.refs == 0
	if last && clients[s.key] == s {
		delete(clients, s.key)
	}
	sharedMu.Unlock()
	if last {
		_ = s.c.Close()
	}
}

// link is what a Driver, Publisher or poison administration holds of its
// client.
type link struct {
	s    *shared
	c    *goredis.Client
	once sync.Once
}

func dial(serverURL string) (*link, error) {
	s, err := acquire(serverURL)
	if err != nil {
		return nil, err
	}
	return &link{s: s, c: s.c}, nil
}

// release gives the client back, once.
func (l *link) release() { l.once.Do(l.s.release) }

// scrub removes credentials from err's text.
func (l *link) scrub(err error) error { return scrub(l.s.secrets, err) }

// clientOptions checks a server URL (redis://[user:password@]host:port/db,
// rediss:// for TLS, unix:///path) and returns the client options, the URL
// without its password, and the credentials to scrub from errors. Its
// errors never quote the URL.
func clientOptions(serverURL string) (*goredis.Options, string, []string, error) {
	s := strings.TrimSpace(serverURL)
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL, password and all
		}
		return nil, "", nil, fmt.Errorf("redis: invalid server URL (not shown: it may hold a password): %v", err)
	}
	var secrets []string
	if pw, ok := u.User.Password(); ok && len(pw) >= 3 {
		secrets = append(secrets, pw)
	}
	display := u.Redacted()
	switch u.Scheme {
	case "redis", "rediss", "unix":
	default:
		return nil, "", nil, fmt.Errorf("redis: invalid server URL %s: the scheme must be redis, rediss or unix", scrubString(secrets, display))
	}
	if u.Scheme != "unix" && u.Host == "" {
		return nil, "", nil, fmt.Errorf("redis: invalid server URL %s: no host (want redis://host:6379)", scrubString(secrets, display))
	}
	opts, err := goredis.ParseURL(s)
	if err != nil {
		return nil, "", nil, fmt.Errorf("redis: invalid server URL %s: %s", scrubString(secrets, display), scrubString(secrets, err.Error()))
	}
	q := u.Query()
	// Every method honours its context's deadline.
	opts.ContextTimeoutEnabled = true
	if !q.Has("max_retries") {
		// No silent resends: a script whose reply was lost may have run,
		// and running it again would deliver or copy a message twice. The
		// runtime retries what failed, knowing it failed.
		opts.MaxRetries = -1
	}
	if !q.Has("pool_size") && opts.PoolSize < minPoolSize {
		opts.PoolSize = minPoolSize
	}
	if !q.Has("client_name") {
		opts.ClientName = "jobhost"
	}
	return opts, display, secrets, nil
}

// scrub removes secrets from err's text.
func scrub(secrets []string, err error) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	msg := err.Error()
	if clean := scrubString(secrets, msg); clean != msg {
		return &scrubbed{msg: clean, err: err}
	}
	return err
}

func scrubString(secrets []string, s string) string {
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "REDACTED")
	}
	return s
}

type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }
