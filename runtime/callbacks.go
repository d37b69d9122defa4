package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/jobhost/jobhost/webhook"
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
	// callbackJitter is the backoff's random spread: each wait is the
	// doubled base times a factor in [1-callbackJitter, 1+callbackJitter).
	callbackJitter = 0.2
	// maxWebhookIDLen bounds a webhook-id given to PostJSON.
	maxWebhookIDLen = 256
)

// DefaultCallbackSecretSetting is the app setting holding the callbacks'
// signing secret(s) when jobhost.callbacks.signingSecret names no other.
const DefaultCallbackSecretSetting = "JOBHOST_CALLBACK_SECRET"

// callbacks sends completion notices (jobhost.callbacks): an HTTP POST of a
// Completion (Post), or of another JSON payload (PostJSON), to a URL whose
// host is in the allowlist, in the background, retried on network errors,
// 408, 429 and 5xx. A callback never affects the message it reports on: the
// caller has settled it before calling Post. The dialer refuses link-local
// and cloud metadata addresses (see callbacks_dial.go).
//
// With signing secrets (CallbackSettings.Secrets) every POST carries the
// Standard Webhooks headers (package webhook): webhook-id, one per notice
// and the same on each of its attempts, webhook-timestamp, the attempt's
// time, and webhook-signature, one v1 entry per secret. Without, nothing
// is signed.
//
// The sender follows the Standard Webhooks rules: only a 2xx is success; a
// redirect is not followed (it is a failure); 410 Gone is not retried; a
// 429 or 503 is retried after its Retry-After (seconds or an HTTP date,
// capped at callbackMaxBackoff) when it has one; other waits are
// exponential (1 s, 2 s, 4 s … up to callbackMaxBackoff) with ±20% jitter.
//
// Delivery is best effort: up to maxAttempts POSTs, none guaranteed to land.
// The notice lives only in memory and is posted once the message is settled,
// so nothing sends it again: it is lost if the process exits before it
// lands (Close abandons retries in backoff and gives POSTs under way its
// context's time), if 64 are in flight, on a refusal, a 3xx or other 4xx
// than 408 and 429, or the last failed attempt. It may arrive twice: an
// attempt that times out or gets a 5xx after the receiver took it is
// retried, and a message delivered again (its deletion failed or its lease
// was lost) runs again and sends a new notice, with a new invocation ID.
// Receivers deduplicate on invocationId (X-Jobhost-Invocation-Id) and
// messageId.
type callbacks struct {
	log         *zap.Logger
	client      *http.Client
	allowed     []hostPattern
	literalIPs  map[netip.Addr]bool // IP addresses the allowlist names
	timeout     time.Duration       // one attempt
	maxAttempts int
	backoff     time.Duration    // wait after the first failed attempt; doubles after each
	dropped     atomic.Int64     // notices Post dropped: over the bound or after Close
	delivered   atomic.Uint64    // notices the receiver accepted
	failed      atomic.Uint64    // notices given up after their attempts (or abandoned at stop)
	refused     atomic.Uint64    // notices never sent: a URL not allowed, a bad id or payload
	secrets     []webhook.Secret // sign every POST when not empty

	// now is the clock of the signatures' timestamps and of Retry-After
	// dates; pause waits between attempts, false if Close came first;
	// jitter returns the backoff's random number in [0, 1). Tests replace
	// them.
	now    func() time.Time
	pause  func(d time.Duration) bool
	jitter func() float64

	// resolve and dial are the dialer's name lookup and connect (tests
	// replace them); dial is given only vetted IP addresses.
	resolve func(ctx context.Context, network, host string) ([]netip.Addr, error)
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)

	sem    chan struct{} // one token per post in flight
	wg     sync.WaitGroup
	mu     sync.Mutex // guards closed against wg.Add racing Close's wg.Wait
	closed bool
	stop   chan struct{}      // closed by Close: no more retries
	ctx    context.Context    // cancelled when Close gives up: aborts requests
	cancel context.CancelFunc //
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
		literalIPs:  map[netip.Addr]bool{},
		sem:         make(chan struct{}, maxCallbacksInFlight),
		stop:        make(chan struct{}),
		resolve:     net.DefaultResolver.LookupNetIP,
		dial:        (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		secrets:     append([]webhook.Secret(nil), s.Secrets...),
		now:         time.Now,
		jitter:      mathrand.Float64,
	}
	cb.pause = cb.wait
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
		if a, err := netip.ParseAddr(p.host); err == nil {
			cb.literalIPs[a] = true
		}
	}
	cb.ctx, cb.cancel = context.WithCancel(context.Background())
	// http.DefaultTransport's settings, without its proxy: the dialer must
	// see the address it connects to.
	transport := &http.Transport{DialContext: cb.dialContext, ForceAttemptHTTP2: true, MaxIdleConns: 100,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ExpectContinueTimeout: time.Second}
	cb.client = &http.Client{
		Transport: transport,
		// Never follow a redirect: the allowlist applies to the URL given,
		// and a redirect could lead anywhere. The 3xx is a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return cb
}

