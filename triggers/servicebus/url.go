package servicebus

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"gocloud.dev/pubsub/azuresb"

	"github.com/jobhost/jobhost/triggers"
)

const (
	// ConnectionStringVar is gocloud's environment variable for a Service
	// Bus connection string, the default connection.
	ConnectionStringVar = "SERVICEBUS_CONNECTION_STRING"
	// HostnameVar is gocloud's environment variable for a namespace host
	// name (identity-based); SERVICEBUS_CONNECTION_STRING takes precedence.
	HostnameVar = "AZURE_SERVICEBUS_HOSTNAME"
	// FullyQualifiedNamespaceSuffix is Functions' identity-based connection
	// setting suffix: <Connection>__fullyQualifiedNamespace.
	FullyQualifiedNamespaceSuffix = "__fullyQualifiedNamespace"
)

// URL query parameters.
const (
	paramSubscription   = "subscription"
	paramListenerTimout = "listener_timeout"
	paramMaxBatch       = "max_recv_batch_size"
	paramMaxRenewal     = "max_auto_lock_renewal_duration"
	paramMaxHeldRetry   = "max_held_retry_delay"
)

var knownParams = []string{paramSubscription, paramListenerTimout, paramMaxBatch, paramMaxRenewal, paramMaxHeldRetry}

// ParseURL parses a trigger URL:
//
//	azuresb://<topic>?subscription=<subscription>   a topic subscription
//	azuresb://<queue>                               a queue
//
// As in gocloud, the name is host and path joined ("azuresb://a/b" names
// "a/b"). Query parameters:
//
//   - subscription: the subscription name (gocloud's).
//   - listener_timeout: Options.ReceiveWait, a Go duration (gocloud's).
//   - max_recv_batch_size: Options.MaxBatch (gocloud's).
//   - max_auto_lock_renewal_duration: Options.MaxAutoLockRenewalDuration, a
//     Go duration or a TimeSpan ("00:05:00"); negative means no limit.
//   - max_held_retry_delay: Options.MaxHeldRetryDelay, likewise; negative
//     means always schedule a copy.
//
// Any other parameter is an error, as in gocloud.
func ParseURL(u *url.URL) (Entity, Options, error) {
	var (
		e Entity
		o Options
	)
	if u == nil {
		return e, o, fmt.Errorf("servicebus: nil URL")
	}
	shown := redactURL(u)
	fail := func(format string, args ...any) (Entity, Options, error) {
		return Entity{}, Options{}, fmt.Errorf("servicebus: URL %s: "+format, append([]any{shown}, args...)...)
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return fail("scheme is %q, want %q", u.Scheme, Scheme)
	}
	if u.Opaque != "" {
		return fail("want %s://<queue> or %s://<topic>?subscription=<subscription>", Scheme, Scheme)
	}
	if u.User != nil {
		return fail("credentials do not belong in the URL; put the connection in an app setting")
	}
	if u.Fragment != "" {
		return fail("unexpected fragment")
	}
	if u.Port() != "" {
		return fail("unexpected port; the URL names an entity, the namespace comes from the connection")
	}
	name := strings.TrimPrefix(path.Join(u.Host, u.Path), "/")
	if name == "" || name == "." {
		return fail("no queue or topic name; want %s://<queue> or %s://<topic>?subscription=<subscription>", Scheme, Scheme)
	}
	if strings.Contains(name, "$") {
		return fail("%q: system sub-queues ($deadletterqueue) cannot be named in the URL", name)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fail("bad query: %v", err)
	}
	for k, vs := range q {
		if !slices.Contains(knownParams, k) {
			return fail("unknown query parameter %q (supported: %s)", k, strings.Join(knownParams, ", "))
		}
		if len(vs) != 1 {
			return fail("query parameter %q given %d times", k, len(vs))
		}
	}
	if _, ok := q[paramSubscription]; ok {
		sub := q.Get(paramSubscription)
		if sub == "" {
			return fail("empty subscription")
		}
		e = Entity{Topic: name, Subscription: sub}
	} else {
		e = Entity{Queue: name}
	}
	if err := e.Validate(); err != nil {
		return fail("%v", strings.TrimPrefix(err.Error(), "servicebus: "))
	}
	if v, ok := q[paramListenerTimout]; ok {
		d, err := time.ParseDuration(v[0])
		if err != nil || d <= 0 || d > MaxReceiveWait {
			return fail("%s %q: want a Go duration above 0 and at most %v", paramListenerTimout, v[0], MaxReceiveWait)
		}
		o.ReceiveWait = d
	}
	if v, ok := q[paramMaxBatch]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 {
			return fail("%s %q: want a positive integer", paramMaxBatch, v[0])
		}
		o.MaxBatch = n
	}
	for _, p := range []struct {
		name string
		dst  *time.Duration
	}{{paramMaxRenewal, &o.MaxAutoLockRenewalDuration}, {paramMaxHeldRetry, &o.MaxHeldRetryDelay}} {
		if v, ok := q[p.name]; ok {
			d, err := parseDuration(v[0])
			if err != nil || d == 0 {
				return fail("%s %q: want a non-zero Go duration (\"5m\") or TimeSpan (\"00:05:00\"); negative means unlimited", p.name, v[0])
			}
			*p.dst = d
		}
	}
	return e, o, nil
}

