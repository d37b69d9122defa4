package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/jobhost/jobhost/triggers"
)

var _ triggers.OpenURLFunc = OpenURL

// urlParams are the query parameters OpenURL understands.
var urlParams = []string{"group", "poison", "field"}

// opened is what a trigger URL and its options say.
type opened struct {
	stream    string
	opts      Options
	serverURL string // secret: may hold a password
	setting   string // the app setting it came from ("" for the default)
}

// OpenURL opens a driver for
//
//	redis://<stream>[?group=G][&poison=P][&field=F]
//	redis:///<stream>[?...]   (for names a URL host cannot hold, such as app:orders)
//
// It matches triggers.OpenURLFunc. The stream is the URL's host and path,
// unescaped (redis://a/b is the stream "a/b"). group= is the consumer
// group (default "jobhost"), poison= the poison stream (default
// "<stream>-poison"; o.PoisonName overrides it), field= the entry field
// holding the body (default "body"). The server URL is the value of app
// setting o.Connection when set (then it must be set), else of
// REDIS_SERVER_URL, else DefaultServerURL, read through o.Lookup (the
// environment when nil). o.Prefetch bounds each Receive;
// o.CreateIfMissing creates the stream and group.
func OpenURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Driver, error) {
	c, err := parseURL(u, o)
	if err != nil {
		return nil, err
	}
	d, err := Open(ctx, c.serverURL, c.stream, c.opts)
	if err != nil {
		return nil, c.wrap(err)
	}
	return d, nil
}

// wrap names the app setting the server URL came from in err.
func (c opened) wrap(err error) error {
	if c.setting == "" {
		return err
	}
	return fmt.Errorf("%w (from app setting %q)", err, c.setting)
}

// parseURL reads a trigger URL and finds its server URL.
func parseURL(u *url.URL, o triggers.OpenOptions) (opened, error) {
	var c opened
	if u == nil {
		return c, errors.New("redis: nil URL")
	}
	shown := u.Redacted()
	switch {
	case u.Scheme != Scheme:
		return c, fmt.Errorf("redis: URL scheme %q, want %q", u.Scheme, Scheme)
	case u.Opaque != "":
		return c, fmt.Errorf("redis: URL %q is not of the form redis://<stream>", shown)
	case u.User != nil:
		return c, fmt.Errorf("redis: the trigger URL must not hold credentials; put the server URL in the app setting %s", EnvServerURL)
	case strings.Contains(u.Host, ":"):
		return c, fmt.Errorf("redis: URL %q: the host part names a stream, not a server; put the server URL in the app setting %s (or the connection's)", shown, EnvServerURL)
	case u.Fragment != "":
		return c, fmt.Errorf("redis: URL %q: unexpected fragment", shown)
	}
	p := u.Path
	if p == "/" {
		p = "" // redis://orders/
	}
	c.stream = strings.TrimPrefix(u.Host+p, "/")
	if c.stream == "" {
		return c, fmt.Errorf("redis: URL %q names no stream (want redis://<stream>)", shown)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return c, fmt.Errorf("redis: URL %q: bad query: %w", shown, err)
	}
	var unknown []string
	for k, vs := range q {
		if !slices.Contains(urlParams, k) {
			unknown = append(unknown, k)
			continue
		}
		if len(vs) != 1 || vs[0] == "" {
			return c, fmt.Errorf("redis: URL %q: parameter %q must be given once, with a value", shown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return c, fmt.Errorf("redis: URL %q: unknown query parameter(s) %s (known: %s)", shown, strings.Join(unknown, ", "), strings.Join(urlParams, ", "))
	}
	c.opts = Options{
		Group:           q.Get("group"),
		PoisonStream:    q.Get("poison"),
		BodyField:       q.Get("field"),
		Prefetch:        max(0, o.Prefetch),
		CreateIfMissing: o.CreateIfMissing,
	}
	if o.PoisonName != "" {
		c.opts.PoisonStream = o.PoisonName
	}
	lookup := o.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if o.Connection != "" {
		v, ok := triggers.LookupSetting(lookup, o.Connection)
		if !ok {
			return c, fmt.Errorf("redis: no server URL for stream %q: app setting %q is not set (it should hold redis://[user:password@]host:6379[/db])", c.stream, o.Connection)
		}
		c.serverURL, c.setting = v, o.Connection
		return c, nil
	}
	if v, ok := triggers.LookupSetting(lookup, EnvServerURL); ok {
		c.serverURL, c.setting = v, EnvServerURL
		return c, nil
	}
	c.serverURL = DefaultServerURL
	return c, nil
}
