package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Completion is the JSON body of a completion callback.
type Completion struct {
	InvocationID string    `json:"invocationId"`
	Function     string    `json:"function"`
	MessageID    string    `json:"messageId"`
	Status       string    `json:"status"` // "succeeded" or "poisoned"
	Error        string    `json:"error,omitempty"`
	Output       any       `json:"output,omitempty"`
	StartTime    time.Time `json:"startTime"`
	EndTime      time.Time `json:"endTime"`
	Attempts     int64     `json:"attempts"`
}

const (
	// maxCallbacksInFlight bounds the completion notices being sent (or
	// waiting to be retried) at once; Post drops any beyond it.
	maxCallbacksInFlight = 64
	// callbackBodyLimit is how much of a response body is read (and
	// discarded) so the connection can be reused.
	callbackBodyLimit = 64 << 10
	// callbackMaxBackoff caps the wait between two attempts.
	callbackMaxBackoff = time.Minute
	// callbackAbandonGrace is how long Close waits, once its context has
	// ended and the posts under way are cancelled, for them to log and exit.
	callbackAbandonGrace       = time.Second
	defaultCallbackTimeout     = 10 * time.Second
	defaultCallbackMaxAttempts = 3
)

// callbacks sends completion notices (jobhost.callbacks): an HTTP POST of a
// Completion to a URL whose host is in the allowlist, in the background,
// retried on network errors, 408, 429 and 5xx. A callback never affects the
// message it reports on: the caller has settled it before calling Post.
type callbacks struct {
	log         *zap.Logger
	client      *http.Client
	allowed     []hostPattern
	timeout     time.Duration // one attempt
	maxAttempts int
	backoff     time.Duration // wait after the first failed attempt; doubles after each

	sem    chan struct{} // one token per post in flight
	wg     sync.WaitGroup
	mu     sync.Mutex // guards closed against wg.Add racing Close's wg.Wait
	closed bool
	stop   chan struct{}      // closed by Close: no more retries
	ctx    context.Context    // cancelled when Close gives up: aborts requests
	cancel context.CancelFunc //
}

// hostPattern is one allowedHosts entry.
type hostPattern struct {
	host     string // lower-case name or canonical IP; for a wildcard the suffix with its dot (".example.com")
	wildcard bool
	port     int // 0: any port
}

// newCallbacks returns the sender for settings s; log receives refusals,
// failures (warn) and successes (debug). Invalid allowedHosts entries are
// logged and ignored.
func newCallbacks(s CallbackSettings, log *zap.Logger) *callbacks {
	if log == nil {
		log = zap.NewNop()
	}
	cb := &callbacks{
		log:         log,
		timeout:     s.Timeout,
		maxAttempts: s.MaxAttempts,
		backoff:     time.Second,
		sem:         make(chan struct{}, maxCallbacksInFlight),
		stop:        make(chan struct{}),
	}
	if cb.timeout <= 0 {
		cb.timeout = defaultCallbackTimeout
	}
	if cb.maxAttempts <= 0 {
		cb.maxAttempts = defaultCallbackMaxAttempts
	}
	for _, e := range s.AllowedHosts {
		p, err := parseHostPattern(e)
		if err != nil {
			log.Warn("jobhost.callbacks.allowedHosts entry ignored", zap.String("entry", e), zap.String("reason", err.Error()))
			continue
		}
		cb.allowed = append(cb.allowed, p)
	}
	cb.ctx, cb.cancel = context.WithCancel(context.Background())
	var transport http.RoundTripper = http.DefaultTransport
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		transport = t.Clone()
	}
	cb.client = &http.Client{
		Transport: transport,
		// Never follow a redirect: the allowlist applies to the URL given,
		// and a redirect could lead anywhere. The 3xx is a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return cb
}

// CheckURL reports why rawURL may not receive callbacks, or nil if it may.
// The host uses it at start for static callback URLs. The error never
// contains the URL's query or userinfo.
func (cb *callbacks) CheckURL(rawURL string) error {
	_, err := cb.check(rawURL)
	return err
}