// Post sends c to rawURL in the background and returns at once; it never
// blocks the caller and never panics. A URL refused by the rules is logged
// (warn) and nothing is sent. At most 64 notices are in flight (sending or
// waiting to retry) at once: beyond that, and after Close, Post logs a
// warning and drops the notice, counting it in cb.dropped. A signed notice
// gets a new webhook-id. Post is PostJSON with the completion's log fields
// and its X-Jobhost-Invocation-Id header.
func (cb *callbacks) Post(rawURL string, c Completion) {
	fields := []zap.Field{
		zap.String("function", c.Function),
		zap.String("invocationId", c.InvocationID),
		zap.String("messageId", c.MessageID),
		zap.String("outcome", c.Status),
		zap.String("url", safeURL(rawURL)),
	}
	extra := http.Header{"X-Jobhost-Invocation-Id": {c.InvocationID}}
	cb.post(rawURL, c, "", extra, fields, "the completion")
}

// PostJSON sends payload, encoded as JSON, to rawURL in the background,
// exactly as Post sends a completion: the same allowlist and dialer checks,
// in-flight bound, timeout, retries and logs, and the same signature when
// the host has a signing secret. id is the notice's webhook-id, sent on
// every attempt of a signed notice (an unsigned one carries no webhook
// headers): receivers deduplicate on it, so post the same notice again with
// the same id, and a different notice with a different one; "" makes a new
// one ("msg_" and 26 random characters). An id must be 1 to 256
// printable ASCII characters without spaces, or nothing is sent. fields
// identify the notice in the log entries (the URL, without its query, is
// always there). Like Post, it returns at once and never panics.
func (cb *callbacks) PostJSON(rawURL string, payload any, id string, fields ...zap.Field) {
	fields = append(append([]zap.Field(nil), fields...), zap.String("url", safeURL(rawURL)))
	cb.post(rawURL, payload, id, nil, fields, "the payload")
}

// post checks rawURL, encodes payload and starts its delivery; what names
// the payload in a log entry.
func (cb *callbacks) post(rawURL string, payload any, id string, extra http.Header, fields []zap.Field, what string) {
	defer func() {
		if r := recover(); r != nil {
			cb.log.Error("callback not sent: internal error", append(fields, zap.String("panic", fmt.Sprint(r)))...)
		}
	}()
	if id != "" && !validWebhookID(id) {
		cb.refused.Add(1)
		cb.log.Warn("callback not sent: the id is not 1 to 256 printable ASCII characters without spaces",
			append(fields, zap.String("webhookId", id))...)
		return
	}
	u, err := cb.check(rawURL)
	if err != nil {
		cb.refused.Add(1)
		cb.log.Warn("callback refused", append(fields, zap.String("reason", err.Error()))...)
		return
	}
	body, err := json.Marshal(payload)
	if err != nil {
		cb.refused.Add(1)
		cb.log.Warn("callback not sent: "+what+" cannot be encoded as JSON", append(fields, zap.String("error", err.Error()))...)
		return
	}
	if len(cb.secrets) > 0 {
		if id == "" {
			id = newWebhookID()
		}
		fields = append(fields, zap.String("webhookId", id))
	}
	cb.mu.Lock()
	if cb.closed {
		cb.mu.Unlock()
		cb.log.Warn("callback dropped: the host is stopping", append(fields, zap.Int64("dropped", cb.dropped.Add(1)))...)
		return
	}
	select {
	case cb.sem <- struct{}{}:
	default:
		cb.mu.Unlock()
		cb.log.Warn("callback dropped: too many callbacks in flight",
			append(fields, zap.Int("limit", cap(cb.sem)), zap.Int64("dropped", cb.dropped.Add(1)))...)
		return
	}
	cb.wg.Add(1)
	cb.mu.Unlock()
	go cb.send(u, body, id, extra, fields)
}

// newWebhookID returns a new webhook-id.
func newWebhookID() string { return "msg_" + rand.Text() }

