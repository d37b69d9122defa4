package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/jobhost/jobhost/triggers"
)

// target is a parsed postgres://<queue> URL with its DSN.
type target struct {
	queue   string
	dsn     string
	setting string
	opts    Options
}

// parseURL reads postgres://<queue>[?schema=<schema>&poison=<queue>] and
// finds the DSN: the value of app setting o.Connection when set, else of
// JOBHOST_POSTGRES_URL, both read through o.Lookup (the environment when
// nil). o.PoisonName overrides the poison parameter.
func parseURL(u *url.URL, o triggers.OpenOptions) (*target, error) {
	if u == nil {
		return nil, errors.New("postgres: nil URL")
	}
	if u.Scheme != Scheme {
		return nil, fmt.Errorf("postgres: URL scheme %q, want %q", u.Scheme, Scheme)
	}
	if u.User != nil || u.Port() != "" {
		return nil, fmt.Errorf("postgres: URL %s names a server: a trigger URL is postgres://<queue>, and the connection string goes in the app setting %s (or the connection named)", u.Redacted(), EnvURL)
	}
	queue := strings.TrimPrefix(path.Join(u.Host, u.Path), "/")
	if queue == "" || queue == "." {
		return nil, fmt.Errorf("postgres: URL %s names no queue (want postgres://<queue>)", u.Redacted())
	}
	opts := Options{CreateIfMissing: o.CreateIfMissing}
	var unknown []string
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "schema":
			opts.Schema = v
		case "poison":
			if v == "" {
				return nil, fmt.Errorf("postgres: URL %s: empty poison queue name", u.Redacted())
			}
			opts.PoisonQueue = v
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("postgres: URL %s: unknown query parameter(s) %s (known: schema, poison; the connection string goes in the app setting %s)", u.Redacted(), strings.Join(unknown, ", "), EnvURL)
	}
	if o.PoisonName != "" {
		opts.PoisonQueue = o.PoisonName
	}
	lookup := o.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	setting := EnvURL
	if o.Connection != "" {
		setting = o.Connection
	}
	dsn, ok := triggers.LookupSetting(lookup, setting)
	if !ok {
		return nil, fmt.Errorf("postgres: no connection string for queue %q: app setting %q is not set (it should hold postgres://user:password@host:5432/database)", queue, setting)
	}
	return &target{queue: queue, dsn: dsn, setting: setting, opts: opts}, nil
}

// OpenURL opens the driver of postgres://<queue>[?schema=<schema>&poison=<queue>]
// (triggers.OpenURLFunc). The queue is the URL's host and path; schema
// holds the tables (default: the search_path); poison names the poison
// destination (default "<queue>-poison"; o.PoisonName overrides it). The
// DSN is the value of app setting o.Connection when set, else of
// JOBHOST_POSTGRES_URL, read through o.Lookup (the environment when nil).
// o.CreateIfMissing (extensions.pubsub.createQueues) applies the
// migrations on first use. It does not connect.
func OpenURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Driver, error) {
	t, err := parseURL(u, o)
	if err != nil {
		return nil, err
	}
	d, err := Open(ctx, t.dsn, t.queue, t.opts)
	if err != nil {
		return nil, fmt.Errorf("%w (from app setting %q)", err, t.setting)
	}
	return d, nil
}

// OpenPublisherURL opens a publisher to the queue of postgres://<queue>,
// found as OpenURL finds it, on the pool shared for the DSN.
func OpenPublisherURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Publisher, error) {
	t, err := parseURL(u, o)
	if err != nil {
		return nil, err
	}
	p, err := OpenPublisher(ctx, t.dsn, t.queue, t.opts)
	if err != nil {
		return nil, fmt.Errorf("%w (from app setting %q)", err, t.setting)
	}
	return p, nil
}

// OpenPoisonURL opens the poison administration of postgres://<queue>,
// found as OpenURL finds it.
func OpenPoisonURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.PoisonAdmin, error) {
	t, err := parseURL(u, o)
	if err != nil {
		return nil, err
	}
	p, err := OpenPoison(ctx, t.dsn, t.queue, t.opts)
	if err != nil {
		return nil, fmt.Errorf("%w (from app setting %q)", err, t.setting)
	}
	return p, nil
}