// check parses rawURL and applies the rules: http or https, no userinfo, a
// canonical host (the one the transport will dial) in the allowlist.
func (cb *callbacks) check(rawURL string) (*url.URL, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, errors.New("no callback URL")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's error quotes the whole URL: do not pass it on.
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q is not allowed: only http and https", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, errors.New("the URL has no host")
	}
	if u.User != nil {
		return nil, errors.New("the URL carries userinfo (user@ or user:password@), which is not allowed")
	}
	host, port, err := canonicalURLHost(u)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = 80
		if u.Scheme == "https" {
			port = 443
		}
	}
	for _, p := range cb.allowed {
		if p.matches(host, port) {
			return u, nil
		}
	}
	if len(cb.allowed) == 0 {
		return nil, fmt.Errorf("host %s is not allowed: jobhost.callbacks.allowedHosts is empty", u.Host)
	}
	return nil, fmt.Errorf("host %s is not in jobhost.callbacks.allowedHosts", u.Host)
}

func (p hostPattern) matches(host string, port int) bool {
	if p.port != 0 && p.port != port {
		return false
	}
	if p.wildcard {
		return len(host) > len(p.host) && strings.HasSuffix(host, p.host)
	}
	return host == p.host
}

// canonicalURLHost returns u's host, lower-cased (an IP in its canonical
// form), and its port (0 if none). It refuses hosts the dialer might read
// differently from the allowlist: percent-escapes, non-ASCII, trailing dots,
// numeric forms that are not a plain IP address (0x7f.1, 2130706433),
// bracketed IPv4, IPv6 zones, empty or non-canonical ports.
func canonicalURLHost(u *url.URL) (string, int, error) {
	name := u.Hostname()
	bracketed := strings.HasPrefix(u.Host, "[")
	var port int
	if i := strings.LastIndexByte(u.Host, ':'); i >= 0 && i > strings.LastIndexByte(u.Host, ']') {
		ps := u.Host[i+1:]
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != ps {
			return "", 0, fmt.Errorf("port %q is not valid", ps)
		}
		port = n
	}
	if bracketed {
		a, err := netip.ParseAddr(name)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", 0, errors.New("the host is not a valid IPv6 address (zones are not allowed)")
		}
		return a.String(), port, nil
	}
	if a, err := netip.ParseAddr(name); err == nil {
		if !a.Is4() {
			return "", 0, errors.New("an IPv6 host must be in brackets")
		}
		return a.String(), port, nil
	}
	if err := checkDNSName(name); err != nil {
		return "", 0, err
	}
	return strings.ToLower(name), port, nil
}

// checkDNSName accepts ASCII host names: dot-separated labels of letters,
// digits and inner hyphens, whose last label is not numeric (a numeric one
// makes it an IPv4 address in some resolvers).
func checkDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return errors.New("the host name is empty or too long")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("the host is not a canonical host name (empty label, trailing dot or misplaced hyphen)")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return errors.New("the host is not a canonical host name (only ASCII letters, digits, '-' and '.'; use punycode for international names)")
			}
		}
	}
	if numericLabel(labels[len(labels)-1]) {
		return errors.New("the host looks numeric but is not a plain IPv4 address")
	}
	return nil
}

// numericLabel reports a label read as a number by IPv4 parsers: decimal,
// or hexadecimal with 0x.
func numericLabel(l string) bool {
	l = strings.ToLower(l)
	digits := "0123456789"
	if strings.HasPrefix(l, "0x") {
		l, digits = l[2:], "0123456789abcdef"
		if l == "" {
			return true
		}
	}
	for i := 0; i < len(l); i++ {
		if !strings.ContainsRune(digits, rune(l[i])) {
			return false
		}
	}
	return true
}