// validWebhookID reports whether id may be sent as a webhook-id: 1 to 256
// printable ASCII characters, no space.
func validWebhookID(id string) bool {
	if id == "" || len(id) > maxWebhookIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// attemptResult is the outcome of one POST: a status code, or an error.
type attemptResult struct {
	status     int
	err        error
	retryAfter time.Duration // a 429's or 503's Retry-After; -1 if none (or unreadable)
}

func (r attemptResult) ok() bool { return r.err == nil && r.status >= 200 && r.status < 300 }

func (r attemptResult) retryable() bool {
	if r.err != nil {
		return !isAddressRefused(r.err)
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
		if r.status == http.StatusGone {
			fs = append(fs, zap.String("error", "410 Gone: the receiver takes no more callbacks at this URL; not retried"))
		}
	}
	if r.err != nil {
		fs = append(fs, zap.String("error", r.err.Error()))
	}
	return fs
}

// send runs in its own goroutine: attempts with backoff until success, a
// final failure, or Close. Every attempt carries the same id.
func (cb *callbacks) send(u *url.URL, body []byte, id string, extra http.Header, fields []zap.Field) {
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
		r := cb.attempt(u, body, id, extra)
		if r.ok() {
			cb.delivered.Add(1)
			cb.log.Debug("callback sent", append(fields, zap.Int("statusCode", r.status),
				zap.Int("attempts", attempt), zap.Int64("durationMs", time.Since(start).Milliseconds()))...)
			return
		}
		if cb.ctx.Err() != nil {
			cb.failed.Add(1)
			cb.log.Warn("callback abandoned: the host stopped", append(fields, zap.Int("attempts", attempt))...)
			return
		}
		if isAddressRefused(r.err) {
			cb.refused.Add(1)
			cb.log.Warn("callback refused", append(fields, zap.String("reason", r.err.Error()), zap.Int("attempts", attempt))...)
			return
		}
		if !r.retryable() || attempt >= cb.maxAttempts {
			cb.failed.Add(1)
			cb.log.Warn("callback failed", append(append(fields, r.fields()...), zap.Int("attempts", attempt))...)
			return
		}
		delay := cb.retryDelay(attempt, r)
		cb.log.Debug("callback attempt failed, retrying", append(append(fields, r.fields()...),
			zap.Int("attempts", attempt), zap.Int64("delayMs", delay.Milliseconds()))...)
		if !cb.pause(delay) {
			cb.failed.Add(1)
			cb.log.Warn("callback abandoned: the host is stopping", append(append(fields, r.fields()...), zap.Int("attempts", attempt))...)
			return
		}
	}
}

// retryDelay is the wait after failed attempt n (from 1): a 429's or 503's
// Retry-After when it has one, else the backoff doubled n-1 times with
// ±20% jitter; either capped at callbackMaxBackoff.
func (cb *callbacks) retryDelay(n int, r attemptResult) time.Duration {
	if r.retryAfter >= 0 {
		return min(r.retryAfter, callbackMaxBackoff)
	}
	d := cb.backoff
	for i := 1; i < n && d < callbackMaxBackoff; i++ {
		d *= 2
	}
	if d > callbackMaxBackoff || d <= 0 {
		d = callbackMaxBackoff
	}
	d = time.Duration(float64(d) * (1 - callbackJitter + 2*callbackJitter*cb.jitter()))
	return min(d, callbackMaxBackoff)
}

// wait is the default pause: d, or until Close (false).
func (cb *callbacks) wait(d time.Duration) bool {
	select {
	case <-cb.stop:
		return false
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-cb.stop:
		return false
	}
}

// attempt makes one POST bounded by cb.timeout, signed when cb has
// secrets, and drains and closes the response body.
func (cb *callbacks) attempt(u *url.URL, body []byte, id string, extra http.Header) attemptResult {
	ctx, cancel := context.WithTimeout(cb.ctx, cb.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return attemptResult{err: errors.New("cannot build the request"), retryAfter: -1}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jobhost")
	for k, v := range extra {
		req.Header[k] = v
	}
	if len(cb.secrets) > 0 {
		for k, v := range webhook.Sign(cb.secrets, id, cb.now(), body) {
			req.Header[k] = v
		}
	}
	resp, err := cb.client.Do(req)
	if err != nil {
		return attemptResult{err: cb.describe(ctx, err), retryAfter: -1}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, callbackBodyLimit))
	r := attemptResult{status: resp.StatusCode, retryAfter: -1}
	if r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), cb.now()); ok {
			r.retryAfter = d
		}
	}
	return r
}

// parseRetryAfter reads a Retry-After value: delay-seconds (digits) or an
// HTTP date (a past one is 0). Anything else: false.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return callbackMaxBackoff, true
			}
			return 0, false
		}
		if n > uint64(callbackMaxBackoff/time.Second) {
			return callbackMaxBackoff, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// signingSecrets reads the signing secrets from the app setting name, or
// DefaultCallbackSecretSetting when name is "". It returns the setting read
// and none when it is not set or blank, or a message saying what is wrong
// with its value, which it never quotes.
func signingSecrets(name string, settings *AppSettings) (secrets []webhook.Secret, setting string, set bool, problem string) {
	if name == "" {
		name = DefaultCallbackSecretSetting
	}
	val, ok := settings.Lookup(name)
	if !ok || strings.TrimSpace(val) == "" {
		return nil, name, false, ""
	}
	secrets, err := webhook.ParseSecrets(val)
	if err != nil {
		return nil, name, true, "is not a valid callback signing secret (jobhost.callbacks.signingSecret): " +
			strings.TrimPrefix(err.Error(), "webhook: ") +
			`; want one or more whsec_<base64> secrets of 24 to 64 bytes separated by spaces (the value is not shown)`
	}
	return secrets, name, true, ""
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

// callbackCount is one outcome's count, for the metrics.
type callbackCount struct {
	outcome string
	n       uint64
}

// counts returns the notices by outcome since the host started.
func (cb *callbacks) counts() []callbackCount {
	return []callbackCount{{"delivered", cb.delivered.Load()}, {"failed", cb.failed.Load()},
		{"refused", cb.refused.Load()}, {"dropped", uint64(cb.dropped.Load())}}
}