// parseDuration accepts a Go duration or a .NET TimeSpan [-][d.]hh:mm:ss[.f].
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	neg := strings.HasPrefix(s, "-")
	t := strings.TrimPrefix(s, "-")
	var days int64
	parts := strings.Split(t, ":")
	if len(parts) != 3 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	if dd, hh, ok := strings.Cut(parts[0], "."); ok {
		n, err := strconv.ParseInt(dd, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		days, parts[0] = n, hh
	}
	h, err1 := strconv.Atoi(parts[0])
	m, err2 := strconv.Atoi(parts[1])
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil || err3 != nil || h > 23 || m > 59 || sec >= 60 || h < 0 || m < 0 || sec < 0 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	d := time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec*float64(time.Second))
	if neg {
		d = -d
	}
	return d, nil
}

// redactURL renders u for messages without user info.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return Redact(c.String())
}

// OpenURL opens a driver for u (a triggers.OpenURLFunc, registered for
// the azuresb scheme); see ParseURL for the URL form.
//
// The connection comes from app settings (o.Lookup; the environment when
// nil). When o.Connection names a setting, these are tried in order: that
// setting, then AzureWebJobs<Connection> (holding a connection string
// "Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=..." or a
// namespace host "<ns>.servicebus.windows.net"), then Functions'
// <Connection>__fullyQualifiedNamespace (a namespace host). Otherwise
// gocloud's variables are used: SERVICEBUS_CONNECTION_STRING, then
// AZURE_SERVICEBUS_HOSTNAME. A namespace host is authenticated with
// azidentity's DefaultAzureCredential (gocloud's
// NewClientFromServiceBusHostname); a connection string with shared access
// key or signature (gocloud's NewClientFromConnectionString).
//
// o.Prefetch, when set, caps each Receive. o.PoisonName must be empty or the
// entity's dead-letter queue: Service Bus dead-letters natively.
// o.CreateIfMissing is ignored. The client retries a failed operation only
// twice, 200 ms to 1 s apart, so that a connection failure surfaces as an
// error from Receive instead of looking like an empty queue (the runtime
// backs off by itself). Drivers, publishers and poison administrations
// opened on the same connection (after setting resolution) share one
// client; the last to close closes it. Errors name the settings tried but
// never contain a connection string or key.
func OpenURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Driver, error) {
	e, opts, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	if o.Prefetch > 0 && (opts.MaxBatch == 0 || o.Prefetch < opts.MaxBatch) {
		opts.MaxBatch = o.Prefetch
	}
	if err := checkPoisonName(e, o.PoisonName); err != nil {
		return nil, err
	}
	sc, release, err := acquireConn(o)
	if err != nil {
		return nil, fmt.Errorf("servicebus: %s: %w", e.Path(), err)
	}
	d, err := OpenClient(sc.client, e, &opts)
	if err != nil {
		releaseNow(ctx, release)
		return nil, err
	}
	d.release = release
	return d, nil
}

// checkPoisonName accepts an empty poison name or the entity's own
// dead-letter queue: Service Bus dead-letters natively.
func checkPoisonName(e Entity, p string) error {
	if p != "" && !strings.EqualFold(strings.TrimSuffix(p, "/"), e.Path()+DeadLetterSuffix) {
		return fmt.Errorf("servicebus: %s: poison destination %q is not supported: Service Bus dead-letters to the entity's own dead-letter queue (%s)", e.Path(), p, e.Path()+DeadLetterSuffix)
	}
	return nil
}

// releaseNow drops a shared-client reference after a failed open.
func releaseNow(ctx context.Context, release func(context.Context) error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	_ = release(cctx)
}

// connection is a resolved connection. It may hold a secret: never format
// it into an error.
type connection struct {
	setting string // where it came from
	connStr string // a connection string, or
	host    string // a namespace host for identity
}