// parseHostPattern reads an allowedHosts entry: name, *.name, IPv4, IPv6
// (bare or bracketed), each optionally with :port when unambiguous.
func parseHostPattern(e string) (hostPattern, error) {
	e = strings.ToLower(strings.TrimSpace(e))
	if e == "" {
		return hostPattern{}, errors.New("empty entry")
	}
	if a, err := netip.ParseAddr(e); err == nil && a.Is6() { // bare IPv6: no port
		if a.Zone() != "" {
			return hostPattern{}, errors.New("IPv6 zones are not allowed")
		}
		return hostPattern{host: a.String()}, nil
	}
	host, portStr := e, ""
	if strings.HasPrefix(e, "[") {
		end := strings.IndexByte(e, ']')
		if end < 0 {
			return hostPattern{}, errors.New("missing ']'")
		}
		host, portStr = e[1:end], e[end+1:]
		if portStr != "" && portStr[0] != ':' {
			return hostPattern{}, errors.New("unexpected text after ']'")
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return hostPattern{}, errors.New("not an IPv6 address in brackets")
		}
		host = a.String()
	} else if i := strings.LastIndexByte(e, ':'); i >= 0 {
		host, portStr = e[:i], e[i:]
	}
	var p hostPattern
	if portStr != "" {
		ps := portStr[1:]
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != ps {
			return hostPattern{}, fmt.Errorf("port %q is not valid", ps)
		}
		p.port = n
	}
	switch {
	case strings.HasPrefix(e, "["):
		p.host = host
	case strings.HasPrefix(host, "*."):
		if err := checkDNSName(host[2:]); err != nil {
			return hostPattern{}, err
		}
		p.host, p.wildcard = host[1:], true
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			if !a.Is4() {
				return hostPattern{}, errors.New("an IPv6 address with a port must be in brackets")
			}
			p.host = a.String()
		} else if err := checkDNSName(host); err != nil {
			return hostPattern{}, err
		} else {
			p.host = host
		}
	}
	return p, nil
}

// safeURL returns rawURL fit for a log line: scheme, host and path, without
// userinfo, query or fragment (which may carry tokens).
func safeURL(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Opaque == "" {
		s := ""
		if u.Scheme != "" {
			s = u.Scheme + "://"
		}
		return s + u.Host + u.EscapedPath()
	}
	// Unparseable: cut at the query or fragment, then drop anything up to an
	// '@' in the authority.
	s := rawURL
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	rest, prefix := s, ""
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	authority, path := rest, ""
	if i := strings.IndexAny(rest, "/\\"); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	return prefix + authority + path
}

// Post sends c to rawURL in the background and returns at once; it never
// blocks the caller and never panics. A URL refused by the rules is logged
// (warn) and nothing is sent. At most 64 notices are in flight (sending or
// waiting to retry) at once: beyond that, and after Close, Post logs a
// warning and drops the notice.
func (cb *callbacks) Post(rawURL string, c Completion) {
	fields := []zap.Field{
		zap.String("function", c.Function),
		zap.String("invocationId", c.InvocationID),
		zap.String("messageId", c.MessageID),
		zap.String("outcome", c.Status),
		zap.String("url", safeURL(rawURL)),
	}
	defer func() {
		if r := recover(); r != nil {
			cb.log.Error("callback not sent: internal error", append(fields, zap.String("panic", fmt.Sprint(r)))...)
		}
	}()
	u, err := cb.check(rawURL)
	if err != nil {
		cb.log.Warn("callback refused", append(fields, zap.String("reason", err.Error()))...)
		return
	}
	body, err := json.Marshal(c)
	if err != nil {
		cb.log.Warn("callback not sent: the completion cannot be encoded as JSON", append(fields, zap.String("error", err.Error()))...)
		return
	}
	cb.mu.Lock()
	if cb.closed {
		cb.mu.Unlock()
		cb.log.Warn("callback dropped: the host is stopping", fields...)
		return
	}
	select {
	case cb.sem <- struct{}{}:
	default:
		cb.mu.Unlock()
		cb.log.Warn("callback dropped: too many callbacks in flight", append(fields, zap.Int("limit", cap(cb.sem)))...)
		return
	}
	cb.wg.Add(1)
	cb.mu.Unlock()
	go cb.send(u, body, c.InvocationID, fields)
}

// attemptResult is the outcome of one POST: a status code, or an error.
type attemptResult struct {
	status int
	err    error
}

func (r attemptResult) ok() bool { return r.err == nil && r.status >= 200 && r.status < 300 }

func (r attemptResult) retryable() bool {
	if r.err != nil {
		return true
	}
	return r.status == http.StatusRequestTimeout || r.status == http.StatusTooManyRequests || r.status >= 500
}

func (r attemptResult) fields() []zap.Field {
	var fs []zap.Field
	if r.status != 0 {
		fs = append(fs, zap.Int("statusCode", r.status))
		if r.status >= 300 && r.status < 400 {
			fs = append(fs, zap.String("error", "redirect not followed"))
		}
	}
	if r.err != nil {
		fs = append(fs, zap.String("error", r.err.Error()))
	}
	return fs
}

// send runs in its own goroutine: attempts with backoff until success, a
// final failure, or Close.
func (cb *callbacks) send(u *url.URL, body []byte, invocationID string, fields []zap.Field) {
	defer func() {
		<-cb.sem
		cb.wg.Done()
	}()
	defer func() {
		if r := recover(); r != nil {
			cb.log.Error("callback failed: internal error", append(fields, zap.String("panic", fmt.Sprint(r)))...)
		}
	}()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		r := cb.attempt(u, body, invocationID)
		if r.ok() {
			cb.log.Debug("callback sent", append(fields, zap.Int("statusCode", r.status),
				zap.Int("attempts", attempt), zap.Int64("durationMs", time.Since(start).Milliseconds()))...)
			return
		}
		if cb.ctx.Err() != nil {
			cb.log.Warn("callback abandoned: the host stopped", append(fields, zap.Int("attempts", attempt))...)
			return
		}
		if !r.retryable() || attempt >= cb.maxAttempts {
			cb.log.Warn("callback failed", append(append(fields, r.fields()...), zap.Int("attempts", attempt))...)
			return
		}
		delay := cb.backoff << (attempt - 1)
		if delay > callbackMaxBackoff || delay <= 0 {
			delay = callbackMaxBackoff
		}
		select {
		case <-cb.stop:
			cb.log.Warn("callback abandoned: the host is stopping", append(append(fields, r.fields()...), zap.Int("attempts", attempt))...)
			return
		default:
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-cb.stop:
			t.Stop()
			cb.log.Warn("callback abandoned: the host is stopping", append(append(fields, r.fields()...), zap.Int("attempts", attempt))...)
			return
		}
	}
}

// attempt makes one POST bounded by cb.timeout, drains and closes the body.
func (cb *callbacks) attempt(u *url.URL, body []byte, invocationID string) attemptResult {
	ctx, cancel := context.WithTimeout(cb.ctx, cb.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return attemptResult{err: errors.New("cannot build the request")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jobhost")
	req.Header.Set("X-Jobhost-Invocation-Id", invocationID)
	resp, err := cb.client.Do(req)
	if err != nil {
		return attemptResult{err: cb.describe(ctx, err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, callbackBodyLimit))
	return attemptResult{status: resp.StatusCode}
}

// describe returns err without the request URL (*url.Error quotes it whole,
// query included).
func (cb *callbacks) describe(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && cb.ctx.Err() == nil {
		return fmt.Errorf("timed out after %s", cb.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Close stops retries waiting in backoff (each logged as abandoned) and
// waits for the POSTs under way until ctx ends; then it cancels them (logged)
// and returns. Post drops notices after Close.
func (cb *callbacks) Close(ctx context.Context) {
	cb.mu.Lock()
	if !cb.closed {
		cb.closed = true
		close(cb.stop)
	}
	cb.mu.Unlock()
	done := make(chan struct{})
	go func() {
		cb.wg.Wait()
		close(done)
	}()
	defer cb.cancel()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	cb.log.Warn("callbacks abandoned: shutdown time is up", zap.Int("inFlight", len(cb.sem)))
	cb.cancel()
	// Cancelled requests return at once; let them log before returning.
	t := time.NewTimer(callbackAbandonGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