// resolveConnection finds the connection settings (see OpenURL).
func resolveConnection(o triggers.OpenOptions) (connection, error) {
	lookup := o.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	type cand struct {
		name     string
		hostOnly bool
	}
	var cands []cand
	if name := strings.TrimSpace(o.Connection); name != "" {
		cands = append(cands, cand{name, false})
		if !strings.HasPrefix(strings.ToLower(name), "azurewebjobs") {
			cands = append(cands, cand{"AzureWebJobs" + name, false})
		}
		cands = append(cands, cand{name + FullyQualifiedNamespaceSuffix, true})
	} else {
		cands = []cand{{ConnectionStringVar, false}, {HostnameVar, true}}
	}
	var tried []string
	for _, c := range cands {
		tried = append(tried, c.name)
		v, ok := triggers.LookupSetting(lookup, c.name)
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if strings.Contains(v, "=") {
			if c.hostOnly {
				return connection{}, fmt.Errorf("setting %s must hold a namespace host name (<namespace>.servicebus.windows.net), not a connection string", c.name)
			}
			if err := checkConnectionString(v); err != nil {
				return connection{}, fmt.Errorf("setting %s holds an invalid Service Bus connection string: %v", c.name, err)
			}
			return connection{setting: c.name, connStr: v}, nil
		}
		host, err := namespaceHost(v)
		if err != nil {
			return connection{}, fmt.Errorf("setting %s: %v", c.name, err)
		}
		return connection{setting: c.name, host: host}, nil
	}
	return connection{}, fmt.Errorf("no Service Bus connection: none of %s is set", strings.Join(tried, ", "))
}

// checkConnectionString checks the shape of a connection string, with
// errors that never echo it.
func checkConnectionString(cs string) error {
	keys := map[string]string{}
	for _, part := range strings.Split(cs, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("expected Key=Value pairs separated by ';'")
		}
		keys[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	ep := keys["endpoint"]
	if ep == "" {
		return fmt.Errorf("it has no Endpoint")
	}
	if pu, err := url.Parse(ep); err != nil || pu.Host == "" {
		return fmt.Errorf("its Endpoint is not a URL like sb://<namespace>.servicebus.windows.net/")
	}
	if keys["sharedaccesssignature"] == "" && (keys["sharedaccesskeyname"] == "" || keys["sharedaccesskey"] == "") {
		return fmt.Errorf("it needs SharedAccessKeyName and SharedAccessKey, or SharedAccessSignature")
	}
	return nil
}

// namespaceHost normalises a namespace host setting: "ns.servicebus.windows.net",
// also accepted with an sb:// or https:// scheme and a trailing slash.
func namespaceHost(v string) (string, error) {
	h := v
	for _, p := range []string{"sb://", "https://", "amqps://"} {
		if len(h) > len(p) && strings.EqualFold(h[:len(p)], p) {
			h = h[len(p):]
			break
		}
	}
	h = strings.TrimSuffix(h, "/")
	if h == "" {
		return "", fmt.Errorf("empty namespace host name")
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':') {
			return "", fmt.Errorf("not a namespace host name like <namespace>.servicebus.windows.net")
		}
	}
	if !strings.Contains(h, ".") {
		return "", fmt.Errorf("%q is not a fully qualified namespace host name (want <namespace>.servicebus.windows.net)", h)
	}
	return h, nil
}

// clientOptions makes the client retry a failed operation only twice, 200 ms
// to 1 s apart. The SDK's defaults (3 retries, 4 s and more apart) outlast
// Receive's short wait, so that a connection failure would look like an
// empty queue; the runtime has its own backoff for failed polls.
func clientOptions() *azservicebus.ClientOptions {
	return &azservicebus.ClientOptions{RetryOptions: azservicebus.RetryOptions{
		MaxRetries: 2, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: time.Second,
	}}
}

// newClient makes a client for a resolved connection with gocloud's
// azuresb constructors.
func newClient(c connection) (*azservicebus.Client, error) {
	if c.connStr != "" {
		client, err := azuresb.NewClientFromConnectionString(c.connStr, clientOptions())
		if err != nil {
			return nil, fmt.Errorf("setting %s: cannot make a Service Bus client from the connection string: %s", c.setting, Redact(err.Error()))
		}
		return client, nil
	}
	client, err := azuresb.NewClientFromServiceBusHostname(c.host, clientOptions())
	if err != nil {
		return nil, fmt.Errorf("setting %s: identity-based connection to %s: %s", c.setting, c.host, Redact(err.Error()))
	}
	return client, nil
}
